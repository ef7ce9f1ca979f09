"""Which spec parameters a generated factory takes (`def resnet50(num_classes=1000)`).

A parameter is exposed when changing it changes no structure, so the same source serves
every value. It is a scalar (int, float, bool), never read by a condition, a repeat
count, a table row, a block name, an input shape or `defaults:`, and read only

- by the model's own op fields, each of which the plan keeps symbolic (one read left a
  literal pins the parameter: build.ClassWalker.pinned), and whose effect on shapes
  reaches later steps only through symbolic channel arguments
  (`nn.Linear(hidden_units, num_classes)`), never a literal, a block, a loop or a flatten
  of a changed spatial size; or
- by block-call arguments (`args:`, `first:`) of the model's own block items, each for a
  *free* parameter of the block, which the plan passes as an expression of it with the
  call's constants folded in (`sd_prob=stochastic_depth_prob * 3 / 16`), never a literal.

A block's parameter is free when it is a float read only by op fields that change no
shape, type or member (FREE_FIELDS: a dropout or stochastic-depth rate) or as the
argument of a free parameter of another block, each expression reading nothing but the
block's parameters, `let:` values and `in_channels` (so the block class keeps it
symbolic); never by a `let:`, a condition, a repeat count, a table or a block name.
Parameters that change the structure (`layers`, `growth_rate`) are chosen when
generating (`--set`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archspec.expr import expression_text, is_expression, parse
from archspec.expr import names as free_names
from archspec.registry import ResolvedSpec
from archspec.spec import BlockItem, ScopeItem

from .plan import Arg, BlockStep, ClassPlan, GroupStep, OpStep, Step, step_args, walk_steps

# IR field holding the input's channel count.
CHANNEL_FIELD = {"conv2d": "in_channels", "linear": "in_features", "batch_norm": "num_features"}
# IR fields that change an op's output shape (channels or spatial size).
SHAPE_FIELDS = {"out_channels", "out_features", "kernel_size", "stride", "dilation", "output_size"}
SPATIAL_RESET = {"global_avg_pool", "global_max_pool", "adaptive_avg_pool2d"}
# Spec op fields that change no shape, type or member whatever their value: a block
# parameter read only here (or passed on to another block's such parameter) is free.
FREE_FIELDS = {"dropout": {"rate"}, "stochastic_depth": {"rate"}}


def candidates(spec: ResolvedSpec) -> list[str]:
    """Scalar spec parameters the model's own ops read, or its block calls read for free
    block parameters only: those a factory might take."""
    items = spec.body.value if spec.body else []
    found = top_level_names(items) | (top_level_arg_names(items) - structural_names(spec))
    return [
        p
        for p in sorted(found)
        if p in spec.params and spec.params[p].value.type in ("int", "float", "bool")
    ]


def top_level_arg_names(items: list[Any]) -> set[str]:
    """Free names in the arguments (`args:`, `first:`) of the top level's block calls."""
    found: set[str] = set()
    for item in items:
        if isinstance(item, ScopeItem):
            found |= top_level_arg_names(item.body)
        elif isinstance(item, BlockItem):
            found |= expr_names([item.args, item.first])
    return found


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
    """Parameters read anywhere but in the model's own op fields and its block calls'
    arguments for free block parameters: conditions, repeat counts, tables, block names,
    other block arguments, input shapes, `defaults:` (these shape the structure)."""
    found: set[str] = set()
    found |= expr_names([d.value for fields in spec.defaults.values() for d in fields.values()])
    if spec.inputs is not None:
        found |= expr_names([decl.shape for decl in spec.inputs.value.values()])
    free = free_params(spec)

    def visit(items: list[Any]) -> None:
        nonlocal found
        for item in items:
            found |= expr_names([item.when])
            if isinstance(item, ScopeItem):
                found |= expr_names([item.repeat, item.first])
                visit(item.body)
            elif isinstance(item, BlockItem):
                found |= expr_names([item.repeat, item.table, item.block])
                for key, raw in [*item.args.items(), *(item.first or {}).items()]:
                    if key not in call_target_free(spec, item, free):
                        found |= expr_names([raw])

    visit(spec.body.value if spec.body else [])
    return found


def call_target_free(spec: ResolvedSpec, item: BlockItem, free: dict[str, set[str]]) -> set[str]:
    """The free parameters of the block `item` calls (none when its name is an expression)."""
    if is_expression(item.block) or item.block not in spec.blocks:
        return set()
    return free.get(item.block, set())


def free_params(spec: ResolvedSpec) -> dict[str, set[str]]:
    """Each block type's free parameters (see the module's docstring): the largest sets
    consistent with one another, found by dropping offenders until none is left."""
    free = {
        b: {p for p, decl in located.value.params.items() if decl.type == "float"}
        for b, located in spec.blocks.items()
    }
    changed = True
    while changed:
        changed = False
        for btype, located in spec.blocks.items():
            bdef = located.value
            local = set(bdef.params) | set(bdef.let) | {"in_channels"}
            for p in sorted(free[btype]):
                if p in expr_names(list(bdef.let.values())) or not reads_free(
                    spec, bdef.body, p, local, free
                ):
                    free[btype].discard(p)
                    changed = True
    return free


def reads_free(
    spec: ResolvedSpec, items: list[Any], name: str, local: set[str], free: dict[str, set[str]]
) -> bool:
    """Whether a block body reads `name` only in FREE_FIELDS and free block arguments, in
    expressions of the block's own names (`local`) only."""

    def ok(value: Any) -> bool:  # a free read: nothing bound per call or per iteration
        found = expr_names(value)
        return name not in found or found <= local

    for item in items:
        if name in expr_names([item.when]):
            return False
        if isinstance(item, ScopeItem):
            if name in expr_names([item.repeat, item.first]):
                return False
            if not reads_free(spec, item.body, name, local, free):
                return False
        elif isinstance(item, BlockItem):
            if name in expr_names([item.repeat, item.table, item.block]):
                return False
            targets = call_target_free(spec, item, free)
            for key, raw in [*item.args.items(), *(item.first or {}).items()]:
                if name in expr_names([raw]) and (key not in targets or not ok(raw)):
                    return False
        else:
            allowed = FREE_FIELDS.get(item.op, set())
            for key, value in item.model_dump().items():
                if name in expr_names([value]) and (key not in allowed or not ok(value)):
                    return False
    return True


def exposable(
    model: ClassPlan, params: list[str], free: Mapping[str, set[str]] | None = None
) -> list[str]:
    """The parameters of `params` (all symbolic in `model`) a factory can take.

    A parameter is exposable when changing it changes no structure: it is read only by
    the model's own op fields, each of which stays symbolic, and every shape it changes
    reaches later steps only through symbolic channel arguments (or the outputs), or by
    block-call arguments for the blocks' free parameters (`free`: block class -> Python
    names of its free parameters). The model must actually read it.
    """
    return [p for p in params if reaches_only_symbols(model, p, free or {})]


def reaches_only_symbols(model: ClassPlan, name: str, free: Mapping[str, set[str]]) -> bool:
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
            if isinstance(step, BlockStep):  # written for fixed sizes; free arguments only
                calls = [step.call] if step.call else [c for _, c in step.stage or ()]
                if (
                    in_chan
                    or in_space
                    or any(
                        mentions(a) and (key is None or key not in free.get(c.block, set()))
                        for c in calls
                        for key, a in c.args
                    )
                ):
                    return False
                continue
            if not isinstance(step, OpStep):  # a repeat: written for fixed sizes
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
