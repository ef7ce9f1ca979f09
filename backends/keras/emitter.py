"""KerasEmitter: the module plan of a lowered spec -> Keras 3 source, channels-last.

Two styles print the same plan (`archspec.codegen.plan`):

- `functional` (default), keras.applications' manner: one function per block type
  (`def bottleneck(x, planes, stride=1, *, name)`: tensor in, tensor out), a factory that
  builds `keras.Model(inputs, outputs, name=...)`;
- `subclass`: one `keras.layers.Layer` subclass per block type and a `keras.Model`
  subclass, with `get_config()` so `.keras` files save and load (styles.py).

Layer names are the weight adapter's contract (`archspec_keras.weights`): the layer of IR
node `layer2.0.conv1` is named `layer2_0_conv1` (dots become underscores; the name is
checked unique), so a parameter set `p` lives in the layer named `p.replace(".", "_")`,
and a shared-weight group is one layer called at every use. Keras 3 API only (`keras`,
`keras.layers`, `keras.ops`), so the file runs under the TensorFlow, JAX and torch
backends. Generating never imports Keras.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archspec_keras.helpers import helper_imports, helper_sources
from archspec_keras.names import RESERVED, RESERVED_NAMES
from archspec_keras.ops import PRINTERS, KerasEmitError, Layers

from archspec import ir
from archspec.backend import Artifact, BackendError, ZooVariant, check_options
from archspec.codegen import plan
from archspec.codegen.build import build_plan, locate
from archspec.codegen.forward import Loop, Slot, Stmt, assign_vars
from archspec.codegen.layout import (
    WIDTH,
    Call,
    Code,
    Kw,
    Namespace,
    docstring,
    flat,
    layout,
    literal,
    py_str,
)
from archspec.codegen.printers import render_file
from archspec.ir import Graph
from archspec.registry import ResolvedSpec

STYLES = ("functional", "subclass")
MIN_RUN = 3  # runs of at least this many identical block calls become a `for` loop


def snake(block: str) -> str:
    """`DenseLayer` -> `dense_layer`, `PreActConv` -> `pre_act_conv`."""
    out = ""
    for i, c in enumerate(block):
        if c.isupper() and i and (not block[i - 1].isupper() or block[i + 1 : i + 2].islower()):
            out += "_"
        out += c.lower()
    return out


def check_layer_names(graph: Graph) -> None:
    """Every node's Keras name (`.` -> `_`) must be unique: the weight contract needs it."""
    seen: dict[str, str] = {}
    for node in graph.nodes:
        key = node.name.replace(".", "_")
        if key in seen and seen[key] != node.name:
            raise KerasEmitError(
                f"nodes '{seen[key]}' and '{node.name}' both become the Keras layer name "
                f"'{key}'; rename one in the spec"
            )
        seen[key] = node.name


# ---------------------------------------------------------------------------- statements

Application = Callable[[list[str]], tuple[Code, str]]  # input vars -> (code, call suffix)


# One-input ops whose output has their input's shape (a 1x1 map stays 1x1).
SHAPE_KEEPING = (
    ir.BatchNorm,
    ir.LayerNorm,
    ir.Scale,
    ir.ReLU,
    ir.LeakyReLU,
    ir.GELU,
    ir.Sigmoid,
    ir.Tanh,
    ir.Clip,
    ir.Hardswish,
    ir.Hardsigmoid,
    ir.SiLU,
    ir.Dropout,
    ir.StochasticDepth,
)


@dataclass(eq=False)
class Apply(Stmt):
    """`out = <app>(inputs)`, then each further app applied to `out`; under `cond` when set."""

    apps: list[Application] = field(default_factory=list)
    note: str | None = None


def layer_app(code: Code) -> Application:
    return lambda xs: (code, f"({xs[0]})")


def merge_app(code: Code) -> Application:
    return lambda xs: (code, "([" + ", ".join(xs) + "])")


