"""JSON Schema of the spec format, for editors (yaml-language-server, VS Code)."""

from __future__ import annotations

from typing import Any

from archspec.spec import Spec


def _named_items(node: Any, item_refs: set[str]) -> Any:
    """Allow each body entry to also be written as `name: {item}` (a one-key mapping)."""
    if isinstance(node, dict):
        out = {k: _named_items(v, item_refs) for k, v in node.items()}
        if out.get("type") == "array" and isinstance(out.get("items"), dict):
            items = out["items"]
            refs = {r.get("$ref") for r in items.get("oneOf", items.get("anyOf", []))}
            if refs and refs <= item_refs:
                out["items"] = {
                    "anyOf": [
                        items,
                        {
                            "type": "object",
                            "minProperties": 1,
                            "maxProperties": 1,
                            "additionalProperties": items,
                        },
                    ]
                }
        return out
    if isinstance(node, list):
        return [_named_items(v, item_refs) for v in node]
    return node


def spec_json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    item_models = {
        k for k in schema.get("$defs", {}) if k.endswith("Op") or k in ("BlockItem", "ScopeItem")
    }
    refs = {f"#/$defs/{k}" for k in item_models}
    schema = _named_items(schema, refs)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archspec spec"
    return schema
