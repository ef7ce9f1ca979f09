"""BatchNorm folding (`--fold-bn`): an inference-time BatchNorm merged into the conv before it.

y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta is conv(x) with weight
W * s and bias (b - mean) * s + beta, where s = gamma / sqrt(var + eps) per output channel.
A BatchNorm is folded only when that is exact for the graph: its input is a conv in the
same block instance whose output nothing else reads (and is not a model output), and the
conv's weights are not a shared group (each use has its own BatchNorm, so folding would
split the one shared initializer). Every other BatchNorm stays a BatchNormalization node.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from archspec import ir
from archspec.ir import Graph, Node


def fold_plan(graph: Graph) -> dict[str, Node]:
    """Conv node name -> the BatchNorm node folded into it."""
    readers = Counter(src for node in graph.nodes for src in node.inputs)
    readers.update(graph.outputs)
    shared = {param for param, _ in graph.shared_groups}
    plan: dict[str, Node] = {}
    for node in graph.nodes:
        if not isinstance(node.op, ir.BatchNorm) or len(node.shape) != 3:
            continue
        conv = graph.node(node.inputs[0])
        if (
            isinstance(conv.op, ir.Conv2d)
            and readers[conv.name] == 1
            and conv.param_name not in shared
            and conv.scope == node.scope
        ):
            plan[conv.name] = node
    return plan


def fold(
    weight: np.ndarray,
    bias: np.ndarray | None,
    bn: ir.BatchNorm,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    mean: np.ndarray,
    var: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The folded conv weight and bias (computed in float64, stored as float32)."""
    n = bn.num_features
    gamma64 = np.ones(n) if gamma is None else gamma.astype(np.float64)
    beta64 = np.zeros(n) if beta is None else beta.astype(np.float64)
    scale = gamma64 / np.sqrt(var.astype(np.float64) + bn.eps)
    folded_weight = weight.astype(np.float64) * scale[:, None, None, None]
    bias64 = np.zeros(n) if bias is None else bias.astype(np.float64)
    folded_bias = (bias64 - mean.astype(np.float64)) * scale + beta64
    return folded_weight.astype(np.float32), folded_bias.astype(np.float32)
