"""Untrusted spec text: safe YAML only, caps on size/depth/aliases, positions kept,
and no name that reaches generated code can be anything but an identifier."""

from __future__ import annotations

import keyword
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec.errors import SpecError
from archspec.lower import lower
from archspec.registry import Located, ResolvedSpec, parse_spec
from archspec.source import load_text

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def test_positions_of_keys_and_values() -> None:
    src = load_text("a:\n  b: [1, 2]\n  c: {d: x}\n", "t.yaml")
    assert src.locate(("a", "b", 1)).line == 2 and src.locate(("a", "b", 1)).col == 10
    assert (src.locate(("a", "c"), key=True).line, src.locate(("a", "c"), key=True).col) == (3, 3)
    # a mapping's own position is its opening brace, not that of its last key
    assert (src.locate(("a", "c")).line, src.locate(("a", "c")).col) == (3, 6)


def test_python_tags_are_refused() -> None:
    with pytest.raises(SpecError) as info:
        load_text("x: !!python/object/apply:os.system ['echo hi']\n", "t.yaml")
    assert "t.yaml:1:4" in info.value.render()


def test_alias_bomb_hits_the_node_cap() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(SpecError) as info:
        load_text("\n".join(lines) + "\n", "bomb.yaml")
    assert "max_yaml_nodes" in str(info.value)
    assert "ARCHSPEC_LIMIT_MAX_YAML_NODES" in str(info.value)


def test_depth_cap() -> None:
    text = "a: " + "[" * 100 + "]" * 100 + "\n"
    with pytest.raises(SpecError) as info:
        load_text(text, "deep.yaml")
    assert "max_yaml_depth" in str(info.value)


def test_size_cap() -> None:
    with pytest.raises(SpecError) as info:
        load_text("a: " + "x" * 1_100_000 + "\n", "big.yaml")
    assert "max_file_bytes" in str(info.value)


def test_merge_keys_and_duplicate_keys_rejected() -> None:
    with pytest.raises(SpecError, match="merge keys"):
        load_text("a: &x {b: 1}\nc:\n  <<: *x\n", "m.yaml")
    with pytest.raises(SpecError, match="duplicate key 'a'"):
        load_text("a: 1\na: 2\n", "d.yaml")


def spec_with_item_name(name: str) -> str:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'inputs:\n  image: [3, 8, 8]\nbody:\n  - "{quoted}": {{op: relu}}\n'


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_item_names_are_identifiers_or_rejected(name: str) -> None:
    """Fuzz: whatever text a user puts where a name goes, it is either rejected with a
    SpecError or it is a plain identifier (so it can never inject code)."""
    try:
        src = load_text(spec_with_item_name(name), "fuzz.yaml")
        spec = parse_spec(src)
    except SpecError:
        return
    assert spec.body is not None
    accepted = spec.body[0].name
    assert accepted is not None and IDENT.fullmatch(accepted) and not keyword.iskeyword(accepted)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_expression_fields_never_crash(text: str) -> None:
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    item = f'{{op: conv, out: "${{{quoted}}}", kernel: 1}}'
    spec = f"inputs:\n  image: [3, 8, 8]\nbody:\n  - c: {item}\n"
    try:
        src = load_text(spec, "fuzz.yaml")
        parsed = parse_spec(src)
        assert parsed.body is not None and parsed.inputs is not None
        resolved = ResolvedSpec(
            name="fuzz",
            file="fuzz.yaml",
            description="",
            notes="",
            abstract=False,
            params={},
            inputs=Located(parsed.inputs, src, ("inputs",)),
            outputs=None,
            defaults={},
            blocks={},
            body=Located(parsed.body, src, ("body",)),
            sources={"fuzz.yaml": src},
        )
        lower(resolved)
    except SpecError as exc:
        assert exc.render().startswith("fuzz.yaml:")
