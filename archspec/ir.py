"""The Graph IR: typed, frozen ops joined by a discriminated union, in canonical NCHW.

Layout conventions every backend translates from (docs/design.md, "semantic contract"):
- activations are (N, C, H, W), or (N, F) after flatten/global pooling without keepdims;
  shapes stored on nodes omit the batch dimension; the one exception is a channels-last
  stretch, (N, H, W, C) from a `channels_last` op to a `channels_first` one (ConvNeXt's
  Permute), whose nodes say so (`Node.layout`) and whose shapes are (H, W, C);
- conv weights are OIHW (groups folded into I), dense weights are [out, in];
- flatten orders features C, H, W;
- BatchNorm `momentum` is the weight of the new batch statistic (PyTorch's convention;
  Keras momentum = 1 - momentum);
- `Padding` holds four explicit sides for THIS graph's input size; `same=True` records
  that the spec asked for TensorFlow's `same` rule, so emitters can reproduce it for
  every input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from archspec.errors import SpecWarning

Pair = tuple[PositiveInt, PositiveInt]
Shape = tuple[int, ...]
Layout = Literal["channels_first", "channels_last"]


class IRModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Padding(IRModel):
    top: NonNegativeInt = 0
    bottom: NonNegativeInt = 0
    left: NonNegativeInt = 0
    right: NonNegativeInt = 0
    same: bool = False

    @property
    def symmetric(self) -> bool:
        return self.top == self.bottom and self.left == self.right

    @property
    def is_zero(self) -> bool:
        return self.top == self.bottom == self.left == self.right == 0


class Init(IRModel):
    """Parameter initializer for training from scratch (parity uses WeightSet values).

    `variance_scaling` draws with variance scale / fan (Keras's VarianceScaling; `he_normal`
    is scale 2, fan_in, truncated normal). `torch_default` is what PyTorch's layers do
    when left alone (kaiming_uniform with a=sqrt(5), bias uniform in +-1/sqrt(fan_in)).
    """

    kind: Literal[
        "variance_scaling", "normal", "truncated_normal", "uniform", "constant", "torch_default"
    ]
    scale: float = 1.0
    mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in"
    distribution: Literal["normal", "truncated_normal", "uniform"] = "normal"
    mean: float = 0.0
    std: float = 1.0
    low: float = 0.0
    high: float = 1.0
    value: float = 0.0


class Input(IRModel):
    kind: Literal["input"] = "input"
    shape: tuple[PositiveInt, ...]


class Conv2d(IRModel):
    kind: Literal["conv2d"] = "conv2d"
    in_channels: PositiveInt
    out_channels: PositiveInt
    kernel_size: Pair
    stride: Pair = (1, 1)
    dilation: Pair = (1, 1)
    groups: PositiveInt = 1
    padding: Padding = Padding()
    bias: bool = True
    weight_init: Init = Init(kind="torch_default")
    bias_init: Init = Init(kind="torch_default")


class Linear(IRModel):
    kind: Literal["linear"] = "linear"
    in_features: PositiveInt
    out_features: PositiveInt
    bias: bool = True
    weight_init: Init = Init(kind="torch_default")
    bias_init: Init = Init(kind="torch_default")


class BatchNorm(IRModel):
    """BatchNorm over the channel axis; 2-d (C,H,W) or 1-d (F,) inputs, by node rank."""

    kind: Literal["batch_norm"] = "batch_norm"
    num_features: PositiveInt
    eps: float
    momentum: float
    affine: bool = True


class ReLU(IRModel):
    kind: Literal["relu"] = "relu"


class LeakyReLU(IRModel):
    kind: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float


class GELU(IRModel):
    kind: Literal["gelu"] = "gelu"
    approximate: Literal["none", "tanh"] = "none"


class Sigmoid(IRModel):
    kind: Literal["sigmoid"] = "sigmoid"


class Tanh(IRModel):
    kind: Literal["tanh"] = "tanh"


class Softmax(IRModel):
    kind: Literal["softmax"] = "softmax"
    axis: Literal[1] = 1


class MaxPool2d(IRModel):
    """Max pooling; padded positions are -inf (never win)."""

    kind: Literal["max_pool2d"] = "max_pool2d"
    kernel_size: Pair
    stride: Pair
    padding: Padding = Padding()
    ceil_mode: bool = False


class AvgPool2d(IRModel):
    """Average pooling. With `padding.same` the padding is never counted (TensorFlow's
    rule; lowering refuses count_include_pad there), otherwise `count_include_pad` says."""

    kind: Literal["avg_pool2d"] = "avg_pool2d"
    kernel_size: Pair
    stride: Pair
    padding: Padding = Padding()
    ceil_mode: bool = False
    count_include_pad: bool = True


class GlobalAvgPool(IRModel):
    kind: Literal["global_avg_pool"] = "global_avg_pool"
    keepdims: bool = False


class GlobalMaxPool(IRModel):
    kind: Literal["global_max_pool"] = "global_max_pool"
    keepdims: bool = False


class AdaptiveAvgPool2d(IRModel):
    """PyTorch's adaptive average pooling: bin i spans [floor(i*in/out), ceil((i+1)*in/out))."""

    kind: Literal["adaptive_avg_pool2d"] = "adaptive_avg_pool2d"
    output_size: Pair


