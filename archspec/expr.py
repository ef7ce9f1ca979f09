"""The spec's expression language: `${4 * growth_rate}`, `${floor(theta * in_channels)}`.

A tokenizer, a recursive-descent parser to a small frozen AST, an evaluator over a name
environment, and a printer back to Python source (emitters use it to keep derived values
symbolic in generated code). Never `eval`: the grammar has no attribute access, no
assignment, and calls only to the functions in FUNCTIONS; every intermediate result is
bounded.

Grammar (lowest precedence first)::

    expr    := or ['if' or 'else' expr]
    or      := and ('or' and)*            and := not ('and' not)*
    not     := 'not' not | cmp            cmp := arith [('=='|'!='|'<'|'<='|'>'|'>=') arith]
    arith   := term (('+'|'-') term)*     term := unary (('*'|'/'|'//'|'%') unary)*
    unary   := ('-'|'+') unary | power    power := postfix ['**' unary]
    postfix := atom ('[' expr ']')*
    atom    := NUMBER | STRING | 'true' | 'false' | NAME | NAME '(' [expr (',' expr)*] ')'
             | '(' expr ')' | '[' [expr (',' expr)*] ']'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from archspec.limits import LIMITS, describe

Value = int | float | bool | str | list


class ExprError(ValueError):
    """A bad expression; `offset` is the 0-based character offset inside the expression."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# ---------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Num:
    value: int | float | bool
    pos: int = 0


@dataclass(frozen=True)
class Str:
    value: str
    pos: int = 0


@dataclass(frozen=True)
class Name:
    id: str
    pos: int = 0


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+", "not"
    operand: Expr
    pos: int = 0


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / // % ** == != < <= > >= and or
    left: Expr
    right: Expr
    pos: int = 0


@dataclass(frozen=True)
class IfElse:
    cond: Expr
    then: Expr
    orelse: Expr
    pos: int = 0


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    pos: int = 0


@dataclass(frozen=True)
class Index:
    target: Expr
    index: Expr
    pos: int = 0


@dataclass(frozen=True)
class ListLit:
    items: tuple[Expr, ...]
    pos: int = 0


Expr = Num | Str | Name | Unary | Binary | IfElse | Call | Index | ListLit


def _floor(x: Value) -> int:
    return math.floor(_num(x, "floor"))


def _ceil(x: Value) -> int:
    return math.ceil(_num(x, "ceil"))


def _num(x: Value, fn: str) -> int | float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ExprError(f"{fn}() expects a number, got {_typename(x)}")
    if isinstance(x, float) and not math.isfinite(x):
        raise ExprError(f"{fn}() of a non-finite number")
    return x


def _minmax(fn: Callable[..., Value], name: str) -> Callable[..., Value]:
    def run(*args: Value) -> Value:
        items = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not items:
            raise ExprError(f"{name}() needs at least one value")
        return fn(_num(a, name) for a in items)

    return run


def _sum(items: Value) -> Value:
    if not isinstance(items, list):
        raise ExprError(f"sum() expects a list, got {_typename(items)}")
    return sum(_num(a, "sum") for a in items)


def _len(items: Value) -> int:
    if not isinstance(items, list | str):
        raise ExprError(f"len() expects a list, got {_typename(items)}")
    return len(items)


FUNCTIONS: dict[str, tuple[Callable[..., Value], int | None]] = {
    # name: (implementation, arity or None for variadic)
    "min": (_minmax(min, "min"), None),
    "max": (_minmax(max, "max"), None),
    "floor": (_floor, 1),
    "ceil": (_ceil, 1),
    "int": (lambda x: int(_num(x, "int")), 1),
    "round": (lambda x: round(_num(x, "round")), 1),
    "abs": (lambda x: abs(_num(x, "abs")), 1),
    "sum": (_sum, 1),
    "len": (_len, 1),
}
KEYWORDS = {"and", "or", "not", "if", "else", "true", "false", "True", "False"}

# ---------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\d*\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>'[^'\\\n]*'|\"[^\"\\\n]*\")"
    r"|(?P<op>\*\*|//|==|!=|<=|>=|[-+*/%<>()\[\],]))"
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            start = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise ExprError(f"unexpected character {text[start]!r}", start)
        kind = m.lastgroup or ""
        value = m.group(kind)
        tokens.append((kind, value, m.start(kind)))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