@dataclass
class Names:
    """Layer-name sources: `"conv1"` at the model's top, `f"{name}_conv1"` inside a block."""

    in_block: bool
    path: str = ""  # prefix inside the current scope, may hold `{i}` fields
    root: str = "name"  # the block instance's name: `name`, or `self.name` in a Layer
    attrs: str = ""  # the same prefix for attribute names: step keys, never labels

    def of(self, key: str, label: str | None = None) -> str:
        """The layer name source; `label` is a flat-numbered key that varies between
        instances, an f-string field (`{int(expand_ratio != 1)}`)."""
        text = f"{self.path}{label or key}"
        if self.in_block:
            return f'f"{{{self.root}}}_{text}"'
        return f'f"{text}"' if "{" in text else py_str(text)

    def inner(self, key: str, label: str | None = None) -> Names:
        return Names(self.in_block, f"{self.path}{label or key}_", self.root, f"{self.attrs}{key}_")

    def top(self) -> Names:
        return Names(self.in_block, "", self.root)


# ---------------------------------------------------------------------------- functions


class FunctionPrinter:
    """One function of the functional style: a block type's, or the model's body."""

    def __init__(self, module: ModulePrinter, cls: plan.ClassPlan) -> None:
        self.module = module
        self.cls = cls
        self.slots: dict[int, Slot] = {}
        self.prologue: list[str] = []  # shared layers, built once
        self.shared: dict[str, str] = {}
        self.index: str | None = None  # the stage loops' variable
        self.locals = Namespace(
            RESERVED
            | module.reserved
            | {p.py for p in cls.params}
            | {e.py for e in cls.extra}
            | set(module.functions.values())
        )

    def slot(self, value: plan.Value) -> Slot:
        if id(value) not in self.slots:
            self.slots[id(value)] = Slot(value.local)
        return self.slots[id(value)]

    def alias(self, value: plan.Value, same: plan.Value) -> None:
        self.slots[id(value)] = self.slot(same)

    def apply(
        self,
        body: list[Any],
        inputs: list[plan.Value] | list[Slot],
        out: Slot,
        apps: list[Application],
        cond: str | None = None,
        note: str | None = None,
    ) -> Apply:
        ins = [v if isinstance(v, Slot) else self.slot(v) for v in inputs]
        s = Apply(ins, out, cond=cond, apps=apps, note=note)
        for v in ins:
            v.readers.append(s)
        body.append(s)
        return s

    # ------------------------------------------------------------------ steps

    def steps(self, steps: list[plan.Step], names: Names, body: list[Any]) -> None:
        for step in steps:
            try:
                self.step(step, names, body)
            except KerasEmitError as exc:  # innermost item first: say where
                graph = self.module.plan.graph
                raise locate(graph, self.module.spec, step.path, exc, "keras") from None

    def step(self, step: plan.Step, names: Names, body: list[Any]) -> None:
        if isinstance(step, plan.OpStep):
            apps, note = self.op_apps(step, names)
            if not apps and len(step.inputs) == 1:  # nothing to print (a permute: NHWC
                self.alias(step.out, step.inputs[0])  # already): the value is its input
                return
            cond = self.test(step.cond)
            s = self.apply(body, list(step.inputs), self.slot(step.out), apps, cond, note)
            s.through = step.through
            s.outs = [self.slot(p) for p in step.parts]  # a split: `x1, x2 = ...`
        elif isinstance(step, plan.BlockStep):
            self.block(step, names, body)
        elif isinstance(step, plan.GroupStep):
            if step.cond is None:
                self.steps(step.body, names.inner(step.key, step.label), body)
                self.alias(step.out, step.last)
                return
            apps = self.chain_apps(step.body, names.inner(step.key, step.label))
            if not apps:  # only permutes (NHWC already): present or not, it passes x on
                self.alias(step.out, step.input)
                return
            self.apply(body, [step.input], self.slot(step.out), apps, self.test(step.cond))
        elif step.unrolled is not None:
            source = step.input
            for it in step.unrolled:
                self.alias(it.input, source)
                self.steps(it.body, names.inner(step.key).inner(it.key), body)
                source = it.out
            self.alias(step.out, source)
        else:
            self.loop(step, names, body)

    def test(self, cond: str | None) -> str | None:
        """The forward code's test for a member that exists under `cond`."""
        return cond

    def op_apps(self, step: plan.OpStep, names: Names) -> tuple[list[Application], str | None]:
        if step.share:
            var = self.shared_layer(step, names)
            return [lambda xs: (var, f"({xs[0]})")], None
        printed = self.printed(step, names.of(step.key, step.label))
        if printed.merge is not None:
            return [merge_app(printed.merge)], None
        chain = printed.chain[-1:] if self.one_pixel(step) else printed.chain
        return [layer_app(code) for code in chain], printed.note

    def one_pixel(self, step: plan.OpStep) -> bool:
        """A flatten of a map that is 1x1 for every input size needs no C,H,W permute: a
        pool to 1x1, maybe followed by ops that keep the shape (ConvNeXt's head norm)."""
        graph = self.module.plan.graph

        def pooled(name: str) -> bool:
            node = graph.node(name)
            if getattr(node.op, "keepdims", False) or getattr(node.op, "output_size", 0) == (1, 1):
                return True
            return isinstance(node.op, SHAPE_KEEPING) and pooled(node.inputs[0])

        return step.op.kind == "flatten" and all(pooled(n.inputs[0]) for n in step.nodes)

    def printed(self, step: plan.OpStep, name: str) -> Layers:
        printed = PRINTERS[step.op.kind](step.op, step.args, name)
        self.module.needs |= printed.needs
        return printed

    def shared_layer(self, step: plan.OpStep, names: Names) -> str:
        """A shared group's one layer, built before the body and called at every use."""
        group = step.share
        assert group is not None
        if group not in self.shared:
            printed = self.printed(step, names.top().of(group))
            if len(printed.chain) != 1:
                raise KerasEmitError(
                    f"shared group '{group}' needs padding layers around its layer; "
                    "share a conv without explicit padding"
                )
            var = self.locals.new(group)
            self.prologue += layout(f"{var} = ", printed.chain[0], base=4)
            self.shared[group] = var
        return self.shared[group]

    def chain_leaves(
        self, steps: list[plan.Step], names: Names
    ) -> list[tuple[plan.OpStep, Names] | tuple[plan.BlockCall, str]]:
        """The ops (with their scope's names) and block calls (with their layer name) a
        chain applies, in order."""
        leaves: list[tuple[plan.OpStep, Names] | tuple[plan.BlockCall, str]] = []
        for step in steps:
            if isinstance(step, plan.OpStep):
                leaves.append((step, names))
            elif isinstance(step, plan.BlockStep):
                calls = [(step.key, step.call)] if step.call else list(step.stage or ())
                prefix = (
                    names.inner(step.key, step.label) if step.stage and not step.flat else names
                )
                leaves += [(call, prefix.of(key)) for key, call in calls]
            elif isinstance(step, plan.GroupStep):
                leaves += self.chain_leaves(step.body, names.inner(step.key, step.label))
            else:
                assert isinstance(step, plan.RepeatStep) and step.unrolled is not None
                for it in step.unrolled:
                    leaves += self.chain_leaves(it.body, names.inner(step.key).inner(it.key))
        return leaves

    def chain_apps(self, steps: list[plan.Step], names: Names) -> list[Application]:
        """A chain's steps as applications of one variable, in order."""
        apps: list[Application] = []
        for leaf, where in self.chain_leaves(steps, names):
            if isinstance(leaf, plan.OpStep):
                assert isinstance(where, Names)
                apps += self.op_apps(leaf, where)[0]
            else:
                assert isinstance(where, str)
                apps.append(self.call_app(leaf, where))
        return apps

    def call_app(self, call: plan.BlockCall, name: str) -> Application:
        func = self.module.functions[call.block]
        kws = [Kw(k, a.src) for k, a in call.args if k is not None]
        return lambda xs: (Call(func, (xs[0], *kws, Kw("name", name))), "")

    def block(self, step: plan.BlockStep, names: Names, body: list[Any]) -> None:
        if step.call is not None:
            app = self.call_app(step.call, names.of(step.key, step.label))
            self.apply(body, [step.input], self.slot(step.out), [app], step.cond)
            return
        if step.cond is not None:
            apps = self.chain_apps([step], names)
            self.apply(body, [step.input], self.slot(step.out), apps, step.cond)
            return
        entries = list(step.stage or ())
        stage = names if step.flat else names.inner(step.key, step.label)
        current = self.slot(step.input)
        j = 0
        while j < len(entries):
            run = same_calls(entries, j)
            if run >= MIN_RUN:
                current = self.stage_loop(entries[j : j + run], stage, current, body)
                j += run
                continue
            key, call = entries[j]
            out = Slot(f"{step.key}_{key}")
            self.apply(body, [current], out, [self.call_app(call, stage.of(key))])
            current, j = out, j + 1
        self.slots[id(step.out)] = current

    def stage_loop(
        self, entries: list[tuple[str, plan.BlockCall]], stage: Names, pre: Slot, body: list[Any]
    ) -> Slot:
        if self.index is None:  # one name serves every stage loop of the function
            self.index = self.locals.new("i")
        index = self.index
        keys = [k for k, _ in entries]
        prefix, first = numbered(keys)
        name = stage.of(f"{prefix}{{{index}}}")
        if not name.startswith("f"):
            name = "f" + name
        carry, last, result = Slot("x"), Slot("x"), Slot(f"{keys[0]}")
        inner: list[Any] = []
        self.apply(inner, [carry], last, [self.call_app(entries[0][1], name)])
        header = f"for {index} in range({first}, {first + len(entries)}):"
        if first == 0:
            header = f"for {index} in range({len(entries)}):"
        loop = Loop(pre, carry, inner, last, result, header)
        pre.readers.append(loop)
        body.append(loop)
        return result

    def loop(self, step: plan.RepeatStep, names: Names, body: list[Any]) -> None:
        loop = step.loop
        assert loop is not None
        index = loop.var if loop.var != "_" else self.locals.new("i")
        offset = f" + {loop.start}" if loop.start else ""
        inner_names = names.inner(step.key).inner(f"{loop.prefix}{{{index}{offset}}}")
        inner: list[Any] = []
        self.steps(loop.body, inner_names, inner)
        header = f"for {index} in range({loop.count.src}):"
        source, result = self.slot(step.input), self.slot(step.out)
        node = Loop(source, self.slot(loop.carry), inner, self.slot(loop.last), result, header)
        source.readers.append(node)
        body.append(node)

    # ------------------------------------------------------------------ the function

    def body_lines(
        self, names: Names, first_input: Slot | None = None, base: int = 4
    ) -> tuple[list[str], list[Slot]]:
        """The body's lines and output slots; `first_input` (a block's input) is called `x`
        when only the first statement reads it, so the accumulator takes it over."""
        body: list[Any] = []
        self.steps(self.cls.body, names, body)
        if first_input is not None:
            only_first = first_input.readers == [body[0]] if body else False
            first_input.var = "x" if only_first and isinstance(body[0], Apply) else "inputs"
        outputs = [self.slot(v) for v in self.cls.outputs]
        for v in outputs:
            v.readers.append("return")
        taken = {v.var for v in outputs if v.var}
        assign_vars(body, Namespace(self.locals.used | taken), "x")
        return self.prologue + emit_body(body, base), outputs

    def block_function(self) -> str:
        cls = self.cls
        x = self.slot(cls.inputs[0])
        lines, outputs = self.body_lines(Names(True), x)
        lines = self.let_lines(lines)
        if re.search(r"\bin_channels\b", "\n".join(lines)):
            lines.insert(0, f"in_channels = {x.var}.shape[-1]")
        params = [p.py for p in cls.params if p.default is plan.REQUIRED]
        params += [e.py for e in cls.extra]
        params += [
            f"{p.py}={literal(p.default)}" for p in cls.params if p.default is not plan.REQUIRED
        ]
        func = self.module.functions[cls.name]
        signature = layout("def ", Call(func, (str(x.var), *params, "*", "name")), ":")
        doc = docstring(cls.doc, 4)
        return "\n".join([*signature, *indent([*doc, *lines, f"return {outputs[0].var}"])])

    def let_lines(self, lines: list[str], base: int = 4) -> list[str]:
        """The block's derived values (`width = ...`) the lines read, as locals before them."""
        lets = plan.used_lets(self.cls.lets, "\n".join(lines))
        return [ln for let in lets for ln in layout(f"{let.py} = ", let.src, base=base)] + lines

    def model_function(self, func: str, input_shapes: list[tuple[int, ...]]) -> str:
        cls, graph = self.cls, self.module.plan.graph
        inputs = [self.slot(v) for v in cls.inputs]
        shape_params = input_shape_params(graph)
        for v in inputs:
            v.var = self.locals.new(v.local)
        lines, outputs = self.body_lines(Names(False))
        head = [
            f"{v.var} = keras.Input(shape={p}, name={py_str(v.local)})"
            for v, p in zip(inputs, shape_params, strict=True)
        ]
        ins = (
            inputs[0].var if len(inputs) == 1 else "[" + ", ".join(str(v.var) for v in inputs) + "]"
        )
        outs = (
            outputs[0].var
            if len(outputs) == 1
            else "[" + ", ".join(str(v.var) for v in outputs) + "]"
        )
        model = Call("keras.Model", (str(ins), str(outs), Kw("name", py_str(graph.name))))
        ret = layout("return ", model, base=4)
        params = [f"{p.py}={literal(p.default)}" for p in cls.params]
        params += [f"{p}={keras_shape(s)}" for p, s in zip(shape_params, input_shapes, strict=True)]
        signature = layout("def ", Call(func, tuple(params)), ":")
        doc = docstring(graph.description or f"The {graph.name} model.", 4)
        return "\n".join([*signature, *indent([*doc, *head, *lines, *ret])])


