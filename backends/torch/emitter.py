"""TorchEmitter: a lowered Graph (with its ResolvedSpec) -> one idiomatic PyTorch module.

The structure comes from the module plan (`archspec.codegen.plan`): one class per block
type with the block's own expressions, per-instance arguments where needed, optional
members, loops and the forward wiring. This module only decides how torch writes it:
which ops are `nn.Module` members and which are functional calls, `nn.Sequential` for
chains and stages (comprehensions for runs of alike blocks, like torchvision's loops),
`nn.ModuleDict`/`nn.ModuleList` for groups and loops, in-place ops on fresh tensors,
padded helper modules for TensorFlow's 'same', and the `_init_weights` method.

Module paths equal the IR's node names, so `state_dict()` keys are the IR's parameter
names (torchvision's, for the torchvision-compatible specs). Generating never imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from archspec_torch.names import MODULE_ATTRS, RESERVED, RESERVED_NAMES
from archspec_torch.ops import PRINTERS, Printed, init_call

from archspec import ir
from archspec.analysis import param_sets
from archspec.backend import Artifact, BackendError, ZooVariant, check_options
from archspec.codegen.build import build_plan, locate
from archspec.codegen.forward import Loop, Slot, Stmt, assign_vars
from archspec.codegen.layout import (
    Call,
    Code,
    Comp,
    Entry,
    Kw,
    Namespace,
    Starred,
    docstring,
    flat,
    layout,
    literal,
    py_str,
)
from archspec.codegen.plan import (
    PY_TYPES,
    REQUIRED,
    VARIES,
    BlockCall,
    BlockStep,
    ClassPlan,
    GroupStep,
    ModulePlan,
    OpStep,
    RepeatStep,
    Step,
    Value,
    used_lets,
    walk_steps,
)
from archspec.codegen.printers import render_file
from archspec.codegen.printers import templates as backend_templates
from archspec.errors import SpecError
from archspec.ir import Graph
from archspec.registry import ResolvedSpec

STATEFUL = {"conv2d", "linear", "batch_norm"}
# Ops whose output is a new tensor that their backward does not need: an in-place op may
# overwrite it (ReLU after BatchNorm, `out += identity` after the last BatchNorm).
FRESH = {"conv2d", "linear", "batch_norm", "add", "concat", "max_pool2d", "avg_pool2d", "pad2d"}
# Stateless ops kept as (named) modules, like torchvision's `self.maxpool`; others inline.
MODULE_WHEN_NAMED = {
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "global_avg_pool",
    "global_max_pool",
    "dropout",
    "pad2d",
}


class TorchEmitError(BackendError):
    """The spec uses something the torch emitter cannot express (the message says what)."""


# ---------------------------------------------------------------------------- forward model


@dataclass
class Member:
    key: str
    code: Code
    cond: str | None = None
    parameter: bool = False  # an nn.Parameter (a scale's factor), not a submodule
    pre: list[str] = field(default_factory=list)  # statements building its parts first


class Container:
    """Where submodules live: the class (`self.conv1`) or a dict (`self.group["conv"]`)."""

    def __init__(self, access: str, in_class: bool) -> None:
        self.access = access
        self.in_class = in_class
        self.members: list[Member] = []
        self.keys: set[str] = set()

    def add(
        self,
        key: str,
        code: Code,
        cond: str | None = None,
        parameter: bool = False,
        pre: list[str] | None = None,
    ) -> str:
        if key in self.keys:
            raise TorchEmitError(f"two submodules named '{key}' in {self.access}")
        if self.in_class and key in MODULE_ATTRS:
            raise TorchEmitError(
                f"item name '{key}' collides with torch.nn.Module.{key}; rename it in the spec"
            )
        self.keys.add(key)
        self.members.append(Member(key, code, cond, parameter, pre or []))
        return self.ref(key)

    def ref(self, key: str) -> str:
        if self.in_class:
            return f"self.{key}" if key.isidentifier() else f"getattr(self, {py_str(key)})"
        return f"{self.access}[{py_str(key)}]"

    def as_dict(self) -> Code:
        entries = tuple(Entry(py_str(m.key), m.code) for m in self.members)
        return Call("nn.ModuleDict", (Call("", entries, "{}"),))


PARAMETER_PLACE = (
    "'{key}': a scale's factor is an nn.Parameter of the module around it in torch "
    "(torchvision's layer_scale), and an nn.Sequential, nn.ModuleDict or loop cannot hold "
    "one; put the item directly in a block's (or the model's) body"
)

MIN_RUN = 3  # stages at least this long are written as comprehensions, like _make_layer


def sequential(entries: list[tuple[str, Code]], min_run: int = MIN_RUN) -> Code:
    """`nn.Sequential` of named modules; runs of alike blocks become comprehensions.

    `Bottleneck(256, planes=64)` x 5 becomes `*[Bottleneck(256, planes=64) for _ in range(5)]`
    and DenseLayer(64), DenseLayer(96), ... becomes `DenseLayer(64 + 32 * i) for i in ...`:
    the same modules under the same keys, as torchvision's loops build them.
    """
    keys = [k for k, _ in entries]
    codes = [c for _, c in entries]
    if keys == [str(i) for i in range(len(entries))]:
        for start in (0, 1):
            element = loop_element(codes[start:], start)
            if element is not None and len(codes) - start >= min_run:
                var, code = element
                bounds = f"{start}, {len(codes)}" if start and var != "_" else len(codes) - start
                stop = str(bounds)
                run = Starred(Comp(code, f"for {var} in range({stop})"))
                return Call("nn.Sequential", (*codes[:start], run))
        return Call("nn.Sequential", tuple(codes))
    numbered = re.fullmatch(r"([A-Za-z_]+)(\d+)", keys[0])
    element = loop_element(codes, 0) if numbered and len(codes) >= min_run else None
    if numbered and element is not None:
        prefix, first = numbered.group(1), int(numbered.group(2))
        if keys == [f"{prefix}{first + j}" for j in range(len(keys))]:
            var = element[0] if element[0] != "_" else "i"
            offset = f" + {first}" if first else ""
            key = f'f"{prefix}{{{var}{offset}}}"'
            pair = Call("", (key, element[1]))
            run = Comp(pair, f"for {var} in range({len(codes)})")
            return Call("nn.Sequential", (Call("OrderedDict", (run,)),))
    pairs = tuple(Call("", (py_str(k), c)) for k, c in entries)
    return Call("nn.Sequential", (Call("OrderedDict", (Call("", pairs, "[]"),)),))


def loop_element(codes: list[Code], start: int) -> tuple[str, Code] | None:
    """One constructor call standing for all `codes` (indexes start, start+1, ...), with
    int arguments affine in the loop variable; None when the calls differ otherwise."""
    if not codes or not all(isinstance(c, Call) for c in codes):
        return None
    calls: list[Call] = codes  # type: ignore[assignment]
    head = calls[0]
    if any(c.func != head.func or len(c.args) != len(head.args) for c in calls):
        return None
    var = "i"
    if any(re.search(rf"\b{var}\b", flat(c)) for c in calls):
        return None  # the name is taken inside the calls
    args: list[Code | Kw | Entry | Starred] = []
    uses_var = False
    for position, arg in enumerate(head.args):
        column = [c.args[position] for c in calls]
        if all(a == arg for a in column):
            args.append(arg)
            continue
        names = {a.name if isinstance(a, Kw) else None for a in column}
        values = [a.value if isinstance(a, Kw) else a for a in column]
        if len(names) != 1 or not all(isinstance(v, str) and v.isdigit() for v in values):
            return None
        ints = [int(v) for v in values]  # type: ignore[arg-type]
        step = ints[1] - ints[0] if len(ints) > 1 else 0
        if any(v != ints[0] + step * j for j, v in enumerate(ints)):
            return None
        base = ints[0] - step * start
        term = var if step == 1 else f"{step} * {var}"
        text = term if base == 0 else f"{base} + {term}"
        uses_var = True
        name = names.pop()
        args.append(Kw(name, text) if name is not None else text)
    return (var if uses_var else "_"), Call(head.func, tuple(args), head.brackets)


# ---------------------------------------------------------------------------- one class


class ClassPrinter:
    """Writes one class (a block type, or the model) from its plan."""

    def __init__(self, module: ModulePrinter, cls: ClassPlan) -> None:
        self.module = module
        self.cls = cls
        self.root = Container("self", in_class=True)
        self.shared: dict[str, str] = {}
        self.counts: list[tuple[str, str]] = []  # int attributes (loops without modules)
        self.flags: dict[str, str] = {}  # bool attribute -> condition (optional stateless ops)
        self.body: list[Any] = []
        self.slots: dict[int, Slot] = {}
        # Stages are written one way in a class: when every stage has a first block and
        # at least two more, runs of two alike blocks are comprehensions too
        # (`Bottleneck(64, planes=64), *[Bottleneck(256, planes=64) for _ in range(2)]`).
        stages = [s for s in walk_steps(cls.body) if isinstance(s, BlockStep) and s.stage]
        self.min_run = (
            2 if stages and all(len(s.stage or ()) >= 3 for s in stages if not s.flat) else MIN_RUN
        )

    def slot(self, value: Value) -> Slot:
        if id(value) not in self.slots:
            self.slots[id(value)] = Slot(value.local)
        return self.slots[id(value)]

    def alias(self, value: Value, same: Value) -> None:
        self.slots[id(value)] = self.slot(same)

    def located(self, exc: TorchEmitError, path: str) -> SpecError:
        return locate(self.module.plan.graph, self.module.spec, path, exc, "torch")

    # ------------------------------------------------------------------ statements

    def stmt(
        self,
        body: list[Any],
        inputs: list[Slot],
        out: Slot,
        call: Callable[[Sequence[str]], Code],
        cond: str | None = None,
    ) -> Stmt:
        s = Stmt(inputs, out, call, cond)
        for v in inputs:
            v.readers.append(s)
        body.append(s)
        return s

    def add_member(
        self,
        container: Container,
        step: Step,
        code: Code,
        body: list[Any],
    ) -> None:
        cond = getattr(step, "cond", None)
        ref = container.add(step.key, code, cond)
        ins = [self.slot(v) for v in step.inputs]
        test = f"{ref} is not None" if cond else None
        self.stmt(body, ins, self.slot(step.out), lambda xs: Call(ref, tuple(xs)), test)

    def steps(self, steps: list[Step], container: Container, body: list[Any]) -> None:
        for step in steps:
            try:
                self.step(step, container, body)
            except TorchEmitError as exc:  # innermost item first: say where, as spec errors do
                raise self.located(exc, step.path) from None

    def step(self, step: Step, container: Container, body: list[Any]) -> None:
        if isinstance(step, OpStep):
            self.op(step, container, body)
        elif isinstance(step, BlockStep):
            self.add_member(container, step, self.block_code(step), body)
        elif isinstance(step, GroupStep):
            if step.chain and any(getattr(s, "cond", None) for s in step.body):
                self.built_chain(container, step, body)
                return
            if step.chain:
                self.add_member(container, step, self.member_code(step), body)
                return
            inner = Container(container.ref(step.key), in_class=False)
            self.steps(step.body, inner, body)
            self.alias(step.out, step.last)
            if inner.members:
                container.add(step.key, inner.as_dict())
        elif step.unrolled is not None:
            self.add_member(container, step, self.member_code(step), body)
        else:
            self.loop(step, container, body)

    def printed(self, step: OpStep) -> Printed:
        printed = PRINTERS[step.op.kind](step.op, step.args)
        self.module.needs |= printed.needs
        return printed

    def op(self, step: OpStep, container: Container, body: list[Any]) -> None:
        if step.parts:
            self.split(step, container, body)
            return
        printed = self.printed(step)
        kind = step.op.kind
        out = self.slot(step.out)
        out.fresh = kind in FRESH
        ins = [self.slot(v) for v in step.inputs]
        if step.share:
            assert printed.module is not None
            if step.share not in self.shared:  # the first use builds the module
                self.shared[step.share] = self.root.add(step.share, printed.module)
            ref = self.shared[step.share]
            self.stmt(body, ins, out, lambda xs: Call(ref, tuple(xs)))
        elif printed.parameter is not None:
            self.add_parameter(container, step, printed, body)
        elif step.cond is not None and printed.module is None and printed.call is not None:
            # an optional merge (MobileNetV2's residual): a flag set in __init__
            s = self.stmt(body, ins, out, printed.call, f"self.{self.flag(step)}")
            s.through = step.through
            s.inplace = printed.inplace if len(ins) <= 2 else None
        elif (
            printed.call is None
            or kind in STATEFUL
            or step.cond is not None
            or (kind in MODULE_WHEN_NAMED and step.named)
            or any(a.value is VARIES for a in step.args.fields.values())
        ):  # forward cannot see __init__'s args
            if printed.module is None:
                raise TorchEmitError(f"'{step.key}' in {self.cls.name}: {kind} cannot be optional")
            self.add_member(container, step, printed.module, body)
        else:
            s = self.stmt(body, ins, out, printed.call)
            s.inplace = printed.inplace if len(ins) <= 2 else None

    def split(self, step: OpStep, container: Container, body: list[Any]) -> None:
        """`x1, x2 = x.chunk(2, dim=1)` in forward; through a `ChannelSplit` member where
        forward cannot see the sizes (they vary between the block's instances)."""
        printed = PRINTERS[step.op.kind](step.op, step.args)
        assert printed.call is not None and printed.module is not None
        ins, out = [self.slot(v) for v in step.inputs], self.slot(step.out)
        if any(a.value is VARIES for a in step.args.fields.values()):
            self.module.needs |= printed.needs
            ref = container.add(step.key, printed.module)
            s = self.stmt(body, ins, out, lambda xs: Call(ref, tuple(xs)))
        else:
            s = self.stmt(body, ins, out, printed.call)
        s.outs = [self.slot(p) for p in step.parts]

    def add_parameter(
        self, container: Container, step: OpStep, printed: Printed, body: list[Any]
    ) -> None:
        """A bare nn.Parameter member (a scale), which only a module's own attribute can be."""
        assert printed.module is not None and printed.parameter is not None
        if not container.in_class:
            raise TorchEmitError(PARAMETER_PLACE.format(key=step.key))
        ref = container.add(step.key, printed.module, step.cond, parameter=True)
        ins = [self.slot(v) for v in step.inputs]
        call = printed.parameter
        self.stmt(
            body, ins, self.slot(step.out), lambda xs: call(ref, xs), ref if step.cond else None
        )

    def flag(self, step: OpStep) -> str:
        """The attribute forward tests: the condition's own name when it is one
        (`use_res_connect`), else `use_<item>`."""
        assert step.cond is not None
        attr = step.cond if step.cond.isidentifier() else f"use_{step.key}"
        if self.flags.get(attr, step.cond) != step.cond or attr in self.root.keys:
            raise TorchEmitError(f"attribute '{attr}' of {self.cls.name} is taken")
        self.flags[attr] = step.cond
        return attr

    def built_chain(self, container: Container, step: GroupStep, body: list[Any]) -> None:
        """A flat chain with optional members, built as torchvision's MobileNetV2 does
        (`layers.append(...)` under each condition, then `nn.Sequential(*layers)`): an
        absent member takes no index, so the keys follow the spec's flat numbering."""
        if not container.in_class:
            raise TorchEmitError(f"'{step.key}' (optional members) must be a member of a class")
        var = "layers"
        pre = [f"{var}: list[nn.Module] = []"]
        run: list[Code] = []

        def flush() -> None:
            if len(run) == 1:
                pre.extend(layout("", Call(f"{var}.append", (run[0],)), base=8))
            elif run:
                pre.extend(layout("", Call(f"{var}.extend", (Call("", tuple(run), "[]"),)), base=8))
            run.clear()

        for inner in step.body:
            cond = getattr(inner, "cond", None)
            entries = self.entries([inner])
            if cond is None:
                run.extend(code for _, code in entries)
                continue
            flush()
            pre += layout("if ", cond, ":", base=8)
            for _, code in entries:
                pre += layout("", Call(f"{var}.append", (code,)), "", 4, base=8)
        flush()
        ref = container.add(step.key, Call("nn.Sequential", (f"*{var}",)), pre=pre)
        ins = [self.slot(step.input)]
        self.stmt(body, ins, self.slot(step.out), lambda xs: Call(ref, tuple(xs)))

    def entries(self, steps: list[Step]) -> list[tuple[str, Code]]:
        """(key, module) of each step in an nn.Sequential; a flat stage's blocks each."""
        out: list[tuple[str, Code]] = []
        for step in steps:
            if isinstance(step, BlockStep) and step.flat:
                out += [(key, call_code(call)) for key, call in step.stage or ()]
            else:
                out.append((step.key, self.member_code(step)))
        return out

    def member_code(self, step: Step) -> Code:
        """The step as one module (inside an nn.Sequential): chains only."""
        if isinstance(step, OpStep) and self.printed(step).parameter is not None:
            raise TorchEmitError(PARAMETER_PLACE.format(key=step.key))
        if isinstance(step, OpStep):
            module = self.printed(step).module
            assert module is not None  # chains hold single-input ops, which all have one
            return module
        if isinstance(step, BlockStep):
            return self.block_code(step)
        if isinstance(step, GroupStep):
            if any(getattr(s, "cond", None) for s in step.body):
                raise TorchEmitError(f"'{step.key}' (optional members) must be a member of a class")
            return sequential(self.entries(step.body))
        assert isinstance(step, RepeatStep) and step.unrolled is not None
        return sequential(
            [
                (it.key, sequential([(s.key, self.member_code(s)) for s in it.body]))
                for it in step.unrolled
            ]
        )

    def block_code(self, step: BlockStep) -> Code:
        if step.call is not None:
            return call_code(step.call)
        return sequential([(key, call_code(call)) for key, call in step.stage or ()], self.min_run)

    def loop(self, step: RepeatStep, container: Container, body: list[Any]) -> None:
        loop = step.loop
        assert loop is not None
        inner = Container("step", in_class=False)
        loop_body: list[Any] = []
        self.steps(loop.body, inner, loop_body)
        if inner.members:
            element = inner.as_dict()
            if loop.prefix == "" and loop.start == 0:
                clause = f"for {loop.var} in range({loop.count.src})"
                code: Code = Call("nn.ModuleList", (Comp(element, clause),))
                header = "for step in {}:"
            else:
                start = f" + {loop.start}" if loop.start else ""
                key = f'f"{loop.prefix}{{i{start}}}"'
                code = Call(
                    "nn.ModuleDict",
                    (Comp(Entry(key, element), f"for i in range({loop.count.src})", "{}"),),
                )
                header = "for step in {}.values():"
            header = header.format(container.add(step.key, code))
        else:
            attr = f"num_{step.key}"
            self.counts.append((attr, loop.count.src))
            header = f"for _ in range(self.{attr}):"
        source = self.slot(step.input)
        result = self.slot(step.out)
        node = Loop(source, self.slot(loop.carry), loop_body, self.slot(loop.last), result, header)
        source.readers.append(node)
        body.append(node)

    # ------------------------------------------------------------------ the class

    def forward(self) -> list[str]:
        for value in self.cls.inputs:
            self.slot(value).var = value.local
        self.steps(self.cls.body, self.root, self.body)
        outputs = [self.slot(v) for v in self.cls.outputs]
        for v in outputs:
            v.readers.append("return")
        assign_vars(self.body, Namespace(RESERVED | {v.var for v in outputs if v.var}), "out")
        lines = emit_body(self.body)
        if len(outputs) == 1:
            return [*lines, f"return {outputs[0].var}"]
        return lines + layout("return ", Call("", tuple(str(v.var) for v in outputs)))

    def block_source(self) -> str:
        cls = self.cls
        forward = self.forward()
        sig: list[str] = ["self", "in_channels: int"]
        for p in [p for p in cls.params if p.default is REQUIRED]:
            sig.append(f"{p.py}: {PY_TYPES[p.type]}")
        sig += [f"{e.py}: {e.type}" for e in cls.extra]
        for p in [p for p in cls.params if p.default is not REQUIRED]:
            sig.append(f"{p.py}: {PY_TYPES[p.type]} = {literal(p.default)}")
        if any(p.type in ("ints", "floats") for p in cls.params):
            self.module.needs.add("sequence")
        return render_class(
            cls.name,
            doc=docstring(cls.doc, 4),
            attrs=self.class_attrs(),
            signature=layout("def ", Call("__init__", tuple(sig)), " -> None:", base=4),
            init=self.init_section(),
            forward_signature=["def forward(self, x: torch.Tensor) -> torch.Tensor:"],
            forward=forward,
        )

    def model_source(self) -> str:
        cls = self.cls
        forward = self.forward()
        init = self.init_section()
        init_weights = self.module.init_weights()
        if init_weights:
            init.append("self._init_weights()")
        sig = ["self", *[f"{p.py}: {PY_TYPES[p.type]} = {literal(p.default)}" for p in cls.params]]
        args = [f"{v.local}: torch.Tensor" for v in cls.inputs]
        ret = "torch.Tensor" if len(cls.outputs) == 1 else "tuple[torch.Tensor, ...]"
        methods = [["def _init_weights(self) -> None:", *["    " + s for s in init_weights]]]
        return render_class(
            cls.name,
            doc=docstring(cls.doc, 4),
            signature=layout("def ", Call("__init__", tuple(sig)), " -> None:", base=4),
            init=init,
            forward_signature=layout(
                "def ", Call("forward", ("self", *args)), f" -> {ret}:", base=4
            ),
            forward=forward,
            methods=methods if init_weights else [],
        )

    def init_section(self) -> list[str]:
        lines: list[str] = []
        for m in self.root.members:
            lines += m.pre
            if m.key.isidentifier():
                target, close = f"self.{m.key} = ", ""
            else:
                register = "register_parameter" if m.parameter else "add_module"
                target, close = f"self.{register}({py_str(m.key)}, ", ")"
            if m.cond is None:
                lines += layout(target, m.code, close, base=8)
                continue
            one = layout(target, m.code, f" if {m.cond} else None{close}", base=8)
            if len(one) == 1:
                lines += one
            else:
                lines.append(f"{target}None{close}")
                lines += layout("if ", m.cond, ":", base=8)
                lines += layout(target, m.code, close, 4, base=8)
        lines += [f"self.{attr} = {src}" for attr, src in self.counts]
        return self.with_lets(lines)

    def with_lets(self, lines: list[str]) -> list[str]:
        """`super().__init__()`, the block's derived values as locals (a flag's own value
        straight into its attribute, as torchvision's `self.use_res_connect = ...`), then
        `lines`. Constant lets are class attributes (`class_attrs`), read as `self.name`."""
        consts = [let.py for let in self.cls.lets if let.const]
        pattern = re.compile(rf"(?<![\w.\"])({'|'.join(map(re.escape, consts))})\b")

        def attrs(text: str) -> str:
            return pattern.sub(r"self.\1", text) if consts else text

        lines = [attrs(line) for line in lines]
        flags = {attr: attrs(cond) for attr, cond in self.flags.items()}
        text = "\n".join(lines)
        head: list[str] = ["super().__init__()"]
        for let in used_lets(self.cls.lets, text + "\n" + "\n".join(flags.values())):
            if let.const:
                continue
            if flags.get(let.py) == let.py and not re.search(rf"\b{let.py}\b", text):
                head += layout(f"self.{let.py} = ", attrs(let.src), base=8)
                del flags[let.py]
            else:
                head += layout(f"{let.py} = ", attrs(let.src), base=8)
        for attr, cond in flags.items():
            head += layout(f"self.{attr} = ", cond, base=8)
        return head + lines

    def class_attrs(self) -> list[str]:
        return [f"{let.py} = {let.src}" for let in self.cls.lets if let.const]


def call_code(call: BlockCall) -> Code:
    return Call(call.block, tuple(a.src if k is None else Kw(k, a.src) for k, a in call.args))


# ---------------------------------------------------------------------------- forward source


def emit_body(body: list[Any], base: int = 8) -> list[str]:
    lines: list[str] = []
    for s in body:
        if isinstance(s, Loop):
            if s.pre.var != "out":
                lines.append(f"out = {s.pre.var}")
            lines.append(s.header)
            if s.carry.var != "out":
                lines.append(f"    {s.carry.var} = out")
            lines += ["    " + line for line in emit_body(s.body, base + 4)]
            if s.result.var != "out":
                lines.append(f"{s.result.var} = out")
            continue
        first = s.inputs[0] if s.inputs else None
        test = layout("if ", s.cond, ":", base=base) if s.cond is not None else []
        if (
            s.inplace
            and first is not None
            and first.fresh
            and first.readers == [s]
            and first.var == s.out.var
            and (s.cond is None or s.through == 0)
        ):
            inplace = s.inplace([str(v.var) for v in s.inputs])
            lines += [*test, f"    {inplace}"] if test else [inplace]
            continue
        code = s.call([v.var for v in s.inputs])  # type: ignore[misc]
        if s.cond is None:
            lines += layout(f"{s.out.var} = ", code, base=base)
            continue
        if s.out.var != s.inputs[s.through].var:
            lines.append(f"{s.out.var} = {s.inputs[s.through].var}")
        lines += test
        lines += layout(f"{s.out.var} = ", code, "", 4, base=base)
    return lines


# ---------------------------------------------------------------------------- the file


@dataclass
class ModulePrinter:
    spec: ResolvedSpec
    plan: ModulePlan
    needs: set[str] = field(default_factory=set)

    def class_sources(self) -> tuple[list[str], str]:
        """Block classes, in order of first use, and the model class."""
        blocks = [ClassPrinter(self, c).block_source() for c in self.plan.blocks.values()]
        return blocks, ClassPrinter(self, self.plan.model).model_source()

    def init_weights(self) -> list[str]:
        """Body of `_init_weights`: the IR's initializers, per module type when uniform."""
        groups: dict[str, dict[tuple[ir.Init, ir.Init | None], list[str]]] = {}
        for name, node in param_sets(self.plan.graph).items():
            op = node.op
            if isinstance(op, ir.Conv2d | ir.Linear):
                kind = "nn.Conv2d" if isinstance(op, ir.Conv2d) else "nn.Linear"
                key = (op.weight_init, op.bias_init if op.bias else None)
                groups.setdefault(kind, {}).setdefault(key, []).append(name)
        uniform: dict[tuple[str, ...], list[str]] = {}  # statements -> module types
        by_name: list[str] = []
        for kind, inits in groups.items():
            for (winit, binit), names in inits.items():
                stmts = []
                for init, tensor in ((winit, "weight"), (binit, "bias")):
                    if init is None:
                        continue
                    text, needs = init_call(init, f"m.{tensor}")
                    self.needs |= needs
                    if text is not None:
                        stmts.append(text)
                if not stmts:
                    continue
                if len(inits) == 1:
                    uniform.setdefault(tuple(stmts), []).append(kind)
                else:
                    by_name += layout(
                        "for name in ", Call("", tuple(py_str(n) for n in names)), ":", base=8
                    )
                    by_name += ["    m = self.get_submodule(name)", *["    " + s for s in stmts]]
        lines = ["for m in self.modules():"] if uniform else []
        for i, (stmts, kinds) in enumerate(uniform.items()):
            lines.append(f"    {'el' if i else ''}if isinstance(m, {' | '.join(kinds)}):")
            lines += ["        " + s for s in stmts]
        return lines + by_name


def render_class(name: str, **parts: Any) -> str:
    parts.setdefault("methods", [])
    parts.setdefault("attrs", [])
    return templates().get_template("block.py.j2").render(name=name, **parts).rstrip() + "\n"


def templates() -> jinja2.Environment:
    return backend_templates("archspec_torch")


def emit_source(spec: ResolvedSpec, graph: Graph) -> str:
    return module_source(spec, build_plan(spec, graph, RESERVED))


def module_source(spec: ResolvedSpec, plan: ModulePlan) -> str:
    graph, module, model = plan.graph, plan.name, plan.model
    printer = ModulePrinter(spec, plan)
    blocks, model_src = printer.class_sources()
    factory_sig = tuple(f"{p.py}: {PY_TYPES[p.type]} = {literal(p.default)}" for p in model.params)
    factory = layout("def ", Call(module, factory_sig), f" -> {model.name}:")
    factory += ["    " + line for line in docstring(graph.description or f"The {module} model.", 4)]
    factory += [
        "    " + line
        for line in layout(
            "return ", Call(model.name, tuple(Kw(p.py, p.py) for p in model.params)), base=4
        )
    ]
    helpers = templates().get_template("helpers.py.j2").module
    needs = set(printer.needs)
    if needs & {"padded_conv2d", "PaddedMaxPool2d", "PaddedAvgPool2d"}:
        needs.add("same_sides")
    sections = [str(getattr(helpers, name)()).rstrip() for name in HELPERS if name in needs]
    sections += [c.rstrip() for c in blocks]
    sections += [model_src.rstrip(), "\n".join(factory)]
    body = "\n".join(sections)
    return render_file("archspec_torch", graph, sections, uses=uses(body))


HELPERS = (
    "same_sides",
    "padded_conv2d",
    "PaddedMaxPool2d",
    "PaddedAvgPool2d",
    "variance_scaling",
    "StochasticDepth",
    "LayerNorm2d",
    "Permute",
    "ChannelChunk",
    "ChannelSplit",
)


def uses(text: str) -> dict[str, bool]:
    """Imports the module needs: decided from the source itself, so none is unused."""
    return {
        "math": "math." in text,
        "ordered_dict": "OrderedDict(" in text,
        "sequence": "Sequence[" in text,
        "any": ": Any" in text,
        "functional": "F." in text,
    }


class TorchEmitter:
    """The `torch` backend: `emit(spec, graph)` -> the generated module as an Artifact."""

    name = "torch"
    file_suffix = ".py"
    options: tuple[str, ...] = ()
    zoo_variants = (ZooVariant("torch"),)
    reserved_names = RESERVED_NAMES

    def emit(
        self, spec: ResolvedSpec, graph: Graph, options: Mapping[str, Any] | None = None
    ) -> Artifact:
        check_options(self, options or {})
        return Artifact(f"{graph.name}{self.file_suffix}", emit_source(spec, graph).encode())