MAX_NESTING = 40  # parentheses, brackets, calls, unary and conditional chains (recursion)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def nested(self, pos: int) -> None:
        """Count one level of recursion; deep nesting is an error, never a RecursionError."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError(f"expression nested deeper than {MAX_NESTING} levels", pos)

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, value: str) -> bool:
        kind, val, _ = self.peek()
        if kind in ("op", "name") and val == value:
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            kind, val, pos = self.peek()
            got = "end of expression" if kind == "end" else repr(val)
            raise ExprError(f"expected '{value}', got {got}", pos)

    def parse(self) -> Expr:
        node = self.expr()
        kind, val, pos = self.peek()
        if kind != "end":
            raise ExprError(f"unexpected {val!r} after a complete expression", pos)
        return node

    def expr(self) -> Expr:
        self.nested(self.peek()[2])
        node = self.or_()
        if self.peek()[1] == "if" and self.peek()[0] == "name":
            pos = self.take()[2]
            cond = self.or_()
            self.expect("else")
            node = IfElse(cond, node, self.expr(), pos)
        self.depth -= 1
        return node

    def _binary_chain(self, ops: tuple[str, ...], sub: Callable[[], Expr]) -> Expr:
        node = sub()
        while self.peek()[1] in ops and self.peek()[0] in ("op", "name"):
            op, pos = self.take()[1:]
            node = Binary(op, node, sub(), pos)
        return node

    def or_(self) -> Expr:
        return self._binary_chain(("or",), self.and_)

    def and_(self) -> Expr:
        return self._binary_chain(("and",), self.not_)

    def not_(self) -> Expr:
        if self.peek()[1] == "not" and self.peek()[0] == "name":
            pos = self.take()[2]
            self.nested(pos)
            node = Unary("not", self.not_(), pos)
            self.depth -= 1
            return node
        return self.cmp()

    def cmp(self) -> Expr:
        node = self.arith()
        kind, val, pos = self.peek()
        if kind == "op" and val in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            node = Binary(val, node, self.arith(), pos)
            if self.peek()[1] in ("==", "!=", "<", "<=", ">", ">="):
                raise ExprError("chained comparisons are not supported; use 'and'", self.peek()[2])
        return node

    def arith(self) -> Expr:
        return self._binary_chain(("+", "-"), self.term)

    def term(self) -> Expr:
        return self._binary_chain(("*", "/", "//", "%"), self.unary)

    def unary(self) -> Expr:
        kind, val, pos = self.peek()
        if kind == "op" and val in ("-", "+"):
            self.take()
            self.nested(pos)
            node = Unary(val, self.unary(), pos)
            self.depth -= 1
            return node
        return self.power()

    def power(self) -> Expr:
        node = self.postfix()
        if self.peek()[1] == "**":
            pos = self.take()[2]
            self.nested(pos)
            node = Binary("**", node, self.unary(), pos)
            self.depth -= 1
        return node

    def postfix(self) -> Expr:
        node = self.atom()
        while self.peek()[1] == "[" and self.peek()[0] == "op":
            pos = self.take()[2]
            index = self.expr()
            self.expect("]")
            node = Index(node, index, pos)
        return node

    def _items(self, close: str) -> tuple[Expr, ...]:
        items: list[Expr] = []
        if not self.accept(close):
            items.append(self.expr())
            while self.accept(","):
                items.append(self.expr())
            self.expect(close)
        return tuple(items)

    def atom(self) -> Expr:
        kind, val, pos = self.take()
        if kind == "str":
            return Str(val[1:-1], pos)
        if kind == "num":
            is_float = any(c in val for c in ".eE")
            number = _check(float(val) if is_float else int(val), pos)
            return Num(number, pos)  # type: ignore[arg-type]
        if kind == "name":
            if val in ("true", "True"):
                return Num(True, pos)
            if val in ("false", "False"):
                return Num(False, pos)
            if val in KEYWORDS:
                raise ExprError(f"unexpected keyword '{val}'", pos)
            if self.accept("("):
                if val not in FUNCTIONS:
                    from archspec.errors import suggest

                    raise ExprError(f"unknown function '{val}'{suggest(val, FUNCTIONS)}", pos)
                return Call(val, self._items(")"), pos)
            return Name(val, pos)
        if kind == "op" and val == "(":
            node = self.expr()
            self.expect(")")
            return node
        if kind == "op" and val == "[":
            return ListLit(self._items("]"), pos)
        got = "end of expression" if kind == "end" else repr(val)
        raise ExprError(f"expected a value, got {got}", pos)


def parse(text: str) -> Expr:
    """Parse expression text (the part inside `${...}`)."""
    if len(text) > LIMITS.max_expr_chars:
        raise ExprError(
            describe("max_expr_chars", len(text), LIMITS.max_expr_chars, "expression length")
        )
    if not text.strip():
        raise ExprError("empty expression", 0)
    return _Parser(text).parse()


# ---------------------------------------------------------------------------- evaluation


def _typename(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", list: "list"}.get(type(v), type(v).__name__)


def _check(value: object, pos: int) -> Value:
    """Every computed value is a bool, str, bounded list or finite bounded real number."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, list):
        if len(value) > LIMITS.max_list_items:
            raise ExprError(
                describe("max_list_items", len(value), LIMITS.max_list_items, "list length"), pos
            )
        return value
    if not isinstance(value, int | float):
        raise ExprError(f"result is not a real number ({_typename(value)})", pos)
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError("result is not a finite number", pos)
    if abs(value) > LIMITS.max_expr_value:
        raise ExprError(
            f"result too large: {value:g} "
            + f"(limit {LIMITS.max_expr_value:g}; raise it with ARCHSPEC_LIMIT_MAX_EXPR_VALUE)",
            pos,
        )
    return value