def input_shape_params(graph: Graph) -> list[str]:
    """The factory's shape arguments: `input_shape`, or `<input>_shape` for each input."""
    if len(graph.inputs) == 1:
        return ["input_shape"]
    return [f"{name}_shape" for name in graph.inputs]


def factory_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """The factory's shape arguments for `graph`'s input sizes (Keras's H, W, C order), so
    code that builds a generated model passes the sizes it lowered the graph at."""
    shapes = [graph.node(n).shape for n in graph.inputs]
    return {
        p: (*s[1:], s[0]) if len(s) == 3 else s
        for p, s in zip(input_shape_params(graph), shapes, strict=True)
    }


def keras_shape(shape: tuple[int, ...]) -> str:
    """(C, H, W) -> Keras's (H, W, C) literal."""
    nhwc = (*shape[1:], shape[0]) if len(shape) == 3 else shape
    return "(" + ", ".join(str(d) for d in nhwc) + ("," if len(nhwc) == 1 else "") + ")"


def same_calls(entries: list[tuple[str, plan.BlockCall]], start: int) -> int:
    """How many entries from `start` call the block with the same arguments (in_channels
    aside: a Keras block reads it from its input) under consecutive numbered keys."""
    head = entries[start][1]
    args = [a for a in head.args if a[0] is not None]
    run = 1
    while start + run < len(entries):
        call = entries[start + run][1]
        same = call.block == head.block and [a for a in call.args if a[0] is not None] == args
        if not same:
            break
        run += 1
    keys = [k for k, _ in entries[start : start + run]]
    return run if numbered(keys)[0] is not None else 1