class Flatten(IRModel):
    """Flatten all but the batch dimension, in canonical C, H, W order."""

    kind: Literal["flatten"] = "flatten"


class Dropout(IRModel):
    kind: Literal["dropout"] = "dropout"
    rate: float


class Add(IRModel):
    kind: Literal["add"] = "add"


class Concat(IRModel):
    kind: Literal["concat"] = "concat"
    axis: Literal[1] = 1


class Pad2d(IRModel):
    """Constant padding of H and W (Keras's ZeroPadding2D when value is 0)."""

    kind: Literal["pad2d"] = "pad2d"
    padding: Padding
    value: float = 0.0


# ---------------------------------------------------------------------------- spec language v2


class Clip(IRModel):
    """min(max(x, min_val), max_val): ReLU6 is Clip(0, 6), hardtanh Clip(-1, 1)."""

    kind: Literal["clip"] = "clip"
    min_val: float
    max_val: float


class Hardswish(IRModel):
    """x * relu6(x + 3) / 6 (PyTorch's Hardswish)."""

    kind: Literal["hardswish"] = "hardswish"


class Hardsigmoid(IRModel):
    """relu6(x + 3) / 6 (PyTorch's; not Keras 2's clip(0.2 * x + 0.5, 0, 1))."""

    kind: Literal["hardsigmoid"] = "hardsigmoid"


class SiLU(IRModel):
    """x * sigmoid(x) (swish)."""

    kind: Literal["silu"] = "silu"


class Mul(IRModel):
    """Elementwise product of two inputs of equal rank and channels; H and W broadcast
    numpy-style (a (C, 1, 1) gate scales a (C, H, W) map: squeeze-and-excitation)."""

    kind: Literal["mul"] = "mul"


class StochasticDepth(IRModel):
    """Identity at inference. In training (torchvision's stochastic_depth), each sample
    (`row`) or the whole batch (`batch`) is zeroed with probability `rate`, and what is
    kept is divided by 1 - rate."""

    kind: Literal["stochastic_depth"] = "stochastic_depth"
    rate: float
    mode: Literal["row", "batch"] = "row"


class ChannelShuffle(IRModel):
    """torchvision's ShuffleNetV2 channel_shuffle: view (groups, C / groups), transpose,
    flatten; output channel j * groups + i is input channel i * (C / groups) + j."""

    kind: Literal["channel_shuffle"] = "channel_shuffle"
    groups: PositiveInt


class LayerNorm(IRModel):
    """Layer normalization over the channel axis alone: for (C, H, W) each pixel's C values
    (ConvNeXt's LayerNorm2d: channels-last layer_norm), for (F,) the features. Biased
    variance, `eps` inside the square root, then weight and bias per channel (affine)."""

    kind: Literal["layer_norm"] = "layer_norm"
    num_features: PositiveInt
    eps: float
    affine: bool = True


class Scale(IRModel):
    """A learnable per-channel multiplier (ConvNeXt's layer scale): x * weight, the weight
    a parameter of its own, shaped to broadcast over the input in NCHW: (C, 1, 1) for a
    (C, H, W) input (`rank` 3, torchvision's `layer_scale`), (F,) for features (`rank` 1)."""

    kind: Literal["scale"] = "scale"
    num_features: PositiveInt
    init_value: float = 1.0
    rank: Literal[1, 3] = 3

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.num_features, 1, 1) if self.rank == 3 else (self.num_features,)


class ChannelsLast(IRModel):
    """(N, C, H, W) -> (N, H, W, C): torch's `x.permute(0, 2, 3, 1)` (torchvision's
    Permute([0, 2, 3, 1]) in ConvNeXt). Its output and what follows it are channels-last
    (`Node.layout`) until a ChannelsFirst: there linear and layer_norm act on the channels
    (the last axis) of every pixel, elementwise ops keep the layout, nothing else applies."""

    kind: Literal["channels_last"] = "channels_last"


class ChannelsFirst(IRModel):
    """(N, H, W, C) -> (N, C, H, W), the inverse of ChannelsLast: `x.permute(0, 3, 1, 2)`."""

    kind: Literal["channels_first"] = "channels_first"


