"""Passes over a lowered Graph: parameter counts, FLOPs, the summary table rows.

Parameters are counted per parameter set (`Node.param_name`), so a shared-weight group
counts once however many nodes use it. FLOPs are multiply-accumulates of conv and
linear layers (the convention torchvision's model cards use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archspec import ir
from archspec.ir import Graph, Node, Shape


def op_param_count(op: ir.Op, in_shape: Shape) -> int:
    """Trainable parameters of one op instance."""
    if isinstance(op, ir.Conv2d):
        k = op.kernel_size[0] * op.kernel_size[1]
        return op.out_channels * (op.in_channels // op.groups) * k + (
            op.out_channels if op.bias else 0
        )
    if isinstance(op, ir.Linear):
        return op.out_features * op.in_features + (op.out_features if op.bias else 0)
    if isinstance(op, ir.BatchNorm | ir.LayerNorm):
        return 2 * op.num_features if op.affine else 0
    if isinstance(op, ir.Scale):
        return op.num_features
    return 0


def op_state_count(op: ir.Op) -> int:
    """Non-trainable state: BatchNorm running mean and variance."""
    return 2 * op.num_features if isinstance(op, ir.BatchNorm) else 0


def node_macs(node: Node) -> int:
    op = node.op
    if isinstance(op, ir.Conv2d):
        k = op.kernel_size[0] * op.kernel_size[1]
        return math.prod(node.shape) * (op.in_channels // op.groups) * k
    if isinstance(op, ir.Linear):  # once per pixel of a channels-last (H, W, C) map
        return math.prod(node.shape[:-1]) * op.in_features * op.out_features
    return 0


@dataclass(frozen=True)
class Totals:
    trainable: int
    non_trainable: int
    macs: int

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def param_sets(graph: Graph) -> dict[str, Node]:
    """One representative node per parameter set, in graph order."""
    owners: dict[str, Node] = {}
    for node in graph.nodes:
        if node.param_name is not None and node.param_name not in owners:
            owners[node.param_name] = node
    return owners


def input_shape(graph: Graph, node: Node) -> Shape:
    return graph.node(node.inputs[0]).shape if node.inputs else node.shape


def totals(graph: Graph) -> Totals:
    trainable = non_trainable = 0
    for node in param_sets(graph).values():
        trainable += op_param_count(node.op, input_shape(graph, node))
        non_trainable += op_state_count(node.op)
    return Totals(trainable, non_trainable, sum(node_macs(n) for n in graph.nodes))


@dataclass(frozen=True)
class Row:
    name: str
    op: str
    shape: Shape
    params: int  # trainable + state, counted where the parameter set is first used
    shared_with: str | None


def rows(graph: Graph) -> list[Row]:
    seen: set[str] = set()
    out: list[Row] = []
    for node in graph.nodes:
        params = 0
        shared: str | None = None
        if node.param_name is not None:
            if node.param_name in seen:
                shared = node.param_name
            else:
                seen.add(node.param_name)
                params = op_param_count(node.op, input_shape(graph, node)) + op_state_count(node.op)
        out.append(Row(node.name, node.op.kind, node.shape, params, shared))
    return out
