"""JSON Schema of the spec format, for editors (yaml-language-server, VS Code)."""

from __future__ import annotations

from typing import Any

from archspec.spec import Spec


def _named_items(node: Any) -> Any:
    """Allow each body entry to also be written as `name: {item}` (a one-key mapping)."""
    if isinstance(node, dict):
        out = {k: _named_items(v) for k, v in node.items()}
        items = out.get("items")
        if out.get("type") == "array" and isinstance(items, dict) and _is_item_union(items):
            named = {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": items,
            }
            out["items"] = {"anyOf": [items, named]}
        return out
    if isinstance(node, list):
        return [_named_items(v) for v in node]
    return node


def _is_item_union(schema: dict[str, Any]) -> bool:
    refs = {alt.get("$ref") for alt in schema.get("oneOf", schema.get("anyOf", []))}
    return "#/$defs/BlockItem" in refs and "#/$defs/ScopeItem" in refs


def spec_json_schema() -> dict[str, Any]:
    schema = _named_items(Spec.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archspec spec"
    return schema
