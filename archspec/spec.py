"""The spec format: pydantic v2 models of what a YAML spec file may contain.

These models check structure and types of the text as written. Values that may be
expressions (`$name`, `${...}`) are kept as strings here and evaluated when the spec is
lowered (`archspec.lower`), where block parameters and input shapes are known.
Fields left unset (None) take the spec's `defaults:` for that op, then the built-in
defaults in `archspec.ops.BUILTIN_DEFAULTS`; the generated docs list both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

from archspec.expr import ExprError, expression_text, parse

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_expression(value: str) -> str:
    found = expression_text(value)
    if found is None:
        raise ValueError(f"expected an expression ('$name' or '${{...}}'), got {value!r}")
    text, offset = found
    try:
        parse(text)
    except ExprError as exc:
        at = f" at column {offset + exc.offset + 1}" if exc.offset is not None else ""
        raise ValueError(f"bad expression '{value}': {exc.message}{at}") from None
    return value


# Names (items, blocks, parameters, inputs, shared groups) are plain strings here: one
# rule judges them all, per file, after parsing (`archspec.names`).
Identifier = str
ParamName = str
ItemName = str
BlockName = str
ExprStr = Annotated[str, AfterValidator(check_expression)]

# Values that may be given literally or as an expression.
IntLike = int | ExprStr
# YAML 1.1 (PyYAML) reads `1e-3` (no dot) as a string; a float field takes it as the number.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _float_text(value: Any) -> Any:
    return float(value) if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value) else value


FloatLike = Annotated[float | int | ExprStr, BeforeValidator(_float_text)]
BoolLike = bool | ExprStr
PairLike = IntLike | Annotated[list[IntLike], Field(min_length=2, max_length=2)]
PaddingLike = (
    Literal["same", "valid"]
    | IntLike
    | Annotated[list[IntLike], Field(min_length=2, max_length=2)]
    | Annotated[list[IntLike], Field(min_length=4, max_length=4)]
)
INIT_NAMES = (
    "default",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_normal_fan_out",
    "kaiming_uniform",
    "glorot_normal",
    "glorot_uniform",
    "lecun_normal",
    "lecun_uniform",
    "zeros",
    "ones",
)


class SpecModel(BaseModel):
    # strict: YAML `1` is not `true`, `4.0` is not an int, "yes" is not a bool.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class InitSpec(SpecModel):
    """An initializer with arguments; the plain names in INIT_NAMES cover common cases."""

    kind: Literal["normal", "truncated_normal", "uniform", "constant"]
    mean: float = 0.0
    std: float = 0.05
    low: float = -0.05
    high: float = 0.05
    value: float = 0.0


InitLike = Literal[INIT_NAMES] | InitSpec  # type: ignore[valid-type]


class ItemBase(SpecModel):
    """Fields every body item accepts."""

    name: ItemName | None = Field(default=None, description="explicit name (or use `name: {...}`)")
    input: str | None = Field(
        default=None, description="the item this one reads; default: the previous one"
    )
    inputs: list[str] | None = Field(default=None, description="several inputs (add, concat)")
    when: BoolLike | None = Field(
        default=None,
        description="condition; when false the item is absent and passes its input through",
    )
    otherwise: str | None = Field(
        default=None,
        description="with 'when' on an item with several inputs: the input that flows on "
        "when the item is absent (an optional residual: `when: $use_res_connect, "
        "otherwise: conv`)",
    )
    doc: str | None = None


# ---------------------------------------------------------------------------- primitive ops


class OpItemBase(ItemBase):
    """A primitive op item. Each declares, in one place, the IR op kind it lowers to and
    which IR fields its own fields set (IR field -> spec field) where a spec may write an
    expression: source emitters use the map to keep those fields symbolic."""

    ir_kind: ClassVar[str]
    ir_fields: ClassVar[Mapping[str, str]] = {}


class ConvOp(OpItemBase):
    ir_kind: ClassVar[str] = "conv2d"
    ir_fields: ClassVar[Mapping[str, str]] = {
        "out_channels": "out",
        "kernel_size": "kernel",
        "stride": "stride",
        "dilation": "dilation",
        "groups": "groups",
        "bias": "bias",
    }
    op: Literal["conv"]
    out: IntLike
    kernel: PairLike
    stride: PairLike | None = None
    padding: PaddingLike | None = None
    dilation: PairLike | None = None
    groups: IntLike | None = None
    bias: BoolLike | None = None
    init: InitLike | None = None
    bias_init: InitLike | None = None
    share: Identifier | None = Field(default=None, description="shared-weight group name")


class LinearOp(OpItemBase):
    ir_kind: ClassVar[str] = "linear"
    ir_fields: ClassVar[Mapping[str, str]] = {"out_features": "out", "bias": "bias"}
    op: Literal["linear"]
    out: IntLike
    bias: BoolLike | None = None
    init: InitLike | None = None
    bias_init: InitLike | None = None
    share: Identifier | None = None


class BatchNormOp(OpItemBase):
    ir_kind: ClassVar[str] = "batch_norm"
    ir_fields: ClassVar[Mapping[str, str]] = {
        "eps": "eps",
        "momentum": "momentum",
        "affine": "affine",
    }
    op: Literal["batch_norm"]
    eps: FloatLike | None = None
    momentum: FloatLike | None = Field(
        default=None,
        description="weight of the new batch statistic "
        "(PyTorch convention; Keras momentum = 1 - this)",
    )
    affine: BoolLike | None = None
    share: Identifier | None = None


class ReluOp(OpItemBase):
    ir_kind: ClassVar[str] = "relu"
    op: Literal["relu"]


class LeakyReluOp(OpItemBase):
    ir_kind: ClassVar[str] = "leaky_relu"
    ir_fields: ClassVar[Mapping[str, str]] = {"negative_slope": "slope"}
    op: Literal["leaky_relu"]
    slope: FloatLike = Field(
        description="negative slope; required: frameworks disagree (0.01 vs 0.3)"
    )


class GeluOp(OpItemBase):
    ir_kind: ClassVar[str] = "gelu"
    op: Literal["gelu"]
    approximate: Literal["none", "tanh"] | None = None


class SigmoidOp(OpItemBase):
    ir_kind: ClassVar[str] = "sigmoid"
    op: Literal["sigmoid"]


class TanhOp(OpItemBase):
    ir_kind: ClassVar[str] = "tanh"
    op: Literal["tanh"]


class SoftmaxOp(OpItemBase):
    ir_kind: ClassVar[str] = "softmax"
    op: Literal["softmax"]
    axis: Literal[1] = Field(default=1, description="canonical channel axis")


class MaxPoolOp(OpItemBase):
    ir_kind: ClassVar[str] = "max_pool2d"
    ir_fields: ClassVar[Mapping[str, str]] = {
        "kernel_size": "kernel",
        "stride": "stride",
        "ceil_mode": "ceil_mode",
    }
    op: Literal["max_pool"]
    kernel: PairLike
    stride: PairLike | None = None
    padding: PaddingLike | None = None
    ceil_mode: BoolLike | None = None


class AvgPoolOp(OpItemBase):
    ir_kind: ClassVar[str] = "avg_pool2d"
    ir_fields: ClassVar[Mapping[str, str]] = {
        "kernel_size": "kernel",
        "stride": "stride",
        "ceil_mode": "ceil_mode",
        "count_include_pad": "count_include_pad",
    }
    op: Literal["avg_pool"]
    kernel: PairLike
    stride: PairLike | None = None
    padding: PaddingLike | None = None
    ceil_mode: BoolLike | None = None
    count_include_pad: BoolLike | None = None


class GlobalAvgPoolOp(OpItemBase):
    ir_kind: ClassVar[str] = "global_avg_pool"
    ir_fields: ClassVar[Mapping[str, str]] = {"keepdims": "keepdims"}
    op: Literal["global_avg_pool"]
    keepdims: BoolLike | None = None


class GlobalMaxPoolOp(OpItemBase):
    ir_kind: ClassVar[str] = "global_max_pool"
    ir_fields: ClassVar[Mapping[str, str]] = {"keepdims": "keepdims"}
    op: Literal["global_max_pool"]
    keepdims: BoolLike | None = None


class AdaptiveAvgPoolOp(OpItemBase):
    ir_kind: ClassVar[str] = "adaptive_avg_pool2d"
    ir_fields: ClassVar[Mapping[str, str]] = {"output_size": "size"}
    op: Literal["adaptive_avg_pool"]
    size: PairLike


class FlattenOp(OpItemBase):
    ir_kind: ClassVar[str] = "flatten"
    op: Literal["flatten"]


class DropoutOp(OpItemBase):
    ir_kind: ClassVar[str] = "dropout"
    ir_fields: ClassVar[Mapping[str, str]] = {"rate": "rate"}
    op: Literal["dropout"]
    rate: FloatLike


class AddOp(OpItemBase):
    ir_kind: ClassVar[str] = "add"
    op: Literal["add"]


class ConcatOp(OpItemBase):
    ir_kind: ClassVar[str] = "concat"
    op: Literal["concat"]


class PadOp(OpItemBase):
    ir_kind: ClassVar[str] = "pad2d"
    ir_fields: ClassVar[Mapping[str, str]] = {"value": "value"}
    op: Literal["pad"]
    padding: PaddingLike
    value: FloatLike | None = None


class Relu6Op(OpItemBase):
    ir_kind: ClassVar[str] = "clip"
    op: Literal["relu6"]


class ClipOp(OpItemBase):
    ir_kind: ClassVar[str] = "clip"
    ir_fields: ClassVar[Mapping[str, str]] = {"min_val": "min", "max_val": "max"}
    op: Literal["clip"]
    min: FloatLike = Field(description="lower bound (hardtanh: -1)")
    max: FloatLike = Field(description="upper bound, > min (hardtanh: 1)")


class HardswishOp(OpItemBase):
    ir_kind: ClassVar[str] = "hardswish"
    op: Literal["hardswish"]


class HardsigmoidOp(OpItemBase):
    ir_kind: ClassVar[str] = "hardsigmoid"
    op: Literal["hardsigmoid"]


class SiluOp(OpItemBase):
    ir_kind: ClassVar[str] = "silu"
    op: Literal["silu"]


class MulOp(OpItemBase):
    ir_kind: ClassVar[str] = "mul"
    op: Literal["mul"]


class StochasticDepthOp(OpItemBase):
    ir_kind: ClassVar[str] = "stochastic_depth"
    ir_fields: ClassVar[Mapping[str, str]] = {"rate": "rate"}
    op: Literal["stochastic_depth"]
    rate: FloatLike = Field(description="probability of dropping a sample's branch, in [0, 1)")
    mode: Literal["row", "batch"] | None = Field(
        default=None, description="row: per sample (default); batch: the whole batch at once"
    )


class ChannelShuffleOp(OpItemBase):
    ir_kind: ClassVar[str] = "channel_shuffle"
    ir_fields: ClassVar[Mapping[str, str]] = {"groups": "groups"}
    op: Literal["channel_shuffle"]
    groups: IntLike = Field(description="must divide the channels")


class LayerNormOp(OpItemBase):
    ir_kind: ClassVar[str] = "layer_norm"
    ir_fields: ClassVar[Mapping[str, str]] = {"eps": "eps", "affine": "affine"}
    op: Literal["layer_norm"]
    eps: FloatLike | None = Field(default=None, description="added to the variance (1e-5)")
    affine: BoolLike | None = Field(default=None, description="learn weight and bias per channel")


class ChunkOp(OpItemBase):
    ir_kind: ClassVar[str] = "chunk"
    ir_fields: ClassVar[Mapping[str, str]] = {"chunks": "chunks", "index": "index"}
    op: Literal["chunk"]
    chunks: IntLike = Field(description="equal parts the channels are split into")
    index: IntLike = Field(description="which part this item is (0-based)")


class SplitOp(OpItemBase):
    """One item, several outputs: the parts are read as `<item>.0`, `<item>.1`, ... or by
    the names `outputs:` gives them (ShuffleNetV2's `x1, x2 = x.chunk(2, dim=1)`)."""

    ir_kind: ClassVar[str] = "split"
    ir_fields: ClassVar[Mapping[str, str]] = {"chunks": "chunks", "sizes": "sizes"}
    op: Literal["split"]
    chunks: IntLike | None = Field(
        default=None, description="equal parts the channels are split into (x.chunk)"
    )
    sizes: Annotated[list[IntLike], Field(min_length=2)] | None = Field(
        default=None, description="channels of each part, in order (torch.split)"
    )
    outputs: Annotated[list[ItemName], Field(min_length=2)] | None = Field(
        default=None, description="names of the parts (default: <item>.0, <item>.1, ...)"
    )


class ScaleOp(OpItemBase):
    ir_kind: ClassVar[str] = "scale"
    ir_fields: ClassVar[Mapping[str, str]] = {"init_value": "init_value"}
    op: Literal["scale"]
    init_value: FloatLike | None = Field(
        default=None, description="every channel's initial factor (1.0; ConvNeXt: 1e-6)"
    )


class ChannelsLastOp(OpItemBase):
    ir_kind: ClassVar[str] = "channels_last"
    op: Literal["channels_last"]


class ChannelsFirstOp(OpItemBase):
    ir_kind: ClassVar[str] = "channels_first"
    op: Literal["channels_first"]


OpItem = Annotated[
    ConvOp
    | LinearOp
    | BatchNormOp
    | ReluOp
    | LeakyReluOp
    | GeluOp
    | SigmoidOp
    | TanhOp
    | SoftmaxOp
    | MaxPoolOp
    | AvgPoolOp
    | GlobalAvgPoolOp
    | GlobalMaxPoolOp
    | AdaptiveAvgPoolOp
    | FlattenOp
    | DropoutOp
    | AddOp
    | ConcatOp
    | PadOp
    | Relu6Op
    | ClipOp
    | HardswishOp
    | HardsigmoidOp
    | SiluOp
    | MulOp
    | StochasticDepthOp
    | ChannelShuffleOp
    | LayerNormOp
    | ScaleOp
    | ChunkOp
    | SplitOp
    | ChannelsLastOp
    | ChannelsFirstOp,
    Field(discriminator="op"),
]
OP_MODELS: dict[str, type[OpItemBase]] = {
    m.model_fields["op"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in get_args(get_args(OpItem)[0])
}


# ---------------------------------------------------------------------------- composition


class RepeatFields(SpecModel):
    repeat: IntLike | None = Field(default=None, description="repeat count (a stage)")
    first: dict[Identifier, Any] | None = Field(
        default=None, description="argument overrides for the first repeat (e.g. stride: 2)"
    )
    prefix: str = Field(default="", description="repeat item names: prefix + index")
    start: int = Field(default=0, ge=0, description="index of the first repeat in its name")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not _IDENT.fullmatch(value):
            raise ValueError(f"prefix '{value}' must be a valid identifier start")
        return value


TableValue = int | float | bool | str | list[int | float]


class BlockItem(ItemBase, RepeatFields):
    """Use a block (by name, or `$param`), optionally repeated as a stage, or expanded
    from a table of per-stage settings (`table:`, each row `repeat` times)."""

    block: str
    args: dict[Identifier, Any] = Field(default_factory=dict)
    table: Annotated[list[dict[Identifier, TableValue]], Field(min_length=1)] | None = Field(
        default=None,
        description="per-stage settings, one mapping per row: its values are names in "
        "'block', 'repeat', 'args' and 'first'; each row gives 'repeat' blocks (default 1)",
    )
    numbering: Literal["across", "nested"] = Field(
        default="across",
        description="with 'table': number the blocks across the rows (blocks.0 ... blocks.5), "
        "or 'nested': each row is its own stage, numbered like an item of the enclosing "
        "scope, its blocks numbered inside it (torchvision's EfficientNet: features.2.1)",
    )

    @field_validator("numbering")
    @classmethod
    def _numbering(cls, value: str, info: ValidationInfo) -> str:
        if value == "nested" and info.data.get("table") is None and "table" in info.data:
            raise ValueError(
                "'numbering: nested' makes each row of a 'table' its own stage; this item "
                "has no 'table' (a repeated block item is one stage already)"
            )
        return value


class ScopeItem(ItemBase, RepeatFields):
    """An inline, named group of items (a branch, a `features` sequence, a repeated body)."""

    body: list[Item]
    numbering: Literal["position", "flat"] = Field(
        default="position",
        description="how anonymous items are named: by list position, or 'flat' "
        "(torchvision's features.0 ... features.18): counting only present items, an "
        "anonymous repeated or table block item numbering its blocks (a nested table: "
        "its rows) in this scope",
    )


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "op" in value:
            return "op"
        if "block" in value:
            return "block"
        if "body" in value:
            return "scope"
    if isinstance(value, BaseModel):
        return {ScopeItem: "scope", BlockItem: "block"}.get(type(value), "op")
    return None


def unwrap_named(value: Any) -> Any:
    """Accept `{conv1: {op: conv, ...}}` as the item `{op: conv, name: conv1, ...}`."""
    if isinstance(value, dict) and _item_kind(value) is None and len(value) == 1:
        ((name, inner),) = value.items()
        if isinstance(inner, dict) and "name" not in inner:
            return {**inner, "name": name}
    if isinstance(value, dict) and _item_kind(value) is None:
        keys = ", ".join(map(str, value)) or "nothing"
        raise ValueError(
            "not an item: an item is a mapping with 'op', 'block' or 'body', or a single "
            f"`name: {{...}}` entry; this mapping has {keys}"
        )
    return value


Item = Annotated[
    Annotated[OpItem, Tag("op")]
    | Annotated[BlockItem, Tag("block")]
    | Annotated[ScopeItem, Tag("scope")],
    Discriminator(_item_kind),
    BeforeValidator(unwrap_named),
]
Body = list[Item]
ScopeItem.model_rebuild()


# ---------------------------------------------------------------------------- params, blocks, spec

PARAM_TYPES = ("int", "float", "bool", "str", "ints", "floats")
ParamType = Literal["int", "float", "bool", "str", "ints", "floats"]


class ParamDecl(SpecModel):
    type: ParamType
    default: int | float | bool | str | list[int | float] | None = None
    doc: str = ""
    min: float | None = None
    max: float | None = None
    choices: list[int | float | str] | None = None


def infer_param(value: Any) -> Any:
    """Shorthands: `planes: int` (required int), `num_classes: 1000` (int, default 1000)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value in PARAM_TYPES:
        return {"type": value}
    if isinstance(value, bool):
        return {"type": "bool", "default": value}
    if isinstance(value, int):
        return {"type": "int", "default": value}
    if isinstance(value, float):
        return {"type": "float", "default": value}
    if isinstance(value, str):
        return {"type": "str", "default": value}
    if isinstance(value, list):
        kind = (
            "ints"
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            else "floats"
        )
        return {"type": kind, "default": value}
    return value


Param = Annotated[ParamDecl, BeforeValidator(infer_param)]


LetValue = int | float | bool | ExprStr


class BlockDef(SpecModel):
    doc: str = ""
    params: dict[ParamName, Param] = Field(default_factory=dict)
    let: dict[ParamName, LetValue] = Field(
        default_factory=dict,
        description="named values derived from the parameters and in_channels, in order "
        "(`width: ${planes * base_width // 64 * groups}`); a constant is a class attribute",
    )
    body: Body = Field(min_length=1)
    output: ItemName | None = Field(
        default=None, description="the item whose value the block returns (default: last)"
    )

    @field_validator("let")
    @classmethod
    def _let(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        clash = [n for n in value if n in info.data.get("params", {})]
        if clash:
            raise ValueError(
                f"'{clash[0]}' is both a parameter and a 'let' value of this block; rename one"
            )
        return value


class InputDecl(SpecModel):
    shape: list[IntLike] = Field(min_length=1, max_length=3, description="(C, H, W) without batch")
    dtype: Literal["float32"] = "float32"


def _input_shorthand(value: Any) -> Any:
    return {"shape": value} if isinstance(value, list) else value


class Spec(SpecModel):
    """A spec file: a whole architecture, or a library of blocks (and an abstract family)."""

    name: Identifier | None = Field(default=None, description="must equal the file name stem")
    description: str = ""
    extends: str | None = Field(
        default=None, description="a library spec whose architecture this one refines"
    )
    use: list[str] = Field(
        default_factory=list, description="library specs whose blocks this one uses"
    )
    abstract: bool = Field(default=False, description="a family to extend, not a model on its own")
    params: dict[ParamName, Param] = Field(default_factory=dict)
    inputs: (
        Annotated[
            dict[ItemName, Annotated[InputDecl, BeforeValidator(_input_shorthand)]],
            Field(min_length=1),
        ]
        | None
    ) = None
    outputs: Annotated[list[str], Field(min_length=1)] | None = None
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    blocks: dict[BlockName, BlockDef] = Field(default_factory=dict)
    body: Body | None = None
    notes: str = Field(default="", description="free text: provenance, choices made")
