"""Graph pictures: Mermaid and Graphviz dot text of a lowered graph."""

from __future__ import annotations

from archspec.ir import Graph, Node


def _label(node: Node) -> str:
    shape = "x".join(str(d) for d in node.shape)
    return f"{node.name}<br/>{node.op.kind} {shape}"


def to_mermaid(graph: Graph) -> str:
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    for node in graph.nodes:
        lines.append(f'  {ids[node.name]}["{_label(node)}"]')
    for node in graph.nodes:
        for src in node.inputs:
            lines.append(f"  {ids[src]} --> {ids[node.name]}")
    return "\n".join(lines) + "\n"


def to_dot(graph: Graph) -> str:
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = [f'digraph "{graph.name}" {{', "  node [shape=box, fontname=monospace];"]
    for node in graph.nodes:
        label = _label(node).replace("<br/>", "\\n")
        lines.append(f'  {ids[node.name]} [label="{label}"];')
    for node in graph.nodes:
        for src in node.inputs:
            lines.append(f"  {ids[src]} -> {ids[node.name]};")
    lines.append("}")
    return "\n".join(lines) + "\n"
