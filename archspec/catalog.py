"""What each op is, in one line, and what other frameworks' names mean in archspec.

`archspec ops` prints OP_DOCS; the unknown-op error reads ALIASES first, so a name
from PyTorch or Keras is answered with the op that computes the same thing, or with
"not available yet", never with the nearest spelling (`relu6` is not `relu`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from archspec.errors import did_you_mean

OP_DOCS: dict[str, str] = {
    "conv": "2-d convolution, weights OIHW (out, in/groups, kh, kw); groups, dilation, TF 'same'",
    "linear": "fully connected layer on (features,) or each pixel of a channels-last map; "
    "weights [out, in]",
    "batch_norm": "batch normalization over channels; momentum is PyTorch's (new-batch weight)",
    "relu": "max(x, 0)",
    "leaky_relu": "x if x > 0 else slope * x (slope required: PyTorch 0.01, Keras 0.3)",
    "gelu": "x * Phi(x), exact (erf) or tanh approximation",
    "sigmoid": "1 / (1 + exp(-x))",
    "tanh": "hyperbolic tangent",
    "softmax": "softmax over the channel axis",
    "max_pool": "max pooling; padded positions never win",
    "avg_pool": "average pooling; count_include_pad says whether padding is counted",
    "global_avg_pool": "mean over H and W: (C, H, W) -> (C,) or (C, 1, 1)",
    "global_max_pool": "max over H and W: (C, H, W) -> (C,) or (C, 1, 1)",
    "adaptive_avg_pool": "PyTorch's adaptive average pooling to a fixed (h, w)",
    "flatten": "(C, H, W) -> (C*H*W,), in C, H, W order",
    "dropout": "zeroes elements with probability rate in training; identity at inference",
    "add": "elementwise sum of 2 or more inputs of equal shape (no broadcasting)",
    "concat": "concatenation of 2 or more inputs along channels",
    "pad": "constant padding of H and W (Keras ZeroPadding2D when value is 0)",
    "relu6": "min(max(x, 0), 6): a clip to [0, 6] (MobileNet's activation)",
    "clip": "min(max(x, min), max) (hardtanh with min -1, max 1)",
    "hardswish": "x * relu6(x + 3) / 6 (PyTorch's Hardswish)",
    "hardsigmoid": "relu6(x + 3) / 6 (PyTorch's; not old Keras's 0.2 * x + 0.5)",
    "silu": "x * sigmoid(x) (swish)",
    "stochastic_depth": "identity at inference; drops whole samples with probability rate in "
    "training (torchvision's row mode)",
    "channel_shuffle": "ShuffleNet's channel shuffle: (groups, C/groups) transposed, C order",
    "layer_norm": "layer normalization over the channels of each pixel (ConvNeXt's LayerNorm2d); "
    "also channels-last",
    "scale": "a learnable factor per channel, x * weight (ConvNeXt's layer scale)",
    "chunk": "part index of chunks equal channel parts (x.chunk(chunks, dim=1)[index])",
    "split": "the channels cut into parts at once, read as <item>.0, <item>.1, ... or by "
    "outputs: names (x1, x2 = x.chunk(2, dim=1); sizes: torch.split)",
    "channels_last": "(C, H, W) -> (H, W, C), for linear / layer_norm per pixel (permute 0,2,3,1)",
    "channels_first": "(H, W, C) -> (C, H, W): back from channels_last (permute 0, 3, 1, 2)",
    "mul": "elementwise product of 2 inputs; H and W broadcast ((C, 1, 1) gates (C, H, W))",
}


@dataclass(frozen=True)
class Alias:
    """A name from another framework: the archspec op computing the same, or None."""

    op: str | None
    note: str


_MISSING = "not available yet"


def _same(op: str, note: str = "") -> Alias:
    return Alias(op, note)


def _missing(note: str) -> Alias:
    return Alias(None, note)


# Keys are normalized by `_key` (lower case, no '_', '-' or spaces).
_ALIASES: dict[str, Alias] = {
    "hardtanh": _same("clip", "with min: -1, max: 1 (hardtanh's defaults)"),
    "clamp": _same("clip"),
    "swish": _same("silu"),
    "mish": _missing("mish is x * tanh(softplus(x))"),
    "elu": _missing("ELU is x if x > 0 else alpha * (exp(x) - 1); 'relu' is another function"),
    "selu": _missing("SELU is a scaled ELU; 'relu' is another function"),
    "prelu": _missing("PReLU learns its negative slope; 'leaky_relu' has a fixed slope"),
    "softplus": _missing("softplus is log(1 + exp(x))"),
    "logsoftmax": _missing("log-softmax"),
    "groupnorm": _missing("group normalization; 'batch_norm' normalizes over the batch"),
    "instancenorm": _missing("instance normalization; 'batch_norm' normalizes over the batch"),
    "localresponsenorm": _missing("local response normalization"),
    "lrn": _missing("local response normalization"),
    "convtranspose": _missing("transposed convolution ('conv' does not upsample)"),
    "conv2dtranspose": _missing("transposed convolution ('conv' does not upsample)"),
    "deconv": _missing("transposed convolution ('conv' does not upsample)"),
    "upsample": _missing("upsampling (nearest or bilinear resize)"),
    "upsampling2d": _missing("upsampling (nearest or bilinear resize)"),
    "interpolate": _missing("resizing (nearest or bilinear)"),
    "resize": _missing("resizing (nearest or bilinear)"),
    "multiply": _same("mul"),
    "droppath": _same("stochastic_depth"),
    "shuffle": _same("channel_shuffle"),
    "layerscale": _same("scale", "(init_value: 1.0e-6 for ConvNeXt)"),
    "permute": _same("channels_last", "(or channels_first: the two permutes ConvNeXt uses)"),
    "transpose": _same("channels_last", "(or channels_first: the two permutes ConvNeXt uses)"),
    "reshape": _missing("reshape: only 'flatten' (C, H, W order) exists"),
    "view": _missing("reshape: only 'flatten' (C, H, W order) exists"),
    "spatialdropout": _missing("channel dropout: 'dropout' drops single elements"),
    "dropout2d": _missing("channel dropout: 'dropout' drops single elements"),
    "depthwiseconv": _same("conv", "with groups: ${in_channels} (out a multiple of it)"),
    "depthwiseconv2d": _same("conv", "with groups: ${in_channels} (out a multiple of it)"),
    "separableconv": _same(
        "conv", "twice: a depthwise conv (groups: ${in_channels}) then a 1x1 conv"
    ),
    "separableconv2d": _same(
        "conv", "twice: a depthwise conv (groups: ${in_channels}) then a 1x1 conv"
    ),
    "conv2d": _same("conv"),
    "convolution": _same("conv"),
    "convolution2d": _same("conv"),
    "dense": _same("linear"),
    "fc": _same("linear"),
    "fullyconnected": _same("linear"),
    "batchnorm2d": _same("batch_norm", "(momentum is PyTorch's: Keras 0.99 is 0.01 here)"),
    "batchnormalization": _same("batch_norm", "(momentum is PyTorch's: Keras 0.99 is 0.01 here)"),
    "bn": _same("batch_norm"),
    "lrelu": _same("leaky_relu", "(slope is required)"),
    "maxpool2d": _same("max_pool"),
    "maxpooling2d": _same("max_pool"),
    "avgpool2d": _same("avg_pool"),
    "averagepooling2d": _same("avg_pool"),
    "averagepool": _same("avg_pool"),
    "globalaveragepooling2d": _same("global_avg_pool"),
    "globalavgpool2d": _same("global_avg_pool"),
    "gap": _same("global_avg_pool"),
    "globalmaxpooling2d": _same("global_max_pool"),
    "adaptiveavgpool2d": _same("adaptive_avg_pool"),
    "concatenate": _same("concat"),
    "cat": _same("concat"),
    "sum": _same("add"),
    "plus": _same("add"),
    "zeropadding2d": _same("pad"),
    "zeropad": _same("pad"),
    "pad2d": _same("pad"),
    "constantpad2d": _same("pad"),
    "activation": _missing("a generic activation: name the function as the op ('relu'...)"),
}


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c not in "_- ")


def alias(name: str, ops: Iterable[str]) -> Alias | None:
    """What another framework's op name `name` is among `ops`, if we know it. A name
    that differs from an op only in case, '_' or '-' is that op (`MaxPool` is `max_pool`),
    which also keeps the table honest once a missing op (`relu6`) is added."""
    key = _key(name)
    for op in ops:
        if _key(op) == key:
            return Alias(op, "")
    found = _ALIASES.get(key)
    if found is not None and found.op is not None and found.op not in set(ops):
        return None  # never point at an op that does not exist
    return found


def unknown_op_message(name: str, known: Iterable[str]) -> str:
    """The unknown-op error: a known alias answered exactly, else the nearest spelling;
    every op listed, and where to read what each does."""
    ops = sorted(known)
    listing = f" (ops: {', '.join(ops)}; `archspec ops` says what each computes)"
    found = alias(name, ops)
    if found is not None and found.op is not None:
        note = f" {found.note}" if found.note else ""
        return f"unknown op '{name}'; use op '{found.op}'{note}{listing}"
    if found is not None:
        return f"unknown op '{name}': {_MISSING} ({found.note}){listing}"
    return f"unknown op '{name}'{did_you_mean(name, ops)}{listing}"
