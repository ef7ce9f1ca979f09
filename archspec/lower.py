"""Resolve + lower: a ResolvedSpec and parameter values -> the Graph IR, shapes included.

One walk over the spec body: expressions are evaluated in the scope that declares them,
blocks and repeats are expanded into hierarchically named nodes, and each op's output
shape is inferred as it is created (block expressions may read `in_channels`, so shapes
are needed while expanding). Every problem becomes a SpecError at the declaring line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

from archspec import checks, ir
from archspec.analysis import op_param_count, op_state_count
from archspec.errors import LimitError, Path, SpecError, SpecWarning, suggest
from archspec.expr import Expr, ExprError, evaluate, expression_text, names, parse
from archspec.ir import Graph, Node, ScopeInfo, Shape, SourceRef
from archspec.limits import LIMITS, describe
from archspec.ops import (
    ARITY,
    BUILTIN_DEFAULTS,
    LAST_RULES,
    RULES,
    OpError,
    broadcast,
    canonical,
    fmt_shape,
)
from archspec.params import check_value, coerce, describe_value
from archspec.registry import PER_ITEM_FIELDS, Located, ResolvedSpec
from archspec.source import Source
from archspec.spec import BlockDef, BlockItem, ItemBase, ScopeItem, SplitOp

V = TypeVar("V")
COMMON_FIELDS = PER_ITEM_FIELDS  # fields every item has: not op fields
MAX_BLOCK_DEPTH = 32
# Names a table binds in its rows' `block`, `args` and `first` besides the row's values.
TABLE_NAMES = {
    "index": "the block's number in its row",
    "block_index": "the block's number across all rows",
    "block_count": "the table's number of blocks",
}


@lru_cache(maxsize=4096)
def _parsed(text: str) -> Expr:
    return parse(text)


@lru_cache(maxsize=4096)
def _names(text: str) -> frozenset[str]:
    return frozenset(names(_parsed(text)))


@dataclass
class Names(Generic[V]):
    """Lexical name table of one body (a block body or an inline scope within it); the
    values are node names here, and whatever an emitter tracks per item in backends."""

    values: dict[str, V]
    parent: Names[V] | None = None
    declared: list[str] = field(default_factory=list)  # this body's item names, in order
    position: int = 0  # index of the item being lowered in `declared`

    def declared_later(self, name: str) -> bool:
        """Whether `name` is declared at or below the current item (a cycle if read)."""
        return name in self.declared[self.position :]

    def lookup(self, name: str) -> V | None:
        table: Names[V] | None = self
        while table is not None:
            if name in table.values:
                return table.values[name]
            table = table.parent
        return None

    def known(self) -> set[str]:
        out: set[str] = set()
        table: Names[V] | None = self
        while table is not None:
            out |= set(table.values)
            table = table.parent
        return out


@dataclass
class BlockCtx:
    """What is fixed inside one block instance (or the model's top level)."""

    env: dict[str, Any]
    source: Source
    scope: tuple[str, ...]
    block_type: str | None
    shared: dict[str, tuple[ir.Op, str, str]] = field(
        default_factory=dict
    )  # group -> op, param, first
    description: str = ""


class Lowerer:
    def __init__(self, spec: ResolvedSpec) -> None:
        self.spec = spec
        self.nodes: dict[str, Node] = {}
        self.scopes: list[ScopeInfo] = []
        self.shared: dict[str, list[str]] = {}
        self.total_params = 0
        self.expansions = 0
        self.depth = 0
        self.context: list[str] = []
        self.params: dict[str, Any] = {}
        self.list_reads: checks.ListReads | None = None
        self.parts: dict[str, list[str]] = {}  # split node -> how items name its parts
        self.warnings: list[SpecWarning] = []

    # ------------------------------------------------------------------ errors

    def error(
        self, source: Source, path: Path, message: str, *, key: bool = False, limit: bool = False
    ) -> SpecError:
        err = source.error(path, message, key=key)
        if limit:
            err = LimitError(err.message, path=err.path, file=err.file, location=err.location)
        if self.context:
            levels = self.context
            if len(levels) > 4:
                levels = [*levels[:2], f"... {len(levels) - 3} more ...", levels[-1]]
            err.context = "while expanding " + " > ".join(levels)
        return err

    def value(self, raw: Any, env: Mapping[str, Any], source: Source, path: Path) -> Any:
        """Evaluate a spec value: expressions (also inside lists) are computed in `env`."""
        if isinstance(raw, list):
            return [self.value(v, env, source, (*path, i)) for i, v in enumerate(raw)]
        found = expression_text(raw)
        if found is None:
            return raw
        text, offset = found
        try:
            result = evaluate(_parsed(text), env)
        except ExprError as exc:
            col = (
                f" (column {offset + exc.offset + 1} of the value)"
                if exc.offset is not None
                else ""
            )
            raise self.error(source, path, f"in expression '{raw}': {exc.message}{col}") from None
        reads = self.list_reads
        if reads is not None and reads.lists and not reads.lists.keys().isdisjoint(_names(text)):
            reads.note(_parsed(text), env)
        return result

    # ------------------------------------------------------------------ graph building

    def add_node(self, node: Node, source: Source, path: Path) -> None:
        if node.name in self.shared and node.param_name != node.name:
            raise self.error(
                source,
                path,
                f"the item '{node.name}' has the same name as a shared-weight group declared "
                "above; rename one (their parameters would collide)",
            )
        if node.name in self.nodes:
            raise self.error(
                source, path, f"duplicate name '{node.name}': another item already has it"
            )
        self.check_shape(canonical(node.shape, node.layout), source, path)
        if len(self.nodes) >= LIMITS.max_nodes:
            raise self.error(
                source,
                path,
                describe("max_nodes", len(self.nodes) + 1, LIMITS.max_nodes, "node count"),
                limit=True,
            )
        self.nodes[node.name] = node

    def check_shape(self, shape: Shape, source: Source, path: Path) -> None:
        """Every tensor's channels (or features) and spatial sizes are within the caps."""
        if shape and shape[0] > LIMITS.max_channels:
            message = describe("max_channels", shape[0], LIMITS.max_channels, "channel count")
            raise self.error(source, path, message, limit=True)
        for dim in shape[1:]:
            if dim > LIMITS.max_spatial:
                message = describe("max_spatial", dim, LIMITS.max_spatial, "spatial size")
                raise self.error(source, path, message, limit=True)

    def expand(self, count: int, source: Source, path: Path) -> None:
        """Count `count` expansions (items, absent ones included, block calls, repeats)
        before doing them: the budget bounds the work, whatever the graph ends up with."""
        self.expansions += count
        if self.expansions > LIMITS.max_expansions:
            raise self.error(
                source,
                path,
                describe(
                    "max_expansions", self.expansions, LIMITS.max_expansions, "expansion count"
                )
                + " (items, absent ones included, block calls and repeats)",
                limit=True,
            )

    def lower(
        self,
        params: dict[str, Any],
        input_size: tuple[int, int] | None,
        overridden: frozenset[str] = frozenset(),
    ) -> Graph:
        spec = self.spec
        if spec.abstract:
            raise spec.sources[spec.file].error(
                ("abstract",),
                f"spec '{spec.name}' is abstract: a family to refine with "
                f"`extends: {spec.name}`, not a model",
            )
        if spec.body is None or spec.inputs is None:
            missing = "body" if spec.body is None else "inputs"
            source = spec.sources[spec.file]
            raise source.error(
                (),
                f"spec '{spec.name}' has no {missing}: it is a library "
                "(use it with `use:` or `extends:`), not a model",
            )
        env: dict[str, Any] = dict(params)
        self.params = dict(params)
        self.list_reads = checks.ListReads(spec, params)
        if input_size is not None and max(input_size) > LIMITS.max_spatial:
            raise LimitError(
                describe("max_spatial", max(input_size), LIMITS.max_spatial, "input size"),
                file="--input-size",
            )
        inputs_src = spec.inputs.source
        top = Names[str](values={})
        first: str | None = None
        for iname, decl in spec.inputs.value.items():
            path = (*spec.inputs.path, iname)
            # `image: [3, 224, 224]` is shorthand for `image: {shape: [...]}`
            dims = path if isinstance(inputs_src.data["inputs"][iname], list) else (*path, "shape")
            shape = [self.value(d, env, inputs_src, (*dims, i)) for i, d in enumerate(decl.shape)]
            for i, d in enumerate(shape):
                if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
                    raise self.error(
                        inputs_src,
                        (*dims, i),
                        f"input sizes must be positive ints, got {describe_value(d)}",
                    )
            if input_size is not None and len(shape) == 3:
                shape[1], shape[2] = input_size
            node = Node(
                name=iname,
                op=ir.Input(shape=tuple(shape)),
                inputs=(),
                shape=tuple(shape),
                scope=(),
                block_type=None,
                source=SourceRef(inputs_src.file, path),
            )
            self.add_node(node, inputs_src, path)
            top.values[iname] = iname
            first = first or iname
        assert first is not None
        top.values["input"] = first
        env["in_channels"] = self.nodes[first].shape[0]
        body = spec.body
        ctx = BlockCtx(env=env, source=body.source, scope=(), block_type=None)
        last = self.lower_items(body.value, body.path, "", top, first, ctx)
        outputs: list[str] = []
        if spec.outputs is not None:
            for i, oname in enumerate(spec.outputs.value):
                if oname in spec.outputs.value[:i]:
                    raise self.error(
                        spec.outputs.source, (*spec.outputs.path, i), f"duplicate output '{oname}'"
                    )
                ref = top.lookup(oname)
                if ref is None:
                    raise self.error(
                        spec.outputs.source,
                        (*spec.outputs.path, i),
                        f"unknown output '{oname}'{suggest(oname, top.known() - {'input'})}",
                    )
                out_ctx = BlockCtx(env={}, source=spec.outputs.source, scope=(), block_type=None)
                self.readable(ref, out_ctx, (*spec.outputs.path, i), oname)
                if isinstance(self.nodes[ref].op, ir.Input):
                    self.warnings.append(
                        checks.output_is_input(
                            spec.sources, spec.outputs.source.file, (*spec.outputs.path, i), oname
                        )
                    )
                outputs.append(ref)
        else:
            self.single_output(last, body.source, body.path, "the model's output")
            outputs.append(last)
        for i, out in enumerate(outputs):
            if self.nodes[out].layout == "channels_last":
                where = (
                    (spec.outputs.source, (*spec.outputs.path, i))
                    if spec.outputs is not None
                    else (body.source, body.path)
                )
                raise self.error(
                    *where,
                    f"the model's output '{out}' is channels-last (H, W, C) = "
                    f"{fmt_shape(self.nodes[out].shape)}; end with {{op: channels_first}}",
                )
        self.warnings += checks.unused(self.nodes.values(), outputs, spec.sources)
        self.warnings += self.list_reads.warnings(spec, overridden)
        return Graph(
            name=spec.name,
            description=spec.description,
            spec_file=spec.file,
            params=tuple(sorted(params.items())),
            nodes=tuple(self.nodes.values()),
            inputs=tuple(n for n in self.nodes if isinstance(self.nodes[n].op, ir.Input)),
            outputs=tuple(outputs),
            scopes=tuple(self.scopes),
            shared_groups=tuple((k, tuple(v)) for k, v in self.shared.items() if len(v) > 1),
            warnings=tuple(sorted(self.warnings, key=SpecWarning.sort_key)),
        )

    # ------------------------------------------------------------------ bodies

    @staticmethod
    def item_path(source: Source, list_path: Path, index: int) -> Path:
        """Spec path of item `index`: through the `name:` wrapper when the item uses one."""
        raw: Any = source.data
        for elem in list_path:
            raw = raw[elem]
        entry = raw[index]
        if (
            isinstance(entry, dict)
            and not ({"op", "block", "body"} & set(entry))
            and len(entry) == 1
        ):
            return (*list_path, index, next(iter(entry)))
        return (*list_path, index)

    def lower_items(
        self,
        items: list[Any],
        list_path: Path,
        prefix: str,
        names: Names[str],
        current: str,
        ctx: BlockCtx,
        flat: bool = False,
    ) -> str:
        names.declared = [item.name or str(i) for i, item in enumerate(items)]
        number = 0  # flat numbering: the next anonymous item's number
        for i, item in enumerate(items):
            path = self.item_path(ctx.source, list_path, i)
            self.expand(1, ctx.source, path)
            local = item.name or str(number) if flat else names.declared[i]
            names.position = i
            full = prefix + local
            sources = self.resolve_inputs(item, names, current, ctx, path)
            through = self.passed_on(item, sources, ctx, path)
            if isinstance(item, SplitOp) and item.when is not None:
                raise self.error(
                    ctx.source,
                    (*path, "when"),
                    "a split cannot be optional: absent, its parts would have no value; "
                    "put the condition on the items that read them",
                )
            if item.when is not None:
                cond = self.value(item.when, ctx.env, ctx.source, (*path, "when"))
                if not isinstance(cond, bool):
                    raise self.error(
                        ctx.source,
                        (*path, "when"),
                        f"expected a condition (true/false), got {describe_value(cond)}",
                    )
                if not cond:
                    if not flat or item.name is not None:  # flat: it takes no number
                        names.values[local] = sources[through]
                    current = sources[through]
                    continue
            if local in names.values and local != "input":
                raise self.error(
                    ctx.source, path, f"duplicate name '{local}' in this body", key=True
                )
            spliced = flat and item.name is None and isinstance(item, BlockItem)
            if isinstance(item, BlockItem):
                at = (prefix, number) if spliced else None
                out, count = self.lower_block_item(item, path, full, sources, ctx, at)
                number += count if spliced else 0
            elif isinstance(item, ScopeItem):
                out = self.lower_scope_item(item, path, full, sources, names, ctx)
            else:
                out = self.lower_op(item, path, full, sources, ctx)
                if isinstance(item, SplitOp):
                    self.lower_parts(item, path, prefix, local, names, ctx)
            names.values[local] = out
            current = out
            number += 0 if spliced or item.name is not None else 1
        return current

    def passed_on(self, item: ItemBase, sources: list[str], ctx: BlockCtx, path: Path) -> int:
        """Which input an absent item stands for: its only one, or the one `otherwise:`
        names (an item with several inputs must say; nothing may choose silently)."""
        if item.otherwise is None:
            if item.when is not None and len(sources) > 1:
                raise self.error(ctx.source, (*path, "when"), optional_merge_message(item))
            return 0
        where = (*path, "otherwise")
        if item.when is None:
            raise self.error(
                ctx.source,
                where,
                "'otherwise' says which input flows on when the item is absent; "
                "it needs a 'when' condition",
            )
        if item.inputs is None or len(item.inputs) < 2:
            raise self.error(
                ctx.source,
                where,
                "'otherwise' applies to an item with several inputs; an absent item with "
                "one input passes that input on",
            )
        if item.otherwise not in item.inputs:
            raise self.error(
                ctx.source,
                where,
                f"'otherwise' must name one of this item's inputs "
                f"({', '.join(item.inputs)}), got '{item.otherwise}'"
                f"{suggest(item.otherwise, item.inputs)}",
            )
        return item.inputs.index(item.otherwise)

    def resolve_inputs(
        self, item: ItemBase, names: Names[str], current: str, ctx: BlockCtx, path: Path
    ) -> list[str]:
        if item.inputs is not None and item.input is not None:
            raise self.error(ctx.source, path, "give either 'input' or 'inputs', not both")
        refs: list[tuple[str, Path]]
        if item.inputs is not None:
            refs = [(r, (*path, "inputs", i)) for i, r in enumerate(item.inputs)]
        elif item.input is not None:
            refs = [(item.input, (*path, "input"))]
        else:
            return [self.readable(current, ctx, path)]
        out: list[str] = []
        for ref, rpath in refs:
            if ref == "prev":
                out.append(self.readable(current, ctx, rpath))
                continue
            found = names.lookup(ref)
            if found is None:
                if names.declared_later(ref):
                    raise self.error(
                        ctx.source,
                        rpath,
                        f"'{ref}' is defined at or below this item: reading it would make a "
                        "cycle (items may only read items above them)",
                    )
                base, _, index = ref.rpartition(".")
                parts = self.parts.get(names.lookup(base) or "") if index.isdigit() else None
                if parts is not None:  # `split.2` of a split into 2, or of a named one
                    raise self.error(
                        ctx.source,
                        rpath,
                        f"'{base}' is a split into {len(parts)} parts, read as "
                        f"{', '.join(parts)}: there is no '{ref}'",
                    )
                known = {k for k in names.known() if names.lookup(k) not in self.parts}
                raise self.error(
                    ctx.source, rpath, f"unknown item '{ref}'{suggest(ref, known | {'prev'})}"
                )
            out.append(self.readable(found, ctx, rpath, ref))
        return out

    def readable(self, node: str, ctx: BlockCtx, path: Path, ref: str | None = None) -> str:
        """`node`, unless it is a split, whose value is its parts: those must be named."""
        parts = self.parts.get(node)
        if parts is None:
            return node
        listed = ", ".join(parts)
        if ref is None:
            message = (
                f"the item before this one is a split into {len(parts)} parts; say which "
                f"one to read with 'input' ({listed})"
            )
        else:
            message = f"'{ref}' is a split into {len(parts)} parts; read one of them ({listed})"
        raise self.error(ctx.source, path, message)

    def lower_parts(
        self, item: SplitOp, path: Path, prefix: str, local: str, names: Names[str], ctx: BlockCtx
    ) -> None:
        """One Part node per output of the split just lowered, named by `outputs:` or
        `<item>.<i>`, each a name in this body."""
        full = prefix + local
        split = self.nodes[full]
        assert isinstance(split.op, ir.Split)
        sizes = split.op.part_sizes(split.shape[0])
        if item.outputs is not None and len(item.outputs) != len(sizes):
            raise self.error(
                ctx.source,
                (*path, "outputs"),
                f"the split makes {len(sizes)} parts but 'outputs' names {len(item.outputs)}",
            )
        keys = part_keys(item, local, len(sizes))
        for i, (key, size) in enumerate(zip(keys, sizes, strict=True)):
            where = (*path, "outputs", i) if item.outputs is not None else path
            if key in names.values or key in keys[:i] or key in names.declared:
                raise self.error(ctx.source, where, f"duplicate name '{key}' in this body")
            node = Node(
                name=prefix + key,
                op=ir.Part(index=i),
                inputs=(full,),
                shape=(size, *split.shape[1:]),
                scope=ctx.scope,
                block_type=ctx.block_type,
                source=SourceRef(ctx.source.file, where),
            )
            self.add_node(node, ctx.source, where)
            names.values[key] = node.name
        self.parts[full] = keys

    # ------------------------------------------------------------------ ops

    def op_fields(self, item: ItemBase, op: str, ctx: BlockCtx, path: Path) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for fname in type(item).model_fields:
            if fname in COMMON_FIELDS:
                continue
            raw = getattr(item, fname)
            if raw is not None:
                fields[fname] = self.value(raw, ctx.env, ctx.source, (*path, fname))
                continue
            default = field_default(self.spec, op, fname)
            if isinstance(default, Located):  # a spec default: evaluated with the model's params
                fields[fname] = self.value(default.value, self.params, default.source, default.path)
            else:
                fields[fname] = default
        return fields

    def lower_op(self, item: Any, path: Path, full: str, sources: list[str], ctx: BlockCtx) -> str:
        op_name: str = item.op
        low, high = ARITY[op_name]
        if not (low <= len(sources) <= (high or len(sources))):
            want = f"{low}" if low == high else f"at least {low}"
            hint = "; name them with 'inputs'" if len(sources) < low else ""
            raise self.error(
                ctx.source, path, f"{op_name} takes {want} input(s), got {len(sources)}{hint}"
            )
        shapes = [self.nodes[s].shape for s in sources]
        layout = self.check_layouts(op_name, sources, ctx, path)
        self.check_operands(op_name, sources, shapes, ctx, path)
        fields = self.op_fields(item, op_name, ctx, path)
        try:
            rules = LAST_RULES if layout == "channels_last" else RULES
            op, shape = rules[op_name](fields, shapes)
        except OpError as exc:
            where = (
                (*path, exc.field) if exc.field and exc.field in type(item).model_fields else path
            )
            if exc.field == "kernel" and "padded input" in exc.message:
                message = f"{exc.message} (input shape {fmt_shape(shapes[0])})"
            else:
                message = exc.message
            raise self.error(ctx.source, where, message) from None
        has_state = op_param_count(op, shapes[0]) or op_state_count(op)
        param_name = full if has_state else None
        if getattr(item, "share", None):
            param_name = self.bind_shared(item.share, op, full, ctx, path, shapes[0])
        else:
            self.count_params(op, shapes[0], ctx, path)
        node = Node(
            name=full,
            op=op,
            inputs=tuple(sources),
            shape=shape,
            scope=ctx.scope,
            block_type=ctx.block_type,
            param_name=param_name,
            source=SourceRef(ctx.source.file, path),
            layout=(
                "channels_last"
                if isinstance(op, ir.ChannelsLast)
                else "channels_first"
                if isinstance(op, ir.ChannelsFirst)
                else layout
            ),
        )
        self.add_node(node, ctx.source, path)
        return full

    def check_layouts(self, op: str, sources: list[str], ctx: BlockCtx, path: Path) -> ir.Layout:
        """The inputs' one layout; an op that cannot read a channels-last input is refused."""
        layouts = [self.nodes[s].layout for s in sources]
        for other, layout in zip(sources[1:], layouts[1:], strict=True):
            if layout != layouts[0]:
                raise self.error(
                    ctx.source,
                    path,
                    f"{op} of mixed layouts: '{sources[0]}' is {layouts[0].replace('_', '-')} "
                    f"but '{other}' is {layout.replace('_', '-')}; add {{op: channels_first}} "
                    "to the channels-last one",
                )
        if layouts[0] == "channels_last" and op not in LAST_RULES:
            raise self.error(ctx.source, path, self.channels_last_message(op, sources[0]))
        return layouts[0]

    def channels_last_message(self, what: str, source: str) -> str:
        shape = fmt_shape(self.nodes[source].shape)
        ops = ", ".join(sorted(set(LAST_RULES) - {"channels_last"}))
        return (
            f"{what} needs a channels-first input, but '{source}' is channels-last (H, W, C) "
            f"= {shape}; add {{op: channels_first}} before it (on a channels-last input only "
            f"these ops apply: {ops})"
        )

    def check_operands(
        self, op: str, sources: list[str], shapes: list[Shape], ctx: BlockCtx, path: Path
    ) -> None:
        first, first_shape = sources[0], shapes[0]
        for other, shape in zip(sources[1:], shapes[1:], strict=True):
            if op == "add" and shape != first_shape:
                raise self.error(
                    ctx.source,
                    path,
                    f"add of mismatched shapes: '{first}' is {fmt_shape(first_shape)} but "
                    f"'{other}' is {fmt_shape(shape)}",
                )
            if op == "mul" and broadcast(first_shape, shape) is None:
                raise self.error(
                    ctx.source,
                    path,
                    f"mul of shapes that do not broadcast: '{first}' is {fmt_shape(first_shape)} "
                    f"but '{other}' is {fmt_shape(shape)} (channels must be equal, H and W "
                    "equal or 1)",
                )
            if op == "concat" and (len(shape) != len(first_shape) or shape[1:] != first_shape[1:]):
                raise self.error(
                    ctx.source,
                    path,
                    f"concat along channels needs equal spatial sizes: '{first}' is "
                    f"{fmt_shape(first_shape)} but '{other}' is {fmt_shape(shape)}",
                )

    def count_params(self, op: ir.Op, in_shape: Shape, ctx: BlockCtx, path: Path) -> None:
        self.total_params += op_param_count(op, in_shape)
        if self.total_params > LIMITS.max_params:
            raise self.error(
                ctx.source,
                path,
                describe(
                    "max_params", self.total_params, LIMITS.max_params, "total parameter count"
                ),
                limit=True,
            )

    def bind_shared(
        self, group: str, op: ir.Op, full: str, ctx: BlockCtx, path: Path, in_shape: Shape
    ) -> str:
        if not (op_param_count(op, in_shape) or op_state_count(op)):
            raise self.error(
                ctx.source, (*path, "share"), "only ops with parameters can share them"
            )
        param_name = ".".join((*ctx.scope, group))
        bound = ctx.shared.get(group)
        if param_name in self.nodes:
            raise self.error(
                ctx.source,
                (*path, "share"),
                f"shared-weight group '{group}' has the same name as the item '{param_name}'; "
                "rename one (their parameters would collide)",
            )
        if bound is None:
            ctx.shared[group] = (op, param_name, full)
            self.shared[param_name] = [full]
            self.count_params(op, in_shape, ctx, path)
            return param_name
        first_op, _, first_node = bound
        if first_op != op:
            diffs = [
                f"{k} {getattr(first_op, k)} vs {getattr(op, k)}"
                for k in type(op).model_fields
                if getattr(first_op, k) != getattr(op, k)
            ]
            raise self.error(
                ctx.source,
                (*path, "share"),
                f"shared-weight group '{group}' is used with different settings: "
                f"'{first_node}' and '{full}' differ in {', '.join(diffs)}",
            )
        self.shared[param_name].append(full)
        return param_name

    # ------------------------------------------------------------------ blocks and scopes

    def repeat_count(self, item: BlockItem | ScopeItem, ctx: BlockCtx, path: Path) -> int | None:
        if item.repeat is None:
            if item.first is not None:
                raise self.error(ctx.source, (*path, "first"), "'first' only applies with 'repeat'")
            return None
        count = self.value(item.repeat, ctx.env, ctx.source, (*path, "repeat"))
        if isinstance(count, bool) or not isinstance(count, int):
            raise self.error(
                ctx.source, (*path, "repeat"), f"expected an int, got {describe_value(count)}"
            )
        if count <= 0:
            raise self.error(
                ctx.source, (*path, "repeat"), f"repeat count must be positive, got {count}"
            )
        if count > LIMITS.max_repeat:
            raise self.error(
                ctx.source,
                (*path, "repeat"),
                describe("max_repeat", count, LIMITS.max_repeat, "repeat count"),
                limit=True,
            )
        return count

    @contextmanager
    def expanding(self, label: str, source: Source, path: Path) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_BLOCK_DEPTH:
            raise self.error(
                source,
                path,
                f"blocks nest deeper than {MAX_BLOCK_DEPTH} levels: is a block using itself?",
            )
        self.context.append(label)
        try:
            yield
        finally:
            self.context.pop()
            self.depth -= 1

    def lower_block_item(
        self,
        item: BlockItem,
        path: Path,
        full: str,
        sources: list[str],
        ctx: BlockCtx,
        at: tuple[str, int] | None = None,
    ) -> tuple[str, int]:
        """The item's block calls, in order; with `at` (a flat scope's prefix and next
        number) they are numbered in the enclosing scope, its blocks or, with `numbering:
        nested`, its rows. Returns the output and how many numbers it took."""
        if len(sources) != 1:
            raise self.error(ctx.source, (*path, "inputs"), "a block takes exactly one input")
        rows = self.block_runs(item, ctx, path)
        if rows is None:
            located, block_name = self.block_type(item, ctx.env, ctx, path)
            out = self.call_block(
                located, block_name, item.args, None, ctx, path, full, sources[0], {}
            )
            return out, 1
        current = sources[0]
        if item.numbering == "nested":  # each row a stage: features.2, its blocks features.2.1
            if at is None:
                self.scopes.append(
                    ScopeInfo(path=full, kind="group", source=SourceRef(ctx.source.file, path))
                )
            for r, row in enumerate(rows):
                stage = f"{at[0]}{at[1] + r}" if at else f"{full}.{item.prefix}{item.start + r}"
                subs = [f"{stage}.{k}" for k in range(len(row))]
                current = self.lower_stage(item, row, path, stage, subs, current, ctx)
            return current, len(rows)
        runs = [run for row in rows for run in row]
        if at is None:
            subs = [f"{full}.{item.prefix}{item.start + k}" for k in range(len(runs))]
            return self.lower_stage(item, runs, path, full, subs, current, ctx), len(runs)
        subs = [f"{at[0]}{at[1] + k}" for k in range(len(runs))]  # the scope's own entries
        return self.lower_stage(item, runs, path, None, subs, current, ctx), len(runs)

    def lower_stage(
        self,
        item: BlockItem,
        runs: list[dict[str, Any]],
        path: Path,
        stage: str | None,
        subs: list[str],
        current: str,
        ctx: BlockCtx,
    ) -> str:
        """Calls of a repeat or table item named `subs`, each reading the previous one; a
        scope entry for `stage` (None: the calls are a flat scope's entries), with the
        block type when all calls share one."""
        here = SourceRef(ctx.source.file, path)
        entry = len(self.scopes)  # the stage's entry, before its blocks'; its type after them
        if stage is not None:
            self.scopes.append(ScopeInfo(path=stage, kind="repeat", source=here))
        types: set[str] = set()
        for sub, extra in zip(subs, runs, strict=True):
            located, block_name = self.block_type(item, {**ctx.env, **extra}, ctx, path)
            types.add(block_name)
            overrides = item.first if extra["index"] == 0 else None
            current = self.call_block(
                located, block_name, item.args, overrides, ctx, path, sub, current, extra
            )
        if stage is not None and len(types) == 1:
            self.scopes[entry] = ScopeInfo(
                path=stage, kind="repeat", block_type=types.pop(), source=here
            )
        return current

    def block_type(
        self, item: BlockItem, env: Mapping[str, Any], ctx: BlockCtx, path: Path
    ) -> tuple[Located[BlockDef], str]:
        block_name = self.value(item.block, env, ctx.source, (*path, "block"))
        located = self.spec.blocks.get(block_name) if isinstance(block_name, str) else None
        if located is None:
            raise self.error(
                ctx.source,
                (*path, "block"),
                f"unknown block '{block_name}'{suggest(str(block_name), self.spec.blocks)}",
            )
        return located, block_name

    def block_runs(
        self, item: BlockItem, ctx: BlockCtx, path: Path
    ) -> list[list[dict[str, Any]]] | None:
        """The names bound for each call, row by row (a repeat is one row): `index`, the
        call's number in its row (0: the row's first call, which takes `first`); for a
        table also the row's values and the running count over all its rows (TABLE_NAMES).
        None for a single call."""
        if item.table is None:
            count = self.repeat_count(item, ctx, path)
            if count is None:
                return None
            self.expand(count, ctx.source, (*path, "repeat"))
            return [[{"index": i} for i in range(count)]]
        for bound in TABLE_NAMES:
            if bound in ctx.env and bound != "index":  # `index`: the innermost repeat's
                raise self.error(
                    ctx.source,
                    (*path, "table"),
                    f"a table binds '{bound}' ({TABLE_NAMES[bound]}) in its rows' expressions, "
                    f"which would hide the name '{bound}' visible here (a parameter or a "
                    "'let' value); rename it",
                    key=True,
                )
        found = expression_text(item.repeat) if isinstance(item.repeat, str) else None
        running = sorted(_names(found[0]) & {"block_index", "block_count"}) if found else []
        if running:
            raise self.error(
                ctx.source,
                (*path, "repeat"),
                f"a row's 'repeat' cannot read '{running[0]}' ({TABLE_NAMES[running[0]]}): "
                "the running count follows from every row's repeat; use it in 'args', "
                "'first' or 'block'",
            )
        counts: list[int] = []
        for r, row in enumerate(item.table):
            for key in row:
                if key in ctx.env or key in TABLE_NAMES:
                    what = (
                        "visible here"
                        if key in ctx.env
                        else f"the table binds ({TABLE_NAMES[key]})"
                    )
                    raise self.error(
                        ctx.source,
                        (*path, "table", r, key),
                        f"table column '{key}' hides the name '{key}' {what}; rename the column",
                        key=True,
                    )
            saved = ctx.env
            ctx.env = {**saved, **row}
            try:
                count = 1 if item.repeat is None else self.repeat_count(item, ctx, path)
            except SpecError as exc:
                exc.context = exc.context or f"for table row {r}: {describe_value(row)}"
                raise
            finally:
                ctx.env = saved
            assert count is not None
            self.expand(count, ctx.source, (*path, "table", r))
            counts.append(count)
        total, done = sum(counts), 0
        rows: list[list[dict[str, Any]]] = []
        for row, count in zip(item.table, counts, strict=True):
            running = [{"block_index": done + i, "block_count": total} for i in range(count)]
            rows.append([{**row, "index": i, **running[i]} for i in range(count)])
            done += count
        return rows

    def call_block(
        self,
        located: Located[BlockDef],
        block_name: str,
        args: dict[str, Any],
        first: dict[str, Any] | None,
        ctx: BlockCtx,
        path: Path,
        full: str,
        source_node: str,
        extra: dict[str, Any],
    ) -> str:
        bdef = located.value
        self.expand(1, ctx.source, path)
        env = {**ctx.env, **extra}
        values: dict[str, Any] = {}
        merged = [(k, v, (*path, "args", k)) for k, v in args.items()]
        merged += [(k, v, (*path, "first", k)) for k, v in (first or {}).items()]
        for key, raw, apath in merged:
            if key not in bdef.params:
                raise self.error(
                    ctx.source,
                    apath,
                    f"unknown parameter '{key}' of block {block_name}{suggest(key, bdef.params)}",
                    key=True,
                )
            value = self.value(raw, env, ctx.source, apath)
            problem = check_value(bdef.params[key], value)
            if problem:
                raise self.error(ctx.source, apath, f"parameter '{key}' of {block_name}: {problem}")
            values[key] = coerce(bdef.params[key], value)
        for pname, decl in bdef.params.items():
            if pname not in values:
                if decl.default is None:
                    raise self.error(
                        ctx.source,
                        path,
                        f"block {block_name} needs parameter '{pname}' ({decl.type}); "
                        f"add it under 'args'",
                    )
                values[pname] = decl.default
        in_shape = self.nodes[source_node].shape
        if self.nodes[source_node].layout == "channels_last":
            raise self.error(
                ctx.source, path, self.channels_last_message(f"block {block_name}", source_node)
            )
        block_env = {**values, "in_channels": in_shape[0]}
        for lname, raw in bdef.let.items():  # in order: a value may read the ones above
            lpath = (*located.path, "let", lname)
            with self.expanding(f"{full} ({block_name})", ctx.source, path):
                block_env[lname] = self.value(raw, block_env, located.source, lpath)
        inner = BlockCtx(
            env=block_env,
            source=located.source,
            scope=tuple(full.split(".")),
            block_type=block_name,
        )
        self.scopes.append(
            ScopeInfo(
                path=full,
                kind="block",
                block_type=block_name,
                args=tuple(sorted(values.items())),
                source=SourceRef(ctx.source.file, path),
                bound=tuple(sorted(extra.items())),
            )
        )
        names = Names[str](values={"input": source_node})
        with self.expanding(f"{full} ({block_name})", ctx.source, path):
            out = self.lower_items(
                bdef.body, (*located.path, "body"), full + ".", names, source_node, inner
            )
            if bdef.output is not None:
                found = names.lookup(bdef.output)
                if found is None:
                    raise self.error(
                        located.source,
                        (*located.path, "output"),
                        f"unknown output item '{bdef.output}'{suggest(bdef.output, names.known())}",
                    )
                out = found
            where = (*located.path, "output" if bdef.output is not None else "body")
            self.single_output(out, located.source, where, f"block {block_name}'s output")
        return out

    def single_output(self, node: str, source: Source, path: Path, what: str) -> None:
        """A body's result is one tensor: never a split, whose parts must be named."""
        if node in self.parts:
            raise self.error(
                source,
                path,
                f"{what} is a split into {len(self.parts[node])} parts "
                f"({', '.join(self.parts[node])}); end with an item that reads them "
                "(a concat), or name the one meant",
            )

    def lower_scope_item(
        self,
        item: ScopeItem,
        path: Path,
        full: str,
        sources: list[str],
        names: Names[str],
        ctx: BlockCtx,
    ) -> str:
        if len(sources) != 1:
            raise self.error(ctx.source, (*path, "inputs"), "a body group takes exactly one input")
        count = self.repeat_count(item, ctx, path)
        here = SourceRef(ctx.source.file, path)
        if item.first is not None:
            raise self.error(
                ctx.source, (*path, "first"), "'first' applies to repeated blocks only"
            )
        if count is None:
            self.scopes.append(ScopeInfo(path=full, kind="group", source=here))
            inner = Names[str](values={}, parent=names)
            flat = item.numbering == "flat"
            body_path = (*path, "body")
            return self.lower_items(item.body, body_path, full + ".", inner, sources[0], ctx, flat)
        if item.numbering == "flat":
            raise self.error(
                ctx.source,
                (*path, "numbering"),
                "'numbering: flat' numbers the items of one scope; a repeated scope names "
                "its repetitions (use it on a scope inside the repeated body)",
            )
        self.scopes.append(ScopeInfo(path=full, kind="repeat", source=here))
        current = sources[0]
        self.expand(count, ctx.source, (*path, "repeat"))
        saved = ctx.env
        try:
            for i in range(count):
                ctx.env = {**saved, "index": i}
                sub = f"{full}.{item.prefix}{item.start + i}"
                self.scopes.append(ScopeInfo(path=sub, kind="group", source=here))
                inner = Names[str](values={}, parent=names)
                current = self.lower_items(
                    item.body, (*path, "body"), sub + ".", inner, current, ctx
                )
        finally:
            ctx.env = saved
        return current


def part_keys(item: SplitOp, local: str, count: int) -> list[str]:
    """How a body's items read the parts of split `local`: `outputs:`, or `local.i`."""
    return item.outputs or [f"{local}.{i}" for i in range(count)]


def optional_merge_message(item: ItemBase) -> str:
    """Why `when:` is refused on an item with several inputs, and what to write instead.

    An absent item's name stands for the value it would have read; with several inputs
    nothing says which one, and silently taking the first one would drop a path."""
    what = f"'{item.op}' item" if isinstance(getattr(item, "op", None), str) else "item"
    return (
        f"'when' on an {what} with several inputs needs 'otherwise': when false, nothing "
        "says which input flows on. Name it (`{op: add, inputs: [input, conv], when: "
        "$use_res_connect, otherwise: conv}` returns conv without the residual), or "
        "condition the branch that feeds it instead (an absent item stands for its input: "
        "`add: {inputs: [bn3, downsample]}` adds the block input when `downsample` is absent)"
    )


def field_default(spec: ResolvedSpec, op: str, fname: str) -> Located[Any] | Any:
    """What an op field left unset takes: the spec's `defaults:` entry (Located, to be
    evaluated with the architecture parameters), else the built-in default."""
    located = spec.defaults.get(op, {}).get(fname)
    return located if located is not None else BUILTIN_DEFAULTS.get(op, {}).get(fname)


def resolve_params(spec: ResolvedSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values: declared defaults, then `--set` overrides, all type-checked."""
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        located = spec.params.get(key)
        if located is None:
            raise SpecError(
                f"unknown parameter '{key}' of {spec.name}{suggest(key, spec.params)}",
                path=("params",),
                file="--set",
            )
        problem = check_value(located.value, value)
        if problem:
            raise SpecError(f"parameter '{key}': {problem}", path=("params", key), file="--set")
        values[key] = coerce(located.value, value)
    for name, located in spec.params.items():
        if name not in values:
            if located.value.default is None:
                raise SpecError(
                    f"parameter '{name}' ({located.value.type}) has no default; "
                    f"give it with --set {name}=VALUE",
                    path=("params", name),
                    file=spec.file,
                    location=located.source.locate(located.path),
                )
            values[name] = coerce(located.value, located.value.default)
    return values


def lower(
    spec: ResolvedSpec,
    overrides: Mapping[str, Any] | None = None,
    input_size: tuple[int, int] | None = None,
) -> Graph:
    params = resolve_params(spec, overrides or {})
    return Lowerer(spec).lower(params, input_size, frozenset(overrides or {}))
