"""The module plan: what a source backend prints, recovered once per spec (`build_plan`).

A source backend writes one class (or function) per block type from the block's spec body,
with the block's own expressions for channel counts and strides, instead of one class per
instance. That structure is framework-neutral; these are its types:

- `ModulePlan`: the block classes in order of first use, the model class, and the
  factory's parameters (`exposed`, decided by `archspec.codegen.factory`);
- `ClassPlan`: a block type or the model, with its parameters (`Param`), per-instance
  arguments where instances differ in a way no expression of the parameters explains
  (`ExtraParam`), its inputs, body of steps and outputs;
- steps: `OpStep` (one primitive op, its fields as `Args`), `BlockStep` (a block call, or
  a stage of them), `GroupStep` (an inline scope; `chain` when its items read one another
  in order) and `RepeatStep` (an inline repeat: unrolled when every iteration is a chain,
  else one loop body);
- `Arg`: a field's Python source: symbolic (`planes * expansion`) when the expression
  holds in every instance, a literal when all instances agree, else the name of a
  per-instance parameter (value `VARIES`);
- `Value`: a tensor in the forward wiring, with its symbolic channel count when known.

Backends decide only how to print a plan: module or function, containers, in-place ops,
padding helpers, variable names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from archspec import ir
from archspec.backend import BackendError
from archspec.expr import Expr
from archspec.expr import names as free_names
from archspec.ir import Graph, Node

PY_TYPES = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "ints": "Sequence[int]",
    "floats": "Sequence[float]",
}


class PlanError(BackendError):
    """The spec's structure cannot be written as one class per block type (says why)."""


# ---------------------------------------------------------------------------- plan types

VARIES = object()  # Arg.value when instances of a block class differ in the field
REQUIRED = object()  # Param.default of a parameter without a default


@dataclass(frozen=True)
class Arg:
    """A field's Python source; `value` is set when it is a literal, `expr` when symbolic.

    A per-instance argument has neither: `src` is the name of an `ExtraParam`.
    """

    src: str
    value: Any = VARIES
    expr: Expr | None = None

    @property
    def symbolic(self) -> bool:
        return self.expr is not None and bool(free_names(self.expr))


@dataclass(frozen=True)
class PadPlan:
    """How a conv/pool pads for every input size.

    `none`, `symmetric` (`src` is the per-axis amount, maybe an expression), fixed `sides`
    (top, bottom, left, right), or `same`: TensorFlow's rule, whose sides depend on the
    input size. `tf_same` records that the spec asked for TensorFlow's rule even where the
    sides happen to be static.
    """

    kind: Literal["none", "symmetric", "sides", "same"]
    src: str = "0"
    sides: tuple[int, int, int, int] = (0, 0, 0, 0)
    tf_same: bool = False
    expr: Expr | None = None  # the symbolic `src`, when the spec wrote an expression


@dataclass(frozen=True)
class Args:
    """What an op printer receives: field sources, padding and the input's rank."""

    fields: dict[str, Arg]
    pad: PadPlan = PadPlan("none")
    rank: int = 3  # rank of the input without batch (BatchNorm1d vs 2d)
    layout: ir.Layout = "channels_first"  # the input's (linear / layer_norm per pixel)

    def __getitem__(self, name: str) -> str:
        return self.fields[name].src

    def const(self, name: str) -> Any:
        return self.fields[name].value

    def list_src(self, name: str) -> str:
        """A list field as a Python list (`[2, 6]`), or the per-instance argument's name."""
        value = self.fields[name].value
        if value is VARIES:
            return self.fields[name].src
        return "[" + ", ".join(map(str, value)) + "]"

    def differs(self, name: str, default: Any) -> bool:
        """Whether the field needs writing: not the constant `default`."""
        arg = self.fields[name]
        return arg.value is VARIES or arg.value != default


@dataclass(eq=False)
class Value:
    """A tensor in forward: an input, or what a step produces."""

    local: str  # spec name, the base of its variable name
    chan: Expr | None = None  # symbolic channel count when known


@dataclass(frozen=True)
class Param:
    name: str  # spec name
    py: str  # identifier in generated code
    type: str  # spec type: int, float, bool, str, ints, floats
    default: Any = REQUIRED


@dataclass(frozen=True)
class Let:
    """A block's named derived value (`width = planes * base_width // 64 * groups`).

    `const` when the spec wrote a literal: the same in every instance, a class attribute
    where the backend has classes (`expansion = 4`)."""

    name: str  # spec name
    py: str  # identifier in generated code
    src: str  # Python source of the value, in the class's names
    const: bool
    expr: Expr  # the value in spec names (a literal as `Num`)


@dataclass
class ExtraParam:
    """A per-instance constructor argument: values by instance (None where absent)."""

    py: str
    type: str  # Python annotation: bool, int, float or Any
    values: list[Any]


