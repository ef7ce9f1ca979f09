"""Graph pictures: Mermaid and Graphviz dot text of a lowered graph.

Names come from spec text, so every string placed inside quotes goes through the
format's own escaping (`_dot_str`, `_mermaid_str`): no name can close the quotes, start
a new statement or split a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from archspec.ir import Graph, Node

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


def to_mermaid(graph: Graph) -> str:
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    for node in graph.nodes:
        label = _label(node, "<br/>", _mermaid_str)
        lines.append(f'  {ids[node.name]}["{label}"]')
    for node in graph.nodes:
        for src in node.inputs:
            lines.append(f"  {ids[src]} --> {ids[node.name]}")
    return "\n".join(lines) + "\n"


def to_dot(graph: Graph) -> str:
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = [f'digraph "{_dot_str(graph.name)}" {{', "  node [shape=box, fontname=monospace];"]
    for node in graph.nodes:
        label = _label(node, "\\n", _dot_str)
        lines.append(f'  {ids[node.name]} [label="{label}"];')
    for node in graph.nodes:
        for src in node.inputs:
            lines.append(f"  {ids[src]} -> {ids[node.name]};")
    lines.append("}")
    return "\n".join(lines) + "\n"
