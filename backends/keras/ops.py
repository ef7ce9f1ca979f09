"""One printer per IR op kind: an op and its field sources -> Keras 3 layers, channels-last.

A printer gets the op, its `Args` (from the module plan) and the source of the layer's
name (`"conv1"` or `f"{name}_conv1"`), and returns the layers to apply in order (an
explicit `ZeroPadding2D` before a `valid` conv, `Permute` before `Flatten`), or, for
ops with several inputs, one merge layer. Values equal to Keras's defaults are left out;
the semantic contract's translations (padding, momentum, -inf max-pool padding, C,H,W
flatten order, PyTorch's pooling divisors and bins) are made here. Layers Keras lacks
come from `archspec_keras.runtime` (copied into the generated file): `needs` names them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from archspec import ir
from archspec.backend import BackendError
from archspec.codegen.layout import Call, Code, Kw, literal, pair_src
from archspec.codegen.plan import VARIES, Args, PadPlan
from archspec.codegen.printers import PrinterTable


class KerasEmitError(BackendError):
    """The spec uses something the Keras emitter cannot express (the message says what)."""


@dataclass(frozen=True)
class Layers:
    """What an op becomes: layers applied in order (`chain`), or one layer over a list
    of inputs (`merge`); `needs` are runtime helpers it uses, `note` a comment."""

    chain: tuple[Code, ...] = ()
    merge: Code | None = None
    needs: frozenset[str] = field(default_factory=frozenset)
    note: str | None = None


Printer = Callable[[ir.Op, Args, str], Layers]
PRINTERS: PrinterTable[Printer] = PrinterTable()
printer = PRINTERS.printer


def suffixed(name: str, suffix: str) -> str:
    """The source of a layer name with `suffix` appended (`"conv1"` -> `"conv1_pad"`)."""
    return f"{name[:-1]}{suffix}{name[-1]}"


def named(func: str, *args: Code | Kw, name: str) -> Call:
    return Call(func, (*args, Kw("name", name)))


def kw(a: Args, keras_name: str, field: str, default: object) -> list[Kw]:
    return [Kw(keras_name, a[field])] if a.differs(field, default) else []


def sides_src(sides: tuple[int, int, int, int]) -> str:
    """ZeroPadding2D's ((top, bottom), (left, right)), shortened when symmetric."""
    top, bottom, left, right = sides
    if top == bottom == left == right:
        return str(top)
    if top == bottom and left == right:
        return f"({top}, {left})"
    return f"(({top}, {bottom}), ({left}, {right}))"


