"""TorchEmitter: a lowered Graph (with its ResolvedSpec) -> one idiomatic PyTorch module.

The generated file has one `nn.Module` class per block type, written from the block's
spec body: `__init__(self, in_channels, <block params>)` computes channel counts and
strides with the block's own expressions (printed by `archspec.expr.to_python`), items
with `when:` become Optional submodules, an inline `repeat` becomes a loop over an
`nn.ModuleList`, and a shared-weight group is one attribute called at every use. Each
symbolic value is checked against the lowered graph in every instance of the block; a
value that cannot be written that way becomes a literal (when all instances agree) or a
per-instance constructor argument. The model class wires the top level with concrete
numbers, except the spec parameters shown to take effect when passed (`num_classes`),
which it and the factory function accept.

Module paths equal the IR's node names, so `state_dict()` keys are the IR's parameter
names (torchvision's, for the torchvision-compatible specs). Generating never imports torch.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2
from archspec_torch.names import MODULE_ATTRS, RESERVED, RESERVED_NAMES
from archspec_torch.ops import (
    PRINTERS,
    VARIES,
    Arg,
    Args,
    Call,
    Code,
    Comp,
    Entry,
    Kw,
    PadPlan,
    Starred,
    flat,
    init_call,
    layout,
    pair_src,
    py_str,
)

import archspec
from archspec import ir
from archspec.analysis import param_sets
from archspec.backend import Artifact, BackendError, ZooVariant, check_options
from archspec.errors import SpecError
from archspec.expr import (
    Binary,
    Expr,
    ExprError,
    IfElse,
    Name,
    Num,
    evaluate,
    expression_text,
    parse,
    to_python,
)
from archspec.expr import names as free_names
from archspec.ir import Graph, Node
from archspec.lower import Names, field_default, lower
from archspec.params import check_value
from archspec.registry import Located, ResolvedSpec, header_path
from archspec.spec import BlockItem, ScopeItem

# Spec op -> {IR field: spec field} for fields a spec may write as expressions.
SPEC_FIELDS: dict[str, dict[str, str]] = {
    "conv": {
        "out_channels": "out",
        "kernel_size": "kernel",
        "stride": "stride",
        "dilation": "dilation",
        "groups": "groups",
        "bias": "bias",
    },
    "linear": {"out_features": "out", "bias": "bias"},
    "batch_norm": {"eps": "eps", "momentum": "momentum", "affine": "affine"},
    "leaky_relu": {"negative_slope": "slope"},
    "dropout": {"rate": "rate"},
    "max_pool": {"kernel_size": "kernel", "stride": "stride", "ceil_mode": "ceil_mode"},
    "avg_pool": {
        "kernel_size": "kernel",
        "stride": "stride",
        "ceil_mode": "ceil_mode",
        "count_include_pad": "count_include_pad",
    },
    "adaptive_avg_pool": {"output_size": "size"},
    "pad": {"value": "value"},
    "global_avg_pool": {"keepdims": "keepdims"},
    "global_max_pool": {"keepdims": "keepdims"},
}
CHANNEL_FIELD = {"conv2d": "in_channels", "linear": "in_features", "batch_norm": "num_features"}
PAIR_FIELDS = {"kernel_size", "stride", "dilation", "output_size", "padding"}
NOT_ARGS = {"kind", "padding", "weight_init", "bias_init", "shape", "axis", "approximate"}
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
PY_TYPES = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "ints": "Sequence[int]",
    "floats": "Sequence[float]",
}


class TorchEmitError(BackendError):
    """The spec uses something the torch emitter cannot express (the message says what)."""


# ---------------------------------------------------------------------------- small helpers


class Namespace:
    """Unique, legal Python names (torch.fx's idea): `base`, `base_1`, ..."""

    def __init__(self, reserved: frozenset[str] | set[str]) -> None:
        self.used = set(reserved)
        self.next: dict[str, int] = {}  # base -> first suffix not known to be taken

    def new(self, base: str) -> str:
        if not base.isidentifier():
            base = f"v{base}" if f"v{base}".isidentifier() else "v"
        name, i = base, self.next.get(base, 1)
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.next[base] = i
        self.used.add(name)
        return name


def literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else f'float("{value}")'
    if isinstance(value, tuple) and len(value) == 2:
        return pair_src(value)
    if isinstance(value, list | tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, str):
        return py_str(value)
    raise TorchEmitError(f"cannot print value {value!r} as Python source")


def normalize(fname: str, value: Any) -> Any:
    if fname in PAIR_FIELDS:
        return tuple(value) if isinstance(value, list | tuple) else (value, value)
    return tuple(value) if isinstance(value, list) else value


def same_value(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def class_name(spec_name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in spec_name.split("_") if part)


def docstring(text: str, indent: int) -> list[str]:
    """A docstring from spec text; quotes and backslashes are replaced, so it stays text."""
    clean = " ".join("".join(c for c in text if c.isprintable()).split())
    clean = clean.replace("\\", "/").replace('"', "'").strip()
    if not clean:
        return []
    if clean.endswith("'"):
        clean += "."
    if indent + len(clean) + 6 <= 100:
        return [f'"""{clean}"""']
    wrapped = textwrap.wrap(clean, width=100 - indent - 3)
    if len(wrapped) == 1:  # ruff joins a one-line docstring with its closing quotes
        wrapped = textwrap.wrap(clean, width=max(20, len(clean) * 2 // 3))
    return ['"""' + wrapped[0], *wrapped[1:], '"""']


def item_local(item: Any, index: int) -> str:
    return item.name or str(index)


def is_op_item(item: Any) -> bool:
    return not isinstance(item, BlockItem | ScopeItem)


def spec_path(graph: Graph) -> str:
    """The spec's path for the header: `specs/<name>.yaml` for the zoo, never absolute."""
    return header_path(graph.spec_file)


def has_share(items: list[Any]) -> bool:
    for item in items:
        if getattr(item, "share", None):
            return True
        if isinstance(item, ScopeItem) and has_share(item.body):
            return True
    return False


# ---------------------------------------------------------------------------- forward model


@dataclass(frozen=True)
class Frame:
    """One instance's view of a body: node-name prefix ("layer1.0.") and expression values."""

    prefix: str
    env: dict[str, Any]


@dataclass(eq=False)
class Value:
    """A tensor in forward: produced by a statement (or an input), read by later ones."""

    local: str  # spec name, the base of its variable name
    chan: Expr | None = None  # symbolic channel count when known
    var: str | None = None
    readers: list[Any] = field(default_factory=list)  # Stmt, Loop or "return"
    fresh: bool = False  # a new tensor no other value aliases (in-place ops may reuse it)


@dataclass(eq=False)
class Stmt:
    inputs: list[Value]
    out: Value
    call: Callable[[Sequence[str]], Code]
    cond: str | None = None  # Optional submodule: run only when it is not None
    member: tuple[int, str] | None = None  # (container id, key) of the module it calls
    inplace: Callable[[Sequence[str]], str] | None = None  # statement updating inputs[0]


@dataclass(eq=False)
class Loop:
    pre: Value  # enters the first iteration
    carry: Value  # the iteration's input
    body: list[Any]
    last: Value  # the iteration's output
    result: Value  # after the loop
    header: str


@dataclass
class Member:
    key: str
    code: Code
    cond: str | None = None


class Container:
    """Where submodules live: the class (`self.conv1`) or a dict (`self.group["conv"]`)."""

    def __init__(self, access: str, in_class: bool) -> None:
        self.access = access
        self.in_class = in_class
        self.members: list[Member] = []
        self.keys: set[str] = set()

    def add(self, key: str, code: Code, cond: str | None = None) -> str:
        if key in self.keys:
            raise TorchEmitError(f"two submodules named '{key}' in {self.access}")
        self.keys.add(key)
        if self.in_class and key in MODULE_ATTRS:
            raise TorchEmitError(
                f"item name '{key}' collides with torch.nn.Module.{key}; rename it in the spec"
            )
        self.members.append(Member(key, code, cond))
        return self.ref(key)

    def ref(self, key: str) -> str:
        if self.in_class:
            return f"self.{key}" if key.isidentifier() else f"getattr(self, {py_str(key)})"
        return f"{self.access}[{py_str(key)}]"

    def as_dict(self) -> Code:
        entries = tuple(Entry(py_str(m.key), m.code) for m in self.members)
        return Call("nn.ModuleDict", (Call("", entries, "{}"),))


MIN_RUN = 3  # stages at least this long are written as comprehensions, like _make_layer


def sequential(entries: list[tuple[str, Code]]) -> Code:
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
            if element is not None and len(codes) - start >= MIN_RUN:
                var, code = element
                bounds = f"{start}, {len(codes)}" if start and var != "_" else len(codes) - start
                stop = str(bounds)
                run = Starred(Comp(code, f"for {var} in range({stop})"))
                return Call("nn.Sequential", (*codes[:start], run))
        return Call("nn.Sequential", tuple(codes))
    numbered = re.fullmatch(r"([A-Za-z_]+)(\d+)", keys[0])
    element = loop_element(codes, 0) if numbered and len(codes) >= MIN_RUN else None
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


class ClassBuilder:
    """Writes one class (a block type, or the model) from a spec body and its instances."""

    def __init__(
        self,
        em: ModuleEmitter,
        name: str,
        n_instances: int,
        symbols: dict[str, str],
        is_model: bool,
    ) -> None:
        self.em = em
        self.graph = em.graph
        self.name = name
        self.n = n_instances
        self.symbols = symbols  # spec name -> Python name, for names that may stay symbolic
        self.is_model = is_model
        self.root = Container("self", in_class=True)
        self.extra: dict[str, list[Any]] = {}  # per-instance constructor arguments (fallback)
        self.extra_types: dict[str, str] = {}
        self.params = Namespace(RESERVED | set(symbols.values()))
        self.shared: dict[str, str] = {}
        self.counts: list[tuple[str, str]] = []  # int attributes (loops without modules)
        self.body: list[Any] = []

    # ------------------------------------------------------------------ symbolic values

    def sym(self, raw: Any) -> Expr | None:
        found = expression_text(raw)
        if found is None:
            return None
        try:
            expr = parse(found[0])
        except ExprError:
            return None
        return expr if free_names(expr) <= set(self.symbols) else None

    @staticmethod
    def holds(expr: Expr, values: list[Any], envs: list[dict[str, Any]], fname: str) -> bool:
        for value, env in zip(values, envs, strict=True):
            try:
                got = evaluate(expr, env)
            except ExprError:
                return False
            if not same_value(normalize(fname, got), value):
                return False
        return True

    def arg(
        self,
        key: str,
        sym: Expr | None,
        values: list[Any],
        frames: list[Frame],
        fname: str,
        present: list[int],
    ) -> Arg:
        """A field's source: symbolic when it holds everywhere, else a literal, else an argument."""
        values = [normalize(fname, v) for v in values]
        envs = [f.env for f in frames]
        if sym is not None and free_names(sym) and self.holds(sym, values, envs, fname):
            return Arg(to_python(sym, self.symbols.__getitem__), expr=sym)
        if all(same_value(v, values[0]) for v in values):
            value = values[0]
            return Arg(literal(value), value, Num(value) if type(value) is int else None)
        if self.is_model:
            raise TorchEmitError(f"internal: '{key}' varies in the model class")
        return Arg(self.extra_arg(key, values, present))

    def extra_arg(self, key: str, values: list[Any], present: list[int]) -> str:
        name = self.params.new(key)
        per: list[Any] = [None] * self.n
        for i, v in zip(present, values, strict=True):
            per[i] = v
        self.extra[name] = per
        sample = values[0]
        self.extra_types[name] = (
            "bool"
            if isinstance(sample, bool)
            else "int"
            if isinstance(sample, int)
            else "float"
            if isinstance(sample, float)
            else "Any"
        )
        return name

    # ------------------------------------------------------------------ bodies

    def walk(
        self,
        items: list[Any],
        frames: list[Frame | None],
        names: Names[Value],
        current: Value,
        container: Container,
        body: list[Any],
        modules: bool = False,
    ) -> Value:
        for index, item in enumerate(items):
            local = item_local(item, index)
            sources = self.inputs_of(item, names, current)
            live = [i for i, f in enumerate(frames) if f is not None]
            present = [i for i in live if self.exists(frames[i].prefix + local, item)]  # type: ignore[union-attr]
            if not present:
                names.values[local] = sources[0]
                current = sources[0]
                continue
            cond = None
            if item.when is not None or len(present) != len(live):
                cond = self.condition(item, local, frames, live, present)
            sub = [
                Frame(f.prefix + local, f.env) if f is not None and i in present else None
                for i, f in enumerate(frames)
            ]
            try:
                if isinstance(item, BlockItem):
                    out = self.block_item(
                        item, local, sub, present, sources[0], container, body, cond
                    )
                elif isinstance(item, ScopeItem):
                    out = self.scope_item(
                        item, local, sub, present, sources[0], names, container, body, cond
                    )
                else:
                    out = self.op_item(
                        item, local, sub, present, sources, container, body, cond, modules
                    )
            except TorchEmitError as exc:  # innermost item first: say where, as spec errors do
                raise self.em.located(exc, sub[present[0]].prefix) from None  # type: ignore[union-attr]
            names.values[local] = out
            current = out
        return current

    def exists(self, path: str, item: Any) -> bool:
        return path in self.graph if is_op_item(item) else path in self.em.scopes

    def inputs_of(self, item: Any, names: Names[Value], current: Value) -> list[Value]:
        refs = item.inputs if item.inputs is not None else [item.input] if item.input else None
        if refs is None:
            return [current]
        out = []
        for ref in refs:
            found = current if ref == "prev" else names.lookup(ref)
            if found is None:
                raise TorchEmitError(f"internal: unknown item '{ref}' in {self.name}")
            out.append(found)
        return out

    def condition(
        self, item: Any, local: str, frames: list[Frame | None], live: list[int], present: list[int]
    ) -> str | None:
        flags = [i in present for i in live]
        sym = self.sym(item.when) if item.when is not None else None
        envs = [frames[i].env for i in live]  # type: ignore[union-attr]
        if sym is not None and free_names(sym) and self.holds(sym, flags, envs, "when"):
            return to_python(sym, self.symbols.__getitem__)
        if all(flags):
            return None
        return self.extra_arg(f"use_{local}", flags, live)

    def stmt(
        self,
        body: list[Any],
        inputs: list[Value],
        out: Value,
        call: Callable[[Sequence[str]], Code],
        cond: str | None = None,
        member: tuple[int, str] | None = None,
    ) -> None:
        s = Stmt(inputs, out, call, cond, member)
        for v in inputs:
            v.readers.append(s)
        body.append(s)

    def add_member(
        self,
        container: Container,
        key: str,
        code: Code,
        cond: str | None,
        body: list[Any],
        inputs: list[Value],
        out: Value,
    ) -> None:
        ref = container.add(key, code, cond)
        self.stmt(
            body,
            inputs,
            out,
            lambda xs: Call(ref, tuple(xs)),
            ref if cond else None,
            (id(container), key),
        )

    # ------------------------------------------------------------------ ops

    def raw(self, item: Any, sfield: str) -> Any:
        value = getattr(item, sfield, None)
        return self.em.default(item.op, sfield) if value is None else value

    def op_item(
        self,
        item: Any,
        local: str,
        sub: list[Frame | None],
        present: list[int],
        sources: list[Value],
        container: Container,
        body: list[Any],
        cond: str | None,
        modules: bool,
    ) -> Value:
        nodes = [self.graph.node(sub[i].prefix) for i in present]  # type: ignore[union-attr]
        frames = [sub[i] for i in present]
        op = nodes[0].op
        fields: dict[str, Arg] = {}
        for ifield, sfield in SPEC_FIELDS.get(item.op, {}).items():
            raw = self.raw(item, sfield)
            if raw is None and ifield == "stride":  # pools: stride defaults to the kernel
                raw = self.raw(item, "kernel")
            fields[ifield] = self.arg(
                f"{local}_{ifield}",
                self.sym(raw),
                [getattr(n.op, ifield) for n in nodes],
                frames,
                ifield,
                present,
            )  # type: ignore[arg-type]
        for ifield in type(op).model_fields:
            if ifield not in fields and ifield not in NOT_ARGS:
                chan = sources[0].chan if ifield == CHANNEL_FIELD.get(op.kind) else None
                fields[ifield] = self.arg(
                    f"{local}_{ifield}",
                    chan,
                    [getattr(n.op, ifield) for n in nodes],
                    frames,
                    ifield,  # type: ignore[arg-type]
                    present,
                )
        pad = (
            self.pad_plan(item, local, nodes, frames)
            if "padding" in type(op).model_fields
            else PadPlan("none")
        )
        rank = len(self.graph.node(nodes[0].inputs[0]).shape)
        printed = PRINTERS[op.kind](op, Args(fields, pad, rank))
        self.em.needs |= printed.needs
        out = Value(local, chan=self.out_chan(op, fields, sources, nodes), fresh=op.kind in FRESH)
        share = getattr(item, "share", None)
        if share:
            assert printed.module is not None
            ref = self.shared_member(share, printed.module, nodes, present)
            self.stmt(body, sources, out, lambda xs: Call(ref, tuple(xs)))
        elif (
            printed.call is None
            or op.kind in STATEFUL
            or cond is not None
            or modules
            or (op.kind in MODULE_WHEN_NAMED and item.name is not None)
            or any(a.value is VARIES for a in fields.values())
        ):  # forward cannot see __init__'s args
            if printed.module is None:
                if modules:  # add/concat inside a Sequential candidate: not a chain
                    self.stmt(body, sources, out, printed.call)  # type: ignore[arg-type]
                    return out
                raise TorchEmitError(f"'{local}' in {self.name}: {op.kind} cannot be optional")
            self.add_member(container, local, printed.module, cond, body, sources, out)
        else:
            self.stmt(body, sources, out, printed.call)
            inplace = printed.inplace if len(sources) <= 2 else None
            body[-1].inplace = inplace
        return out

    def shared_member(self, group: str, code: Code, nodes: list[Node], present: list[int]) -> str:
        for node in nodes:
            scope = ".".join(node.scope)
            if node.param_name != (f"{scope}.{group}" if scope else group):
                raise TorchEmitError(
                    f"shared group '{group}' of {node.name} is bound at "
                    f"'{node.param_name}', outside the {self.name} class"
                )
        # The first use builds the module. Later uses may spell its arguments differently
        # (`in_channels` vs `width`), but lowering checked that in every instance all uses
        # have identical ops, so the first use's arguments are right for all of them.
        if group not in self.shared:
            self.shared[group] = self.root.add(group, code)
        return self.shared[group]

    def out_chan(
        self, op: ir.Op, fields: dict[str, Arg], sources: list[Value], nodes: list[Node]
    ) -> Expr | None:
        if isinstance(op, ir.Conv2d):
            return fields["out_channels"].expr
        if isinstance(op, ir.Linear):
            return fields["out_features"].expr
        if isinstance(op, ir.Concat):
            parts = [s.chan for s in sources]
            if any(p is None for p in parts):
                return None
            total: Expr = parts[0]  # type: ignore[assignment]
            for part in parts[1:]:
                total = Binary("+", total, part)  # type: ignore[arg-type]
            return total if free_names(total) else Num(evaluate(total, {}))
        if isinstance(op, ir.Flatten):
            spatial = {self.graph.node(n.inputs[0]).shape[1:] for n in nodes}
            chan = sources[0].chan
            if len(spatial) != 1 or chan is None:
                return None
            size = 1
            for d in next(iter(spatial)):
                size *= d
            return chan if size == 1 else Binary("*", chan, Num(size))
        return sources[0].chan

    def pad_plan(self, item: Any, local: str, nodes: list[Node], frames: list[Frame]) -> PadPlan:
        ops: list[Any] = [n.op for n in nodes]
        pads = [o.padding for o in ops]
        if pads[0].same:
            geom = {(o.kernel_size, o.stride, getattr(o, "dilation", (1, 1))) for o in ops}
            return same_plan(geom)
        sym = self.sym(self.raw(item, "padding")) if item is not None else None
        if (
            sym is not None
            and free_names(sym)
            and all(p.symmetric for p in pads)
            and self.holds(sym, [(p.top, p.left) for p in pads], [f.env for f in frames], "padding")
        ):
            return PadPlan("symmetric", to_python(sym, self.symbols.__getitem__))
        if len(set(pads)) != 1:
            raise TorchEmitError(
                f"'{local}' in {self.name}: padding differs between instances and is "
                "not an expression of the block's parameters"
            )
        return fixed_plan(pads[0])

    # ------------------------------------------------------------------ blocks

    def block_item(
        self,
        item: BlockItem,
        local: str,
        sub: list[Frame | None],
        present: list[int],
        source: Value,
        container: Container,
        body: list[Any],
        cond: str | None,
    ) -> Value:
        if item.repeat is None:
            code = self.block_ctor(item, local, sub, present, source.chan, first=False)
        else:
            children = [self.em.children(sub[i].prefix) for i in present]  # type: ignore[union-attr]
            if any(len(c) != len(children[0]) for c in children):
                raise TorchEmitError(
                    f"stage '{local}' in {self.name} has a different length per "
                    "instance; the torch emitter needs it fixed"
                )
            entries = []
            chan = source.chan
            for j, path in enumerate(children[0]):
                frames: list[Frame | None] = [None] * self.n
                for i, ch in zip(present, children, strict=True):
                    frames[i] = Frame(ch[j], sub[i].env)  # type: ignore[union-attr]
                entries.append(
                    (
                        path.rsplit(".", 1)[-1],
                        self.block_ctor(item, local, frames, present, chan, first=j == 0),
                    )
                )
                chan = None
            code = sequential(entries)
        out = Value(local)
        self.add_member(container, local, code, cond, body, [source], out)
        return out

    def block_ctor(
        self,
        item: BlockItem,
        local: str,
        sub: list[Frame | None],
        present: list[int],
        in_chan: Expr | None,
        first: bool,
    ) -> Code:
        scopes = [self.em.scopes[sub[i].prefix] for i in present]  # type: ignore[union-attr]
        btype = scopes[0].block_type
        if btype is None or any(s.block_type != btype for s in scopes):
            raise TorchEmitError(
                f"'{local}' in {self.name} uses a different block type per instance"
            )
        cls = self.em.block_class(btype)
        frames = [sub[i] for i in present]
        chans = [self.em.block_input_channels(s.path) for s in scopes]
        args: list[Code | Kw] = [
            self.arg(
                f"{local}_in_channels",
                in_chan,
                chans,
                frames,  # type: ignore[arg-type]
                "in_channels",
                present,
            ).src
        ]
        for pname in cls.params:
            raw = (item.first or {}).get(pname) if first else None
            raw = item.args.get(pname) if raw is None else raw
            values = [dict(s.args)[pname] for s in scopes]
            a = self.arg(f"{local}_{pname}", self.sym(raw), values, frames, pname, present)  # type: ignore[arg-type]
            if (
                a.value is not VARIES
                and pname in cls.defaults
                and same_value(normalize(pname, cls.defaults[pname]), a.value)
            ):
                continue
            args.append(Kw(cls.py[pname], a.src))
        for key, per_instance in cls.extra.items():
            values = [per_instance[cls.index[s.path]] for s in scopes]
            args.append(Kw(key, self.arg(f"{local}_{key}", None, values, frames, key, present).src))  # type: ignore[arg-type]
        return Call(cls.name, tuple(args))

    # ------------------------------------------------------------------ groups and repeats

    def scope_item(
        self,
        item: ScopeItem,
        local: str,
        sub: list[Frame | None],
        present: list[int],
        source: Value,
        names: Names[Value],
        container: Container,
        body: list[Any],
        cond: str | None,
    ) -> Value:
        if item.repeat is not None:
            if cond is not None:
                raise TorchEmitError(
                    f"conditional repeat '{local}' in {self.name} is not supported"
                )
            return self.repeat(item, local, sub, present, source, names, container, body)
        frames = [Frame(f.prefix + ".", f.env) if f is not None else None for f in sub]
        chain = self.chain(item.body, frames, source, names)
        if chain is not None:
            code, chan = chain
            out = Value(local, chan=chan)
            self.add_member(container, local, code, cond, body, [source], out)
            return out
        if cond is not None:
            raise TorchEmitError(
                f"conditional group '{local}' in {self.name} must be a chain of "
                "modules (it becomes an Optional nn.Sequential)"
            )
        inner = Container(container.ref(local), in_class=False)
        out = self.walk(item.body, frames, Names[Value]({}, names), source, inner, body)
        if inner.members:
            container.add(local, inner.as_dict())
        return out

    def chain(
        self, items: list[Any], frames: list[Frame | None], source: Value, names: Names
    ) -> tuple[Code, Expr | None] | None:
        """The group as one nn.Sequential when it is a chain of modules, else None."""
        if has_share(items):
            return None
        saved = (
            dict(self.extra),
            dict(self.extra_types),
            set(self.params.used),
            set(self.em.needs),
        )
        inner = Container("seq", in_class=False)
        trial: list[Any] = []
        entry = Value("input", chan=source.chan)
        out = self.walk(items, frames, Names[Value]({}, names), entry, inner, trial, modules=True)
        previous = entry
        ok = bool(trial) and len(inner.members) == len(trial) and out is trial[-1].out
        for s in trial if ok else []:
            if (
                not isinstance(s, Stmt)
                or s.cond
                or s.inputs != [previous]
                or s.member is None
                or s.member[0] != id(inner)
            ):
                ok = False
                break
            previous = s.out
        for v in (entry, *(s.out for s in trial if isinstance(s, Stmt))):
            v.readers.clear()
        if not ok:
            self.extra, self.extra_types = saved[0], saved[1]
            self.params.used, self.em.needs = saved[2], saved[3]
            return None
        return sequential([(m.key, m.code) for m in inner.members]), out.chan

    def carry_channels(
        self,
        item: ScopeItem,
        source: Value,
        names: Names[Value],
        frames_at: Callable[[int], list[Frame | None]],
        iterations: int,
    ) -> tuple[Expr | None, str]:
        """Channels entering each iteration of an inline repeat, and the loop variable.

        When the body's output channels differ from what enters the first iteration (a VGG
        stage: `in_channels`, then `width`), the iterations still share one body if the
        channels are the same from the second on: `(in_channels if i == 0 else width)`.
        """
        first = source.chan
        if first is None or iterations < 2 or has_share(item.body):
            return first, "_"
        outer: list[Value] = []
        table: Names[Value] | None = names
        while table is not None:
            outer += [v for v in table.values.values() if isinstance(v, Value)]
            table = table.parent

        def out_chan(chan: Expr) -> Expr | None:
            """The body's output channels for input `chan`, from a trial walk undone after."""
            saved = (dict(self.extra), dict(self.extra_types), set(self.params.used),
                     set(self.em.needs), [len(v.readers) for v in outer])  # fmt: skip
            try:
                value = self.walk(
                    item.body, frames_at(0), Names[Value]({}, names), Value("prev", chan=chan),
                    Container("step", in_class=False), [],
                )  # fmt: skip
            except TorchEmitError:
                return None
            finally:
                self.extra, self.extra_types, self.params.used, self.em.needs = saved[:4]
                for v, n in zip(outer, saved[4], strict=True):
                    del v.readers[n:]
            return value.chan

        after = out_chan(first)
        if after is None or to_python(after, str) == to_python(first, str):
            return first, "_"
        if out_chan(after) is None or to_python(out_chan(after), str) != to_python(after, str):
            return first, "_"  # channels keep changing (a dense chain): not one loop body
        loop_var = self.params.new("i")
        self.symbols["index"] = loop_var
        return IfElse(Binary("==", Name("index"), Num(0)), first, after), loop_var

    def repeat(
        self,
        item: ScopeItem,
        local: str,
        sub: list[Frame | None],
        present: list[int],
        source: Value,
        names: Names[Value],
        container: Container,
        body: list[Any],
    ) -> Value:
        children = [self.em.children(sub[i].prefix) for i in present]  # type: ignore[union-attr]
        counts = [len(c) for c in children]
        iterations = max(counts)

        def frames_at(j: int) -> list[Frame | None]:
            frames: list[Frame | None] = [None] * self.n
            for i, ch in zip(present, children, strict=True):
                if j < len(ch):
                    frames[i] = Frame(ch[j] + ".", {**sub[i].env, "index": j})  # type: ignore[union-attr]
            return frames

        if all(c == counts[0] for c in counts):  # nn.Sequential of nn.Sequential when all chain
            entries = []
            chan = source.chan
            for j in range(iterations):
                found = self.chain(item.body, frames_at(j), Value("input", chan=chan), names)
                if found is None:
                    break
                entries.append((children[0][j].rsplit(".", 1)[-1], found[0]))
                chan = found[1]
            else:
                out = Value(local, chan=chan)
                self.add_member(container, local, sequential(entries), None, body, [source], out)
                return out
        count = self.arg(
            f"{local}_count",
            self.sym(item.repeat),
            counts,
            [sub[i] for i in present],
            "count",
            present,
        )  # type: ignore[misc]
        carry_chan, loop_var = self.carry_channels(item, source, names, frames_at, iterations)
        step = Container("step", in_class=False)
        carry = Value("prev", chan=carry_chan)
        loop_body: list[Any] = []
        try:
            last = self.walk(
                item.body, frames_at(0), Names[Value]({}, names), carry, step, loop_body
            )
            for j in range(1, iterations):
                other = Container("step", in_class=False)
                self.walk(
                    item.body,
                    frames_at(j),
                    Names[Value]({}, names),
                    Value("prev", chan=carry_chan),
                    other,
                    [],
                )
                if [(m.key, flat(m.code)) for m in other.members] != [
                    (m.key, flat(m.code)) for m in step.members
                ]:
                    raise TorchEmitError(
                        f"iterations of '{local}' in {self.name} differ; the torch "
                        "emitter writes an inline repeat as one loop body"
                    )
        finally:
            self.symbols.pop("index", None)
        if step.members:
            element = step.as_dict()
            if item.prefix == "" and item.start == 0:
                clause = f"for {loop_var} in range({count.src})"
                code: Code = Call("nn.ModuleList", (Comp(element, clause),))
                header = "for step in {}:"
            else:
                start = f" + {item.start}" if item.start else ""
                key = f'f"{item.prefix}{{i{start}}}"'
                code = Call(
                    "nn.ModuleDict",
                    (Comp(Entry(key, element), f"for i in range({count.src})", "{}"),),
                )
                header = "for step in {}.values():"
            header = header.format(container.add(local, code))
        else:
            attr = f"num_{local}"
            self.counts.append((attr, count.src))
            header = f"for _ in range(self.{attr}):"
        result = Value(local, chan=last.chan)
        loop = Loop(source, carry, loop_body, last, result, header)
        source.readers.append(loop)
        body.append(loop)
        return result


def same_plan(geom: set[tuple[Any, Any, Any]]) -> PadPlan:
    """TF 'same' padding: static (free) where it is the same for every input size."""
    if len(geom) != 1:
        return PadPlan("same")
    ((k, s, d),) = geom
    sides = []
    for axis in (0, 1):
        span = (k[axis] - 1) * d[axis] + 1
        if span == 1:
            sides.append((0, 0))
        elif s[axis] == 1:
            sides.append(((span - 1) // 2, span - 1 - (span - 1) // 2))
        else:
            return PadPlan("same")
    (top, bottom), (left, right) = sides
    if top == bottom and left == right:
        return PadPlan("none") if top == left == 0 else PadPlan("symmetric", pair_src((top, left)))
    return PadPlan("sides", sides=(left, right, top, bottom))


def fixed_plan(p: ir.Padding) -> PadPlan:
    if p.is_zero:
        return PadPlan("none")
    if p.symmetric:
        return PadPlan("symmetric", pair_src((p.top, p.left)))
    return PadPlan("sides", sides=(p.left, p.right, p.top, p.bottom))


# ---------------------------------------------------------------------------- forward source


def assign_vars(body: list[Any], names: Namespace) -> None:
    """`out` for a value whose readers all follow while nothing else needs `out`, else a name."""
    busy_until = -1  # `out` holds a live value until this position
    position = {id(t): q for q, t in enumerate(body)}
    for pos, s in enumerate(body):
        if isinstance(s, Loop):
            s.carry.var = "out"
            first = s.body[0] if s.body else None
            if any(r is not first for r in s.carry.readers):
                s.carry.var = names.new("prev")
            assign_vars(s.body, names)
            s.last.var = "out"
            value = s.result
        else:
            value = s.out
        if value.var is not None:
            continue
        ends = [len(body) if r == "return" else position.get(id(r), -1) for r in value.readers]
        conditional = isinstance(s, Stmt) and s.cond is not None
        crosses_loop = any(isinstance(t, Loop) for t in body[pos + 1 : max(ends, default=0)])
        if pos >= busy_until and ends and min(ends) > pos and not conditional and not crosses_loop:
            value.var = "out"
            busy_until = max(ends)
        else:
            value.var = names.new(value.local)


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
        if (
            s.inplace
            and first is not None
            and first.fresh
            and first.readers == [s]
            and first.var == s.out.var
        ):
            lines.append(s.inplace([str(v.var) for v in s.inputs]))
            continue
        code = s.call([v.var for v in s.inputs])  # type: ignore[misc]
        if s.cond is None:
            lines += layout(f"{s.out.var} = ", code, base=base)
            continue
        if s.out.var != s.inputs[0].var:
            lines.append(f"{s.out.var} = {s.inputs[0].var}")
        lines += layout("if ", f"{s.cond} is not None", ":", base=base)
        lines += layout(f"{s.out.var} = ", code, "", 4, base=base)
    return lines


def init_section(builder: ClassBuilder) -> list[str]:
    lines = ["super().__init__()"]
    for m in builder.root.members:
        if m.key.isidentifier():
            target, close = f"self.{m.key} = ", ""
        else:
            target, close = f"self.add_module({py_str(m.key)}, ", ")"
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
    lines += [f"self.{attr} = {src}" for attr, src in builder.counts]
    return lines


# ---------------------------------------------------------------------------- the file


@dataclass
class BlockClass:
    name: str
    params: list[str]  # spec parameter names, declaration order
    py: dict[str, str]  # spec name -> Python name
    defaults: dict[str, Any]
    index: dict[str, int]  # instance path -> position
    extra: dict[str, list[Any]]
    lines: str  # the class source


@dataclass
class ModuleEmitter:
    spec: ResolvedSpec
    graph: Graph
    needs: set[str] = field(default_factory=set)
    classes: dict[str, BlockClass] = field(default_factory=dict)
    building: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.scopes = {s.path: s for s in self.graph.scopes}
        self.within: dict[str, list[Node]] = {}
        for node in self.graph.nodes:
            parts = node.name.split(".")
            for i in range(1, len(parts)):
                self.within.setdefault(".".join(parts[:i]), []).append(node)
        self.kids: dict[str, list[str]] = {}
        for path in self.scopes:
            if "." in path:
                self.kids.setdefault(path.rsplit(".", 1)[0], []).append(path)

    # ------------------------------------------------------------------ graph queries

    def children(self, path: str) -> list[str]:
        return self.kids.get(path, [])

    def block_input_channels(self, path: str) -> int:
        nodes = self.within.get(path, [])
        inside = {n.name for n in nodes}
        for node in nodes:
            for src in node.inputs:
                if src not in inside:
                    return self.graph.node(src).shape[0]
        raise TorchEmitError(f"block instance '{path}' has no ops (every item is absent)")

    def located(self, exc: TorchEmitError, path: str) -> SpecError:
        """The emitter's complaint about the item at `path`, at that item's spec position."""
        ref = self.graph.node(path).source if path in self.graph else None
        if ref is None and path in self.scopes:
            ref = self.scopes[path].source
        if ref is None or ref.file not in self.spec.sources:
            return SpecError(f"torch backend: {exc}", file=self.spec.file)
        source = self.spec.sources[ref.file]
        return source.error(ref.path, f"the torch backend cannot generate this: {exc}")

    def default(self, op: str, sfield: str) -> Any:
        found = field_default(self.spec, op, sfield)
        return found.value if isinstance(found, Located) else found

    # ------------------------------------------------------------------ classes

    def block_class(self, btype: str) -> BlockClass:
        if btype in self.classes:
            return self.classes[btype]
        if btype in self.building:
            raise TorchEmitError(f"block {btype} uses itself")
        self.building.add(btype)
        bdef = self.spec.blocks[btype].value
        paths = [s.path for s in self.graph.scopes if s.kind == "block" and s.block_type == btype]
        names = Namespace(RESERVED)
        py = {p: names.new(p) for p in bdef.params}
        defaults = {p: d.default for p, d in bdef.params.items() if d.default is not None}
        for p, d in bdef.params.items():
            if d.type == "float" and type(defaults.get(p)) is int:
                defaults[p] = float(defaults[p])
        frames: list[Frame | None] = []
        for path in paths:
            env = {**dict(self.scopes[path].args), "in_channels": self.block_input_channels(path)}
            frames.append(Frame(path + ".", env))
        builder = ClassBuilder(self, btype, len(paths), {**py, "in_channels": "in_channels"}, False)
        x = Value("x", chan=parse("in_channels"), var="x")
        table = Names({"input": x})
        out = builder.walk(bdef.body, frames, table, x, builder.root, builder.body)
        if bdef.output is not None:
            out = table.lookup(bdef.output) or out
        forward = forward_section(builder, [out])
        sig: list[str] = ["self", "in_channels: int"]
        required = [
            f"{py[p]}: {PY_TYPES[d.type]}" for p, d in bdef.params.items() if p not in defaults
        ]
        required += [f"{k}: {builder.extra_types[k]}" for k in builder.extra]
        optional = [
            f"{py[p]}: {PY_TYPES[d.type]} = {literal(defaults[p])}"
            for p, d in bdef.params.items()
            if p in defaults
        ]
        sig += required + optional
        if any(d.type in ("ints", "floats") for d in bdef.params.values()):
            self.needs.add("sequence")
        lines = render_class(
            btype,
            doc=docstring(bdef.doc, 4),
            signature=layout("def ", Call("__init__", tuple(sig)), " -> None:", base=4),
            init=init_section(builder),
            forward_signature=["def forward(self, x: torch.Tensor) -> torch.Tensor:"],
            forward=forward,
        )
        cls = BlockClass(
            btype,
            list(bdef.params),
            py,
            defaults,
            {p: i for i, p in enumerate(paths)},
            builder.extra,
            lines,
        )
        self.classes[btype] = cls
        self.building.discard(btype)
        return cls

    def model_class(self, cls_name: str, exposed: dict[str, str]) -> str:
        graph, spec = self.graph, self.spec
        assert spec.body is not None
        params = dict(graph.params)
        env = {**params, "in_channels": graph.node(graph.inputs[0]).shape[0]}
        builder = ClassBuilder(self, cls_name, 1, exposed, True)
        inputs = [Value(n, chan=Num(graph.node(n).shape[0]), var=n) for n in graph.inputs]
        table = Names({v.local: v for v in inputs})
        table.values["input"] = inputs[0]
        out = builder.walk(
            spec.body.value, [Frame("", env)], table, inputs[0], builder.root, builder.body
        )
        outputs = [table.lookup(o) or out for o in spec.outputs.value] if spec.outputs else [out]
        forward = forward_section(builder, outputs)
        init = init_section(builder)
        init_weights = self.init_weights()
        if init_weights:
            init.append("self._init_weights()")
        sig = [
            "self",
            *[
                f"{py}: {PY_TYPES[spec.params[p].value.type]} = {literal(params[p])}"
                for p, py in exposed.items()
            ],
        ]
        args = ", ".join(f"{n}: torch.Tensor" for n in graph.inputs)
        ret = "torch.Tensor" if len(outputs) == 1 else "tuple[torch.Tensor, ...]"
        methods = [["def _init_weights(self) -> None:", *["    " + s for s in init_weights]]]
        return render_class(
            cls_name,
            doc=[],
            signature=layout("def ", Call("__init__", tuple(sig)), " -> None:", base=4),
            init=init,
            forward_signature=layout(
                "def ", Call("forward", ("self", *args.split(", "))), f" -> {ret}:", base=4
            ),
            forward=forward,
            methods=methods if init_weights else [],
        )

    def init_weights(self) -> list[str]:
        """Body of `_init_weights`: the IR's initializers, per module type when uniform."""
        groups: dict[str, dict[tuple[ir.Init, ir.Init | None], list[str]]] = {}
        for name, node in param_sets(self.graph).items():
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


def forward_section(builder: ClassBuilder, outputs: list[Value]) -> list[str]:
    for v in outputs:
        v.readers.append("return")
    assign_vars(builder.body, Namespace(RESERVED | {v.var for v in outputs if v.var}))
    lines = emit_body(builder.body)
    if len(outputs) == 1:
        return [*lines, f"return {outputs[0].var}"]
    return lines + layout("return ", Call("", tuple(str(v.var) for v in outputs)))


# ---------------------------------------------------------------------------- entry point


def render_class(name: str, **parts: Any) -> str:
    parts.setdefault("methods", [])
    return templates().get_template("block.py.j2").render(name=name, **parts).rstrip() + "\n"


@cache
def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archspec_torch", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def exposed_params(spec: ResolvedSpec, graph: Graph) -> dict[str, str]:
    """Spec parameters the model class can take: the source is the same whatever their value."""
    candidates = [
        p
        for p in sorted(top_level_names(spec.body.value if spec.body else []))
        if p in spec.params and spec.params[p].value.type in ("int", "float", "bool")
    ]
    params = dict(graph.params)
    names = Namespace(RESERVED)
    chosen = {p: names.new(p) for p in candidates}
    while chosen:
        base = class_sources(spec, graph, chosen)
        dropped = False
        for p in list(chosen):
            other = perturbed(spec, p, params[p])
            if other is None:
                del chosen[p]
                dropped = True
                continue
            try:
                graph2 = lower(
                    spec,
                    {**{k: v for k, v in params.items() if k != p}, p: other},
                    input_size=input_size(graph),
                )
                same = class_sources(spec, graph2, chosen) == base
            except (SpecError, TorchEmitError):  # the other value does not lower: keep it fixed
                same = False
            if not same:
                del chosen[p]
                dropped = True
        if not dropped:
            break
    return chosen


def input_size(graph: Graph) -> tuple[int, int] | None:
    shape = graph.node(graph.inputs[0]).shape
    return (shape[1], shape[2]) if len(shape) == 3 else None


def perturbed(spec: ResolvedSpec, name: str, value: Any) -> Any:
    decl = spec.params[name].value
    if decl.type == "bool":
        options: list[Any] = [not value]
    elif decl.type == "int":
        options = [value + 1, value - 1]
    else:
        options = [value * 0.5 + 0.25, value + 0.5, value - 0.5]
    return next((v for v in options if v != value and check_value(decl, v) is None), None)


def top_level_names(items: list[Any]) -> set[str]:
    """Free names in the expressions of the top level's own ops (not inside blocks)."""
    found: set[str] = set()
    for item in items:
        if isinstance(item, ScopeItem):
            found |= top_level_names(item.body)
        elif is_op_item(item):
            for value in item.model_dump().values():
                text = expression_text(value)
                if text is not None:  # the spec layer parsed it already
                    found |= free_names(parse(text[0]))
    return found


def class_sources(spec: ResolvedSpec, graph: Graph, exposed: dict[str, str]) -> tuple[str, ...]:
    em = ModuleEmitter(spec, graph)
    model = em.model_class("Model", exposed).splitlines()
    model = [line for line in model if not line.lstrip().startswith(("def __init__", "self,"))]
    return (*(c.lines for c in em.classes.values()), *model)


def emit_source(spec: ResolvedSpec, graph: Graph) -> str:
    module = graph.name
    if not module.isidentifier() or module in RESERVED:
        raise TorchEmitError(f"spec name '{module}' is not usable as a Python function name")
    exposed = exposed_params(spec, graph)
    em = ModuleEmitter(spec, graph)
    cls_name = class_name(module)
    while cls_name in spec.blocks or cls_name in RESERVED:
        cls_name += "Model"
    model = em.model_class(cls_name, exposed)
    factory_sig = tuple(
        f"{py}: {PY_TYPES[spec.params[p].value.type]} = {literal(dict(graph.params)[p])}"
        for p, py in exposed.items()
    )
    factory = layout("def ", Call(module, factory_sig), f" -> {cls_name}:")
    factory += ["    " + line for line in docstring(graph.description or f"The {module} model.", 4)]
    factory += [
        "    " + line
        for line in layout(
            "return ", Call(cls_name, tuple(Kw(py, py) for py in exposed.values())), base=4
        )
    ]
    helpers = templates().get_template("helpers.py.j2").module
    needs = set(em.needs)
    if needs & {"padded_conv2d", "PaddedMaxPool2d", "PaddedAvgPool2d"}:
        needs.add("same_sides")
    sections = [str(getattr(helpers, name)()).rstrip() for name in HELPERS if name in needs]
    sections += [c.lines.rstrip() for c in em.classes.values()]
    sections += [model.rstrip(), "\n".join(factory)]
    body = "\n".join(sections)
    header = f"Generated by archspec {archspec.__version__} from {spec_path(graph)}."
    tail = "Do not edit: run `archspec gen`."
    return (
        templates()
        .get_template("module.py.j2")
        .render(
            header=[f"{header} {tail}"] if len(header) + len(tail) + 3 <= 100 else [header, tail],
            module_doc=docstring(graph.description, 0),
            sections=sections,
            uses=uses(body),
        )
    )


HELPERS = ("same_sides", "padded_conv2d", "PaddedMaxPool2d", "PaddedAvgPool2d", "variance_scaling")


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
