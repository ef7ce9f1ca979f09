"""JSON Schema of the spec format, for editors (yaml-language-server, VS Code)."""

from __future__ import annotations

from typing import Any

from archspec.spec import PARAM_TYPES, Spec

PARAM_SHORTHAND: dict[str, Any] = {
    "description": "shorthand: a type name (required param) or a default value (type inferred)",
    "anyOf": [
        {"enum": list(PARAM_TYPES)},
        {"type": ["number", "boolean", "string"]},
        {"type": "array", "items": {"type": "number"}},
    ],
}
INPUT_SHORTHAND: dict[str, Any] = {
    "description": "shorthand: the shape (C, H, W) without batch",
    "type": "array",
    "minItems": 1,
    "maxItems": 3,
    "items": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^\\s*\\$"}]},
}
SHORTHANDS = {"#/$defs/ParamDecl": PARAM_SHORTHAND, "#/$defs/InputDecl": INPUT_SHORTHAND}


def _named_items(node: Any) -> Any:
    """Add the YAML shorthands pydantic's schema cannot know about: `name: {item}` body
    entries, `param: 1000` / `param: int` declarations and `input: [3, 224, 224]` shapes."""
    if isinstance(node, dict):
        out = {k: _named_items(v) for k, v in node.items()}
        extra = out.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("$ref") in SHORTHANDS:
            out["additionalProperties"] = {"anyOf": [extra, SHORTHANDS[extra["$ref"]]]}
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
