"""The expression language: grammar, evaluation, errors, limits, Python printing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archspec.expr import ExprError, evaluate, expression_text, names, parse, to_python


def ev(text: str, **env: object) -> object:
    return evaluate(parse(text), env)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("7 // 2", 3),
        ("7 / 2", 3.5),
        ("7 % 3", 1),
        ("floor(2.7) + ceil(2.1)", 5),
        ("min(3, 1, 2) + max([4, 9])", 10),
        ("1 if 2 > 1 else 0", 1),
        ("not (1 == 1) or 2 != 3", True),
        ("[1, 2, 3][1]", 2),
        ("[1, 2, 3][-1]", 3),
        ("len([1, 2]) + sum([3, 4])", 9),
        ("1.5e3", 1500.0),
        ("true and false", False),
        ("'Bottleneck' == \"Bottleneck\"", True),
    ],
)
def test_evaluates(text: str, expected: object) -> None:
    assert ev(text) == expected


def test_names_and_environment() -> None:
    assert ev("floor(theta * in_channels)", theta=0.5, in_channels=255) == 127
    assert ev("layers[index]", layers=[3, 4, 6], index=2) == 6
    assert names(parse("a * b + f(c)".replace("f(", "max("))) == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("1 / 0", {}, "division by zero"),
        ("x // 0", {"x": 3}, "division by zero"),
        ("widht", {"width": 1}, "unknown name 'widht'; did you mean 'width'?"),
        ("10 ** 20", {}, "result too large"),
        ("2 ** 100000", {}, "result too large"),
        ("flor(2)", {}, "unknown function 'flor'; did you mean 'floor'?"),
        ("[1][3]", {}, "index 3 out of range"),
        ("1 +", {}, "expected a value"),
        ("a.b", {"a": 1}, "unexpected character '.'"),
        ("__import__(os)", {}, "unknown function '__import__'"),
        ("open('x')", {}, "unknown function 'open'"),
        ("'a' + 1", {}, "needs numbers"),
        ("x.y", {"x": 1}, "unexpected character '.'"),
        ("1 < 2 < 3", {}, "chained comparisons"),
        ("floor(1, 2)", {}, "takes 1 argument"),
    ],
)
def test_errors(text: str, env: dict[str, object], message: str) -> None:
    with pytest.raises(ExprError) as info:
        evaluate(parse(text), env)  # type: ignore[arg-type]
    assert message in info.value.message


def test_error_offsets_point_into_the_text() -> None:
    with pytest.raises(ExprError) as info:
        ev("1 + 2 * missing")
    assert info.value.offset == 8


def test_spec_value_forms() -> None:
    assert expression_text("$planes") == ("planes", 1)
    assert expression_text("${planes * 4}") == ("planes * 4", 2)
    assert expression_text("planes") is None
    assert expression_text(64) is None


@given(
    st.recursive(
        st.integers(min_value=0, max_value=50).map(str) | st.sampled_from(["a", "b"]),
        lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "//"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        max_leaves=8,
    )
)
def test_python_printing_round_trips(text: str) -> None:
    """to_python(parse(x)) computes the same value as our evaluator (checked by Python)."""
    env = {"a": 7, "b": 3}
    try:
        ours = ev(text, **env)
    except ExprError:
        return
    printed = to_python(parse(text))
    assert eval(printed, {"math": math}, dict(env)) == ours  # test-only oracle


def test_printer_minimal_parentheses() -> None:
    assert to_python(parse("(a + b) * c")) == "(a + b) * c"
    assert to_python(parse("a + (b * c)")) == "a + b * c"
    assert to_python(parse("a - (b - c)")) == "a - (b - c)"
    assert to_python(parse("floor(theta * x)")) == "math.floor(theta * x)"
    assert to_python(parse("planes * 4"), rename=lambda n: f"self.{n}") == "self.planes * 4"
