"""Graph IR -> ONNX ModelProto: the flat graph, BatchNorm folding, local functions, text.

`build_model` walks the IR in order and asks each op's printer for its nodes; value and
node names are the IR's (`layer1.0.conv1`), initializers are the WeightSet's names
(`layer1.0.conv1.weight`), a shared group is one initializer. Without weights (`weights=None`)
the initializers are declared with their shapes only: that model is for reading
(`to_text`), not for running.
"""

from __future__ import annotations

from collections.abc import Mapping

from archspec_onnx.builder import Builder, OnnxEmitError, Shape
from archspec_onnx.fold import fold, fold_plan
from archspec_onnx.ops import OpContext, ParamSource, print_op

import archspec
import onnx
from archspec.ir import Graph, Node
from archspec.registry import ResolvedSpec
from archspec.weights import WeightSet, expected_shapes
from onnx import helper, printer

OPSET = 21  # ONNX 1.16's opset: Gelu (20) and current Conv/pooling; onnxruntime >= 1.18
IR_VERSION = 10
FUNCTION_DOMAIN = "archspec.blocks"  # where --functions puts one function per block type


def folded_params(graph: Graph, weights: WeightSet | None, plan: Mapping[str, Node]) -> ParamSource:
    """Initializers of the model: the WeightSet, with each folded pair's conv weight and
    bias replaced by the folded ones and the BatchNorm's tensors dropped."""
    shapes: dict[str, Shape] = dict(expected_shapes(graph))
    values = dict(weights) if weights is not None else None
    for conv_name, bn_node in plan.items():
        conv = graph.node(conv_name)
        p, q = conv.param_name, bn_node.param_name
        bn_tensors = [f"{q}.{t}" for t in ("weight", "bias", "running_mean", "running_var")]
        shapes[f"{p}.bias"] = (bn_node.shape[0],)
        if values is not None:
            values[f"{p}.weight"], values[f"{p}.bias"] = fold(
                values[f"{p}.weight"],
                values.get(f"{p}.bias"),
                bn_node.op,  # type: ignore[arg-type]
                values.get(f"{q}.weight"),
                values.get(f"{q}.bias"),
                values[f"{q}.running_mean"],
                values[f"{q}.running_var"],
            )
        for name in bn_tensors:
            shapes.pop(name, None)
            if values is not None:
                values.pop(name, None)
    return ParamSource(shapes, values)


def locate(spec: ResolvedSpec | None, node: Node, exc: OnnxEmitError) -> Exception:
    """The builder's complaint about `node`, at the node's spec position when known."""
    ref = node.source
    if spec is None or ref is None or ref.file not in spec.sources:
        return OnnxEmitError(f"{node.name}: {exc}")
    return spec.sources[ref.file].error(ref.path, f"the ONNX backend cannot build this: {exc}")


def build_flat(
    graph: Graph,
    weights: WeightSet | None,
    *,
    fold_bn: bool = False,
    spec: ResolvedSpec | None = None,
) -> Builder:
    """The flat graph's nodes, initializers, inputs and outputs."""
    if weights is not None:
        weights.check(graph)
    plan = fold_plan(graph) if fold_bn else {}
    folded = {bn.name for bn in plan.values()}
    params = folded_params(graph, weights, plan)
    b = Builder()
    values: dict[str, str] = {}  # IR node name -> ONNX value holding its result
    for node in graph.nodes:
        if node.name in folded:
            values[node.name] = node.name  # produced by the conv it is folded into
            continue
        output = plan[node.name].name if node.name in plan else node.name
        ctx = OpContext(
            b,
            node,
            [values[src] for src in node.inputs],
            [graph.node(src).shape for src in node.inputs],
            output,
            params,
            graph.parts(node.name),
        )
        try:
            with b.scope(node.name):
                values[node.name] = print_op(ctx)
        except OnnxEmitError as exc:
            raise locate(spec, node, exc) from None
    for name in graph.outputs:
        if values[name] != name:  # an output that is an alias (a trailing dropout)
            with b.scope(name):
                b.node("Identity", [values[name]], name)
        b.graph_output(name, graph.node(name).shape)
    unused = [n for n in params.shapes if n not in params.read]
    if unused:
        raise OnnxEmitError(f"internal: weights no node reads: {', '.join(unused[:5])}")
    return b


def build_model(
    graph: Graph,
    weights: WeightSet | None,
    *,
    fold_bn: bool = False,
    functions: bool = False,
    spec: ResolvedSpec | None = None,
) -> onnx.ModelProto:
    """The ONNX model of `graph` holding `weights` (None: initializers declared, not stored)."""
    b = build_flat(graph, weights, fold_bn=fold_bn, spec=spec)
    nodes, funcs = list(b.nodes), []
    if functions:
        from archspec_onnx.functions import extract

        nodes, funcs = extract(graph, b, OPSET, FUNCTION_DOMAIN)
    body = helper.make_graph(
        nodes,
        graph.name,
        b.inputs,
        b.outputs,
        initializer=list(b.initializers.values()),
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if funcs:
        opsets.append(helper.make_opsetid(FUNCTION_DOMAIN, 1))
    model = helper.make_model(
        body,
        opset_imports=opsets,
        ir_version=IR_VERSION,
        producer_name="archspec",
        producer_version=archspec.__version__,
        functions=funcs,
    )
    model.doc_string = graph.description
    helper.set_model_props(
        model,
        {"archspec.spec": graph.name, "archspec.fold_bn": "true" if fold_bn else "false"},
    )
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def to_text(model: onnx.ModelProto, header: str) -> str:
    """ONNX's textual syntax after a `#` comment header, for a weightless model (each
    initializer `float[64,3,7,7] "conv1.weight" = {}`), one initializer per line so that
    diffs stay readable; `onnx.parser.parse_model` reads it back."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    lines = printer.to_text(model).rstrip().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("   <") and line.endswith("{}>"):  # the initializer list
            entries = line.strip()[1:-1].split(", ")
            lines[i] = "   <\n" + ",\n".join(f"      {e.replace('=  {}', '= {}')}" for e in entries)
            lines[i] += "\n   >"
    return comment + "\n".join(lines) + "\n"
