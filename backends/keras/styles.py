"""The subclassing style: one `keras.layers.Layer` subclass per block type, a `keras.Model`
subclass for the model, both with `get_config()`, and a factory that builds the model.

It prints the same plan as the functional style, with the same layer names: layers are
built in `__init__` (`self.conv1 = layers.Conv2D(..., name=f"{self.name}_conv1")`) and
called in `call`; a member under a `when:` condition is `None` when absent; a stage is a
list of blocks, an inline loop a list of per-iteration dicts of layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archspec_keras.emitter import (
    FunctionPrinter,
    ModulePrinter,
    Names,
    indent,
    input_shape_params,
    keras_shape,
    layer_app,
    merge_app,
    render_module,
)
from archspec_keras.names import RESERVED_NAMES
from archspec_keras.ops import KerasEmitError

from archspec.codegen.forward import Loop, Slot
from archspec.codegen.layout import (
    WIDTH,
    Call,
    Code,
    Comp,
    Entry,
    Kw,
    docstring,
    flat,
    layout,
    literal,
    py_str,
)
from archspec.codegen.plan import (
    REQUIRED,
    BlockCall,
    BlockStep,
    GroupStep,
    OpStep,
    RepeatStep,
    Step,
)
from archspec.registry import ResolvedSpec


@dataclass
class Member:
    attr: str
    code: Code
    cond: str | None = None


class LayerPrinter(FunctionPrinter):
    """A block type (or the model) as a Layer subclass: members in `__init__`, `call`."""

    def __init__(self, module: ModulePrinter, cls: Any) -> None:
        super().__init__(module, cls)
        self.members: list[Member] = []
        self.placed = ""  # how forward code reaches the member placed last
        self.loop_entries: list[Member] | None = None  # members of the loop being built
        self.loop_base = ""  # the Names path where the loop's iteration starts

    # ------------------------------------------------------------------ members

    def place(self, code: Code, attr: str, cond: str | None, root: bool = False) -> str:
        if self.loop_entries is not None and not root:
            key = attr[len(self.loop_base) :]
            self.loop_entries.append(Member(key, code, cond))
            self.placed = f'step["{key}"]'
            return self.placed
        owner = RESERVED_NAMES.owner(attr, "item")
        if owner is not None or any(m.attr == attr for m in self.members):
            raise KerasEmitError(
                f"member '{attr}' of {self.cls.name} collides with "
                f"{owner or 'another member'}; rename the item in the spec"
            )
        self.members.append(Member(attr, code, cond))
        self.placed = f"self.{attr}"
        return self.placed

    def test(self, cond: str | None) -> str | None:
        return None if cond is None else f"{self.placed} is not None"

    @staticmethod
    def attr(names: Names, key: str) -> str:
        """The member's attribute: its Names path; an anonymous top-level item (`0`) is
        `layer_0` (the layer keeps its IR name `0`, the weight adapter's contract)."""
        attr = f"{names.attrs}{key}"
        return f"layer_{attr}" if attr[:1].isdigit() else attr

    # ------------------------------------------------------------------ steps

    def op_apps(self, step: OpStep, names: Names) -> tuple[list[Any], str | None]:
        if step.share:
            var = self.shared_layer(step, names)
            return [lambda xs: (var, f"({xs[0]})")], None
        name = names.of(step.key, step.label)
        printed = self.printed(step, name)
        attr = self.attr(names, step.key)
        if printed.merge is not None:
            return [merge_app(self.place(printed.merge, attr, step.cond))], None
        apps = []
        for code in printed.chain[-1:] if self.one_pixel(step) else printed.chain:
            suffix = layer_suffix(code, name)
            apps.append(layer_app(self.place(code, attr + suffix, step.cond)))
        return apps, printed.note

    def shared_layer(self, step: OpStep, names: Names) -> str:
        group = step.share
        assert group is not None
        if group not in self.shared:
            printed = self.printed(step, names.top().of(group))
            if len(printed.chain) != 1:
                raise KerasEmitError(f"shared group '{group}' needs padding layers around it")
            self.shared[group] = self.place(printed.chain[0], group, None, root=True)
        return self.shared[group]

    def step(self, step: Step, names: Names, body: list[Any]) -> None:
        if isinstance(step, GroupStep | BlockStep) and step.cond is not None:
            layers = self.chain_codes([step], names)
            if not layers:  # only permutes (NHWC already): no member, x passes on
                self.alias(step.out, step.input)
                return
            label = names.of(step.key, step.label)
            code = layers[0] if len(layers) == 1 else sequential(layers, label)
            access = self.place(code, self.attr(names, step.key), step.cond)
            cond = self.test(step.cond)
            self.apply(body, [step.input], self.slot(step.out), [layer_app(access)], cond)
            return
        super().step(step, names, body)

    def chain_codes(self, steps: list[Step], names: Names) -> list[Code]:
        """The layers a chain applies in order (for one keras.Sequential)."""
        codes: list[Code] = []
        for leaf, where in self.chain_leaves(steps, names):
            if isinstance(leaf, OpStep):
                assert isinstance(where, Names)
                codes += self.printed(leaf, where.of(leaf.key, leaf.label)).chain
            else:
                assert isinstance(where, str)
                codes.append(self.ctor(leaf, where))
        return codes

    def ctor(self, call: BlockCall, name: str) -> Code:
        args = [a.src if k is None else Kw(k, a.src) for k, a in call.args]
        return Call(call.block, (*args, Kw("name", name)))

    def block(self, step: BlockStep, names: Names, body: list[Any]) -> None:
        if step.call is not None:
            code = self.ctor(step.call, names.of(step.key, step.label))
            access = self.place(code, self.attr(names, step.key), None)
            self.apply(body, [step.input], self.slot(step.out), [layer_app(access)])
            return
        stage = names if step.flat else names.inner(step.key, step.label)
        blocks = [self.ctor(call, stage.of(key)) for key, call in step.stage or ()]
        attr = self.place(Call("", tuple(blocks), "[]"), self.attr(names, step.key), None)
        var = self.locals.new("block")
        carry, last, result = Slot("x"), Slot("x"), self.slot(step.out)
        inner: list[Any] = []
        self.apply(inner, [carry], last, [lambda xs: (var, f"({xs[0]})")])
        pre = self.slot(step.input)
        loop = Loop(pre, carry, inner, last, result, f"for {var} in {attr}:")
        pre.readers.append(loop)
        body.append(loop)

    def loop(self, step: RepeatStep, names: Names, body: list[Any]) -> None:
        loop = step.loop
        assert loop is not None
        index = loop.var if loop.var != "_" else self.locals.new("i")
        offset = f" + {loop.start}" if loop.start else ""
        inner_names = names.inner(step.key).inner(f"{loop.prefix}{{{index}{offset}}}")
        saved = self.loop_entries, self.loop_base
        self.loop_entries, self.loop_base = [], inner_names.attrs
        inner: list[Any] = []
        try:
            self.steps(loop.body, inner_names, inner)
            entries = self.loop_entries
        finally:
            self.loop_entries, self.loop_base = saved
        attr = self.attr(names, step.key)
        if entries:
            items = tuple(Entry(py_str(m.attr), guarded(m)) for m in entries)
            clause = f"for {index} in range({loop.count.src})"
            header = f"for step in {self.place(Comp(Call('', items, '{}'), clause), attr, None)}:"
        else:
            header = f"for _ in range({self.place(loop.count.src, f'num_{attr}', None)}):"
        source, result = self.slot(step.input), self.slot(step.out)
        node = Loop(source, self.slot(loop.carry), inner, self.slot(loop.last), result, header)
        source.readers.append(node)
        body.append(node)

    # ------------------------------------------------------------------ the class

    def class_source(self, base: str, params: list[str], config: list[str]) -> str:
        cls = self.cls
        x = self.slot(cls.inputs[0])
        unpack: list[str] = []
        if not cls.is_model:
            lines, outputs = self.body_lines(Names(True, root="self.name"), x, base=8)
        else:
            ins = [self.slot(v) for v in cls.inputs]
            for v in ins:
                v.var = self.locals.new(v.local)
            lines, outputs = self.body_lines(Names(False, root="self.name"), base=8)
            if len(ins) > 1:
                x, unpack = Slot("inputs", "inputs"), unpack_inputs(ins)
        init = ["super().__init__(**kwargs)"]
        init += layout("self.init_args = ", Call("", tuple(config), "{}"), base=8)
        init += self.let_lines([line for m in self.members for line in member_lines(m)], 8)
        if "in_channels" in "\n".join(init) and "in_channels" not in params and not cls.is_model:
            raise KerasEmitError("internal: in_channels used but not a parameter")
        package = py_str(self.module.plan.name)
        head = [f"@keras.saving.register_keras_serializable(package={package})"]
        head.append(f"class {cls.name}({base}):")
        doc = [f"    {line}" for line in docstring(cls.doc, 4)]
        signature = layout("def ", Call("__init__", ("self", *params, "**kwargs")), ":", base=4)
        call_sig = f"def call(self, {x.var}):"
        ret = f"return {outputs[0].var}"
        if len(outputs) > 1:
            ret = "return [" + ", ".join(str(v.var) for v in outputs) + "]"
        return "\n".join(
            [
                *head,
                *doc,
                *([""] if doc else []),
                *indent(signature),
                *indent(indent(init)),
                "",
                f"    {call_sig}",
                *indent(indent([*unpack, *lines, ret])),
                "",
                "    def get_config(self):",
                "        return {**super().get_config(), **self.init_args}",
            ]
        )


def guarded(m: Member) -> Code:
    return m.code if m.cond is None else f"{flat(m.code)} if {m.cond} else None"


def member_lines(m: Member) -> list[str]:
    """`self.attr = code`, or built only under its condition (else None)."""
    target = f"self.{m.attr} = "
    if m.cond is None:
        return layout(target, m.code, base=8)
    one = layout(target, m.code, f" if {m.cond} else None", base=8)
    if len(one) == 1:
        return one
    built = layout(target, m.code, "", 4, base=8)
    return [f"{target}None", *layout("if ", m.cond, ":", base=8), *built]


def sequential(layers: list[Code], name: str) -> Code:
    return Call("keras.Sequential", (Call("", tuple(layers), "[]"), Kw("name", name)))


def layer_suffix(code: Code, main: str) -> str:
    """`_pad` for a layer named `f"{...}_conv1_pad"` before the op's own `..._conv1`."""
    assert isinstance(code, Call)
    name = next(a.value for a in code.args if isinstance(a, Kw) and a.name == "name")
    assert isinstance(name, str)
    return name[len(main) - 1 : -1]


def unpack_inputs(ins: list[Slot]) -> list[str]:
    """A several-input model's `call` takes a list, or a dict keyed by input name (both
    as a functional model takes them)."""
    by_name = Call("", tuple(f"inputs[{py_str(v.local)}]" for v in ins), "[]")
    return [
        "if isinstance(inputs, dict):  # keyed by input name",
        *layout("inputs = ", by_name, indent=4, base=8),
        *unpacked(", ".join(str(v.var) for v in ins), base=8),
    ]


def unpacked(targets: str, base: int) -> list[str]:
    """`a, b = inputs`, parenthesized over several lines only when too long."""
    if base + len(targets) + len(" = inputs") <= WIDTH:
        return [f"{targets} = inputs"]
    return layout("", Call("", tuple(targets.split(", ")), "()"), " = inputs", base=base)


def build_call(shapes: list[str]) -> list[str]:
    """The factory's first call, which builds every layer."""
    zeros = [f"keras.ops.zeros((1, *{s}))" for s in shapes]
    if len(zeros) == 1:
        return [f"    model({zeros[0]})  # builds every layer"]
    return [
        "    # builds every layer",
        *layout("model(", Call("", tuple(zeros), "[]"), ")", 4),
    ]


def subclass_source(spec: ResolvedSpec, plan: Any, reserved: frozenset[str]) -> str:
    graph = plan.graph
    module = ModulePrinter(spec, plan, reserved)
    sections = []
    for cls in plan.blocks.values():
        names = ["in_channels"] + [p.py for p in cls.params if p.default is REQUIRED]
        names += [e.py for e in cls.extra]
        optional = [p for p in cls.params if p.default is not REQUIRED]
        params = names + [f"{p.py}={literal(p.default)}" for p in optional]
        config = [f'"{n}": {n}' for n in names + [p.py for p in optional]]
        sections.append(
            LayerPrinter(module, cls).class_source("keras.layers.Layer", params, config)
        )
    model = plan.model
    params = [f"{p.py}={literal(p.default)}" for p in model.params]
    config = [f'"{p.py}": {p.py}' for p in model.params]
    sections.append(LayerPrinter(module, model).class_source("keras.Model", params, config))
    shapes = input_shape_params(graph)
    factory_params = [
        *params,
        *(
            f"{p}={keras_shape(graph.node(n).shape)}"
            for p, n in zip(shapes, graph.inputs, strict=True)
        ),
    ]
    kws = [Kw(p.py, p.py) for p in model.params]
    build = Call(model.name, (*kws, Kw("name", py_str(graph.name))))
    factory = layout("def ", Call(plan.name, tuple(factory_params)), ":")
    factory += indent(docstring(graph.description or f"The {graph.name} model.", 4))
    factory += indent(layout("model = ", build, base=4))
    factory += [*build_call(shapes), "    return model"]
    sections.append("\n".join(factory))
    return render_module(plan, sections, module.needs)
