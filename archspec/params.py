"""Typed parameters: checking values against declarations, parsing `--set k=v`."""

from __future__ import annotations

from typing import Any

from archspec.errors import SpecError
from archspec.limits import LIMITS, describe
from archspec.source import load_value
from archspec.spec import ParamDecl
from archspec.text import short_repr


def typename(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return type(value).__name__


def describe_value(value: Any) -> str:
    return f"{typename(value)} {short_repr(value)}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


CHECKS = {
    "int": (_is_int, "an int"),
    "float": (_is_num, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "ints": (lambda v: isinstance(v, list) and all(_is_int(i) for i in v), "a list of ints"),
    "floats": (lambda v: isinstance(v, list) and all(_is_num(i) for i in v), "a list of numbers"),
}


def check_value(decl: ParamDecl, value: Any) -> str | None:
    """None when `value` fits `decl`, else what was expected vs what was got."""
    ok, expected = CHECKS[decl.type]
    if isinstance(value, list) and len(value) > LIMITS.max_list_items:
        return describe("max_list_items", len(value), LIMITS.max_list_items, "list length")
    if not ok(value):
        hint = ""
        if decl.type == "int" and isinstance(value, float):
            hint = " (use // or floor() for integer division)"
        return f"expected {expected}, got {describe_value(value)}{hint}"
    if decl.choices is not None and value not in decl.choices:
        return f"expected one of {decl.choices}, got {value!r}"
    if _is_num(value):
        if decl.min is not None and value < decl.min:
            return f"must be >= {decl.min:g}, got {value}"
        if decl.max is not None and value > decl.max:
            return f"must be <= {decl.max:g}, got {value}"
    return None


def coerce(decl: ParamDecl, value: Any) -> Any:
    """Ints are valid floats; keep the declared type in what the graph records."""
    if decl.type == "float" and _is_int(value):
        return float(value)
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """`num_classes=10` -> ("num_classes", 10); values are YAML scalars or flow lists,
    read under the same caps as spec files (a YAML alias bomb is a LimitError)."""
    if "=" not in text:
        raise ValueError(f"expected NAME=VALUE, got '{text}'")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not raw.strip():
        return name, ""
    try:
        value = load_value(raw, "--set")
    except SpecError as exc:
        if exc.message.startswith("invalid YAML:"):  # not YAML: the text itself
            return name, raw
        raise type(exc)(exc.message, path=("params", name), file="--set") from None
    return name, value
