"""One printer per IR op kind: an op and the sources of its fields -> PyTorch source.

A printer returns the op's module form (`nn.Conv2d(64, 64, kernel_size=3, bias=False)`),
its functional form (`F.relu(x)`) or both; the emitter picks one by context (ops with
parameters are always modules, stateless ops are modules inside `nn.Sequential`). Field
values arrive as the module plan's `Arg`s (`archspec.codegen.plan`): Python source (a
literal, or a symbolic expression such as `planes * expansion` inside a block class) plus
the constant value when it is the same in every instance. Every IR kind has a printer
(tests check `PRINTERS` against `archspec.ir.OP_KINDS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from archspec import ir
from archspec.codegen.layout import Call, Code, Kw, flat
from archspec.codegen.plan import Args
from archspec.codegen.printers import PrinterTable


@dataclass(frozen=True)
class Printed:
    module: Code | None  # constructor source; None when the op has no module form
    call: Callable[[Sequence[str]], Code] | None  # functional form over input variables
    needs: frozenset[str] = field(default_factory=frozenset)  # helper snippets to emit
    # The same op as an in-place statement on its first input (`out += identity`), which the
    # emitter uses when that input is a fresh tensor nothing else reads (torchvision's style).
    inplace: Callable[[Sequence[str]], str] | None = None
    # An op whose member is a bare nn.Parameter (`module` builds it), used in forward as
    # `parameter(ref, inputs)`: torchvision keeps ConvNeXt's layer_scale on the block itself.
    parameter: Callable[[str, Sequence[str]], Code] | None = None


Printer = Callable[[ir.Op, Args], Printed]
PRINTERS: PrinterTable[Printer] = PrinterTable()
printer = PRINTERS.printer


def kw(a: Args, name: str, field: str, default: Any) -> list[Kw]:
    """`name=src`, left out when the field is the constant `default`."""
    return [Kw(name, a[field])] if a.differs(field, default) else []


def sides_src(sides: tuple[int, int, int, int]) -> str:
    """F.pad's order, (left, right, top, bottom), from the plan's (top, bottom, left, right)."""
    top, bottom, left, right = sides
    return f"({left}, {right}, {top}, {bottom})"


# ---------------------------------------------------------------------------- printers


@printer("input")
def _input(op: ir.Op, a: Args) -> Printed:
    return Printed(None, lambda xs: xs[0])


@printer("conv2d")
def _conv2d(op: ir.Op, a: Args) -> Printed:
    args: list[Code | Kw] = [
        a["in_channels"],
        a["out_channels"],
        Kw("kernel_size", a["kernel_size"]),
    ]
    args += kw(a, "stride", "stride", (1, 1))
    cls, needs = "nn.Conv2d", frozenset()
    if a.pad.kind == "symmetric":
        args.append(Kw("padding", a.pad.src))
    elif a.pad.kind in ("same", "sides"):
        cls, needs = "PaddedConv2d", frozenset({"padded_conv2d"})
    args += kw(a, "dilation", "dilation", (1, 1)) + kw(a, "groups", "groups", 1)
    args += kw(a, "bias", "bias", True)
    if a.pad.kind == "sides":
        args.append(Kw("pad", sides_src(a.pad.sides)))
    return Printed(Call(cls, tuple(args)), None, needs)


@printer("linear")
def _linear(op: ir.Op, a: Args) -> Printed:
    args: list[Code | Kw] = [a["in_features"], a["out_features"], *kw(a, "bias", "bias", True)]
    return Printed(Call("nn.Linear", tuple(args)), None)


@printer("batch_norm")
def _batch_norm(op: ir.Op, a: Args) -> Printed:
    cls = "nn.BatchNorm2d" if a.rank == 3 else "nn.BatchNorm1d"
    args: list[Code | Kw] = [a["num_features"], *kw(a, "eps", "eps", 1e-5)]
    args += kw(a, "momentum", "momentum", 0.1) + kw(a, "affine", "affine", True)
    return Printed(Call(cls, tuple(args)), None)


def _activation(module: str, functional: str, extra: tuple[str, ...] = ()) -> Printed:
    return Printed(Call(module, extra), lambda xs: Call(functional, (xs[0], *extra)))


def _inplace(functional: str, extra: tuple[str, ...] = ()) -> Callable[[Sequence[str]], str]:
    return lambda xs: f"{xs[0]} = {flat(Call(functional, (xs[0], *extra, 'inplace=True')))}"


@printer("relu")
def _relu(op: ir.Op, a: Args) -> Printed:
    return replace(_activation("nn.ReLU", "F.relu"), inplace=_inplace("F.relu"))


@printer("leaky_relu")
def _leaky_relu(op: ir.Op, a: Args) -> Printed:
    slope = (a["negative_slope"],)
    return replace(
        _activation("nn.LeakyReLU", "F.leaky_relu", slope), inplace=_inplace("F.leaky_relu", slope)
    )


@printer("gelu")
def _gelu(op: ir.Op, a: Args) -> Printed:
    assert isinstance(op, ir.GELU)
    return _activation("nn.GELU", "F.gelu", (f"approximate={op.approximate!r}".replace("'", '"'),))


@printer("sigmoid")
def _sigmoid(op: ir.Op, a: Args) -> Printed:
    return _activation("nn.Sigmoid", "torch.sigmoid")


@printer("tanh")
def _tanh(op: ir.Op, a: Args) -> Printed:
    return _activation("nn.Tanh", "torch.tanh")


@printer("softmax")
def _softmax(op: ir.Op, a: Args) -> Printed:
    return Printed(
        Call("nn.Softmax", (Kw("dim", "1"),)), lambda xs: Call("torch.softmax", (xs[0], "1"))
    )


def _pool(a: Args, module: str, padded: str, extra: list[Kw]) -> Printed:
    args: list[Code | Kw] = [a["kernel_size"], Kw("stride", a["stride"])]
    cls, needs = module, frozenset()
    if a.pad.kind == "symmetric":
        args.append(Kw("padding", a.pad.src))
    elif a.pad.kind in ("same", "sides"):
        cls, needs = padded, frozenset({padded})
    args += [*kw(a, "ceil_mode", "ceil_mode", False), *extra]  # PyTorch's defaults left out
    if a.pad.kind == "sides":
        args.append(Kw("pad", sides_src(a.pad.sides)))
    return Printed(Call(cls, tuple(args)), None, needs)


@printer("max_pool2d")
def _max_pool2d(op: ir.Op, a: Args) -> Printed:
    return _pool(a, "nn.MaxPool2d", "PaddedMaxPool2d", [])


@printer("avg_pool2d")
def _avg_pool2d(op: ir.Op, a: Args) -> Printed:
    # TensorFlow's 'same' average pooling divides by the number of real pixels.
    if a.pad.kind == "same" or op.padding.same:  # type: ignore[union-attr]
        include = [Kw("count_include_pad", "False")]
    else:
        include = kw(a, "count_include_pad", "count_include_pad", True)
    return _pool(a, "nn.AvgPool2d", "PaddedAvgPool2d", include)


def _global(op: ir.Op, module: str, functional: str) -> Printed:
    keep = op.keepdims  # type: ignore[union-attr]
    if keep:
        return Printed(Call(module, ("1",)), lambda xs: Call(functional, (xs[0], "1")))
    return Printed(
        Call("nn.Sequential", (Call(module, ("1",)), Call("nn.Flatten"))),
        lambda xs: Call(f"{flat(Call(functional, (xs[0], '1')))}.flatten", ("1",)),
    )


@printer("global_avg_pool")
def _global_avg_pool(op: ir.Op, a: Args) -> Printed:
    return _global(op, "nn.AdaptiveAvgPool2d", "F.adaptive_avg_pool2d")


@printer("global_max_pool")
def _global_max_pool(op: ir.Op, a: Args) -> Printed:
    return _global(op, "nn.AdaptiveMaxPool2d", "F.adaptive_max_pool2d")


@printer("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(op: ir.Op, a: Args) -> Printed:
    size = a["output_size"]
    return Printed(
        Call("nn.AdaptiveAvgPool2d", (size,)),
        lambda xs: Call("F.adaptive_avg_pool2d", (xs[0], size)),
    )


@printer("flatten")
def _flatten(op: ir.Op, a: Args) -> Printed:
    return Printed(Call("nn.Flatten"), lambda xs: Call("torch.flatten", (xs[0], "1")))


@printer("dropout")
def _dropout(op: ir.Op, a: Args) -> Printed:
    return Printed(
        Call("nn.Dropout", (a["rate"],)),
        lambda xs: Call("F.dropout", (xs[0], a["rate"], "self.training")),
    )


@printer("add")
def _add(op: ir.Op, a: Args) -> Printed:
    return Printed(None, lambda xs: " + ".join(xs), inplace=lambda xs: f"{xs[0]} += {xs[1]}")


@printer("concat")
def _concat(op: ir.Op, a: Args) -> Printed:
    return Printed(None, lambda xs: Call("torch.cat", (Call("", tuple(xs), "[]"), "1")))


@printer("pad2d")
def _pad2d(op: ir.Op, a: Args) -> Printed:
    assert isinstance(op, ir.Pad2d)
    p = op.padding
    sides = (p.top, p.bottom, p.left, p.right)
    value = a["value"]
    if a.const("value") == 0.0:
        module = Call("nn.ZeroPad2d", (str(p.top) if len(set(sides)) == 1 else sides_src(sides),))
    else:
        module = Call("nn.ConstantPad2d", (sides_src(sides), value))
    return Printed(
        module,
        lambda xs: Call(
            "F.pad",
            (xs[0], sides_src(sides), *([Kw("value", value)] if a.const("value") != 0.0 else [])),
        ),
    )


# ---------------------------------------------------------------------------- spec language v2


@printer("clip")
def _clip(op: ir.Op, a: Args) -> Printed:
    if a.const("min_val") == 0.0 and a.const("max_val") == 6.0:
        return replace(_activation("nn.ReLU6", "F.relu6"), inplace=_inplace("F.relu6"))
    bounds = (a["min_val"], a["max_val"])
    return replace(
        _activation("nn.Hardtanh", "F.hardtanh", bounds), inplace=_inplace("F.hardtanh", bounds)
    )


@printer("hardswish")
def _hardswish(op: ir.Op, a: Args) -> Printed:
    return replace(_activation("nn.Hardswish", "F.hardswish"), inplace=_inplace("F.hardswish"))


@printer("hardsigmoid")
def _hardsigmoid(op: ir.Op, a: Args) -> Printed:
    return replace(
        _activation("nn.Hardsigmoid", "F.hardsigmoid"), inplace=_inplace("F.hardsigmoid")
    )


@printer("mul")
def _mul(op: ir.Op, a: Args) -> Printed:
    return Printed(None, lambda xs: " * ".join(xs))


@printer("stochastic_depth")
def _stochastic_depth(op: ir.Op, a: Args) -> Printed:
    assert isinstance(op, ir.StochasticDepth)  # torchvision.ops.StochasticDepth's arguments
    module = Call("StochasticDepth", (a["rate"], f'"{op.mode}"'))
    return Printed(module, None, frozenset({"StochasticDepth"}))


@printer("channel_shuffle")
def _channel_shuffle(op: ir.Op, a: Args) -> Printed:
    # ShuffleNetV2's view / transpose / flatten, as one torch op
    groups = a["groups"]
    return Printed(
        Call("nn.ChannelShuffle", (groups,)),
        lambda xs: Call("F.channel_shuffle", (xs[0], groups)),
    )


@printer("layer_norm")
def _layer_norm(op: ir.Op, a: Args) -> Printed:
    # over channels: torchvision's LayerNorm2d on (N, C, H, W), nn.LayerNorm on (N, F) and
    # on a channels-last (N, H, W, C) (the last axis)
    two_d = a.rank == 3 and a.layout == "channels_first"
    cls, needs = ("LayerNorm2d", {"LayerNorm2d"}) if two_d else ("nn.LayerNorm", set())
    args: list[Code | Kw] = [a["num_features"], *kw(a, "eps", "eps", 1e-5)]
    args += kw(a, "elementwise_affine", "affine", True)
    return Printed(Call(cls, tuple(args)), None, frozenset(needs))


@printer("scale")
def _scale(op: ir.Op, a: Args) -> Printed:
    assert isinstance(op, ir.Scale)
    shape = f"({a['num_features']}, 1, 1)" if op.rank == 3 else f"({a['num_features']},)"
    weight = Call("nn.Parameter", (Call("torch.full", (shape, a["init_value"])),))
    return Printed(weight, None, parameter=lambda ref, xs: f"{ref} * {xs[0]}")


@printer("chunk")
def _chunk(op: ir.Op, a: Args) -> Printed:
    chunks, index = a["chunks"], a["index"]
    return Printed(
        Call("ChannelChunk", (chunks, index)),  # inside an nn.Sequential only
        lambda xs: f"{xs[0]}.chunk({chunks}, dim=1)[{index}]",
        frozenset({"ChannelChunk"}),
    )


@printer("split")
def _split(op: ir.Op, a: Args) -> Printed:
    # torchvision's ShuffleNetV2: `x1, x2 = x.chunk(2, dim=1)`; unequal parts as torch.split.
    # The module form, for a size that varies between a block's instances, returns a list.
    if a.const("sizes") is None:
        chunks = a["chunks"]
        return Printed(
            Call("ChannelSplit", (Kw("chunks", chunks),)),
            lambda xs: f"{xs[0]}.chunk({chunks}, dim=1)",
            frozenset({"ChannelSplit"}),
        )
    text = a.list_src("sizes")
    return Printed(
        Call("ChannelSplit", (Kw("sizes", text),)),
        lambda xs: f"{xs[0]}.split({text}, dim=1)",
        frozenset({"ChannelSplit"}),
    )


def _permute(dims: tuple[int, ...]) -> Printed:
    text = ", ".join(map(str, dims))
    return Printed(
        Call("Permute", (f"[{text}]",)),  # torchvision.ops.Permute, as ConvNeXt writes it
        lambda xs: f"{xs[0]}.permute({text})",
        frozenset({"Permute"}),
    )


@printer("channels_last")
def _channels_last(op: ir.Op, a: Args) -> Printed:
    return _permute((0, 2, 3, 1))


@printer("channels_first")
def _channels_first(op: ir.Op, a: Args) -> Printed:
    return _permute((0, 3, 1, 2))


@printer("silu")
def _silu(op: ir.Op, a: Args) -> Printed:
    return replace(_activation("nn.SiLU", "F.silu"), inplace=_inplace("F.silu"))


# ---------------------------------------------------------------------------- initializers


def init_call(init: ir.Init, target: str) -> tuple[str | None, frozenset[str]]:
    """The statement initializing `target` (None for torch's default) and helpers it needs."""
    kind = init.kind
    if kind == "torch_default":
        return None, frozenset()
    if kind == "constant":
        if init.value in (0.0, 1.0):
            return f"nn.init.{'zeros_' if init.value == 0.0 else 'ones_'}({target})", frozenset()
        return f"nn.init.constant_({target}, {init.value!r})", frozenset()
    if kind == "normal":
        return f"nn.init.normal_({target}, {init.mean!r}, {init.std!r})", frozenset()
    if kind == "truncated_normal":  # Keras truncates at two standard deviations
        low, high = init.mean - 2 * init.std, init.mean + 2 * init.std
        return (
            f"nn.init.trunc_normal_({target}, {init.mean!r}, {init.std!r}, {low!r}, {high!r})",
            frozenset(),
        )
    if kind == "uniform":
        return f"nn.init.uniform_({target}, {init.low!r}, {init.high!r})", frozenset()
    dist, mode, scale = init.distribution, init.mode, init.scale
    if mode in ("fan_in", "fan_out") and dist in ("normal", "uniform") and scale in (1.0, 2.0):
        gain = "relu" if scale == 2.0 else "linear"
        return (
            f'nn.init.kaiming_{dist}_({target}, mode="{mode}", nonlinearity="{gain}")',
            frozenset(),
        )
    if mode == "fan_avg" and dist in ("normal", "uniform") and scale == 1.0:
        return f"nn.init.xavier_{dist}_({target})", frozenset()
    return (
        f'variance_scaling_({target}, {scale!r}, "{mode}", "{dist}")',
        frozenset({"variance_scaling"}),
    )
