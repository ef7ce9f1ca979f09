"""The ONNX weight adapter: initializers <-> the canonical WeightSet, bit for bit.

ONNX's layouts are the IR's (OIHW convs, [out, in] Gemm weights with transB=1, BatchNorm
scale/B/mean/var) and initializers carry the WeightSet's names (a scale's factor, named by its
node alone, under `<node>/weight`: the node's output has its name), so the mapping is by name
and the round trip WeightSet -> model -> WeightSet is exact. A model built with `--fold-bn`
no longer holds the BatchNorm tensors separately; it cannot give back a WeightSet.
"""

from __future__ import annotations

from archspec_onnx.builder import OnnxEmitError
from archspec_onnx.ops import initializer_name

import onnx
from archspec.analysis import param_sets
from archspec.ir import Graph
from archspec.weights import WeightError, WeightSet, expected_shapes
from onnx import numpy_helper


def is_folded(model: onnx.ModelProto) -> bool:
    return any(p.key == "archspec.fold_bn" and p.value == "true" for p in model.metadata_props)


def from_model(model: onnx.ModelProto, graph: Graph) -> WeightSet:
    """The WeightSet stored in a model's initializers (names and shapes checked)."""
    if is_folded(model):
        raise WeightError(
            "this ONNX model was built with --fold-bn: its convs hold BatchNorm-folded "
            "weights and the BatchNorm tensors are gone, so no WeightSet can be read back"
        )
    stored = [t for t in model.graph.initializer if t.HasField("raw_data") or _has_values(t)]
    if len(stored) != len(model.graph.initializer):
        raise WeightError("this ONNX model declares its initializers without values (text form)")
    by_initializer = {initializer_name(n, param_sets(graph)): n for n in expected_shapes(graph)}
    arrays = {
        by_initializer.get(t.name, t.name): numpy_helper.to_array(t)
        for t in model.graph.initializer
    }
    try:
        return WeightSet.for_graph(arrays, graph)
    except WeightError as exc:
        raise WeightError(f"ONNX initializers -> WeightSet: {exc}") from None


def load_into(model: onnx.ModelProto, weights: WeightSet, graph: Graph) -> onnx.ModelProto:
    """A copy of `model` whose initializers hold `weights` (same names; unfolded models)."""
    if is_folded(model):
        raise OnnxEmitError("cannot load a WeightSet into a --fold-bn model: build it again")
    weights.check(graph)
    by_initializer = {initializer_name(n, param_sets(graph)): n for n in weights}
    names = [by_initializer.get(t.name, t.name) for t in model.graph.initializer]
    if sorted(names) != sorted(weights):
        missing = sorted(set(weights) - set(names))[:5]
        extra = sorted(set(names) - set(weights))[:5]
        raise WeightError(f"model initializers differ from the WeightSet: {missing=} {extra=}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.initializer[:]
    out.graph.initializer.extend(
        numpy_helper.from_array(weights[n], initializer_name(n, param_sets(graph))) for n in names
    )
    return out


def _has_values(tensor: onnx.TensorProto) -> bool:
    return bool(tensor.float_data) or tensor.data_location == onnx.TensorProto.EXTERNAL