class Chunk(IRModel):
    """Part `index` of `chunks` equal parts of the channels (torch's `x.chunk(chunks, 1)`,
    ShuffleNetV2's split): channels [index * C / chunks, (index + 1) * C / chunks)."""

    kind: Literal["chunk"] = "chunk"
    chunks: PositiveInt
    index: NonNegativeInt


class Split(IRModel):
    """The channels cut into consecutive parts at once, an op with several outputs
    (ShuffleNetV2's `x1, x2 = x.chunk(2, dim=1)`): `chunks` equal parts, or parts of
    `sizes` channels (torch.split), whichever the spec gave. Its outputs are the `Part`
    nodes reading it, one per part in order (`Graph.parts`); the node's own shape is its
    input's, the parts side by side, and nothing else may read it."""

    kind: Literal["split"] = "split"
    chunks: PositiveInt | None = None
    sizes: tuple[PositiveInt, ...] | None = None

    def part_sizes(self, channels: int) -> tuple[int, ...]:
        if self.sizes is not None:
            return self.sizes
        assert self.chunks is not None
        return (channels // self.chunks,) * self.chunks


class Part(IRModel):
    """Output `index` of the Split node it reads: a name for that value, computing nothing
    (channels [sum(sizes[:index]), sum(sizes[:index + 1])) of the split's input)."""

    kind: Literal["part"] = "part"
    index: NonNegativeInt


Op = Annotated[
    Input
    | Conv2d
    | Linear
    | BatchNorm
    | ReLU
    | LeakyReLU
    | GELU
    | Sigmoid
    | Tanh
    | Softmax
    | MaxPool2d
    | AvgPool2d
    | GlobalAvgPool
    | GlobalMaxPool
    | AdaptiveAvgPool2d
    | Flatten
    | Dropout
    | Add
    | Concat
    | Pad2d
    | Clip
    | Hardswish
    | Hardsigmoid
    | SiLU
    | Mul
    | StochasticDepth
    | ChannelShuffle
    | LayerNorm
    | Scale
    | Chunk
    | Split
    | Part
    | ChannelsLast
    | ChannelsFirst,
    Field(discriminator="kind"),
]
OP_KINDS: tuple[str, ...] = tuple(
    cls.model_fields["kind"].default for cls in get_args(get_args(Op)[0])
)


@dataclass(frozen=True)
class SourceRef:
    """Where in which spec file a node was declared (for errors raised by later passes)."""

    file: str
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class Node:
    name: str  # "layer2.0.conv1": unique, stable, the module path in generated code
    op: Op
    inputs: tuple[str, ...]  # producers by name
    shape: Shape  # output shape without the batch dimension
    scope: tuple[str, ...]  # ("layer2", "0")
    block_type: str | None  # innermost block type, e.g. "Bottleneck"
    # Prefix of the node's parameters and state ("layer2.0.conv1"; shared ops share it);
    # None only for ops with neither (BatchNorm without affine still has running stats).
    param_name: str | None = None
    source: SourceRef | None = None
    # Where the output's channels are: "channels_first" (C, H, W) or (F,), the canonical
    # layout; "channels_last" (H, W, C) between a ChannelsLast and a ChannelsFirst.
    layout: Layout = "channels_first"

    @property
    def local_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ScopeInfo:
    """A named level of the hierarchy: a block instance, a stage (repeat) or a group."""

    path: str
    kind: Literal["block", "repeat", "group"]
    block_type: str | None = None
    args: tuple[tuple[str, object], ...] = ()
    source: SourceRef | None = None  # the item that made it
    # A block call of a repeat or table: the names it bound for this call (`index`, the
    # row's values, `block_index`, `block_count`), as its arguments were evaluated.
    bound: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    spec_file: str
    params: tuple[tuple[str, object], ...]  # resolved architecture parameters
    nodes: tuple[Node, ...]  # topological order
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    scopes: tuple[ScopeInfo, ...] = ()
    shared_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # param_name -> node names
    # Valid but suspicious constructs found while lowering (archspec.checks), sorted by place.
    warnings: tuple[SpecWarning, ...] = field(default=(), compare=False)
    _index: dict[str, Node] = field(default_factory=dict, compare=False, repr=False)
    _parts: dict[str, list[Node]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({n.name: n for n in self.nodes})
        for n in self.nodes:
            if isinstance(n.op, Part):
                self._parts.setdefault(n.inputs[0], []).append(n)

    def node(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def parts(self, name: str) -> tuple[str, ...]:
        """The outputs of the Split node `name`: its Part nodes, in order."""
        found = self._parts.get(name, [])
        return tuple(n.name for n in sorted(found, key=lambda n: n.op.index))  # type: ignore[union-attr]
