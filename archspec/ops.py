"""Lowering rules for primitive ops: evaluated spec fields + input shapes -> IR op + shape.

One function per spec op, registered in RULES. Each receives the op's fields already
evaluated (expressions resolved, `defaults:` and BUILTIN_DEFAULTS applied) and raises
OpError(field, message) on invalid combinations; the lowering turns that into a
SpecError at the field's position.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from archspec import ir
from archspec.ir import Shape
from archspec.limits import LIMITS, describe

# The spec language's own defaults, used when neither the item nor the spec's
# `defaults:` section sets a field. They follow PyTorch, and are documented in docs/spec.md.
BUILTIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "conv": {
        "stride": 1,
        "padding": 0,
        "dilation": 1,
        "groups": 1,
        "bias": True,
        "init": "default",
        "bias_init": "default",
    },
    "linear": {"bias": True, "init": "default", "bias_init": "default"},
    "batch_norm": {"eps": 1e-5, "momentum": 0.1, "affine": True},
    "max_pool": {"stride": None, "padding": 0, "ceil_mode": False},
    "avg_pool": {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": None},
    "global_avg_pool": {"keepdims": False},
    "global_max_pool": {"keepdims": False},
    "gelu": {"approximate": "none"},
    "pad": {"value": 0.0},
    "stochastic_depth": {"mode": "row"},
    "layer_norm": {"eps": 1e-5, "affine": True},
    "scale": {"init_value": 1.0},
}


class OpError(ValueError):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def fmt_shape(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# ---------------------------------------------------------------------------- helpers


def pair(value: Any, field: str) -> tuple[int, int]:
    items = list(value) if isinstance(value, list | tuple) else [value, value]
    if len(items) != 2:
        raise OpError(field, f"expected a positive int or [h, w], got a list of {len(items)}")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise OpError(field, f"expected a positive int or [h, w], got {v!r}")
        if v <= 0:
            raise OpError(field, f"must be positive, got {v}")
    return items[0], items[1]


def check_channels(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = " (use // or floor() for integer division)" if isinstance(value, float) else ""
        raise OpError(field, f"expected a positive int, got {type(value).__name__} {value!r}{hint}")
    if value <= 0:
        raise OpError(field, f"must be positive, got {value}")
    if value > LIMITS.max_channels:
        raise OpError(field, describe("max_channels", value, LIMITS.max_channels, "channel count"))
    return value


def same_sides(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow 'same': output ceil(size/s), the odd pad at the bottom/right."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def padding(
    value: Any,
    field: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    hw: tuple[int, int],
) -> ir.Padding:
    if value == "valid":
        return ir.Padding()
    if value == "same":
        top, bottom = same_sides(hw[0], kernel[0], stride[0], dilation[0])
        left, right = same_sides(hw[1], kernel[1], stride[1], dilation[1])
        return ir.Padding(top=top, bottom=bottom, left=left, right=right, same=True)
    items = value if isinstance(value, list) else [value]
    if len(items) not in (1, 2, 4) or (len(items) == 1 and isinstance(value, list)):
        raise OpError(
            field,
            "expected 'same', 'valid', an int, [h, w] or [top, bottom, left, right]; "
            f"got a list of {len(items)}",
        )
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise OpError(
                field,
                "expected 'same', 'valid', an int, [h, w] or [top, bottom, left, right]; "
                f"got {v!r}",
            )
        if v < 0:
            raise OpError(field, f"padding must be >= 0, got {v}")
    if len(items) == 1:
        p = items[0]
        return ir.Padding(top=p, bottom=p, left=p, right=p)
    if len(items) == 2:
        return ir.Padding(top=items[0], bottom=items[0], left=items[1], right=items[1])
    return ir.Padding(top=items[0], bottom=items[1], left=items[2], right=items[3])


def window_out(size: int, k: int, s: int, d: int, p0: int, p1: int, ceil: bool, axis: str) -> int:
    span = d * (k - 1) + 1
    padded = size + p0 + p1
    if span > padded:
        raise OpError(
            "kernel",
            f"kernel {k} (dilation {d}) is larger than the padded input: {axis} is {size} "
            f"+ padding {p0}+{p1} = {padded} < {span}",
        )
    if ceil:
        out = math.ceil((padded - span) / s) + 1
        if (out - 1) * s >= size + p0:  # PyTorch: the last window must start inside
            out -= 1
    else:
        out = (padded - span) // s + 1
    return out


def spatial(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise OpError(None, f"{what} needs a (C, H, W) input, got shape {fmt_shape(shape)}")
    return shape[0], shape[1], shape[2]


def init(value: Any) -> ir.Init:
    presets: dict[str, ir.Init] = {
        "default": ir.Init(kind="torch_default"),
        "he_normal": ir.Init(kind="variance_scaling", scale=2.0, distribution="truncated_normal"),
        "he_uniform": ir.Init(kind="variance_scaling", scale=2.0, distribution="uniform"),
        "kaiming_normal": ir.Init(kind="variance_scaling", scale=2.0, distribution="normal"),
        "kaiming_normal_fan_out": ir.Init(
            kind="variance_scaling", scale=2.0, mode="fan_out", distribution="normal"
        ),
        "kaiming_uniform": ir.Init(kind="variance_scaling", scale=2.0, distribution="uniform"),
        "glorot_normal": ir.Init(
            kind="variance_scaling", mode="fan_avg", distribution="truncated_normal"
        ),
        "glorot_uniform": ir.Init(kind="variance_scaling", mode="fan_avg", distribution="uniform"),
        "lecun_normal": ir.Init(kind="variance_scaling", distribution="truncated_normal"),
        "lecun_uniform": ir.Init(kind="variance_scaling", distribution="uniform"),
        "zeros": ir.Init(kind="constant", value=0.0),
        "ones": ir.Init(kind="constant", value=1.0),
    }
    if isinstance(value, str):
        return presets[value]
    data = value.model_dump() if hasattr(value, "model_dump") else dict(value)
    return ir.Init(**data)


def number(
    value: Any,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OpError(field, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise OpError(field, f"expected a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise OpError(field, f"must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise OpError(field, f"must be <= {high}, got {value}")
    return float(value)


def flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise OpError(field, f"expected true or false, got {value!r}")
    return value


# ---------------------------------------------------------------------------- rules

Rule = Callable[[dict[str, Any], list[Shape]], tuple[ir.Op, Shape]]
RULES: dict[str, Rule] = {}
ARITY: dict[str, tuple[int, int | None]] = {}  # op -> (min inputs, max inputs)


def rule(name: str, arity: tuple[int, int | None] = (1, 1)) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        ARITY[name] = arity
        return fn

    return register


@rule("conv")
def _conv(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    c, h, w = spatial(shapes[0], "conv")
    out = check_channels(f["out"], "out")
    k, s, d = (
        pair(f["kernel"], "kernel"),
        pair(f["stride"], "stride"),
        pair(f["dilation"], "dilation"),
    )
    groups = f["groups"]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
        raise OpError("groups", f"expected a positive int, got {groups!r}")
    if c % groups or out % groups:
        raise OpError("groups", f"groups={groups} must divide both in_channels {c} and out {out}")
    pad = padding(f["padding"], "padding", k, s, d, (h, w))
    oh = window_out(h, k[0], s[0], d[0], pad.top, pad.bottom, False, "height")
    ow = window_out(w, k[1], s[1], d[1], pad.left, pad.right, False, "width")
    op = ir.Conv2d(
        in_channels=c,
        out_channels=out,
        kernel_size=k,
        stride=s,
        dilation=d,
        groups=groups,
        padding=pad,
        bias=flag(f["bias"], "bias"),
        weight_init=init(f["init"]),
        bias_init=init(f["bias_init"]),
    )
    return op, (out, oh, ow)


@rule("linear")
def _linear(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    if len(shapes[0]) != 1:
        raise OpError(
            None,
            f"linear needs a flat (features,) input, got shape {fmt_shape(shapes[0])}; "
            "add {op: flatten} or a global pool first (or {op: channels_last} for a linear "
            "over each pixel's channels)",
        )
    op = linear_op(f, shapes[0][0])
    return op, (op.out_features,)


def linear_op(f: dict[str, Any], in_features: int) -> ir.Linear:
    """The Linear of a linear item reading `in_features` (flat, or each pixel's channels)."""
    return ir.Linear(
        in_features=in_features,
        out_features=check_channels(f["out"], "out"),
        bias=flag(f["bias"], "bias"),
        weight_init=init(f["init"]),
        bias_init=init(f["bias_init"]),
    )


@rule("batch_norm")
def _batch_norm(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    if len(shapes[0]) not in (1, 3):
        raise OpError(
            None, f"batch_norm needs (C, H, W) or (features,), got {fmt_shape(shapes[0])}"
        )
    op = ir.BatchNorm(
        num_features=shapes[0][0],
        eps=number(f["eps"], "eps", low=0, low_open=True),
        momentum=number(f["momentum"], "momentum", low=0, high=1),
        affine=flag(f["affine"], "affine"),
    )
    return op, shapes[0]


def _simple(name: str, make: Callable[[dict[str, Any]], ir.Op]) -> None:
    rule(name)(lambda f, shapes: (make(f), shapes[0]))


_simple("relu", lambda f: ir.ReLU())
_simple("leaky_relu", lambda f: ir.LeakyReLU(negative_slope=number(f["slope"], "slope")))
_simple("gelu", lambda f: ir.GELU(approximate=f["approximate"]))
_simple("sigmoid", lambda f: ir.Sigmoid())
_simple("tanh", lambda f: ir.Tanh())
_simple("softmax", lambda f: ir.Softmax())
_simple("dropout", lambda f: ir.Dropout(rate=number(f["rate"], "rate", low=0, high=1)))


def _pool(f: dict[str, Any], shapes: list[Shape], what: str) -> tuple[dict[str, Any], Shape]:
    c, h, w = spatial(shapes[0], what)
    k = pair(f["kernel"], "kernel")
    s = k if f["stride"] is None else pair(f["stride"], "stride")
    pad = padding(f["padding"], "padding", k, s, (1, 1), (h, w))
    if not pad.same and (
        max(pad.top, pad.bottom) > k[0] // 2 or max(pad.left, pad.right) > k[1] // 2
    ):
        raise OpError(
            "padding",
            f"pool padding must be at most half the kernel {k}, got "
            f"[{pad.top}, {pad.bottom}, {pad.left}, {pad.right}]",
        )
    ceil = flag(f["ceil_mode"], "ceil_mode")
    if ceil and (pad.same or not pad.symmetric):
        raise OpError(
            "ceil_mode",
            "ceil_mode needs symmetric explicit padding: with 'same' or per-side padding the "
            "window count is ambiguous across frameworks",
        )
    oh = window_out(h, k[0], s[0], 1, pad.top, pad.bottom, ceil, "height")
    ow = window_out(w, k[1], s[1], 1, pad.left, pad.right, ceil, "width")
    return {"kernel_size": k, "stride": s, "padding": pad, "ceil_mode": ceil}, (c, oh, ow)


@rule("max_pool")
def _max_pool(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    fields, shape = _pool(f, shapes, "max_pool")
    return ir.MaxPool2d(**fields), shape


@rule("avg_pool")
def _avg_pool(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    fields, shape = _pool(f, shapes, "avg_pool")
    # Unset: TensorFlow's 'same' averages over real pixels only; explicit pads count (PyTorch).
    include = f["count_include_pad"]
    if include is None:
        include = not fields["padding"].same
    include = flag(include, "count_include_pad")
    if include and fields["padding"].same:
        raise OpError(
            "count_include_pad",
            "padding 'same' follows TensorFlow, which never counts the padding; "
            "use explicit padding to count it",
        )
    return ir.AvgPool2d(**fields, count_include_pad=include), shape


def _global(kind: type[ir.GlobalAvgPool] | type[ir.GlobalMaxPool]) -> Rule:
    def run(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
        c, _, _ = spatial(shapes[0], "global pooling")
        keep = flag(f["keepdims"], "keepdims")
        return kind(keepdims=keep), ((c, 1, 1) if keep else (c,))

    return run


rule("global_avg_pool")(_global(ir.GlobalAvgPool))
rule("global_max_pool")(_global(ir.GlobalMaxPool))


@rule("adaptive_avg_pool")
def _adaptive(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    c, _, _ = spatial(shapes[0], "adaptive_avg_pool")
    size = pair(f["size"], "size")
    return ir.AdaptiveAvgPool2d(output_size=size), (c, *size)


@rule("flatten")
def _flatten(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    return ir.Flatten(), (math.prod(shapes[0]),)


@rule("pad")
def _pad(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    c, h, w = spatial(shapes[0], "pad")
    if f["padding"] == "same":
        raise OpError(
            "padding", "pad needs explicit sides; 'same' only makes sense on conv and pool"
        )
    pad = padding(f["padding"], "padding", (1, 1), (1, 1), (1, 1), (h, w))
    return (
        ir.Pad2d(padding=pad, value=number(f["value"], "value")),
        (c, h + pad.top + pad.bottom, w + pad.left + pad.right),
    )


@rule("add", arity=(2, None))
def _add(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    return ir.Add(), shapes[0]


@rule("concat", arity=(2, None))
def _concat(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    return ir.Concat(), (sum(s[0] for s in shapes), *shapes[0][1:])


# ---------------------------------------------------------------------------- spec language v2

_simple("relu6", lambda f: ir.Clip(min_val=0.0, max_val=6.0))
_simple("hardswish", lambda f: ir.Hardswish())
_simple("hardsigmoid", lambda f: ir.Hardsigmoid())
_simple("silu", lambda f: ir.SiLU())


@rule("clip")
def _clip(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    low, high = number(f["min"], "min"), number(f["max"], "max")
    if high <= low:
        raise OpError("max", f"max must be greater than min ({low}), got {high}")
    return ir.Clip(min_val=low, max_val=high), shapes[0]


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """The shape of `a * b`: equal rank and channels, H and W equal or 1 (numpy's rule
    over the spatial axes); None when they do not broadcast."""
    if len(a) != len(b) or a[0] != b[0]:
        return None
    if any(x != y and 1 not in (x, y) for x, y in zip(a[1:], b[1:], strict=True)):
        return None
    return (a[0], *(max(x, y) for x, y in zip(a[1:], b[1:], strict=True)))


@rule("mul", arity=(2, 2))
def _mul(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    shape = broadcast(shapes[0], shapes[1])
    assert shape is not None  # the lowering checks the operands first, naming them
    return ir.Mul(), shape


@rule("stochastic_depth")
def _stochastic_depth(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    rate = number(f["rate"], "rate", low=0, high=1)
    if rate == 1:
        raise OpError("rate", "rate 1 drops every sample in training; use a rate below 1")
    return ir.StochasticDepth(rate=rate, mode=f["mode"]), shapes[0]


@rule("channel_shuffle")
def _channel_shuffle(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    c, _, _ = spatial(shapes[0], "channel_shuffle")
    groups = f["groups"]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
        raise OpError("groups", f"expected a positive int, got {groups!r}")
    if c % groups:
        raise OpError("groups", f"groups={groups} must divide the {c} input channels")
    return ir.ChannelShuffle(groups=groups), shapes[0]


@rule("layer_norm")
def _layer_norm(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    if len(shapes[0]) not in (1, 3):
        raise OpError(
            None, f"layer_norm needs (C, H, W) or (features,), got {fmt_shape(shapes[0])}"
        )
    return layer_norm_op(f, shapes[0][0]), shapes[0]


def layer_norm_op(f: dict[str, Any], num_features: int) -> ir.LayerNorm:
    """The LayerNorm of a layer_norm item over `num_features` channels or features."""
    return ir.LayerNorm(
        num_features=num_features,
        eps=number(f["eps"], "eps", low=0, low_open=True),
        affine=flag(f["affine"], "affine"),
    )


@rule("scale")
def _scale(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    if len(shapes[0]) not in (1, 3):
        raise OpError(None, f"scale needs (C, H, W) or (features,), got {fmt_shape(shapes[0])}")
    op = ir.Scale(
        num_features=shapes[0][0],
        init_value=number(f["init_value"], "init_value"),
        rank=len(shapes[0]),
    )
    return op, shapes[0]


def channel_axis(shapes: list[Shape], what: str) -> int:
    """The channels of a (C, H, W) or (F,) input, for the ops that cut them."""
    if len(shapes[0]) not in (1, 3):
        raise OpError(None, f"{what} needs (C, H, W) or (features,), got {fmt_shape(shapes[0])}")
    return shapes[0][0]


def equal_parts(chunks: Any, c: int, least: int = 1) -> int:
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < least:
        want = "a positive int" if least == 1 else f"an int >= {least}"
        raise OpError("chunks", f"expected {want}, got {chunks!r}")
    if c % chunks:
        raise OpError("chunks", f"chunks={chunks} must divide the {c} input channels")
    return chunks


@rule("chunk")
def _chunk(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    c = channel_axis(shapes, "chunk")
    chunks, index = equal_parts(f["chunks"], c), f["index"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < chunks:
        raise OpError("index", f"expected an int from 0 to {chunks - 1}, got {index!r}")
    return ir.Chunk(chunks=chunks, index=index), (c // chunks, *shapes[0][1:])


@rule("split")
def _split(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    """The split node keeps its input's shape; lowering adds one Part node per part."""
    c = channel_axis(shapes, "split")
    chunks, sizes = f["chunks"], f["sizes"]
    if (chunks is None) == (sizes is None):
        raise OpError(
            None,
            "split needs either 'chunks' (equal parts) or 'sizes' (channels per part)"
            + (", not both" if chunks is not None else ""),
        )
    if chunks is not None:
        return ir.Split(chunks=equal_parts(chunks, c, least=2)), shapes[0]
    if not isinstance(sizes, list) or len(sizes) < 2:
        raise OpError("sizes", f"expected a list of 2 or more channel counts, got {sizes!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise OpError("sizes", f"expected positive ints, got {size!r} in {sizes}")
    if sum(sizes) != c:
        raise OpError("sizes", f"sizes {sizes} sum to {sum(sizes)}, but the input has {c} channels")
    return ir.Split(sizes=tuple(sizes)), shapes[0]


# ---------------------------------------------------------------------------- channels-last
#
# ConvNeXt's block permutes to channels-last, applies LayerNorm and Linear to each pixel's
# channels, and permutes back. Between a channels_last and a channels_first item the IR's
# shapes are (H, W, C) (`Node.layout`); only the ops below accept such an input. The
# lowering refuses every other op there, naming the input and the way back.


@rule("channels_last")
def _channels_last(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    c, h, w = spatial(shapes[0], "channels_last")
    return ir.ChannelsLast(), (h, w, c)


@rule("channels_first")
def _channels_first(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    raise OpError(
        None,
        f"channels_first needs a channels-last (H, W, C) input (after channels_last), got the "
        f"channels-first {fmt_shape(shapes[0])}",
    )


def _last_linear(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    h, w, c = shapes[0]
    op = linear_op(f, c)
    return op, (h, w, op.out_features)


def _last_layer_norm(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    return layer_norm_op(f, shapes[0][-1]), shapes[0]


def _last_channels_first(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    h, w, c = shapes[0]
    return ir.ChannelsFirst(), (c, h, w)


def _last_channels_last(f: dict[str, Any], shapes: list[Shape]) -> tuple[ir.Op, Shape]:
    raise OpError(None, f"the input is channels-last already {fmt_shape(shapes[0])}")


# Rules for a channels-last (H, W, C) input: op -> its rule there. Elementwise ops keep
# their rule (the shape passes through); an op missing here is refused on such an input.
LAST_RULES: dict[str, Rule] = {
    **{
        name: RULES[name]
        for name in (
            "relu",
            "leaky_relu",
            "gelu",
            "sigmoid",
            "tanh",
            "relu6",
            "clip",
            "hardswish",
            "hardsigmoid",
            "silu",
            "dropout",
            "stochastic_depth",
            "add",
        )
    },
    "linear": _last_linear,
    "layer_norm": _last_layer_norm,
    "channels_first": _last_channels_first,
    "channels_last": _last_channels_last,
}


def canonical(shape: Shape, layout: ir.Layout) -> Shape:
    """The (C, H, W) form of a shape in `layout` (caps and messages read channels first)."""
    return (shape[-1], *shape[:-1]) if layout == "channels_last" else shape