def numbered(keys: list[str]) -> tuple[str | None, int]:
    """(prefix, first) when keys are prefix + first, prefix + first + 1, ...; else (None, 0)."""
    first_key = keys[0]
    digits = len(first_key) - len(first_key.rstrip("0123456789"))
    if not digits:
        return None, 0
    prefix, first = first_key[:-digits], int(first_key[-digits:])
    if keys != [f"{prefix}{first + j}" for j in range(len(keys))]:
        return None, 0
    return prefix, first


def indent(lines: list[str]) -> list[str]:
    return [f"    {line}" if line else "" for line in lines]


def apply_layout(prefix: str, code: Code, suffix: str, indent: int, base: int) -> list[str]:
    """`prefix + code + suffix` for a call applied to its inputs (`suffix` = `(x)`), split
    like `ruff format`: the trailing call's arguments first when the head fits."""
    one = layout(prefix, code, suffix, indent, base)
    head = " " * (base + indent) + prefix + flat(code) + suffix[:1]
    if len(one) == 1 or not suffix or len(head) > WIDTH:
        return one
    pad = " " * indent
    return [head[base:], f"{pad}    {suffix[1:-1]}", f"{pad}{suffix[-1]}"]


def emit_body(body: list[Any], base: int, acc: str = "x") -> list[str]:
    """Source lines of the statements, laid out for `base` spaces of indentation."""
    lines: list[str] = []
    for s in body:
        if isinstance(s, Loop):
            if s.pre.var != acc:
                lines.append(f"{acc} = {s.pre.var}")
            lines.append(s.header)
            if s.carry.var != acc:
                lines.append(f"    {s.carry.var} = {acc}")
            lines += indent(emit_body(s.body, base + 4, acc))
            if s.result.var != acc:
                lines.append(f"{s.result.var} = {acc}")
            continue
        assert isinstance(s, Apply)
        out, ins = str(s.out.var), [str(v.var) for v in s.inputs]
        inner = 4 if s.cond is not None else 0
        steps = [f"# {s.note}"] if s.note else []
        for k, app in enumerate(s.apps):
            code, suffix = app(ins if k == 0 else [out])
            steps += apply_layout(f"{out} = ", code, suffix, inner, base)
        if s.cond is None:
            lines += steps
            continue
        if out != ins[s.through]:
            lines.append(f"{out} = {ins[s.through]}")
        lines += layout("if ", s.cond, ":", base=base)
        lines += [f"    {line}" if line.startswith("#") else line for line in steps]
    return lines