def _arith(op: str, a: Value, b: Value, pos: int) -> Value:
    if op == "+" and isinstance(a, list) and isinstance(b, list):
        if len(a) + len(b) > LIMITS.max_list_items:  # checked before building it
            raise ExprError(
                describe("max_list_items", len(a) + len(b), LIMITS.max_list_items, "list length"),
                pos,
            )
        return a + b
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ExprError(
                f"operator '{op}' needs numbers, got {_typename(a)} and {_typename(b)}", pos
            )
    if op in ("/", "//", "%") and b == 0:
        raise ExprError("division by zero", pos)
    if op == "**":
        if isinstance(b, int) and b > 64 and abs(a) > 1:
            raise ExprError(f"result too large: {a} ** {b}", pos)
        if a == 0 and b < 0:
            raise ExprError("division by zero (0 to a negative power)", pos)
    ops: dict[str, Callable[[float, float], Value]] = {
        "+": lambda x, y: x + y,
        "-": lambda x, y: x - y,
        "*": lambda x, y: x * y,
        "/": lambda x, y: x / y,
        "//": lambda x, y: x // y,
        "%": lambda x, y: x % y,
        "**": lambda x, y: x**y,
    }
    try:
        return _check(ops[op](a, b), pos)  # type: ignore[arg-type]
    except OverflowError:
        raise ExprError("result too large", pos) from None


def evaluate(node: Expr, env: Mapping[str, Value]) -> Value:
    """Evaluate `node` with names bound by `env`; raises ExprError with an offset."""
    if isinstance(node, Num | Str):
        return node.value
    if isinstance(node, Name):
        if node.id not in env:
            from archspec.errors import suggest

            raise ExprError(f"unknown name '{node.id}'{suggest(node.id, env)}", node.pos)
        return env[node.id]
    if isinstance(node, ListLit):
        return [evaluate(i, env) for i in node.items]
    if isinstance(node, Unary):
        v = evaluate(node.operand, env)
        if node.op == "not":
            return not _truth(v, node.pos)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ExprError(f"unary '{node.op}' needs a number, got {_typename(v)}", node.pos)
        return -v if node.op == "-" else v
    if isinstance(node, IfElse):
        return evaluate(
            node.then if _truth(evaluate(node.cond, env), node.pos) else node.orelse, env
        )
    if isinstance(node, Call):
        fn, arity = FUNCTIONS[node.func]
        args = [evaluate(a, env) for a in node.args]
        if arity is not None and len(args) != arity:
            raise ExprError(f"{node.func}() takes {arity} argument(s), got {len(args)}", node.pos)
        try:
            return _check(fn(*args), node.pos)
        except ExprError as exc:
            raise ExprError(exc.message, node.pos) from None
        except (OverflowError, ValueError):
            raise ExprError(f"{node.func}() result out of range", node.pos) from None
    if isinstance(node, Index):
        target = evaluate(node.target, env)
        index = evaluate(node.index, env)
        if not isinstance(target, list):
            raise ExprError(f"only lists can be indexed, got {_typename(target)}", node.pos)
        if isinstance(index, bool) or not isinstance(index, int):
            raise ExprError(f"list index must be an int, got {_typename(index)}", node.pos)
        if not -len(target) <= index < len(target):
            raise ExprError(f"index {index} out of range for a list of {len(target)}", node.pos)
        return target[index]
    assert isinstance(node, Binary)
    if node.op == "and":
        return _truth(evaluate(node.left, env), node.pos) and _truth(
            evaluate(node.right, env), node.pos
        )
    if node.op == "or":
        return _truth(evaluate(node.left, env), node.pos) or _truth(
            evaluate(node.right, env), node.pos
        )
    a, b = evaluate(node.left, env), evaluate(node.right, env)
    if node.op in ("==", "!="):
        return (a == b) == (node.op == "==")
    if node.op in ("<", "<=", ">", ">="):
        if isinstance(a, bool | str | list) or isinstance(b, bool | str | list):
            raise ExprError(
                f"'{node.op}' needs numbers, got {_typename(a)} and {_typename(b)}", node.pos
            )
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[node.op]
    return _arith(node.op, a, b, node.pos)


