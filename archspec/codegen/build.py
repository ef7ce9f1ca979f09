"""Building the module plan: one walk per block type over all its instances at once.

Each field of each op is checked against the lowered graph in every instance of its block:
the spec's expression when it gives the IR's value everywhere (printed with the class's
own parameter names), else a literal when all instances agree, else a per-instance
constructor argument. Channel counts are tracked symbolically along the forward wiring
(`in_channels`, `planes * expansion`, a concat's sum), so a layer's input channels are
written as its producer's expression.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from archspec import ir
from archspec.errors import SpecError
from archspec.expr import (
    Binary,
    Expr,
    ExprError,
    IfElse,
    ListLit,
    Name,
    Num,
    Str,
    Unary,
    depth,
    evaluate,
    expression_text,
    parse,
    substitute,
    to_python,
)
from archspec.expr import names as free_names
from archspec.ir import Graph, Node
from archspec.lower import Names, field_default, part_keys
from archspec.registry import Located, ResolvedSpec
from archspec.spec import OP_MODELS, BlockItem, ScopeItem

from .factory import candidates, exposable, free_params, structural_names
from .layout import Namespace, class_name, literal, pair_src
from .plan import (
    REQUIRED,
    VARIES,
    Arg,
    Args,
    BlockCall,
    BlockStep,
    ClassPlan,
    ExtraParam,
    GroupStep,
    Iteration,
    Let,
    LoopPlan,
    ModulePlan,
    OpStep,
    PadPlan,
    Param,
    PlanError,
    RepeatStep,
    Step,
    Value,
)

# Names every generated Python module may use whatever the framework.
PYTHON_RESERVED = frozenset(dir(builtins)) | {"self", "x", "in_channels"}
# IR field holding the input's channel count (written with the producer's expression).
CHANNEL_FIELD = {
    "conv2d": "in_channels",
    "linear": "in_features",
    "batch_norm": "num_features",
    "layer_norm": "num_features",
    "scale": "num_features",
}
PAIR_FIELDS = {"kernel_size", "stride", "dilation", "output_size", "padding"}
NOT_ARGS = {"kind", "padding", "weight_init", "bias_init", "shape", "axis", "approximate", "rank"}

MAX_CHANNEL_DEPTH = 16  # nesting of a block call's channel expression, see call_channels


@dataclass(frozen=True)
class Frame:
    """One instance's view of a body: node-name prefix ("layer1.0.") and expression values."""

    prefix: str
    env: dict[str, Any]


def normalize(fname: str, value: Any) -> Any:
    if fname in PAIR_FIELDS:
        return tuple(value) if isinstance(value, list | tuple) else (value, value)
    return tuple(value) if isinstance(value, list) else value


def fold(node: Expr) -> Expr:
    """`node` with every part that reads no name replaced by its value (a negative one
    as a negation, which prints right in any context)."""
    if not free_names(node):
        try:
            value = evaluate(node, {})
        except ExprError:
            return node
        if isinstance(value, bool) or not isinstance(value, int | float):
            return node
        return Unary("-", Num(-value)) if value < 0 else Num(value)
    changes: dict[str, Any] = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, tuple):
            changes[f.name] = tuple(fold(v) for v in value)
        elif isinstance(value, Expr):
            changes[f.name] = fold(value)
    return replace(node, **changes) if changes else node


