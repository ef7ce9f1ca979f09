"""Python source layout shared by the source backends: calls that break like `ruff format`,
literals, legal unique names, docstrings and the generated file's header path.

`Call`/`Kw` and `layout()` lay source out the way `ruff format` does: one line when it
fits, else the arguments hugged on one indented line, else one per line with a trailing
comma. Generated files therefore need no formatter run to stay `ruff format`-clean.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import archspec
from archspec.registry import header_path

WIDTH = 100


class SourceError(ValueError):
    """A value has no Python source form."""


@dataclass(frozen=True)
class Kw:
    name: str
    value: Code


@dataclass(frozen=True)
class Entry:
    """`key: value` inside a dict literal."""

    key: str
    value: Code


@dataclass(frozen=True)
class Starred:
    """`*value` as a call argument (unpacking a comprehension)."""

    value: Comp


@dataclass(frozen=True)
class Comp:
    """A comprehension: `[element for _ in range(n)]` (or `{k: v for ...}` with brackets "{}")."""

    element: Code | Entry
    clause: str
    brackets: str = "[]"


@dataclass(frozen=True)
class Call:
    """`func(args)`; with func "" and brackets "[]"/"()" it is a list or tuple literal."""

    func: str
    args: tuple[Code | Kw | Entry | Starred, ...] = ()
    brackets: str = "()"


Code = str | Call | Comp


def flat(code: Code | Kw | Entry | Starred) -> str:
    if isinstance(code, Starred):
        return "*" + flat(code.value)
    if isinstance(code, Kw):
        return f"{code.name}={flat(code.value)}"
    if isinstance(code, Entry):
        return f"{code.key}: {flat(code.value)}"
    if isinstance(code, str):
        return code
    if isinstance(code, Comp):
        return f"{code.brackets[0]}{flat(code.element)} {code.clause}{code.brackets[1]}"
    inner = ", ".join(flat(a) for a in code.args)
    if code.brackets == "()" and not code.func and len(code.args) == 1:
        inner += ","
    return f"{code.func}{code.brackets[0]}{inner}{code.brackets[1]}"


def layout(prefix: str, code: Code, suffix: str = "", indent: int = 0, base: int = 0) -> list[str]:
    """Lines (with `indent` spaces) of `prefix + code + suffix`, split like `ruff format`.

    `base` is extra indentation the caller adds to every line afterwards.
    """
    if base:
        return [line[base:] for line in layout(prefix, code, suffix, indent + base)]
    pad = " " * indent
    one = pad + prefix + flat(code) + suffix
    if isinstance(code, Comp) and len(one) > WIDTH:
        inner = code.element
        element = (
            layout(f"{inner.key}: ", inner.value, "", indent + 4)
            if isinstance(inner, Entry)
            else layout("", inner, "", indent + 4)
        )
        clause = " " * (indent + 4) + code.clause
        return [pad + prefix + code.brackets[0], *element, clause, pad + code.brackets[1] + suffix]
    if len(one) <= WIDTH or not isinstance(code, Call) or not code.args:
        return [one]
    head = pad + prefix + code.func + code.brackets[0]
    tail = pad + code.brackets[1] + suffix
    hugged = " " * (indent + 4) + ", ".join(flat(a) for a in code.args)
    if len(hugged) <= WIDTH and code.func:  # calls and defs hug; literals go one per line
        return [head, hugged, tail]
    lines = [head]
    for arg in code.args:
        if isinstance(arg, Kw):
            lines += layout(arg.name + "=", arg.value, ",", indent + 4)
        elif isinstance(arg, Entry):
            lines += layout(arg.key + ": ", arg.value, ",", indent + 4)
        elif isinstance(arg, Starred):
            lines += layout("*", arg.value, ",", indent + 4)
        else:
            lines += layout("", arg, ",", indent + 4)
    return [*lines, tail]


# ---------------------------------------------------------------------------- literals


def py_str(text: str) -> str:
    """A double-quoted Python string literal (what `ruff format` prefers) for any text."""
    body = repr(text)[1:-1]
    if repr(text).startswith("'"):
        body = body.replace("\\'", "'").replace('"', '\\"')
    return f'"{body}"'


def pair_src(value: tuple[int, int]) -> str:
    """`3` for (3, 3), `(3, 1)` otherwise: how torch and Keras both accept a pair."""
    return str(value[0]) if value[0] == value[1] else f"({value[0]}, {value[1]})"


def literal(value: Any) -> str:
    """Python source for a spec or IR value (pairs collapse like `pair_src`)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else f'float("{value}")'
    if isinstance(value, tuple) and len(value) == 2:
        return pair_src(value)
    if isinstance(value, list | tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, str):
        return py_str(value)
    raise SourceError(f"cannot print value {value!r} as Python source")


# ---------------------------------------------------------------------------- names and text


class Namespace:
    """Unique, legal Python names (torch.fx's idea): `base`, `base_1`, ..."""

    def __init__(self, reserved: frozenset[str] | set[str]) -> None:
        self.used = set(reserved)
        self.next: dict[str, int] = {}  # base -> first suffix not known to be taken

    def new(self, base: str) -> str:
        if not base.isidentifier():
            base = f"v{base}" if f"v{base}".isidentifier() else "v"
        name, i = base, self.next.get(base, 1)
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.next[base] = i
        self.used.add(name)
        return name


def class_name(spec_name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in spec_name.split("_") if part)


def docstring(text: str, indent: int) -> list[str]:
    """A docstring from spec text; quotes and backslashes are replaced, so it stays text."""
    clean = " ".join("".join(c for c in text if c.isprintable()).split())
    clean = clean.replace("\\", "/").replace('"', "'").strip()
    if not clean:
        return []
    if clean.endswith("'"):
        clean += "."
    if indent + len(clean) + 6 <= WIDTH:
        return [f'"""{clean}"""']
    wrapped = textwrap.wrap(clean, width=WIDTH - indent - 3)
    if len(wrapped) == 1:  # ruff joins a one-line docstring with its closing quotes
        wrapped = textwrap.wrap(clean, width=max(20, len(clean) * 2 // 3))
    return ['"""' + wrapped[0], *wrapped[1:], '"""']


def spec_path(spec_file: str) -> str:
    """The spec's path for a header: `specs/<name>.yaml` for the zoo, never absolute."""
    return header_path(spec_file)


def header_lines(spec_file: str) -> list[str]:
    """The generated file's first comment: what made it, from which spec, do not edit."""
    head = f"Generated by archspec {archspec.__version__} from {spec_path(spec_file)}."
    tail = "Do not edit: run `archspec gen`."
    return [f"{head} {tail}"] if len(head) + len(tail) + 3 <= WIDTH else [head, tail]
