"""The source of runtime.py's helpers, for generated Keras files to embed verbatim.

Generated files are self-contained, so the emitter copies the definitions a model uses
(and the definitions those use) out of runtime.py instead of importing it. This module
reads runtime.py as text with `ast`: generating source never imports Keras.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

RUNTIME = Path(__file__).with_name("runtime.py")
MODULES = ("keras", "math")  # the only imports a helper may use


@dataclass(frozen=True)
class _Definition:
    source: str  # decorators included
    uses: frozenset[str]  # other top-level definitions it refers to
    imports: frozenset[str]  # modules of MODULES it refers to


@cache
def _definitions() -> dict[str, _Definition]:
    """runtime.py's top-level functions and classes, in file order."""
    text = RUNTIME.read_text(encoding="utf-8")
    lines = text.splitlines()
    nodes = [n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    top = {n.name for n in nodes}
    out: dict[str, _Definition] = {}
    for node in nodes:
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        out[node.name] = _Definition(
            source="\n".join(lines[first - 1 : node.end_lineno]),
            uses=frozenset(names & top - {node.name}),
            imports=frozenset(names & set(MODULES)),
        )
    return out


def helper_names() -> tuple[str, ...]:
    """Every name runtime.py defines (the emitter keeps spec names from clashing)."""
    return tuple(_definitions())


def _closure(names: set[str]) -> list[str]:
    """`names` and everything they use, in runtime.py's order."""
    defs = _definitions()
    unknown = sorted(names - set(defs))
    if unknown:
        raise ValueError(f"unknown Keras helper(s) {unknown} (known: {', '.join(defs)})")
    needed = set(names)
    stack = list(names)
    while stack:
        for used in defs[stack.pop()].uses - needed:
            needed.add(used)
            stack.append(used)
    return [name for name in defs if name in needed]


def helper_sources(names: set[str]) -> str:
    """Source of the requested helpers and their dependencies, deterministic, two blank
    lines between definitions (ruff format's layout); "" for no names."""
    defs = _definitions()
    return "\n\n\n".join(defs[name].source for name in _closure(names))


def helper_imports(names: set[str]) -> tuple[str, ...]:
    """The modules (of "keras", "math") the requested helpers need imported, sorted."""
    defs = _definitions()
    return tuple(sorted(set().union(*(defs[name].imports for name in _closure(names)))))