def keras_same(
    pad: PadPlan, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> bool:
    """Whether Keras's `padding="same"` gives these sides for every input size: stride 1
    and sides (t // 2, t - t // 2) for t = (kernel - 1) * dilation on each axis."""
    if pad.kind not in ("symmetric", "sides") or pad.expr is not None or stride != (1, 1):
        return False
    totals = [(k - 1) * d for k, d in zip(kernel, dilation, strict=True)]
    want = tuple(p for t in totals for p in (t // 2, t - t // 2))
    return pad.sides == want


def explicit_sides(pad: PadPlan) -> str:
    """A fixed or symbolic symmetric padding as a Keras padding argument."""
    if pad.kind == "symmetric" and pad.expr is not None:
        return pad.src
    return sides_src(pad.sides)


def pool_sides(pad: PadPlan) -> str:
    """((top, bottom), (left, right)) in full, for the runtime pooling layers."""
    if pad.kind == "symmetric" and pad.expr is not None:
        return f"(({pad.src}, {pad.src}), ({pad.src}, {pad.src}))"
    top, bottom, left, right = pad.sides
    return f"(({top}, {bottom}), ({left}, {right}))"


def initializer(init: ir.Init, fan_in: str | None, default: str) -> Code | None:
    """A Keras initializer for an IR one; None when it is Keras's `default`."""
    kind = init.kind
    text: Code | None = None
    if kind == "torch_default":
        if fan_in is None:  # kaiming_uniform(a=sqrt(5)): uniform in +-1/sqrt(fan_in)
            return Call("keras.initializers.VarianceScaling", ("1 / 3", '"fan_in"', '"uniform"'))
        return Call("FanInUniform", (fan_in,))
    if kind == "constant":
        text = {0.0: '"zeros"', 1.0: '"ones"'}.get(init.value)
        text = text or Call("keras.initializers.Constant", (repr(init.value),))
    elif kind == "normal":
        text = Call("keras.initializers.RandomNormal", (repr(init.mean), repr(init.std)))
    elif kind == "truncated_normal":
        text = Call("keras.initializers.TruncatedNormal", (repr(init.mean), repr(init.std)))
    elif kind == "uniform":
        text = Call("keras.initializers.RandomUniform", (repr(init.low), repr(init.high)))
    else:
        text = VARIANCE_NAMES.get((init.scale, init.mode, init.distribution))
        # the IR's "normal" is untruncated; Keras's "normal" would mean truncated
        dist = "untruncated_normal" if init.distribution == "normal" else init.distribution
        args = (repr(init.scale), f'"{init.mode}"', f'"{dist}"')
        text = text or Call("keras.initializers.VarianceScaling", args)
    return None if text == default else text


VARIANCE_NAMES = {
    (2.0, "fan_in", "truncated_normal"): '"he_normal"',
    (2.0, "fan_in", "uniform"): '"he_uniform"',
    (1.0, "fan_avg", "uniform"): '"glorot_uniform"',
    (1.0, "fan_avg", "truncated_normal"): '"glorot_normal"',
    (1.0, "fan_in", "truncated_normal"): '"lecun_normal"',
    (1.0, "fan_in", "uniform"): '"lecun_uniform"',
}


def init_kws(op: ir.Conv2d | ir.Linear, fan_in: str) -> tuple[list[Kw], frozenset[str]]:
    out: list[Kw] = []
    weight = initializer(op.weight_init, None, '"glorot_uniform"')
    if weight is not None:
        out.append(Kw("kernel_initializer", weight))
    bias = initializer(op.bias_init, fan_in, '"zeros"') if op.bias else None
    if bias is not None:
        out.append(Kw("bias_initializer", bias))
    fan_in_uniform = isinstance(bias, Call) and bias.func == "FanInUniform"
    needs = frozenset({"FanInUniform"}) if fan_in_uniform else frozenset()
    return out, needs


def fan_in_src(a: Args, op: ir.Conv2d) -> str:
    per_pixel = op.kernel_size[0] * op.kernel_size[1]
    chans = a["in_channels"]
    if a.const("in_channels") is not VARIES and a.const("groups") is not VARIES:
        return str(a.const("in_channels") // a.const("groups") * per_pixel)
    if a["groups"] == chans:  # depthwise: one input channel per group
        return str(per_pixel)
    groups = "" if a.const("groups") == 1 else f" // {a['groups']}"
    if per_pixel == 1 and not groups:
        return chans
    chans = chans if chans.isidentifier() else f"({chans})"
    return f"{chans}{groups} * {per_pixel}"


# ---------------------------------------------------------------------------- printers


@printer("input")
def _input(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers()


@printer("conv2d")
def _conv2d(op: ir.Op, a: Args, name: str) -> Layers:
    assert isinstance(op, ir.Conv2d)
    pad, chain, note = a.pad, [], None
    args: list[Code | Kw] = [
        a["out_channels"],
        a["kernel_size"],
        *kw(a, "strides", "stride", (1, 1)),
    ]
    tf_same = pad.kind == "same" or (pad.tf_same and pad.kind != "none")
    geometry = [a.const(f) for f in ("kernel_size", "stride", "dilation")]  # VARIES if symbolic
    if tf_same or (VARIES not in geometry and keras_same(pad, *geometry)):
        args.append(Kw("padding", '"same"'))
    elif pad.kind != "none":
        chain.append(
            named("layers.ZeroPadding2D", explicit_sides(pad), name=suffixed(name, "_pad"))
        )
        if a.const("stride") != (1, 1):
            note = "torch-style padding: Keras's 'same' would put the extra pixel bottom/right"
    args += kw(a, "dilation_rate", "dilation", (1, 1)) + kw(a, "groups", "groups", 1)
    args += kw(a, "use_bias", "bias", True)
    inits, needs = init_kws(op, fan_in_src(a, op))
    layer = "layers.Conv2D"
    if a.const("stride") != (1, 1) and a.const("dilation") != (1, 1):  # Conv2D refuses both
        if any(isinstance(k, Kw) and k.name == "padding" for k in args):
            raise KerasEmitError("a conv both strided and dilated needs explicit padding in Keras")
        layer, needs = "StridedDilatedConv2D", needs | {"StridedDilatedConv2D"}
        args = [args[0], args[1], Kw("strides", a["stride"]), Kw("dilation_rate", a["dilation"])]
        args += kw(a, "groups", "groups", 1) + kw(a, "use_bias", "bias", True)
    chain.append(named(layer, *args, *inits, name=name))
    return Layers(tuple(chain), needs=needs, note=note)


@printer("linear")
def _linear(op: ir.Op, a: Args, name: str) -> Layers:
    assert isinstance(op, ir.Linear)
    args: list[Code | Kw] = [a["out_features"], *kw(a, "use_bias", "bias", True)]
    inits, needs = init_kws(op, a["in_features"])
    return Layers((named("layers.Dense", *args, *inits, name=name),), needs=needs)


@printer("batch_norm")
def _batch_norm(op: ir.Op, a: Args, name: str) -> Layers:
    assert isinstance(op, ir.BatchNorm)
    args: list[Code | Kw] = []
    if a.differs("eps", 1e-3):
        args.append(Kw("epsilon", a["eps"]))
    momentum = a.const("momentum")
    if momentum is VARIES:
        args.append(Kw("momentum", f"1 - {a['momentum']}"))
    elif momentum != 0.01:
        args.append(Kw("momentum", literal(round(1 - momentum, 12))))
    if a.differs("affine", True):
        args += [Kw("center", a["affine"]), Kw("scale", a["affine"])]
    # PyTorch's training update (unbiased running variance), else BatchNormalization itself
    layer = named("TorchBatchNormalization", *args, name=name)
    return Layers((layer,), needs=frozenset({"TorchBatchNormalization"}))


@printer("relu")
def _relu(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.ReLU", name=name),))


@printer("leaky_relu")
def _leaky_relu(op: ir.Op, a: Args, name: str) -> Layers:
    slope = Kw("negative_slope", a["negative_slope"])  # always explicit: 0.3 vs 0.01
    return Layers((named("layers.LeakyReLU", slope, name=name),))


@printer("gelu")
def _gelu(op: ir.Op, a: Args, name: str) -> Layers:
    assert isinstance(op, ir.GELU)
    if op.approximate == "none":  # keras.activations.gelu is exact by default
        return Layers((named("layers.Activation", '"gelu"', name=name),))
    return Layers((named("GELU", Kw("approximate", "True"), name=name),), needs=frozenset({"GELU"}))


@printer("sigmoid")
def _sigmoid(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.Activation", '"sigmoid"', name=name),))


@printer("tanh")
def _tanh(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.Activation", '"tanh"', name=name),))


@printer("softmax")
def _softmax(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.Softmax", name=name),))  # axis -1: the channels


@printer("max_pool2d")
def _max_pool2d(op: ir.Op, a: Args, name: str) -> Layers:
    assert isinstance(op, ir.MaxPool2d)
    pad = a.pad
    window = [a["kernel_size"], *kw(a, "strides", "stride", op.kernel_size)]
    if pad.tf_same or pad.kind == "same":  # TensorFlow's rule: padding never wins
        return Layers((named("layers.MaxPooling2D", *window, Kw("padding", '"same"'), name=name),))
    if pad.kind == "none" and a.const("ceil_mode") is False:
        return Layers((named("layers.MaxPooling2D", *window, name=name),))
    args: list[Code | Kw] = [a["kernel_size"], a["stride"], pool_sides(pad)]
    args += kw(a, "ceil_mode", "ceil_mode", False)
    return Layers(
        (named("PaddedMaxPooling2D", *args, name=name),), needs=frozenset({"PaddedMaxPooling2D"})
    )


@printer("avg_pool2d")
def _avg_pool2d(op: ir.Op, a: Args, name: str) -> Layers:
    assert isinstance(op, ir.AvgPool2d)
    pad = a.pad
    plain = pad.kind == "none" and not pad.tf_same and a.const("ceil_mode") is False
    if plain:
        window = [a["kernel_size"], *kw(a, "strides", "stride", op.kernel_size)]
        return Layers((named("layers.AveragePooling2D", *window, name=name),))
    # PyTorch's divisors (count_include_pad, ceil_mode) and TensorFlow's 'same' on every
    # Keras backend: a runtime layer
    if pad.tf_same and pad.kind in ("none", "symmetric"):  # static sides: Keras is exact
        window = [a["kernel_size"], *kw(a, "strides", "stride", op.kernel_size)]
        same = [Kw("padding", '"same"')] if pad.kind == "symmetric" else []
        return Layers((named("layers.AveragePooling2D", *window, *same, name=name),))
    if pad.tf_same:
        args: list[Code | Kw] = [a["kernel_size"], a["stride"], '"same"']
        args.append(Kw("count_include_pad", "False"))
    else:
        args = [a["kernel_size"], a["stride"], pool_sides(pad)]
        args += kw(a, "ceil_mode", "ceil_mode", False)
        args += kw(a, "count_include_pad", "count_include_pad", True)
    layer = named("PaddedAveragePooling2D", *args, name=name)
    return Layers((layer,), needs=frozenset({"PaddedAveragePooling2D"}))


@printer("global_avg_pool")
def _global_avg_pool(op: ir.Op, a: Args, name: str) -> Layers:
    keep = [Kw("keepdims", "True")] if op.keepdims else []  # type: ignore[union-attr]
    return Layers((named("layers.GlobalAveragePooling2D", *keep, name=name),))


@printer("global_max_pool")
def _global_max_pool(op: ir.Op, a: Args, name: str) -> Layers:
    keep = [Kw("keepdims", "True")] if op.keepdims else []  # type: ignore[union-attr]
    return Layers((named("layers.GlobalMaxPooling2D", *keep, name=name),))


@printer("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(op: ir.Op, a: Args, name: str) -> Layers:
    layer = named("TorchAdaptiveAveragePooling2D", a["output_size"], name=name)
    return Layers((layer,), needs=frozenset({"TorchAdaptiveAveragePooling2D"}))


@printer("flatten")
def _flatten(op: ir.Op, a: Args, name: str) -> Layers:
    # the IR flattens C, H, W: move channels first (a no-op for 1x1 maps)
    permute = named("layers.Permute", "(3, 1, 2)", name=suffixed(name, "_chw"))
    chain = (
        (permute, named("layers.Flatten", name=name))
        if a.rank == 3
        else (named("layers.Flatten", name=name),)
    )
    return Layers(chain)


@printer("dropout")
def _dropout(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.Dropout", a["rate"], name=name),))


@printer("add")
def _add(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers(merge=named("layers.Add", name=name))


@printer("concat")
def _concat(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers(merge=named("layers.Concatenate", name=name))  # axis -1: the channels


@printer("pad2d")
def _pad2d(op: ir.Op, a: Args, name: str) -> Layers:
    assert isinstance(op, ir.Pad2d)
    p = op.padding
    sides = (p.top, p.bottom, p.left, p.right)
    if a.const("value") == 0.0:
        return Layers((named("layers.ZeroPadding2D", sides_src(sides), name=name),))
    full = f"(({p.top}, {p.bottom}), ({p.left}, {p.right}))"
    layer = named("ConstantPadding2D", full, a["value"], name=name)
    return Layers((layer,), needs=frozenset({"ConstantPadding2D"}))


# ---------------------------------------------------------------------------- spec language v2


@printer("clip")
def _clip(op: ir.Op, a: Args, name: str) -> Layers:
    if a.const("min_val") == 0.0:  # relu6 and other clips at 0: ReLU's own max_value
        return Layers((named("layers.ReLU", Kw("max_value", a["max_val"]), name=name),))
    layer = named("Clip", a["min_val"], a["max_val"], name=name)
    return Layers((layer,), needs=frozenset({"Clip"}))


# Keras 3's hard_sigmoid is PyTorch's relu6(x + 3) / 6 (Keras 2's was 0.2 * x + 0.5), and
# hard_swish is x * hard_sigmoid(x): the contract's functions, by name.
@printer("hardswish")
def _hardswish(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.Activation", '"hard_swish"', name=name),))


@printer("hardsigmoid")
def _hardsigmoid(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.Activation", '"hard_sigmoid"', name=name),))


@printer("mul")
def _mul(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers(merge=named("layers.Multiply", name=name))  # broadcasts H and W of 1


@printer("stochastic_depth")
def _stochastic_depth(op: ir.Op, a: Args, name: str) -> Layers:
    # keras.applications' EfficientNet idiom: a Dropout whose noise is one value per
    # sample ("row") or per batch, kept values scaled by 1 / (1 - rate) as torchvision does
    assert isinstance(op, ir.StochasticDepth)
    ones = ", ".join(["1"] * a.rank)
    batch = "None" if op.mode == "row" else "1"
    noise = Kw("noise_shape", f"({batch}, {ones})")
    return Layers((named("layers.Dropout", a["rate"], noise, name=name),))


@printer("channel_shuffle")
def _channel_shuffle(op: ir.Op, a: Args, name: str) -> Layers:
    layer = named("ChannelShuffle", a["groups"], name=name)
    return Layers((layer,), needs=frozenset({"ChannelShuffle"}))


@printer("layer_norm")
def _layer_norm(op: ir.Op, a: Args, name: str) -> Layers:
    # channels-last: Keras's default axis -1 is the IR's channel axis at every rank
    args: list[Code | Kw] = [Kw("epsilon", a["eps"])] if a.differs("eps", 1e-3) else []
    if a.differs("affine", True):
        args += [Kw("center", a["affine"]), Kw("scale", a["affine"])]
    return Layers((named("layers.LayerNormalization", *args, name=name),))


@printer("scale")
def _scale(op: ir.Op, a: Args, name: str) -> Layers:
    args = [a["init_value"]] if a.differs("init_value", 1.0) else []
    return Layers((named("Scale", *args, name=name),), needs=frozenset({"Scale"}))


@printer("chunk")
def _chunk(op: ir.Op, a: Args, name: str) -> Layers:
    layer = named("ChannelChunk", a["chunks"], a["index"], name=name)
    return Layers((layer,), needs=frozenset({"ChannelChunk"}))


@printer("split")
def _split(op: ir.Op, a: Args, name: str) -> Layers:
    # one layer returning the parts as a list: `x1, x2 = ChannelSplit(2, name=...)(x)`
    size = [a["chunks"]] if a.const("sizes") is None else [Kw("sizes", a.list_src("sizes"))]
    layer = named("ChannelSplit", *size, name=name)
    return Layers((layer,), needs=frozenset({"ChannelSplit"}))


@printer("channels_last")
def _channels_last(op: ir.Op, a: Args, name: str) -> Layers:
    # Keras's tensors are channels-last already: Dense and LayerNormalization act on the
    # last axis, which is the IR's channel axis on both sides of the permute
    return Layers()


@printer("channels_first")
def _channels_first(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers()


@printer("silu")
def _silu(op: ir.Op, a: Args, name: str) -> Layers:
    return Layers((named("layers.Activation", '"silu"', name=name),))


__all__ = ["PRINTERS", "Layers", "pair_src"]
