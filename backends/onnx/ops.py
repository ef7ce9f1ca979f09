"""One printer per IR op kind: the ONNX nodes that compute exactly what the IR op means.

A printer gets an `OpContext` (the builder, the IR node, the ONNX names of its inputs, the
name its result must have, its parameters) and returns the name of the value holding the
result: `ctx.output` (the node's name) for everything but dropout, which is absent at
inference and returns its input. Padding is always explicit `pads` computed from the IR's
four sides, never `auto_pad` (ONNX's SAME_* differs from TensorFlow's rule for even sizes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from archspec_onnx.builder import Builder, OnnxEmitError, Shape

from archspec import ir
from archspec.ir import Node
from archspec.weights import PARAMETER, weight_name


class ParamSource:
    """Initializer values by WeightSet name, or only their shapes for a weightless model."""

    def __init__(self, shapes: dict[str, Shape], values: dict[str, np.ndarray] | None) -> None:
        self.shapes = shapes
        self.values = values
        self.read: set[str] = set()  # the WeightSet names some node has read

    def has(self, name: str) -> bool:
        return name in self.shapes

    def value(self, name: str) -> np.ndarray | Shape:
        return self.values[name] if self.values is not None else self.shapes[name]


@dataclass
class OpContext:
    b: Builder
    node: Node
    inputs: list[str]  # ONNX value names of the IR node's inputs
    in_shapes: list[Shape]  # their IR shapes (no batch dimension)
    output: str  # the name the result must have
    params: ParamSource
    parts: tuple[str, ...] = ()  # a split's outputs: the IR's Part nodes, in order

    def param(self, tensor: str) -> str | None:
        """The initializer `<param_name>.<tensor>` (registered once), or None if absent."""
        name = weight_name(self.node.param_name or "", tensor)
        if self.node.param_name is None or not self.params.has(name):
            return None
        self.params.read.add(name)
        onnx_name = initializer_name(name, {self.node.param_name})
        return self.b.initializer(onnx_name, self.params.value(name))


def initializer_name(weight: str, param_names: Collection[str]) -> str:
    """The initializer holding WeightSet tensor `weight`: the same name, except for a
    parameter named by its node alone (a scale's factor), whose name the node's output
    already has: it lives under the node, `features.0.layer_scale/weight`."""
    return f"{weight}/weight" if weight in param_names else weight


Printer = Callable[[OpContext, Any], str]
PRINTERS: dict[str, Printer] = {}


def printer(kind: str) -> Callable[[Printer], Printer]:
    def register(fn: Printer) -> Printer:
        if kind in PRINTERS:
            raise ValueError(f"two ONNX printers for op kind '{kind}'")
        PRINTERS[kind] = fn
        return fn

    return register


def print_op(ctx: OpContext) -> str:
    kind = ctx.node.op.kind
    if kind not in PRINTERS:
        raise NotImplementedError(f"the ONNX backend has no printer for op kind '{kind}'")
    return PRINTERS[kind](ctx, ctx.node.op)


def onnx_pads(p: ir.Padding, extra: tuple[int, int] = (0, 0)) -> list[int]:
    """ONNX order [top, left, bottom, right]; `extra` adds to bottom and right."""
    return [p.top, p.left, p.bottom + extra[0], p.right + extra[1]]


def overhang(size: int, out: int, k: int, s: int, p0: int, p1: int) -> int:
    """Rows (or columns) a ceil-mode last window reaches past the end padding.

    ONNX pooling then runs in floor mode with that much more end padding, which padded
    positions never win (max) or are never counted in (average, count_include_pad=0).
    """
    extra = max(0, (out - 1) * s + k - (size + p0 + p1))
    if (size + p0 + p1 + extra - k) // s + 1 != out:
        raise OnnxEmitError(f"pool window count {out} does not follow from the padded size")
    return extra


def pool_overhang(ctx: OpContext, op: ir.MaxPool2d | ir.AvgPool2d) -> tuple[int, int]:
    _, h, w = ctx.in_shapes[0]
    _, oh, ow = ctx.node.shape
    (kh, kw), (sh, sw), p = op.kernel_size, op.stride, op.padding
    return overhang(h, oh, kh, sh, p.top, p.bottom), overhang(w, ow, kw, sw, p.left, p.right)


def window_attrs(op: ir.MaxPool2d | ir.AvgPool2d) -> dict[str, Any]:
    return {"kernel_shape": list(op.kernel_size), "strides": list(op.stride)}


# ---------------------------------------------------------------------------- printers


@printer("input")
def _input(ctx: OpContext, op: ir.Input) -> str:
    return ctx.b.graph_input(ctx.output, ctx.node.shape)


@printer("conv2d")
def _conv2d(ctx: OpContext, op: ir.Conv2d) -> str:
    weight = ctx.param("weight")
    bias = ctx.param("bias")  # present with bias=True, or when a BatchNorm is folded in
    assert weight is not None
    attrs: dict[str, Any] = {
        "kernel_shape": list(op.kernel_size),
        "strides": list(op.stride),
        "pads": onnx_pads(op.padding),
    }
    if op.dilation != (1, 1):
        attrs["dilations"] = list(op.dilation)
    if op.groups != 1:
        attrs["group"] = op.groups
    inputs = [ctx.inputs[0], weight] + ([bias] if bias is not None else [])
    return ctx.b.node("Conv", inputs, ctx.output, **attrs)


@printer("linear")
def _linear(ctx: OpContext, op: ir.Linear) -> str:
    weight = ctx.param("weight")
    bias = ctx.param("bias")
    assert weight is not None
    if ctx.node.layout == "channels_last":  # each pixel of (N, H, W, C): Gemm is 2-d only
        kernel = ctx.b.node("Transpose", [weight], suffix="kernel", perm=[1, 0])  # [in, out]
        if bias is None:
            return ctx.b.node("MatMul", [ctx.inputs[0], kernel], ctx.output)
        x = ctx.b.node("MatMul", [ctx.inputs[0], kernel], suffix="matmul")
        return ctx.b.node("Add", [x, bias], ctx.output)
    inputs = [ctx.inputs[0], weight] + ([bias] if bias is not None else [])
    return ctx.b.node("Gemm", inputs, ctx.output, transB=1)  # weight is [out, in]


@printer("batch_norm")
def _batch_norm(ctx: OpContext, op: ir.BatchNorm) -> str:
    n = (op.num_features,)
    scale = ctx.param("weight") or ctx.b.constant("scale", np.ones(n, np.float32))
    shift = ctx.param("bias") or ctx.b.constant("bias", np.zeros(n, np.float32))
    mean, var = ctx.param("running_mean"), ctx.param("running_var")
    assert mean is not None and var is not None
    return ctx.b.node(
        "BatchNormalization",
        [ctx.inputs[0], scale, shift, mean, var],
        ctx.output,
        epsilon=op.eps,
        momentum=1.0 - op.momentum,  # ONNX weights the running value (training only)
    )


def _unary(kind: str, op_type: str) -> None:
    printer(kind)(lambda ctx, op: ctx.b.node(op_type, ctx.inputs, ctx.output))


_unary("relu", "Relu")
_unary("sigmoid", "Sigmoid")
_unary("tanh", "Tanh")


@printer("leaky_relu")
def _leaky_relu(ctx: OpContext, op: ir.LeakyReLU) -> str:
    return ctx.b.node("LeakyRelu", ctx.inputs, ctx.output, alpha=op.negative_slope)


@printer("gelu")
def _gelu(ctx: OpContext, op: ir.GELU) -> str:
    return ctx.b.node("Gelu", ctx.inputs, ctx.output, approximate=op.approximate)


@printer("softmax")
def _softmax(ctx: OpContext, op: ir.Softmax) -> str:
    return ctx.b.node("Softmax", ctx.inputs, ctx.output, axis=op.axis)


@printer("max_pool2d")
def _max_pool2d(ctx: OpContext, op: ir.MaxPool2d) -> str:
    pads = onnx_pads(op.padding, pool_overhang(ctx, op))  # ONNX max pool ignores pads
    return ctx.b.node("MaxPool", ctx.inputs, ctx.output, **window_attrs(op), pads=pads)


@printer("avg_pool2d")
def _avg_pool2d(ctx: OpContext, op: ir.AvgPool2d) -> str:
    extra = pool_overhang(ctx, op)
    attrs = window_attrs(op)
    if extra == (0, 0) or not op.count_include_pad:
        return ctx.b.node(
            "AveragePool",
            ctx.inputs,
            ctx.output,
            **attrs,
            pads=onnx_pads(op.padding, extra),
            count_include_pad=int(op.count_include_pad),
        )
    # PyTorch counts the explicit padding but not a ceil-mode window's overhang: pad with
    # zeros first (counted as data), then pool the overhang without counting it.
    x = ctx.inputs[0]
    if not op.padding.is_zero:
        x = _pad(ctx, x, op.padding, 0.0, suffix="pad")
    return ctx.b.node(
        "AveragePool",
        [x],
        ctx.output,
        **attrs,
        pads=onnx_pads(ir.Padding(), extra),
        count_include_pad=0,
    )


def _global(kind: str, op_type: str) -> None:
    @printer(kind)
    def run(ctx: OpContext, op: ir.GlobalAvgPool | ir.GlobalMaxPool) -> str:
        if op.keepdims:
            return ctx.b.node(op_type, ctx.inputs, ctx.output)
        pooled = ctx.b.node(op_type, ctx.inputs, suffix="pool")
        return ctx.b.node("Flatten", [pooled], ctx.output, axis=1)  # (N, C, 1, 1) -> (N, C)


_global("global_avg_pool", "GlobalAveragePool")
_global("global_max_pool", "GlobalMaxPool")


def adaptive_bins(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix of PyTorch's bins [floor(i*in/out), ceil((i+1)*in/out))."""
    matrix = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = (i * size) // out, math.ceil((i + 1) * size / out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@printer("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(ctx: OpContext, op: ir.AdaptiveAvgPool2d) -> str:
    _, h, w = ctx.in_shapes[0]
    oh, ow = op.output_size
    if (h, w) == (oh, ow):
        return ctx.b.node("Identity", ctx.inputs, ctx.output)
    if h % oh == 0 and w % ow == 0:  # equal bins: one plain average pool
        k = [h // oh, w // ow]
        return ctx.b.node("AveragePool", ctx.inputs, ctx.output, kernel_shape=k, strides=k)
    # Unequal (or overlapping) bins, which no ONNX op has: average rows and columns with
    # two constant matrices, y = rows @ x @ cols.
    cols = ctx.b.constant("cols", adaptive_bins(w, ow).T.copy())
    rows = ctx.b.constant("rows", adaptive_bins(h, oh))
    narrow = ctx.b.node("MatMul", [ctx.inputs[0], cols], suffix="width")
    return ctx.b.node("MatMul", [rows, narrow], ctx.output)


@printer("flatten")
def _flatten(ctx: OpContext, op: ir.Flatten) -> str:
    return ctx.b.node("Flatten", ctx.inputs, ctx.output, axis=1)  # NCHW: C, H, W order


@printer("dropout")
def _dropout(ctx: OpContext, op: ir.Dropout) -> str:
    return ctx.inputs[0]  # identity at inference: no node


@printer("add")
def _add(ctx: OpContext, op: ir.Add) -> str:
    return ctx.b.node("Add" if len(ctx.inputs) == 2 else "Sum", ctx.inputs, ctx.output)


@printer("concat")
def _concat(ctx: OpContext, op: ir.Concat) -> str:
    return ctx.b.node("Concat", ctx.inputs, ctx.output, axis=op.axis)


def _pad(
    ctx: OpContext,
    x: str,
    p: ir.Padding,
    value: float,
    output: str | None = None,
    suffix: str | None = None,
) -> str:
    pads = ctx.b.constant(
        f"{suffix}_sides" if suffix else "sides",
        np.array([0, 0, p.top, p.left, 0, 0, p.bottom, p.right], np.int64),
    )
    fill = ctx.b.constant(f"{suffix}_value" if suffix else "value", np.array(value, np.float32))
    return ctx.b.node("Pad", [x, pads, fill], output, suffix=suffix, mode="constant")


@printer("pad2d")
def _pad2d(ctx: OpContext, op: ir.Pad2d) -> str:
    return _pad(ctx, ctx.inputs[0], op.padding, op.value, output=ctx.output)


# ---------------------------------------------------------------------------- spec language v2


@printer("clip")
def _clip(ctx: OpContext, op: ir.Clip) -> str:
    low = ctx.b.constant("min", np.array(op.min_val, np.float32))
    high = ctx.b.constant("max", np.array(op.max_val, np.float32))
    return ctx.b.node("Clip", [ctx.inputs[0], low, high], ctx.output)


_unary("hardswish", "HardSwish")  # opset 14: x * max(0, min(1, x / 6 + 1 / 2))


@printer("hardsigmoid")
def _hardsigmoid(ctx: OpContext, op: ir.Hardsigmoid) -> str:
    # ONNX's defaults (alpha 0.2, beta 0.5) are old Keras's; PyTorch's is x / 6 + 1 / 2
    return ctx.b.node("HardSigmoid", ctx.inputs, ctx.output, alpha=1.0 / 6.0, beta=0.5)


@printer("silu")
def _silu(ctx: OpContext, op: ir.SiLU) -> str:
    gate = ctx.b.node("Sigmoid", ctx.inputs, suffix="sigmoid")  # opset 21 has no Swish
    return ctx.b.node("Mul", [ctx.inputs[0], gate], ctx.output)


@printer("mul")
def _mul(ctx: OpContext, op: ir.Mul) -> str:
    return ctx.b.node("Mul", ctx.inputs, ctx.output)  # numpy broadcasting, as the IR's


@printer("stochastic_depth")
def _stochastic_depth(ctx: OpContext, op: ir.StochasticDepth) -> str:
    return ctx.inputs[0]  # identity at inference: no node, as a dropout


@printer("channel_shuffle")
def _channel_shuffle(ctx: OpContext, op: ir.ChannelShuffle) -> str:
    c, h, w = ctx.in_shapes[0]
    g = op.groups  # 0 in a Reshape shape keeps the (dynamic) batch dimension
    grouped = ctx.b.constant("grouped", np.array([0, g, c // g, h, w], np.int64))
    flat = ctx.b.constant("flat", np.array([0, c, h, w], np.int64))
    x = ctx.b.node("Reshape", [ctx.inputs[0], grouped], suffix="view")
    x = ctx.b.node("Transpose", [x], suffix="transpose", perm=[0, 2, 1, 3, 4])
    return ctx.b.node("Reshape", [x, flat], ctx.output)


@printer("layer_norm")
def _layer_norm(ctx: OpContext, op: ir.LayerNorm) -> str:
    n = (op.num_features,)
    scale = ctx.param("weight") or ctx.b.constant("scale", np.ones(n, np.float32))
    shift = ctx.param("bias") or ctx.b.constant("bias", np.zeros(n, np.float32))
    if len(ctx.in_shapes[0]) == 1 or ctx.node.layout == "channels_last":
        norm = [ctx.inputs[0], scale, shift]
        return ctx.b.node("LayerNormalization", norm, ctx.output, axis=-1, epsilon=op.eps)
    # LayerNormalization normalizes every axis from `axis` on: move channels last first
    x = ctx.b.node("Transpose", ctx.inputs, suffix="nhwc", perm=[0, 2, 3, 1])
    x = ctx.b.node("LayerNormalization", [x, scale, shift], suffix="norm", axis=-1, epsilon=op.eps)
    return ctx.b.node("Transpose", [x], ctx.output, perm=[0, 3, 1, 2])


@printer("scale")
def _scale(ctx: OpContext, op: ir.Scale) -> str:
    weight = ctx.param(PARAMETER)  # (C, 1, 1) or (C,): broadcasts over NCHW as stored
    assert weight is not None
    return ctx.b.node("Mul", [ctx.inputs[0], weight], ctx.output)


@printer("chunk")
def _chunk(ctx: OpContext, op: ir.Chunk) -> str:
    size = ctx.in_shapes[0][0] // op.chunks
    starts = ctx.b.constant("starts", np.array([op.index * size], np.int64))
    ends = ctx.b.constant("ends", np.array([(op.index + 1) * size], np.int64))
    axes = ctx.b.constant("axes", np.array([1], np.int64))
    return ctx.b.node("Slice", [ctx.inputs[0], starts, ends, axes], ctx.output)


@printer("split")
def _split(ctx: OpContext, op: ir.Split) -> str:
    # one node, one output per part, each named after its Part node (which adds nothing)
    if op.chunks is not None:  # opset 18's num_outputs: equal parts
        ctx.b.multi("Split", ctx.inputs, ctx.parts, axis=1, num_outputs=op.chunks)
    else:
        sizes = ctx.b.constant("split", np.array(op.part_sizes(ctx.in_shapes[0][0]), np.int64))
        ctx.b.multi("Split", [ctx.inputs[0], sizes], ctx.parts, axis=1)
    return ctx.output  # no value of its own: nothing but its parts reads a split


@printer("part")
def _part(ctx: OpContext, op: ir.Part) -> str:
    return ctx.output  # made by the split it reads


@printer("channels_last")
def _channels_last(ctx: OpContext, op: ir.ChannelsLast) -> str:
    return ctx.b.node("Transpose", ctx.inputs, ctx.output, perm=[0, 2, 3, 1])


@printer("channels_first")
def _channels_first(ctx: OpContext, op: ir.ChannelsFirst) -> str:
    return ctx.b.node("Transpose", ctx.inputs, ctx.output, perm=[0, 3, 1, 2])