# ---------------------------------------------------------------------------- the file


@dataclass
class ModulePrinter:
    spec: ResolvedSpec
    plan: plan.ModulePlan
    reserved: frozenset[str]
    needs: set[str] = field(default_factory=set)
    functions: dict[str, str] = field(default_factory=dict)  # block type -> function name

    def __post_init__(self) -> None:
        names = Namespace(RESERVED | self.reserved | {self.plan.name})
        self.functions = {b: names.new(snake(b)) for b in self.plan.blocks}

    def source(self) -> str:
        blocks = [FunctionPrinter(self, c).block_function() for c in self.plan.blocks.values()]
        graph = self.plan.graph
        shapes = [graph.node(n).shape for n in graph.inputs]
        model = FunctionPrinter(self, self.plan.model).model_function(self.plan.name, shapes)
        return render_module(self.plan, [*blocks, model], self.needs)


def render_module(module_plan: plan.ModulePlan, sections: list[str], needs: set[str]) -> str:
    graph = module_plan.graph
    helpers = helper_sources(needs) if needs else ""
    imports = set(helper_imports(needs)) if needs else set()
    body = "\n".join(sections)
    return render_file(
        "archspec_keras",
        graph,
        [s for s in [helpers, *sections] if s],
        math="math" in imports or "math." in body,
        layers="layers." in body or "layers." in helpers,
    )