def _truth(v: Value, pos: int) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    raise ExprError(f"expected a condition (bool), got {_typename(v)}", pos)


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of `node`."""
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, IfElse):
        return (node.cond, node.then, node.orelse)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, ListLit):
        return node.items
    if isinstance(node, Index):
        return (node.target, node.index)
    return ()


def names(node: Expr) -> set[str]:
    """Free names referenced by an expression."""
    if isinstance(node, Name):
        return {node.id}
    out: set[str] = set()
    for child in children(node):
        out |= names(child)
    return out


# ---------------------------------------------------------------------------- printing

_PREC = {
    "or": 1,
    "and": 2,
    "not": 3,
    "==": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "//": 6,
    "%": 6,
    "u-": 7,
    "u+": 7,
    "**": 8,
}
PY_FUNCS = {"floor": "math.floor", "ceil": "math.ceil"}


def to_python(node: Expr, rename: Callable[[str], str] = str) -> str:
    """Python source computing the same value (names mapped by `rename`).

    Names are identifiers checked by the tokenizer and numbers are printed from parsed
    values, so the output cannot carry anything but an arithmetic expression.
    """
    return _print(node, rename, 0)


def _print(node: Expr, rename: Callable[[str], str], outer: int) -> str:
    if isinstance(node, Num | Str):
        return repr(node.value)
    if isinstance(node, Name):
        return rename(node.id)
    if isinstance(node, ListLit):
        return "[" + ", ".join(_print(i, rename, 0) for i in node.items) + "]"
    if isinstance(node, Call):
        fn = PY_FUNCS.get(node.func, node.func)
        return f"{fn}(" + ", ".join(_print(a, rename, 0) for a in node.args) + ")"
    if isinstance(node, Index):
        return f"{_print(node.target, rename, 9)}[{_print(node.index, rename, 0)}]"
    if isinstance(node, IfElse):
        text = (
            f"{_print(node.then, rename, 1)} if {_print(node.cond, rename, 1)} "
            f"else {_print(node.orelse, rename, 0)}"
        )
        return f"({text})" if outer > 0 else text
    if isinstance(node, Unary):
        prec = _PREC["not"] if node.op == "not" else _PREC["u" + node.op]
        sep = " " if node.op == "not" else ""
        text = f"{node.op}{sep}{_print(node.operand, rename, prec)}"
        return f"({text})" if prec < outer else text
    prec = _PREC[node.op]
    right_prec = prec if node.op == "**" else prec + 1
    left_prec = prec + 1 if node.op == "**" else prec
    text = (
        f"{_print(node.left, rename, left_prec)} {node.op} {_print(node.right, rename, right_prec)}"
    )
    return f"({text})" if prec < outer else text


# ---------------------------------------------------------------------------- spec values

_WHOLE = re.compile(r"^\$\{(?P<body>.*)\}$", re.S)
_SHORT = re.compile(r"^\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


def expression_text(value: object) -> tuple[str, int] | None:
    """If a spec value is an expression (`${...}` or `$name`), its text and its offset."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    if m := _WHOLE.match(stripped):
        return m.group("body"), value.index("${") + 2
    if m := _SHORT.match(stripped):
        return m.group("name"), value.index("$") + 1
    return None


def is_expression(value: object) -> bool:
    return expression_text(value) is not None


def depth(node: Expr) -> int:
    """How deeply `node` nests (a name or number: 1)."""
    inner = [0]
    for f in fields(node):
        value = getattr(node, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, Expr):  # type: ignore[arg-type]
                inner.append(depth(v))
    return 1 + max(inner)


def substitute(node: Expr, values: Mapping[str, Expr]) -> Expr | None:
    """`node` with each name replaced by its expression in `values` (a block's output
    channels written in its caller's names); None when a name has no replacement."""
    if isinstance(node, Name):
        return values.get(node.id)
    if isinstance(node, Num | Str):
        return node
    changes: dict[str, Any] = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, tuple):
            items = [substitute(v, values) for v in value]
            if any(i is None for i in items):
                return None
            changes[f.name] = tuple(items)
        elif f.name not in ("op", "func", "pos"):
            new = substitute(value, values)
            if new is None:
                return None
            changes[f.name] = new
    return replace(node, **changes)