@dataclass(eq=False)
class OpStep:
    key: str  # item name in the body
    path: str  # the first instance's node name (errors point at its spec item)
    op: ir.Op  # the first instance's op
    nodes: tuple[Node, ...]  # the op in every instance where it exists
    args: Args
    inputs: tuple[Value, ...]
    out: Value
    cond: str | None = None  # source of the condition under which it exists
    share: str | None = None  # shared-weight group: one member called at every use
    named: bool = False  # the spec named the item (`maxpool:`), rather than numbering it
    through: int = 0  # the input that flows on where the op is absent (`otherwise:`)
    label: str | None = None  # flat numbering: the key as an f-string field where it varies
    # A split's outputs, one value per part in order (`out`, the parts together, is
    # read by nothing): a backend binds them in one statement (`x1, x2 = x.chunk(2, dim=1)`).
    parts: tuple[Value, ...] = ()


@dataclass(frozen=True)
class BlockCall:
    """A block class instantiated: `(None, in_channels)` first, then keyword arguments."""

    block: str
    args: tuple[tuple[str | None, Arg], ...]


@dataclass(eq=False)
class BlockStep:
    key: str
    path: str
    input: Value
    out: Value
    cond: str | None
    call: BlockCall | None  # one block
    stage: tuple[tuple[str, BlockCall], ...] | None = None  # a repeat: (key, call) per entry
    flat: bool = False  # the stage's entries are the enclosing scope's (flat numbering)
    label: str | None = None

    @property
    def inputs(self) -> tuple[Value, ...]:
        return (self.input,)


@dataclass(eq=False)
class GroupStep:
    """An inline scope; `chain` when its items read one another in order (a Sequential)."""

    key: str
    path: str
    input: Value
    out: Value  # the group's own value (`last` under the group's name)
    last: Value  # what the body's last item produces
    cond: str | None
    body: list[Step]
    chain: bool
    label: str | None = None

    @property
    def inputs(self) -> tuple[Value, ...]:
        return (self.input,)


@dataclass(eq=False)
class Iteration:
    key: str
    input: Value
    body: list[Step]
    out: Value


@dataclass(eq=False)
class LoopPlan:
    count: Arg
    var: str  # loop variable: "_" unless the body reads the index
    carry: Value  # the iteration's input
    body: list[Step]
    last: Value  # the iteration's output
    prefix: str  # iteration names: prefix + (start + i)
    start: int


@dataclass(eq=False)
class RepeatStep:
    """An inline repeat: `unrolled` when every iteration is a chain, else `loop`."""

    key: str
    path: str
    input: Value
    out: Value
    unrolled: list[Iteration] | None = None
    loop: LoopPlan | None = None
    label: str | None = None

    @property
    def inputs(self) -> tuple[Value, ...]:
        return (self.input,)


Step = OpStep | BlockStep | GroupStep | RepeatStep


@dataclass
class ClassPlan:
    name: str  # block type, or the model's class name
    doc: str
    params: list[Param]  # block parameters (declared order), or the model's exposed ones
    lets: list[Let]  # named derived values, in order (blocks only)
    extra: list[ExtraParam]
    instances: dict[str, int]  # instance path -> position in ExtraParam.values
    inputs: list[Value]
    body: list[Step]
    outputs: list[Value]
    is_model: bool


@dataclass
class ModulePlan:
    name: str  # the spec's name: module and factory name
    graph: Graph
    blocks: dict[str, ClassPlan]  # in order of first use
    model: ClassPlan
    exposed: dict[str, str]  # spec parameter -> Python name, in the factory's order

    @property
    def classes(self) -> list[ClassPlan]:
        return [*self.blocks.values(), self.model]


def walk_steps(steps: list[Step]) -> Iterator[Step]:
    """Every step, nested ones after their parent (the loop body or each iteration)."""
    for step in steps:
        yield step
        if isinstance(step, GroupStep):
            yield from walk_steps(step.body)
        elif isinstance(step, RepeatStep):
            for it in step.unrolled or []:
                yield from walk_steps(it.body)
            if step.loop is not None:
                yield from walk_steps(step.loop.body)


def step_args(step: Step) -> Iterator[Arg]:
    """Every argument a step writes, nested steps included."""
    if isinstance(step, OpStep):
        yield from step.args.fields.values()
        if step.args.pad.expr is not None:
            yield Arg(step.args.pad.src, expr=step.args.pad.expr)
    elif isinstance(step, BlockStep):
        calls = [step.call] if step.call else [c for _, c in step.stage or ()]
        yield from (a for c in calls for _, a in c.args)
    elif isinstance(step, GroupStep):
        for inner in step.body:
            yield from step_args(inner)
    else:
        bodies = [it.body for it in step.unrolled or []]
        if step.loop is not None:
            yield step.loop.count
            bodies.append(step.loop.body)
        for body in bodies:
            for inner in body:
                yield from step_args(inner)


def used_lets(lets: list[Let], text: str) -> list[Let]:
    """The lets `text` reads, with the lets they read in turn, in declared order: a
    backend prints only these (an unused local would fail a linter)."""
    wanted: list[Let] = []
    for let in reversed(lets):
        reads = "\n".join([text, *(w.src for w in wanted)])  # a line each: \b holds
        if re.search(rf"(?<![\w.]){re.escape(let.py)}\b", reads):
            wanted.insert(0, let)
    return wanted