def emit_source(spec: ResolvedSpec, graph: Graph, style: str = "functional") -> str:
    check_layer_names(graph)
    reserved = RESERVED | set(input_shape_params(graph))  # a parameter `left_shape` is renamed
    module_plan = build_plan(spec, graph, reserved)
    if style == "subclass":
        from archspec_keras.styles import subclass_source

        return subclass_source(spec, module_plan, reserved)
    return ModulePrinter(spec, module_plan, reserved).source()


class KerasEmitter:
    """The `keras` backend: `emit(spec, graph, {"style": ...})` -> the generated module."""

    name = "keras"
    file_suffix = ".py"
    options: tuple[str, ...] = ("style",)
    zoo_variants = (ZooVariant("keras"), ZooVariant("keras_subclass", {"style": "subclass"}))
    reserved_names = RESERVED_NAMES

    def emit(
        self, spec: ResolvedSpec, graph: Graph, options: Mapping[str, Any] | None = None
    ) -> Artifact:
        options = options or {}
        check_options(self, options)
        style = options.get("style", "functional")
        if style not in STYLES:
            raise BackendError(
                f"backend 'keras' has no style {style!r} (styles: {', '.join(STYLES)})"
            )
        source = emit_source(spec, graph, str(style))
        return Artifact(f"{graph.name}{self.file_suffix}", source.encode())


__all__ = ["KerasEmitError", "KerasEmitter", "emit_source", "flat"]