def same_value(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def item_local(item: Any, index: int) -> str:
    return item.name or str(index)


def is_op_item(item: Any) -> bool:
    return not isinstance(item, BlockItem | ScopeItem)


def has_share(items: list[Any]) -> bool:
    for item in items:
        if getattr(item, "share", None):
            return True
        if isinstance(item, ScopeItem) and has_share(item.body):
            return True
    return False


def is_chain(body: list[Step], entry: Value, out: Value, flat: bool = False) -> bool:
    """Whether the steps read one another in order, each its predecessor only, with no
    condition and no loop: a chain a backend may write as one sequential container. In a
    flat scope a member may be conditional (absent, it takes no number in the container):
    an op, a chain, or a block call (MobileNetV3's optional squeeze-and-excitation)."""
    previous = entry
    for step in body:
        cond = getattr(step, "cond", None)
        if cond is not None and not (flat and isinstance(step, OpStep | GroupStep | BlockStep)):
            return False
        if tuple(step.inputs) != (previous,):
            return False
        if isinstance(step, GroupStep) and not step.chain:
            return False
        if isinstance(step, RepeatStep) and step.unrolled is None:
            return False
        if isinstance(step, OpStep) and step.share is not None:
            return False
        previous = step.out
    return bool(body) and out is previous


def first_conditional(steps: list[Step]) -> Step | None:
    """The first step under a condition in these steps or in the groups among them."""
    for step in steps:
        if getattr(step, "cond", None):
            return step
        found = first_conditional(step.body) if isinstance(step, GroupStep) else None
        if found is not None:
            return found
    return None


def locate(
    graph: Graph, spec: ResolvedSpec, path: str, exc: Exception, what: str = ""
) -> SpecError:
    """A complaint about the item at `path` (a node or scope name), at its spec position."""
    ref = graph.node(path).source if path in graph else None
    if ref is None:
        ref = next((s.source for s in graph.scopes if s.path == path), None)
    head = f"the {what} backend cannot generate this" if what else "cannot generate source for this"
    if ref is None or ref.file not in spec.sources:
        return SpecError(f"{head}: {exc}", file=spec.file)
    return spec.sources[ref.file].error(ref.path, f"{head}: {exc}")


def same_plan(geom: set[tuple[Any, Any, Any]]) -> PadPlan:
    """TF 'same' padding: static where it is the same for every input size."""
    if len(geom) != 1:
        return PadPlan("same", tf_same=True)
    ((k, s, d),) = geom
    sides = []
    for axis in (0, 1):
        span = (k[axis] - 1) * d[axis] + 1
        if span == 1:
            sides.append((0, 0))
        elif s[axis] == 1:
            sides.append(((span - 1) // 2, span - 1 - (span - 1) // 2))
        else:
            return PadPlan("same", tf_same=True)
    (top, bottom), (left, right) = sides
    if top == bottom and left == right:
        if top == left == 0:
            return PadPlan("none", tf_same=True)
        return PadPlan("symmetric", pair_src((top, left)), (top, top, left, left), True)
    return PadPlan("sides", sides=(top, bottom, left, right), tf_same=True)


def fixed_plan(p: ir.Padding) -> PadPlan:
    if p.is_zero:
        return PadPlan("none")
    if p.symmetric:
        return PadPlan("symmetric", pair_src((p.top, p.left)), (p.top, p.bottom, p.left, p.right))
    return PadPlan("sides", sides=(p.top, p.bottom, p.left, p.right))


def step_signature(steps: list[Step]) -> list[Any]:
    """What a loop body prints to, to check that every iteration is the same."""
    out: list[Any] = []
    for s in steps:
        if isinstance(s, OpStep):
            fields = sorted((k, a.src) for k, a in s.args.fields.items())
            out.append(("op", s.key, s.op.kind, fields, s.args.pad, s.cond, s.share))
        elif isinstance(s, BlockStep):
            calls = [s.call] if s.call is not None else [c for _, c in s.stage or ()]
            srcs = [(c.block, [(k, a.src) for k, a in c.args]) for c in calls]
            out.append(("block", s.key, s.cond, srcs))
        elif isinstance(s, GroupStep):
            out.append(("group", s.key, s.cond, step_signature(s.body)))
        else:
            inner = [step_signature(it.body) for it in s.unrolled or []]
            loop = s.loop
            body = step_signature(loop.body) if loop is not None else None
            out.append(("repeat", s.key, inner, loop and loop.count.src, body))
    return out


# ---------------------------------------------------------------------------- building


class PlanBuilder:
    """Builds the plan of every block type the model uses, then the model's."""

    def __init__(self, spec: ResolvedSpec, graph: Graph, reserved: frozenset[str]) -> None:
        self.spec = spec
        self.graph = graph
        self.reserved = PYTHON_RESERVED | reserved
        self.classes: dict[str, ClassPlan] = {}
        self.building: set[str] = set()
        self.scopes = {s.path: s for s in graph.scopes}
        self.within: dict[str, list[Node]] = {}
        for node in graph.nodes:
            parts = node.name.split(".")
            for i in range(1, len(parts)):
                self.within.setdefault(".".join(parts[:i]), []).append(node)
        self.kids: dict[str, list[str]] = {}
        self.pinned: set[str] = set()  # the model's, see ClassWalker.pinned
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
        raise PlanError(f"block instance '{path}' has no ops (every item is absent)")

    def default(self, op: str, sfield: str) -> Any:
        found = field_default(self.spec, op, sfield)
        return found.value if isinstance(found, Located) else found

    # ------------------------------------------------------------------ classes

    def block_class(self, btype: str) -> ClassPlan:
        if btype in self.classes:
            return self.classes[btype]
        if btype in self.building:
            raise PlanError(f"block {btype} uses itself")
        self.building.add(btype)
        bdef = self.spec.blocks[btype].value
        paths = [s.path for s in self.graph.scopes if s.kind == "block" and s.block_type == btype]
        names = Namespace(self.reserved)
        py = {p: names.new(p) for p in bdef.params}
        defaults = {p: d.default for p, d in bdef.params.items() if d.default is not None}
        for p, d in bdef.params.items():
            if d.type == "float" and type(defaults.get(p)) is int:
                defaults[p] = float(defaults[p])
        symbols = {**py, "in_channels": "in_channels"}
        lets: list[Let] = []
        for lname, raw in bdef.let.items():
            py[lname] = symbols[lname] = names.new(lname)
            found = expression_text(raw)
            src = to_python(parse(found[0]), symbols.__getitem__) if found else literal(raw)
            expr = parse(found[0]) if found else Num(raw)
            lets.append(Let(lname, py[lname], src, found is None, expr))
        frames: list[Frame | None] = []
        for path in paths:
            env = {**dict(self.scopes[path].args), "in_channels": self.block_input_channels(path)}
            for lname, raw in bdef.let.items():  # as lowering computed them
                found = expression_text(raw)
                env[lname] = evaluate(parse(found[0]), env) if found else raw
            frames.append(Frame(path + ".", env))
        walker = ClassWalker(self, btype, len(paths), symbols, False)
        x = Value("x", chan=parse("in_channels"))
        table = Names({"input": x})
        body: list[Step] = []
        out = walker.walk(bdef.body, frames, table, x, body)
        if bdef.output is not None:
            out = table.lookup(bdef.output) or out
        params = [
            Param(p, py[p], d.type, defaults.get(p, REQUIRED)) for p, d in bdef.params.items()
        ]
        cls = ClassPlan(
            btype,
            bdef.doc,
            params,
            lets,
            walker.extras(),
            {p: i for i, p in enumerate(paths)},
            [x],
            body,
            [out],
            is_model=False,
        )
        self.classes[btype] = cls
        self.building.discard(btype)
        return cls

    def model_class(self, name: str, exposed: Mapping[str, str]) -> ClassPlan:
        graph, spec = self.graph, self.spec
        assert spec.body is not None
        params = dict(graph.params)
        env = {**params, "in_channels": graph.node(graph.inputs[0]).shape[0]}
        walker = ClassWalker(self, name, 1, dict(exposed), True)
        inputs = [Value(n, chan=Num(graph.node(n).shape[0])) for n in graph.inputs]
        table = Names({v.local: v for v in inputs})
        table.values["input"] = inputs[0]
        body: list[Step] = []
        out = walker.walk(spec.body.value, [Frame("", env)], table, inputs[0], body)
        outputs = [table.lookup(o) or out for o in spec.outputs.value] if spec.outputs else [out]
        self.pinned = walker.pinned
        decl = [Param(p, py, spec.params[p].value.type, params[p]) for p, py in exposed.items()]
        doc = graph.description
        return ClassPlan(name, doc, decl, [], walker.extras(), {"": 0}, inputs, body, outputs, True)


class ClassWalker:
    """Walks one body (a block type's, or the model's) over all its instances at once."""

    def __init__(
        self,
        pb: PlanBuilder,
        name: str,
        n_instances: int,
        symbols: dict[str, str],
        is_model: bool,
    ) -> None:
        self.pb = pb
        self.graph = pb.graph
        self.name = name
        self.n = n_instances
        self.symbols = symbols  # spec name -> Python name, for names that may stay symbolic
        self.is_model = is_model
        self.extra: dict[str, list[Any]] = {}  # per-instance constructor arguments (fallback)
        self.extra_types: dict[str, str] = {}
        self.params = Namespace(pb.reserved | set(symbols.values()))
        # Symbols some field or argument reads but could not keep symbolic (the model's
        # parameters a factory then cannot take).
        self.pinned: set[str] = set()

    def extras(self) -> list[ExtraParam]:
        return [ExtraParam(k, self.extra_types[k], v) for k, v in self.extra.items()]

    def snapshot(self) -> tuple[Any, ...]:
        return dict(self.extra), dict(self.extra_types), set(self.params.used)

    def restore(self, saved: tuple[Any, ...]) -> None:
        self.extra, self.extra_types, self.params.used = saved[0], saved[1], saved[2]

    # ------------------------------------------------------------------ symbolic values

    def sym(self, raw: Any) -> Expr | None:
        if isinstance(raw, list):  # a list of expressions and ints (a split's sizes)
            items = [Num(v) if type(v) is int else self.sym(v) for v in raw]
            if any(v is None for v in items) or not any(free_names(v) for v in items):  # type: ignore[arg-type]
                return None
            return ListLit(tuple(items))  # type: ignore[arg-type]
        found = expression_text(raw)
        if found is None:
            return None
        try:
            expr = parse(found[0])
        except ExprError:
            return None
        return expr if free_names(expr) <= set(self.symbols) else None

    def pin(self, raw: Any, arg: Arg) -> None:
        """Record the symbols `raw` reads when its `arg` is not an expression of them."""
        found = expression_text(raw)
        if found is None:
            return
        try:
            reads = free_names(parse(found[0])) & set(self.symbols)
        except ExprError:
            return
        self.pinned |= reads - (free_names(arg.expr) if arg.expr is not None else set())

    def call_sym(self, raw: Any, envs: list[dict[str, Any]]) -> Expr | None:
        """A block call's argument in the class's names, its other names (those a repeat
        or table binds for the call, a parameter the model does not take) replaced by
        their values, which every instance must agree on, and constant parts folded:
        `stochastic_depth_prob * block_index / block_count` in the 4th block of 16 is
        `stochastic_depth_prob * 3 / 16`, which Python evaluates to the same float."""
        found = expression_text(raw)
        if found is None:
            return None
        try:
            expr = parse(found[0])
        except ExprError:
            return None
        values: dict[str, Expr] = {}
        for name in free_names(expr):
            if name in self.symbols:
                values[name] = Name(name)
                continue
            seen = [env.get(name, VARIES) for env in envs]
            value = seen[0]
            if any(not same_value(v, value) for v in seen):
                return None
            if isinstance(value, int | float):
                values[name] = Num(value)
            elif isinstance(value, str):
                values[name] = Str(value)
            elif isinstance(value, list) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                values[name] = ListLit(tuple(Num(v) for v in value))
            else:
                return None
        out = substitute(expr, values)
        return fold(out) if out is not None and free_names(out) else None

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
            raise PlanError(f"internal: '{key}' varies in the model class")
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
        body: list[Step],
        flat: bool = False,
    ) -> Value:
        numbers = Numbering(self, frames) if flat else None
        for index, item in enumerate(items):
            local = item_local(item, index)
            sources = self.inputs_of(item, names, current)
            live = [i for i, f in enumerate(frames) if f is not None]
            locs = {i: local for i in live}
            label = None
            if numbers is not None and item.name is None:
                locs, label = numbers.keys(index, live)
                local = local if label is not None or not locs else next(iter(locs.values()))
            if numbers is not None and item.name is None and spliced(item):
                out = self.spliced(item, local, frames, live, numbers, sources[0], body)
                names.values[local] = out
                current = out
                continue
            through = item.inputs.index(item.otherwise) if item.otherwise else 0
            present = [i for i in live if self.exists(frames[i].prefix + locs[i], item)]  # type: ignore[union-attr]
            if numbers is not None and item.name is None:  # a number is not an identity
                present = [i for i in present if self.made_by(frames[i].prefix + locs[i], index)]  # type: ignore[union-attr]
            if numbers is not None and item.name is None:
                numbers.advance(item, live, present)
            if not present:
                names.values[local] = sources[through]
                current = sources[through]
                continue
            cond = None
            if item.when is not None or len(present) != len(live):
                cond = self.condition(item, local, frames, live, present)
            sub = [
                Frame(f.prefix + locs[i], f.env) if f is not None and i in present else None
                for i, f in enumerate(frames)
            ]
            path = sub[present[0]].prefix  # type: ignore[union-attr]
            try:
                if isinstance(item, BlockItem):
                    out = self.block_item(item, local, path, sub, present, sources[0], body, cond)
                elif isinstance(item, ScopeItem):
                    out = self.scope_item(
                        item, local, path, sub, present, sources[0], names, body, cond
                    )
                else:
                    out = self.op_item(item, local, path, sub, present, sources, body, cond)
                    step = body[-1]
                    assert isinstance(step, OpStep)
                    step.through = through
                    if step.parts:  # a split: its parts are names in the body
                        keys = part_keys(item, local, len(step.parts))
                        names.values.update(zip(keys, step.parts, strict=True))
            except PlanError as exc:  # innermost item first: say where, as spec errors do
                raise locate(self.graph, self.pb.spec, path, exc) from None
            body[-1].label = label
            names.values[local] = out
            current = out
        return current

    def spliced(
        self,
        item: BlockItem,
        local: str,
        frames: list[Frame | None],
        live: list[int],
        numbers: Numbering,
        source: Value,
        body: list[Step],
    ) -> Value:
        """An anonymous repeated (or table) block item in a flat scope: its blocks are the
        scope's next entries (`features.1` ... `features.17`), one stage step; or, nested,
        its rows are (`features.1` ... `features.7`), a stage step each."""
        kind = "repeat" if item.numbering == "nested" else "block"  # rows, or blocks
        kids: dict[int, list[str]] = {}
        for i in live:
            frame = frames[i]
            assert frame is not None
            start, found = numbers.counters[i], []
            first = self.pb.scopes.get(f"{frame.prefix}{start}")
            while first is not None:
                scope = self.pb.scopes.get(f"{frame.prefix}{start + len(found)}")
                if scope is None or scope.kind != kind or scope.source != first.source:
                    break
                found.append(scope.path)
            kids[i] = found
        present = [i for i in live if kids[i]]
        numbers.advance(item, live, present, {i: len(kids[i]) for i in live})
        if not present:
            return source
        path = kids[present[0]][0]
        sub: list[Frame | None] = [
            Frame(kids[i][0], frames[i].env) if i in present else None  # type: ignore[union-attr]
            for i in range(self.n)
        ]
        try:
            if len(present) != len(live):
                raise PlanError(f"'{local}' in {self.name} exists in some instances only")
            if kind == "repeat":
                return self.rows(item, local, kids, sub, present, source, body)
            found = {i: kids[i] for i in present}
            return self.block_item(item, local, path, sub, present, source, body, None, found, True)
        except PlanError as exc:
            raise locate(self.graph, self.pb.spec, path, exc) from None

    def made_by(self, path: str, index: int) -> bool:
        """Whether the node or scope at `path` comes from item `index` of its list."""
        scope = self.pb.scopes.get(path)
        ref = scope.source if scope is not None else self.graph.node(path).source
        return ref is not None and ref.path[-1] == index

    def exists(self, path: str, item: Any) -> bool:
        return path in self.graph if is_op_item(item) else path in self.pb.scopes

    def inputs_of(self, item: Any, names: Names[Value], current: Value) -> list[Value]:
        refs = item.inputs if item.inputs is not None else [item.input] if item.input else None
        if refs is None:
            return [current]
        out = []
        for ref in refs:
            found = current if ref == "prev" else names.lookup(ref)
            if found is None:
                raise PlanError(f"internal: unknown item '{ref}' in {self.name}")
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

    # ------------------------------------------------------------------ ops

    def raw(self, item: Any, sfield: str) -> Any:
        value = getattr(item, sfield, None)
        return self.pb.default(item.op, sfield) if value is None else value

    def op_item(
        self,
        item: Any,
        local: str,
        path: str,
        sub: list[Frame | None],
        present: list[int],
        sources: list[Value],
        body: list[Step],
        cond: str | None,
    ) -> Value:
        nodes = [self.graph.node(sub[i].prefix) for i in present]  # type: ignore[union-attr]
        frames: list[Frame] = [sub[i] for i in present]  # type: ignore[misc]
        op = nodes[0].op
        fields: dict[str, Arg] = {}
        for ifield, sfield in OP_MODELS[item.op].ir_fields.items():
            raw = self.raw(item, sfield)
            if raw is None and ifield == "stride":  # pools: stride defaults to the kernel
                raw = self.raw(item, "kernel")
            values = [getattr(n.op, ifield) for n in nodes]
            key = f"{local}_{ifield}"
            fields[ifield] = self.arg(key, self.sym(raw), values, frames, ifield, present)
            self.pin(raw, fields[ifield])
        for ifield in type(op).model_fields:
            if ifield not in fields and ifield not in NOT_ARGS:
                chan = sources[0].chan if ifield == CHANNEL_FIELD.get(op.kind) else None
                values = [getattr(n.op, ifield) for n in nodes]
                fields[ifield] = self.arg(
                    f"{local}_{ifield}", chan, values, frames, ifield, present
                )
        pad = (
            self.pad_plan(item, local, nodes, frames)
            if "padding" in type(op).model_fields
            else PadPlan("none")
        )
        rank = len(self.graph.node(nodes[0].inputs[0]).shape)
        layouts = {self.graph.node(n.inputs[0]).layout for n in nodes}
        if len(layouts) != 1:
            raise PlanError(
                f"the input is channels-last in some instances of {self.name} and "
                "channels-first in others; give the channels_last item the same condition"
            )
        out = Value(local, chan=self.out_chan(op, fields, sources, nodes))
        share = getattr(item, "share", None)
        if share:
            self.check_shared(share, nodes)
        parts = (
            self.split_parts(item, local, nodes, fields, sources[0]) if op.kind == "split" else ()
        )
        step = OpStep(
            local,
            path,
            op,
            tuple(nodes),
            Args(fields, pad, rank, layouts.pop()),
            tuple(sources),
            out,
            cond,
            share,
            item.name is not None,
            parts=parts,
        )
        body.append(step)
        return out

    def split_parts(
        self, item: Any, local: str, nodes: list[Node], fields: dict[str, Arg], source: Value
    ) -> tuple[Value, ...]:
        """A split's outputs as values, with their channels when known: `chan // chunks`,
        or a size that every instance agrees on."""
        counts = sorted({len(self.graph.parts(n.name)) for n in nodes})
        if len(counts) != 1:
            raise PlanError(
                f"'{local}' in {self.name} splits into {' or '.join(map(str, counts))} parts "
                "in different instances; one class needs one number of parts"
            )
        chunks, sizes = fields["chunks"].value, fields["sizes"].value
        chan: list[Expr | None] = [None] * counts[0]
        if isinstance(sizes, tuple):
            chan = [Num(size) for size in sizes]
        elif isinstance(chunks, int) and source.chan is not None:
            chan = [Binary("//", source.chan, Num(chunks))] * chunks
        keys = part_keys(item, local, counts[0])
        return tuple(
            Value(key.replace(".", "_"), chan=c) for key, c in zip(keys, chan, strict=True)
        )

    def check_shared(self, group: str, nodes: list[Node]) -> None:
        # Later uses may spell their arguments differently (`in_channels` vs `width`), but
        # lowering checked that in every instance all uses have identical ops, so a
        # backend may build the member from the first use.
        for node in nodes:
            scope = ".".join(node.scope)
            if node.param_name != (f"{scope}.{group}" if scope else group):
                raise PlanError(
                    f"shared group '{group}' of {node.name} is bound at "
                    f"'{node.param_name}', outside the {self.name} class"
                )

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
        if isinstance(op, ir.Chunk):  # one of `chunks` equal parts of the channels
            chunks, chan = fields["chunks"].value, sources[0].chan
            if chunks is VARIES or chan is None:
                return None
            return chan if chunks == 1 else Binary("//", chan, Num(chunks))
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
        sym = self.sym(self.raw(item, "padding"))
        if (
            sym is not None
            and free_names(sym)
            and all(p.symmetric for p in pads)
            and self.holds(sym, [(p.top, p.left) for p in pads], [f.env for f in frames], "padding")
        ):
            return PadPlan("symmetric", to_python(sym, self.symbols.__getitem__), expr=sym)
        if len(set(pads)) != 1:
            raise PlanError(
                f"'{local}' in {self.name}: padding differs between instances and is "
                "not an expression of the block's parameters"
            )
        return fixed_plan(pads[0])

    # ------------------------------------------------------------------ blocks

    def block_item(
        self,
        item: BlockItem,
        local: str,
        path: str,
        sub: list[Frame | None],
        present: list[int],
        source: Value,
        body: list[Step],
        cond: str | None,
        kids: dict[int, list[str]] | None = None,
        flat: bool = False,
        what: str | None = None,
    ) -> Value:
        """A block call, or a stage of them (a repeat, a table's blocks or one of its
        nested rows): `kids` are the stage's blocks per instance when not the scope at
        `path`'s children; `flat` when they are the enclosing scope's entries. `what`
        names the stage in per-instance argument names (default: its key)."""
        out = Value(local)
        if kids is None and item.repeat is None and item.table is None:
            call = self.block_call(item, local, sub, present, source.chan, first=False)
            body.append(BlockStep(local, path, source, out, cond, call))
            out.chan = self.call_channels(call, source.chan)
            return out
        if kids is None and item.numbering == "nested":  # a group of row stages
            rows = {i: self.pb.children(sub[i].prefix) for i in present}  # type: ignore[union-attr]
            inner: list[Step] = []
            last = self.rows(item, local, rows, sub, present, source, inner)
            chain = is_chain(inner, source, last)
            if cond is not None and not chain:
                raise PlanError(f"conditional stages '{local}' in {self.name} must be a chain")
            out.chan = last.chan
            body.append(GroupStep(local, path, source, out, last, cond, inner, chain))
            return out
        children = (
            [kids[i] for i in present]
            if kids is not None
            else [self.pb.children(sub[i].prefix) for i in present]  # type: ignore[union-attr]
        )
        if any(len(c) != len(children[0]) for c in children):
            raise PlanError(
                f"stage '{local}' in {self.name} has a different length per "
                "instance; a block class needs it fixed"
            )
        entries = []
        chan = source.chan
        for j, child in enumerate(children[0]):
            frames: list[Frame | None] = [None] * self.n
            for i, ch in zip(present, children, strict=True):
                frames[i] = Frame(ch[j], sub[i].env)  # type: ignore[union-attr]
            call = self.block_call(item, what or local, frames, present, chan, first=j == 0)
            entries.append((child.rsplit(".", 1)[-1], call))
            chan = self.call_channels(call, chan)
        out.chan = chan
        step = BlockStep(local, path, source, out, cond, None, tuple(entries), flat)
        body.append(step)
        return out

    def rows(
        self,
        item: BlockItem,
        local: str,
        rows: dict[int, list[str]],
        sub: list[Frame | None],
        present: list[int],
        source: Value,
        body: list[Step],
    ) -> Value:
        """A nested table's rows (`numbering: nested`), one stage step each, in order:
        `rows` are each instance's row stages (`features.1` ... or `stages.0` ...)."""
        first = rows[present[0]]
        if any(len(rows[i]) != len(first) for i in present):
            raise PlanError(f"'{local}' in {self.name} has a different row count per instance")
        current = source
        for j, path in enumerate(first):
            key = path.rsplit(".", 1)[-1]
            if any(rows[i][j].rsplit(".", 1)[-1] != key for i in present):
                raise PlanError(
                    f"row {j} of '{local}' in {self.name} is numbered differently per instance"
                )
            frames: list[Frame | None] = [None] * self.n
            for i in present:
                frames[i] = Frame(rows[i][j], sub[i].env)  # type: ignore[union-attr]
            kids = {i: self.pb.children(rows[i][j]) for i in present}
            current = self.block_item(
                item, key, path, frames, present, current, body, None, kids, what=f"{local}_{key}"
            )
        return current

    def call_channels(self, call: BlockCall, in_chan: Expr | None) -> Expr | None:
        """A block call's output channels in this class's names: the block's own output
        expression with its parameters replaced by the call's arguments, so the next
        layer's input channels are computed here, never a per-instance argument."""
        cls = self.pb.classes[call.block]
        chan = cls.outputs[0].chan
        if chan is None or in_chan is None:
            return None
        given = {k: a for k, a in call.args if k is not None}
        values: dict[str, Expr] = {"in_channels": in_chan}
        for param in cls.params:
            arg = given.get(param.py)
            if arg is not None and arg.expr is not None:
                values[param.name] = arg.expr
            elif arg is None and isinstance(param.default, int | float):
                values[param.name] = Num(param.default)
        for let in cls.lets:
            found = substitute(let.expr, values)
            if found is not None:
                values[let.name] = found
        out = substitute(chan, values)
        # A chain of blocks each adding to the last one's channels (a dense block written
        # as block calls) would nest the expression once per block: past a readable depth
        # the channels are the IR's literal instead (and evaluating stays far from
        # Python's recursion limit).
        return out if out is None or depth(out) <= MAX_CHANNEL_DEPTH else None

    def block_call(
        self,
        item: BlockItem,
        local: str,
        sub: list[Frame | None],
        present: list[int],
        in_chan: Expr | None,
        first: bool,
    ) -> BlockCall:
        scopes = [self.pb.scopes[sub[i].prefix] for i in present]  # type: ignore[union-attr]
        btype = scopes[0].block_type
        if btype is None or any(s.block_type != btype for s in scopes):
            raise PlanError(f"'{local}' in {self.name} uses a different block type per instance")
        cls = self.pb.block_class(btype)
        frames: list[Frame] = [sub[i] for i in present]  # type: ignore[misc]
        chans = [self.pb.block_input_channels(s.path) for s in scopes]
        key = f"{local}_in_channels"
        args: list[tuple[str | None, Arg]] = [
            (None, self.arg(key, in_chan, chans, frames, "in_channels", present))
        ]
        for param in cls.params:
            pname = param.name
            raw = (item.first or {}).get(pname) if first else None
            raw = item.args.get(pname) if raw is None else raw
            values = [dict(s.args)[pname] for s in scopes]
            sym = self.sym(raw)
            if sym is None:  # names bound per call (a repeat, a table): values folded in
                sym = self.call_sym(
                    raw, [{**f.env, **dict(s.bound)} for f, s in zip(frames, scopes, strict=True)]
                )
            a = self.arg(f"{local}_{pname}", sym, values, frames, pname, present)
            self.pin(raw, a)
            if (
                a.value is not VARIES
                and param.default is not REQUIRED
                and same_value(normalize(pname, param.default), a.value)
            ):
                continue
            args.append((param.py, a))
        for extra in cls.extra:
            values = [extra.values[cls.instances[s.path]] for s in scopes]
            key = f"{local}_{extra.py}"
            args.append((extra.py, self.arg(key, None, values, frames, extra.py, present)))
        return BlockCall(cls.name, tuple(args))

    # ------------------------------------------------------------------ groups and repeats

    def scope_item(
        self,
        item: ScopeItem,
        local: str,
        path: str,
        sub: list[Frame | None],
        present: list[int],
        source: Value,
        names: Names[Value],
        body: list[Step],
        cond: str | None,
    ) -> Value:
        if item.repeat is not None:
            if cond is not None:
                raise PlanError(f"conditional repeat '{local}' in {self.name} is not supported")
            return self.repeat(item, local, path, sub, present, source, names, body)
        frames = [Frame(f.prefix + ".", f.env) if f is not None else None for f in sub]
        inner: list[Step] = []
        flat = item.numbering == "flat"
        last = self.walk(item.body, frames, Names[Value]({}, names), source, inner, flat)
        chain = not has_share(item.body) and is_chain(inner, source, last, flat)
        if cond is not None and not chain:
            raise PlanError(
                f"conditional group '{local}' in {self.name} must be a chain of "
                "modules (it becomes one optional sequential member)"
            )
        inside = first_conditional(inner)
        if cond is not None and inside is not None:  # both would be one member's condition
            raise PlanError(
                f"'{inside.key}' is conditional inside the optional group '{local}' in "
                f"{self.name}: a condition inside an optional chain is not supported; make "
                "the choice a block (a block call may sit in the chain)"
            )
        out = Value(local, chan=last.chan)
        body.append(GroupStep(local, path, source, out, last, cond, inner, chain))
        return out

    def carry_channels(
        self,
        item: ScopeItem,
        source: Value,
        names: Names[Value],
        frames_at: Any,
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

        def out_chan(chan: Expr) -> Expr | None:
            """The body's output channels for input `chan`, from a trial walk undone after."""
            saved = self.snapshot()
            try:
                value = self.walk(
                    item.body, frames_at(0), Names[Value]({}, names), Value("prev", chan=chan), []
                )
            except PlanError:
                return None
            finally:
                self.restore(saved)
            return value.chan

        after = out_chan(first)
        if after is None or to_python(after, str) == to_python(first, str):
            return first, "_"
        again = out_chan(after)
        if again is None or to_python(again, str) != to_python(after, str):
            return first, "_"  # channels keep changing (a dense chain): not one loop body
        loop_var = self.params.new("i")
        self.symbols["index"] = loop_var
        return IfElse(Binary("==", Name("index"), Num(0)), first, after), loop_var

    def repeat(
        self,
        item: ScopeItem,
        local: str,
        path: str,
        sub: list[Frame | None],
        present: list[int],
        source: Value,
        names: Names[Value],
        body: list[Step],
    ) -> Value:
        children = [self.pb.children(sub[i].prefix) for i in present]  # type: ignore[union-attr]
        counts = [len(c) for c in children]
        iterations = max(counts)

        def frames_at(j: int) -> list[Frame | None]:
            frames: list[Frame | None] = [None] * self.n
            for i, ch in zip(present, children, strict=True):
                if j < len(ch):
                    frames[i] = Frame(ch[j] + ".", {**sub[i].env, "index": j})  # type: ignore[union-attr]
            return frames

        if all(c == counts[0] for c in counts) and not has_share(item.body):
            unrolled: list[Iteration] = []
            chan = source.chan
            for j in range(iterations):
                saved = self.snapshot()
                entry = Value("input", chan=chan)
                inner: list[Step] = []
                last = self.walk(item.body, frames_at(j), Names[Value]({}, names), entry, inner)
                if not is_chain(inner, entry, last):
                    self.restore(saved)
                    break
                unrolled.append(Iteration(children[0][j].rsplit(".", 1)[-1], entry, inner, last))
                chan = last.chan
            else:
                out = Value(local, chan=chan)
                body.append(RepeatStep(local, path, source, out, unrolled=unrolled))
                return out
        frames = [sub[i] for i in present]
        count = self.arg(f"{local}_count", self.sym(item.repeat), counts, frames, "count", present)  # type: ignore[arg-type]
        carry_chan, loop_var = self.carry_channels(item, source, names, frames_at, iterations)
        carry = Value("prev", chan=carry_chan)
        loop_body: list[Step] = []
        try:
            last = self.walk(item.body, frames_at(0), Names[Value]({}, names), carry, loop_body)
            shape = step_signature(loop_body)
            for j in range(1, iterations):
                other: list[Step] = []
                entry = Value("prev", chan=carry_chan)
                self.walk(item.body, frames_at(j), Names[Value]({}, names), entry, other)
                if step_signature(other) != shape:
                    raise PlanError(
                        f"iterations of '{local}' in {self.name} differ; an inline "
                        "repeat is written as one loop body"
                    )
        finally:
            self.symbols.pop("index", None)
        out = Value(local, chan=last.chan)
        loop = LoopPlan(count, loop_var, carry, loop_body, last, item.prefix, item.start)
        body.append(RepeatStep(local, path, source, out, loop=loop))
        return out


def spliced(item: Any) -> bool:
    """Whether an anonymous item in a flat scope numbers its blocks in the scope itself."""
    return isinstance(item, BlockItem) and (item.repeat is not None or item.table is not None)


class Numbering:
    """Flat numbering of one scope over all instances of a class: each anonymous item
    takes the next number where it is present (torchvision's `layers.append`). A number
    that differs between instances becomes a label in the class's names
    (`{int(expand_ratio != 1)}`), valid while it follows from symbolic conditions."""

    def __init__(self, walker: ClassWalker, frames: list[Frame | None]) -> None:
        self.walker = walker
        self.frames = frames
        self.counters = [0] * walker.n
        self.base = 0  # items present everywhere so far
        self.shifts: list[Expr | None] = []  # conditions of items present in some instances

    def keys(self, index: int, live: list[int]) -> tuple[dict[int, str], str | None]:
        locs = {i: str(self.counters[i]) for i in live}
        if len(set(locs.values())) <= 1:
            return locs, None
        terms = [str(self.base)] if self.base else []
        for expr in self.shifts:
            if expr is None:
                raise PlanError(
                    f"the numbering of a flat scope in {self.walker.name} depends on a "
                    "condition that is not an expression of the block's parameters"
                )
            terms.append(f"int({to_python(expr, self.walker.symbols.__getitem__)})")
        for i in live:
            env = self.frames[i].env  # type: ignore[union-attr]
            want = self.base + sum(bool(evaluate(e, env)) for e in self.shifts)  # type: ignore[arg-type]
            if want != self.counters[i]:
                raise PlanError(f"internal: flat numbering of {self.walker.name} disagrees")
        return locs, "{" + " + ".join(terms) + "}"

    def advance(
        self,
        item: Any,
        live: list[int],
        present: list[int],
        counts: dict[int, int] | None = None,
    ) -> None:
        counts = counts or dict.fromkeys(live, 1)
        for i in present:
            self.counters[i] += counts[i]
        if not present:
            return
        if len(present) == len(live) and len({counts[i] for i in live}) == 1:
            self.base += counts[live[0]]
        elif len({counts[i] for i in present}) == 1 and counts[present[0]] == 1:
            self.shifts.append(self.walker.sym(item.when) if item.when is not None else None)
        else:
            raise PlanError(
                f"a flat scope in {self.walker.name} numbers a different count of blocks "
                "per instance; a class needs them fixed"
            )


def model_class_name(spec: ResolvedSpec, graph: Graph, reserved: frozenset[str]) -> str:
    name = class_name(graph.name)
    while name in spec.blocks or name in reserved or name in PYTHON_RESERVED:
        name += "Model"
    return name


def build_plan(
    spec: ResolvedSpec,
    graph: Graph,
    reserved: frozenset[str] = frozenset(),
    exposed: Mapping[str, str] | None = None,
) -> ModulePlan:
    """The module plan of a lowered spec.

    `reserved` are identifiers the backend's generated code uses itself (spec names that
    collide are renamed where they become locals). `exposed` fixes the factory's
    parameters (spec name -> Python name); by default they follow `exposable`.
    """
    if not graph.name.isidentifier() or graph.name in reserved | PYTHON_RESERVED:
        raise PlanError(f"spec name '{graph.name}' is not usable as a Python function name")
    builder = PlanBuilder(spec, graph, reserved)
    name = model_class_name(spec, graph, reserved)
    if exposed is None:
        names = Namespace(builder.reserved)
        open_params = {p: names.new(p) for p in candidates(spec)}
        structural = structural_names(spec)
        trial = builder.model_class(name, open_params)
        free = free_params(spec)
        free_py = {
            cls.name: {p.py for p in cls.params if p.name in free.get(b, set())}
            for b, cls in builder.classes.items()
        }
        allowed = [p for p in open_params if p not in structural and p not in builder.pinned]
        keep = exposable(trial, allowed, free_py)
        exposed = {p: open_params[p] for p in keep}
    model = builder.model_class(name, exposed)
    return ModulePlan(graph.name, graph, builder.classes, model, dict(exposed))
