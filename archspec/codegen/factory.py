"""Which spec parameters a generated factory takes (`def resnet50(num_classes=1000)`).

A parameter is exposed when changing it changes no structure, so the same source serves
every value: a scalar (int, float, bool) read only by the model's own op fields (never
by a condition, a repeat count, a block argument, an input shape or `defaults:`), each
of which the plan keeps symbolic, and whose effect on shapes reaches later steps only
through symbolic channel arguments (`nn.Linear(hidden_units, num_classes)`), never a
literal, a block, a loop or a flatten of a changed spatial size. Parameters that change
the structure (`layers`, `growth_rate`) are chosen when generating (`--set`).
"""

from __future__ import annotations

from typing import Any

from archspec.expr import expression_text, parse
from archspec.expr import names as free_names
from archspec.registry import ResolvedSpec
from archspec.spec import BlockItem, ScopeItem

from .plan import Arg, ClassPlan, GroupStep, OpStep, Step, step_args, walk_steps

# IR field holding the input's channel count.
CHANNEL_FIELD = {"conv2d": "in_channels", "linear": "in_features", "batch_norm": "num_features"}
# IR fields that change an op's output shape (channels or spatial size).
SHAPE_FIELDS = {"out_channels", "out_features", "kernel_size", "stride", "dilation", "output_size"}
SPATIAL_RESET = {"global_avg_pool", "global_max_pool", "adaptive_avg_pool2d"}


def candidates(spec: ResolvedSpec) -> list[str]:
    """Scalar spec parameters the model's own ops read: those a factory might take."""
    found = top_level_names(spec.body.value if spec.body else [])
    return [
        p
        for p in sorted(found)
        if p in spec.params and spec.params[p].value.type in ("int", "float", "bool")
    ]


def top_level_names(items: list[Any]) -> set[str]:
    """Free names in the expressions of the top level's own ops (not inside blocks)."""
    found: set[str] = set()
    for item in items:
        if isinstance(item, ScopeItem):
            found |= top_level_names(item.body)
        elif not isinstance(item, BlockItem | ScopeItem):
            for value in item.model_dump().values():
                found |= expr_names(value)
    return found


def expr_names(value: Any) -> set[str]:
    """Free names of every expression inside a spec value (nested lists and mappings too)."""
    if isinstance(value, dict):
        return set().union(*(expr_names(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(expr_names(v) for v in value)) if value else set()
    text = expression_text(value)
    return free_names(parse(text[0])) if text is not None else set()


def structural_names(spec: ResolvedSpec) -> set[str]:
    """Parameters read anywhere but in the model's own op fields: conditions, repeat
    counts, block arguments, input shapes, `defaults:` (these shape the structure)."""
    found: set[str] = set()
    found |= expr_names([d.value for fields in spec.defaults.values() for d in fields.values()])
    if spec.inputs is not None:
        found |= expr_names([decl.shape for decl in spec.inputs.value.values()])

    def visit(items: list[Any]) -> None:
        nonlocal found
        for item in items:
            found |= expr_names([item.when])
            if isinstance(item, ScopeItem):
                found |= expr_names([item.repeat, item.first])
                visit(item.body)
            elif isinstance(item, BlockItem):
                found |= expr_names([item.repeat, item.first, item.args, item.block])

    visit(spec.body.value if spec.body else [])
    return found


def exposable(model: ClassPlan, params: list[str]) -> list[str]:
    """The parameters of `params` (all symbolic in `model`) a factory can take.

    A parameter is exposable when changing it changes no structure: it is read only by
    the model's own op fields, each of which stays symbolic, and every shape it changes
    reaches later steps only through symbolic channel arguments (or the outputs). The
    model must actually read it.
    """
    return [p for p in params if reaches_only_symbols(model, p)]


def reaches_only_symbols(model: ClassPlan, name: str) -> bool:
    """Whether the model reads `name` and every shape it changes stays symbolic after."""
    chan: set[int] = set()  # values whose channel count depends on `name`
    space: set[int] = set()  # values whose spatial size depends on `name`

    def mentions(arg: Arg) -> bool:
        return arg.expr is not None and name in free_names(arg.expr)

    def visit(steps: list[Step]) -> bool:
        for step in steps:
            ins = [id(v) for v in step.inputs]
            in_chan, in_space = any(i in chan for i in ins), any(i in space for i in ins)
            if isinstance(step, GroupStep):
                if not visit(step.body):
                    return False
                for flags in (chan, space):
                    if id(step.last) in flags:
                        flags.add(id(step.out))
                continue
            if not isinstance(step, OpStep):  # a block or a repeat: written for fixed sizes
                if in_chan or in_space or any(mentions(a) for a in step_args(step)):
                    return False
                continue
            kind, fields = step.op.kind, step.args.fields
            channel_field = CHANNEL_FIELD.get(kind)
            if in_chan and channel_field and not mentions(fields[channel_field]):
                return False  # a literal channel count that would change
            if kind == "flatten" and in_space:
                return False  # the flattened size is a literal
            shaped = {f for f, arg in fields.items() if mentions(arg)} & SHAPE_FIELDS
            if step.args.pad.expr is not None and name in free_names(step.args.pad.expr):
                shaped.add("padding")
            resized = shaped - {"out_channels", "out_features"}
            if shaped & {"out_channels", "out_features"} or (
                in_chan and kind not in ("conv2d", "linear")
            ):
                chan.add(id(step.out))
            if resized or (in_space and kind not in SPATIAL_RESET):
                space.add(id(step.out))
        return True

    used = any(mentions(a) for s in walk_steps(model.body) for a in step_args(s))
    return used and visit(model.body)
