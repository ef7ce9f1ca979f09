"""`archspec graph`: nodes grouped by stage, block and group, in both formats, with
every label escaped (names and scope paths come from spec text)."""

from __future__ import annotations

import dataclasses
import re

from archspec.lower import lower
from archspec.registry import load
from archspec.render import to_dot, to_mermaid


def titles(text: str, opener: str) -> list[tuple[int, str]]:
    """(depth, title) of every subgraph/cluster, in order."""
    out: list[tuple[int, str]] = []
    depth = 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if opener == "mermaid" and stripped.startswith("subgraph "):
            out.append((depth, re.findall(r'\["(.*)"\]', stripped)[0]))
            depth += 1
        elif opener == "mermaid" and stripped == "end":
            depth -= 1
        elif opener == "dot" and stripped.startswith("subgraph cluster_"):
            out.append((depth, re.findall(r'label="(.*)";', lines[i + 1])[0]))
            depth += 1
        elif opener == "dot" and stripped == "}" and line.startswith("  "):
            depth -= 1
    assert depth == 0
    return out


def test_resnet50_reads_as_stem_four_stages_and_head() -> None:
    graph = lower(load("resnet50"))
    for fmt, text in (("mermaid", to_mermaid(graph)), ("dot", to_dot(graph))):
        found = titles(text, fmt)
        stages = [t for d, t in found if d == 0]
        assert stages == [
            "layer1 (3 x Bottleneck)",
            "layer2 (4 x Bottleneck)",
            "layer3 (6 x Bottleneck)",
            "layer4 (3 x Bottleneck)",
        ]
        blocks = [t for d, t in found if d == 1]
        assert len(blocks) == 16 and blocks[0] == "layer1.0 (Bottleneck)"
        assert [t for d, t in found if d == 2] == [f"layer{i}.0.downsample" for i in range(1, 5)]
        # every node declared exactly once; the stem and head outside every cluster
        declared = re.findall(r"^\s*(n\d+)(?:\[| \[label)", text, flags=re.M)
        assert sorted(declared) == sorted(f"n{i}" for i in range(len(graph.nodes)))
        top = [line for line in text.splitlines() if re.match(r"^  n\d+(?:\[| \[label)", line)]
        assert [re.findall(r'"(\w+)', line)[0] for line in top] == [
            "image", "conv1", "bn1", "relu", "maxpool", "avgpool", "flatten", "fc",
        ]  # fmt: skip


def test_a_graph_without_scopes_has_no_clusters() -> None:
    graph = lower(load("alexnet"))
    bare = dataclasses.replace(graph, scopes=())
    assert "subgraph" not in to_mermaid(bare) and "cluster" not in to_dot(bare)


def test_scope_titles_are_escaped() -> None:
    graph = lower(load("resnet18"))
    evil = 'x"] --> y["\n}; digraph z {'
    scopes = tuple(
        dataclasses.replace(s, block_type=evil) if s.kind == "block" else s for s in graph.scopes
    )
    hostile = dataclasses.replace(graph, scopes=scopes)
    mermaid, dot = to_mermaid(hostile), to_dot(hostile)
    assert len(mermaid.splitlines()) == len(to_mermaid(graph).splitlines())
    assert len(dot.splitlines()) == len(to_dot(graph).splitlines())
    assert "x#quot;] --#gt; y[#quot; }; digraph z {" in mermaid
    assert 'label="layer1.0 (x\\"] --> y[\\" }; digraph z {)";' in dot
