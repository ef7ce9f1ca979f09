"""Validation warnings: specs that are valid but probably not what their author meant.

Lowering collects them into `Graph.warnings` (sorted by file position, so the order is
deterministic); the CLI prints them and `--strict` turns them into errors. Nothing here
prints. The checks:

- an item whose output nothing reads (computed, then discarded), or a model input no
  item reads;
- `outputs:` naming a model input (the model returns that input unchanged);
- a list parameter with more entries than the spec's expressions ever read
  (`layers: [3, 4, 6, 3, 2]` where only `layers[0]` .. `layers[3]` are used).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from archspec.errors import Path, SpecWarning
from archspec.expr import Expr, ExprError, Index, Name, children, evaluate
from archspec.ir import Input, Node

if TYPE_CHECKING:
    from archspec.registry import ResolvedSpec
    from archspec.source import Source

SHOWN_INSTANCES = 3


def located(sources: Mapping[str, Source], file: str, path: Path, message: str) -> SpecWarning:
    source = sources.get(file)
    if source is None:
        return SpecWarning(message, path, file=file)
    return SpecWarning(message, path, location=source.locate(path))


def unused(
    nodes: Iterable[Node], outputs: Iterable[str], sources: Mapping[str, Source]
) -> list[SpecWarning]:
    """One warning per spec item (or model input) with instances nobody reads."""
    nodes = list(nodes)
    read = {src for node in nodes for src in node.inputs} | set(outputs)
    by_item: dict[tuple[str, Path], list[Node]] = {}
    for node in nodes:
        if node.name not in read and node.source is not None:
            by_item.setdefault((node.source.file, node.source.path), []).append(node)
    out: list[SpecWarning] = []
    for (file, path), group in by_item.items():
        if isinstance(group[0].op, Input):
            message = f"input '{group[0].name}' is never read by any item"
        else:
            names = [n.name for n in group]
            shown = ", ".join(names[:SHOWN_INSTANCES])
            if len(names) > SHOWN_INSTANCES:
                shown += f" and {len(names) - SHOWN_INSTANCES} more"
            what = f"'{names[0]}'" if len(names) == 1 else f"this item ({shown})"
            message = (
                f"the output of {what} is never used: it is computed and discarded "
                "(read it with 'input'/'inputs', list it in 'outputs:', or remove it)"
            )
        out.append(located(sources, file, path, message))
    return out


def output_is_input(sources: Mapping[str, Source], file: str, path: Path, name: str) -> SpecWarning:
    return located(
        sources,
        file,
        path,
        f"output '{name}' is the model input itself: the model returns it unchanged",
    )


class ListReads:
    """Which entries of the model's list parameters the spec's expressions read.

    Only reads of the model's own list object count (`env[name] is params[name]`), so a
    block parameter of the same name does not; any use other than `name[i]` (`len(name)`,
    `sum(name)`, passing it to a block) counts as reading every entry."""

    def __init__(self, spec: ResolvedSpec, params: Mapping[str, Any]) -> None:
        self.lists = {
            name: value
            for name, value in params.items()
            if name in spec.params
            and spec.params[name].value.type in ("ints", "floats")
            and isinstance(value, list)
        }
        self.highest: dict[str, int] = {}
        self.whole: set[str] = set()

    def tracked(self, name: str, env: Mapping[str, Any]) -> bool:
        return name in self.lists and env.get(name) is self.lists[name]

    def note(self, node: Expr, env: Mapping[str, Any]) -> None:
        if isinstance(node, Name):
            if self.tracked(node.id, env):
                self.whole.add(node.id)
            return
        if isinstance(node, Index) and isinstance(node.target, Name):
            name = node.target.id
            if self.tracked(name, env):
                try:
                    index = evaluate(node.index, env)
                except ExprError:
                    index = None
                if isinstance(index, int) and not isinstance(index, bool):
                    size = len(self.lists[name])
                    at = index + size if index < 0 else index
                    self.highest[name] = max(self.highest.get(name, -1), at)
                else:
                    self.whole.add(name)
                self.note(node.index, env)
                return
        for child in children(node):
            self.note(child, env)

    def warnings(self, spec: ResolvedSpec, overridden: Iterable[str]) -> list[SpecWarning]:
        out: list[SpecWarning] = []
        given = set(overridden)
        for name, value in self.lists.items():
            if name in self.whole or name not in self.highest:
                continue  # read whole, or not at all (another kind of problem)
            used = self.highest[name] + 1
            if used >= len(value):
                continue
            message = (
                f"parameter '{name}' has {len(value)} entries but the spec reads only the "
                f"first {used} ({name}[0] .. {name}[{used - 1}]); the rest is ignored"
            )
            if name in given:
                out.append(SpecWarning(message, ("params", name), file="--set"))
            else:
                decl = spec.params[name]
                out.append(SpecWarning(message, decl.path, location=decl.source.locate(decl.path)))
        return out
