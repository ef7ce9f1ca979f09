"""Turning pydantic's validation errors into ONE archspec error at a YAML position.

pydantic reports locations in model terms (with union tags such as 'op' or 'conv' mixed
in); we map them back onto the YAML data to find the spec path and its line/column, and
rewrite the message in spec terms: expected vs got, with a nearest-name suggestion.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from archspec.catalog import unknown_op_message
from archspec.errors import Path, SpecError, suggest
from archspec.params import describe_value
from archspec.source import Source
from archspec.spec import OP_MODELS, BlockDef, BlockItem, InputDecl, ParamDecl, ScopeItem, Spec

_EXPECTED = {
    "int": "an int",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping",
    "model": "a mapping",
}


def _walk(data: Any, loc: tuple[Any, ...]) -> tuple[Path, bool]:
    """The YAML path `loc` best matches (union tags skipped), and whether it names a key.

    Among candidate paths, the one matching the latest loc element wins, then the deepest.
    A `name` field of a `name: {...}` item resolves to that mapping key.
    """
    best: tuple[int, int, Path, bool] = (0, -1, (), False)
    seen: set[tuple[Path, int, int, bool]] = set()  # each state once: linear, not 2^depth

    def visit(cur: Any, i: int, path: Path, last: int, is_key: bool) -> None:
        nonlocal best
        state = (path, i, last, is_key)
        if state in seen:
            return
        seen.add(state)
        if (last, len(path)) > best[:2]:
            best = (last, len(path), path, is_key)
        if i == len(loc):
            return
        elem = loc[i]
        if isinstance(cur, dict) and isinstance(elem, str) and elem in cur:
            visit(cur[elem], i + 1, (*path, elem), i, False)
        if isinstance(cur, list) and isinstance(elem, int) and 0 <= elem < len(cur):
            visit(cur[elem], i + 1, (*path, elem), i, False)
        if isinstance(cur, dict) and len(cur) == 1:  # a named item `name: {...}`
            ((key, inner),) = cur.items()
            if isinstance(inner, dict) and elem == "name" and "name" not in inner:
                visit(None, i + 1, (*path, key), i, True)
            elif isinstance(inner, dict) and isinstance(elem, str) and elem in inner:
                visit(inner[elem], i + 1, (*path, key, elem), i, False)
        if elem == "[key]":  # the mapping key itself is invalid
            visit(None, i + 1, path, i, True)
        visit(cur, i + 1, path, last, is_key)  # skip a tag such as 'op' / 'conv'

    visit(data, 0, (), -1, False)
    return best[2], best[3]


def _at(data: Any, path: Path) -> Any:
    for elem in path:
        data = data[elem]
    return data


def _model_for(data: Any, path: Path) -> type[BaseModel] | None:
    """Which spec model the mapping at `path` is validated against (for field suggestions)."""
    if not path:
        return Spec
    if len(path) == 2 and path[0] == "blocks":
        return BlockDef
    if len(path) == 2 and path[0] == "inputs":
        return InputDecl
    if len(path) >= 2 and path[-2] == "params":
        return ParamDecl
    node = _at(data, path)
    if not isinstance(node, dict):
        return None
    if "op" in node:
        return OP_MODELS.get(str(node["op"]))
    if "block" in node:
        return BlockItem
    if "body" in node:
        return ScopeItem
    return None


def _fields(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [f for f in model.model_fields if f != "op"]


def _one(err: ErrorDetails, source: Source) -> tuple[Path, str, str]:
    """(spec path, message, kind) for one pydantic error."""
    data = source.data
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        path, _ = _walk(data, loc)
        parent = path[:-1]
        name = str(path[-1]) if path else "?"
        allowed = _fields(_model_for(data, parent))
        return path, f"unknown field '{name}'{suggest(name, allowed)}", "key"
    if kind == "missing":
        parent, _ = _walk(data, loc[:-1])
        while parent and not isinstance(_at(data, parent), dict):
            parent = parent[:-1]
        name = str(loc[-1])
        model = _model_for(data, parent)
        needs = ""
        if model is not None and "op" in model.model_fields:
            req = [f for f, info in model.model_fields.items() if info.is_required() and f != "op"]
            op = model.model_fields["op"].annotation.__args__[0]  # type: ignore[union-attr]
            needs = f" ({op} needs: {', '.join(req)})"
        return parent, f"missing required field '{name}'{needs}", "value"
    if kind == "union_tag_invalid":
        path, _ = _walk(data, loc)
        tag = str(ctx.get("tag", "?"))
        if path[-1:] != ("op",):
            path = (*path, "op")
        return path, unknown_op_message(tag, OP_MODELS), "value"
    if kind == "union_tag_not_found":
        path, _ = _walk(data, loc)
        return (
            path,
            "expected an item: a mapping with 'op', 'block' or 'body', or a single "
            f"`name: {{...}}` entry; got {describe_value(err.get('input'))}",
            "value",
        )
    path, is_key = _walk(data, loc)
    got = describe_value(err.get("input"))
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        return (
            path,
            msg,
            "key" if is_key else ("expect" if msg.startswith("expected ") else "value"),
        )
    if kind == "literal_error":
        value = err.get("input")
        hint = ""
        if isinstance(value, str):
            options = [
                o.strip(" '") for o in str(ctx.get("expected", "")).replace(" or ", ", ").split(",")
            ]
            hint = suggest(value, [o for o in options if o]).split(" (known")[0]
            if path[-1:] == ("numbering",):
                hint = NUMBERING_HINTS.get(value.lower(), hint)
        return path, f"expected {ctx.get('expected', '?')}, got {got}{hint}", "expect"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        relation = "at least" if kind == "too_short" else "at most"
        return path, f"expected {relation} {bound} item(s), got {ctx.get('actual_length')}", "value"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return path, f"{err['msg'].lower()}, got {got}", "value"
    prefix = kind.split("_")[0]
    expected = _EXPECTED.get(prefix, err["msg"].lower())
    return path, f"expected {expected}, got {got}", "expect"


# `numbering:` means one thing on a scope (how its items are named) and another on a table
# block item (how its rows are numbered): a value of the other kind says where it belongs.
NUMBERING_HINTS = {
    "nested": "; 'nested' numbers the rows of a table block item (an item with `block:` and "
    "`table:`); a scope's items are numbered by 'position' or 'flat'",
    "across": "; 'across' numbers the rows of a table block item (an item with `block:` and "
    "`table:`); a scope's items are numbered by 'position' or 'flat'",
    "flat": "; 'flat' numbers a scope's items (put the item in a scope with `numbering: flat`); "
    "a table block item's rows are numbered 'across' or 'nested'",
    "position": "; 'position' numbers a scope's items; a table block item's rows are "
    "numbered 'across' or 'nested'",
}


def translate(exc: ValidationError, source: Source) -> SpecError:
    """One SpecError for the first problem pydantic found, merging union alternatives."""
    errors = exc.errors(include_url=False)
    # An unknown field explains a "missing" one better (a typo usually causes both).
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    results = [_one(e, source) for e in errors]
    first_path = results[0][0]
    same = [r for r in results if r[0] == first_path]
    chosen = next((r for r in same if r[2] != "expect"), None)
    if chosen is not None:
        path, message, kind = chosen
        return source.error(path, message, key=(kind == "key"))
    # Union alternatives: one phrase each. The string branch of `int | expression` fields
    # is the expression form, so it is shown as such rather than as "a string".
    expected: list[str] = []
    expression = False
    for _, message, _ in same:
        phrase = message.split(", got ")[0].removeprefix("expected ")
        if phrase.startswith("an expression") or (phrase == "a string" and len(same) > 1):
            expression = True
        elif phrase not in expected:
            expected.append(phrase)
    got = next((m for _, m, _ in same if not m.startswith("expected an expression")), same[0][1])
    got = got.split(", got ", 1)[-1]
    alternatives = " or ".join(expected) or "an expression"
    if expression and expected:
        alternatives += " (or an expression '$name' / '${...}')"
    return source.error(first_path, f"expected {alternatives}, got {got}")
