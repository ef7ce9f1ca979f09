"""One printer per IR op kind: an op and the sources of its fields -> PyTorch source.

A printer returns the op's module form (`nn.Conv2d(64, 64, kernel_size=3, bias=False)`),
its functional form (`F.relu(x)`) or both; the emitter picks one by context (ops with
parameters are always modules, stateless ops are modules inside `nn.Sequential`). Field
values arrive as `Arg`s: Python source (a literal, or a symbolic expression such as
`planes * expansion` inside a block class) plus the constant value when it is the same
in every instance. Every IR kind has a printer (tests check `PRINTERS` against
`archspec.ir.OP_KINDS`).

`Call`/`Kw` and `layout()` lay source out the way `ruff format` does: one line when it
fits, else the arguments hugged on one indented line, else one per line with a trailing
comma.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from archspec import ir

WIDTH = 100

# ---------------------------------------------------------------------------- source layout


@dataclass(frozen=True)
class Kw:
    name: str
    value: Code


@dataclass(frozen=True)
class Entry:
    """`key: value` inside a dict literal."""

    key: str
    value: Code


@dataclass(frozen=True)
class Starred:
    """`*value` as a call argument (unpacking a comprehension)."""

    value: Comp


@dataclass(frozen=True)
class Comp:
    """A comprehension: `[element for _ in range(n)]` (or `{k: v for ...}` with brackets "{}")."""

    element: Code | Entry
    clause: str
    brackets: str = "[]"


@dataclass(frozen=True)
class Call:
    """`func(args)`; with func "" and brackets "[]"/"()" it is a list or tuple literal."""

    func: str
    args: tuple[Code | Kw | Entry | Starred, ...] = ()
    brackets: str = "()"


Code = str | Call | Comp


def flat(code: Code | Kw | Entry | Starred) -> str:
    if isinstance(code, Starred):
        return "*" + flat(code.value)
    if isinstance(code, Kw):
        return f"{code.name}={flat(code.value)}"
    if isinstance(code, Entry):
        return f"{code.key}: {flat(code.value)}"
    if isinstance(code, str):
        return code
    if isinstance(code, Comp):
        return f"{code.brackets[0]}{flat(code.element)} {code.clause}{code.brackets[1]}"
    inner = ", ".join(flat(a) for a in code.args)
    if code.brackets == "()" and not code.func and len(code.args) == 1:
        inner += ","
    return f"{code.func}{code.brackets[0]}{inner}{code.brackets[1]}"


def layout(prefix: str, code: Code, suffix: str = "", indent: int = 0, base: int = 0) -> list[str]:
    """Lines (with `indent` spaces) of `prefix + code + suffix`, split like `ruff format`.

    `base` is extra indentation the caller adds to every line afterwards.
    """
    if base:
        return [line[base:] for line in layout(prefix, code, suffix, indent + base)]
    pad = " " * indent
    one = pad + prefix + flat(code) + suffix
    if isinstance(code, Comp) and len(one) > WIDTH:
        inner = code.element
        element = (
            layout(f"{inner.key}: ", inner.value, "", indent + 4)
            if isinstance(inner, Entry)
            else layout("", inner, "", indent + 4)
        )
        clause = " " * (indent + 4) + code.clause
        return [pad + prefix + code.brackets[0], *element, clause, pad + code.brackets[1] + suffix]
    if len(one) <= WIDTH or not isinstance(code, Call) or not code.args:
        return [one]
    head = pad + prefix + code.func + code.brackets[0]
    tail = pad + code.brackets[1] + suffix
    hugged = " " * (indent + 4) + ", ".join(flat(a) for a in code.args)
    if len(hugged) <= WIDTH and code.func:  # calls and defs hug; literals go one per line
        return [head, hugged, tail]
    lines = [head]
    for arg in code.args:
        if isinstance(arg, Kw):
            lines += layout(arg.name + "=", arg.value, ",", indent + 4)
        elif isinstance(arg, Entry):
            lines += layout(arg.key + ": ", arg.value, ",", indent + 4)
        elif isinstance(arg, Starred):
            lines += layout("*", arg.value, ",", indent + 4)
        else:
            lines += layout("", arg, ",", indent + 4)
    return [*lines, tail]


# ---------------------------------------------------------------------------- printer inputs

VARIES = object()  # Arg.value when instances of a block class differ in the field


@dataclass(frozen=True)
class Arg:
    """A field's source; `value` is set when it is a literal, `expr` when it is symbolic."""

    src: str
    value: Any = VARIES
    expr: Any = None  # archspec.expr.Expr of the symbolic source (channel tracking)


