"""Graph pictures: Mermaid and Graphviz dot text of a lowered graph.

Nodes are nested in the scopes their names fall in (a stage, a block instance, a group
such as `downsample`): Mermaid subgraphs and dot clusters, so a ResNet reads as a stem,
four stages of blocks and a head. Edges are listed after all nodes.

Names come from spec text, so every string placed inside quotes goes through the
format's own escaping (`_dot_str`, `_mermaid_str`): no name can close the quotes, start
a new statement or split a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from archspec.ir import Graph, Node, ScopeInfo

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _label(node: Node, sep: str, text: Callable[[str], str]) -> str:
    shape = "x".join(str(d) for d in node.shape)
    return f"{text(node.name)}{sep}{text(node.op.kind)} {shape}"


def _dot_str(text: str) -> str:
    """A dot quoted-string body: backslashes and quotes escaped, controls as spaces."""
    return _CONTROL.sub(" ", text.replace("\\", "\\\\").replace('"', '\\"'))


def _mermaid_str(text: str) -> str:
    """A Mermaid quoted-label body: quotes and markup as entity codes, controls as spaces."""
    out = _CONTROL.sub(" ", text)
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        out = out.replace(char, code)
    return out


def _cluster_label(info: ScopeInfo, size: int) -> str:
    if info.kind == "block" and info.block_type:
        return f"{info.path} ({info.block_type})"
    if info.kind == "repeat":
        if info.block_type:
            return f"{info.path} ({size} x {info.block_type})"
        return f"{info.path} ({size} repeat{'s' if size != 1 else ''})"
    return info.path


@dataclass
class _Cluster:
    """A block, stage or group: its nodes and sub-clusters, in graph order."""

    info: ScopeInfo | None  # None for the whole graph
    members: list[Node | _Cluster] = field(default_factory=list)


def _clusters(graph: Graph) -> _Cluster:
    """Nodes nested by the scopes (blocks, stages, groups) their names fall in."""
    scopes = {info.path: info for info in graph.scopes}
    root = _Cluster(None)
    made: dict[str, _Cluster] = {}

    def owner(name: str) -> str | None:
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in scopes:
                return prefix
        return None

    def cluster(path: str | None) -> _Cluster:
        if path is None:
            return root
        if path not in made:
            made[path] = _Cluster(scopes[path])
            cluster(owner(path)).members.append(made[path])
        return made[path]

    for node in graph.nodes:
        cluster(owner(node.name)).members.append(node)
    return root


def _size(cluster: _Cluster) -> int:
    return sum(1 for m in cluster.members if isinstance(m, _Cluster))


def to_mermaid(graph: Graph) -> str:
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    count = 0

    def emit(cluster: _Cluster, indent: str) -> None:
        nonlocal count
        for member in cluster.members:
            if isinstance(member, Node):
                label = _label(member, "<br/>", _mermaid_str)
                lines.append(f'{indent}{ids[member.name]}["{label}"]')
                continue
            assert member.info is not None
            title = _mermaid_str(_cluster_label(member.info, _size(member)))
            lines.append(f'{indent}subgraph s{count} ["{title}"]')
            count += 1
            emit(member, indent + "  ")
            lines.append(f"{indent}end")

    emit(_clusters(graph), "  ")
    for node in graph.nodes:
        for src in node.inputs:
            lines.append(f"  {ids[src]} --> {ids[node.name]}")
    return "\n".join(lines) + "\n"


def to_dot(graph: Graph) -> str:
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = [f'digraph "{_dot_str(graph.name)}" {{', "  node [shape=box, fontname=monospace];"]
    count = 0

    def emit(cluster: _Cluster, indent: str) -> None:
        nonlocal count
        for member in cluster.members:
            if isinstance(member, Node):
                label = _label(member, "\\n", _dot_str)
                lines.append(f'{indent}{ids[member.name]} [label="{label}"];')
                continue
            assert member.info is not None
            title = _dot_str(_cluster_label(member.info, _size(member)))
            lines.append(f"{indent}subgraph cluster_{count} {{")
            lines.append(f'{indent}  label="{title}";')
            count += 1
            emit(member, indent + "  ")
            lines.append(f"{indent}}}")

    emit(_clusters(graph), "  ")
    for node in graph.nodes:
        for src in node.inputs:
            lines.append(f"  {ids[src]} -> {ids[node.name]};")
    lines.append("}")
    return "\n".join(lines) + "\n"