@dataclass(frozen=True)
class PadPlan:
    """How a conv/pool pads: none, symmetric (`padding=`), fixed sides, or TF 'same' at run time."""

    kind: str  # "none" | "symmetric" | "sides" | "same"
    src: str = "0"  # the `padding=` argument when symmetric
    sides: tuple[int, int, int, int] = (0, 0, 0, 0)  # (left, right, top, bottom) for F.pad


@dataclass(frozen=True)
class Args:
    fields: dict[str, Arg]
    pad: PadPlan = PadPlan("none")
    rank: int = 3  # rank of the input without batch (BatchNorm1d vs 2d)

    def __getitem__(self, name: str) -> str:
        return self.fields[name].src

    def const(self, name: str) -> Any:
        return self.fields[name].value

    def kw(self, name: str, field: str, default: Any) -> list[Kw]:
        """`name=src`, left out when the field is the constant `default`."""
        arg = self.fields[field]
        return [] if arg.value is not VARIES and arg.value == default else [Kw(name, arg.src)]


@dataclass(frozen=True)
class Printed:
    module: Code | None  # constructor source; None when the op has no module form
    call: Callable[[Sequence[str]], Code] | None  # functional form over input variables
    needs: frozenset[str] = field(default_factory=frozenset)  # helper snippets to emit
    # The same op as an in-place statement on its first input (`out += identity`), which the
    # emitter uses when that input is a fresh tensor nothing else reads (torchvision's style).
    inplace: Callable[[Sequence[str]], str] | None = None


Printer = Callable[[ir.Op, Args], Printed]
PRINTERS: dict[str, Printer] = {}


def printer(kind: str) -> Callable[[Printer], Printer]:
    def register(fn: Printer) -> Printer:
        if kind in PRINTERS:
            raise ValueError(f"two printers for op kind '{kind}'")
        PRINTERS[kind] = fn
        return fn

    return register


def pair_src(value: tuple[int, int]) -> str:
    return str(value[0]) if value[0] == value[1] else f"({value[0]}, {value[1]})"


def sides_src(sides: tuple[int, int, int, int]) -> str:
    return "(" + ", ".join(str(s) for s in sides) + ")"


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
    args += a.kw("stride", "stride", (1, 1))
    cls, needs = "nn.Conv2d", frozenset()
    if a.pad.kind == "symmetric":
        args.append(Kw("padding", a.pad.src))
    elif a.pad.kind in ("same", "sides"):
        cls, needs = "PaddedConv2d", frozenset({"padded_conv2d"})
    args += a.kw("dilation", "dilation", (1, 1)) + a.kw("groups", "groups", 1)
    args += a.kw("bias", "bias", True)
    if a.pad.kind == "sides":
        args.append(Kw("pad", sides_src(a.pad.sides)))
    return Printed(Call(cls, tuple(args)), None, needs)


@printer("linear")
def _linear(op: ir.Op, a: Args) -> Printed:
    args: list[Code | Kw] = [a["in_features"], a["out_features"], *a.kw("bias", "bias", True)]
    return Printed(Call("nn.Linear", tuple(args)), None)


@printer("batch_norm")
def _batch_norm(op: ir.Op, a: Args) -> Printed:
    cls = "nn.BatchNorm2d" if a.rank == 3 else "nn.BatchNorm1d"
    args: list[Code | Kw] = [a["num_features"], Kw("eps", a["eps"]), Kw("momentum", a["momentum"])]
    args += a.kw("affine", "affine", True)
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
    args += [Kw("ceil_mode", a["ceil_mode"]), *extra]
    if a.pad.kind == "sides":
        args.append(Kw("pad", sides_src(a.pad.sides)))
    return Printed(Call(cls, tuple(args)), None, needs)


@printer("max_pool2d")
def _max_pool2d(op: ir.Op, a: Args) -> Printed:
    return _pool(a, "nn.MaxPool2d", "PaddedMaxPool2d", [])


@printer("avg_pool2d")
def _avg_pool2d(op: ir.Op, a: Args) -> Printed:
    # TensorFlow's 'same' average pooling divides by the number of real pixels.
    include = "False" if a.pad.kind == "same" or op.padding.same else a["count_include_pad"]  # type: ignore[union-attr]
    return _pool(a, "nn.AvgPool2d", "PaddedAvgPool2d", [Kw("count_include_pad", include)])


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
    sides = (p.left, p.right, p.top, p.bottom)
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


# ---------------------------------------------------------------------------- literals and init


def py_str(text: str) -> str:
    """A double-quoted Python string literal (what `ruff format` prefers) for any text."""
    body = repr(text)[1:-1]
    if repr(text).startswith("'"):
        body = body.replace("\\'", "'").replace('"', '\\"')
    return f'"{body}"'


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
