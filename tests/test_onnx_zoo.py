"""Every zoo spec as an ONNX model: checker-clean, shapes inferred as the IR says, and in
onnxruntime equal to the generated torch model with the same seeded WeightSet.

The reference is the generated torch model run in float64 (`model.double()`), the exact
answer to fp32 rounding: torch's own fp32 result differs from it by up to ~1e-6 relative
L2 on alexnet (its 9216x4096 Linear), the whole of docs/design.md's budget, so comparing two
fp32 runs would measure torch's rounding as much as ours. Sizes are small (an even and an
odd one), batches 3 and 1, with and without --fold-bn; the heaviest specs are marked slow.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from archspec_onnx.fold import fold_plan
from archspec_onnx.model import build_model
from archspec_torch import generate_module
from archspec_torch.weights import load_into
from onnx_support import assert_close, inferred_shapes, runner
from test_torch_zoo import sizes

from archspec import ir
from archspec.ir import Graph
from archspec.lower import lower
from archspec.registry import load, zoo_names
from archspec.weights import WeightSet

ZOO = zoo_names()
HEAVY = {"alexnet", "alexnet_bn", "resnet101", "resnet152", "densenet169", "densenet201"}


def zoo_params(names: list[str]) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in names]


def check_shapes(model: onnx.ModelProto, graph: Graph, fold_bn: bool) -> None:
    """Every IR value present in the model has the IR's shape; the absent ones are exactly
    the dropouts and stochastic depths (identity at inference) and, folded, the convs their
    BatchNorm replaced."""
    shapes = inferred_shapes(model)
    identities = (ir.Dropout, ir.StochasticDepth)
    absent = {n.name for n in graph.nodes if isinstance(n.op, identities)}
    if fold_bn:
        absent |= set(fold_plan(graph))
    for node in graph.nodes:
        if node.name in absent:
            assert node.name not in shapes, node.name
        else:
            assert shapes.get(node.name) == ["batch", *node.shape], node.name


@pytest.mark.parametrize("name", zoo_params(ZOO))
@pytest.mark.parametrize("which", [0, 1], ids=["even", "odd"])
def test_onnx_equals_torch(name: str, which: int) -> None:
    size = sizes(name)[which]
    module, graph = generate_module(name, input_size=size)
    weights = WeightSet.random(graph, seed=0)
    reference = load_into(getattr(module, graph.name)(), weights, graph).eval().double()
    x = np.random.default_rng(1).standard_normal((3, *graph.node("image").shape))
    x = x.astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x).double()).numpy()
    del reference
    for fold_bn in (False, True):
        model = build_model(graph, weights, fold_bn=fold_bn)
        onnx.checker.check_model(model, full_check=True)
        check_shapes(model, graph, fold_bn)
        forward = runner(model, graph)
        out = forward(x)
        assert out.shape == (3, *graph.node(graph.outputs[0]).shape)
        assert_close(out, expected, f"{name} {size} fold_bn={fold_bn} batch 3")
        assert_close(forward(x[:1]), expected[:1], f"{name} {size} fold_bn={fold_bn} batch 1")


@pytest.mark.parametrize("name", ZOO)
def test_declared_size_shapes_are_the_irs(name: str) -> None:
    """At the spec's own input size (224x224 for most), weightless models suffice."""
    graph = lower(load(name))
    for fold_bn in (False, True):
        check_shapes(build_model(graph, None, fold_bn=fold_bn), graph, fold_bn)


@pytest.mark.parametrize("name", zoo_params(ZOO))
def test_functions_are_checker_clean_with_block_output_shapes(name: str) -> None:
    graph = lower(load(name), input_size=sizes(name)[1])
    weights = WeightSet.random(graph, seed=0)
    model = build_model(graph, weights, functions=True)
    onnx.checker.check_model(model, full_check=True)
    shapes = inferred_shapes(model)
    calls = [n for n in model.graph.node if n.domain == "archspec.blocks"]
    for call in calls:
        for value in call.output:
            assert shapes[value] == ["batch", *graph.node(value).shape], value
    # every outermost block instance is one call in the main graph (nested ones, such as
    # efficientnet_b0's and mobilenet_v3_large's squeeze-and-excitation, are calls inside
    # their parent's function)
    blocks = [s.path for s in graph.scopes if s.kind == "block"]
    outermost = [p for p in blocks if not any(p.startswith(q + ".") for q in blocks)]
    assert [c.name for c in calls] == outermost
    types = {s.block_type for s in graph.scopes if s.kind == "block"}
    # a block type's structures are Type_with_<items only it has>, or Type_<n> where only
    # attributes differ (efficientnet_b0's 3x3 and 5x5 MBConvs)
    assert {re.sub(r"(_with_.*)?(_\d+)?$", "", f.name) for f in model.functions} == types
    # and they compute what the flat graph computes, bit for bit
    x = np.random.default_rng(2).standard_normal((2, *graph.node("image").shape))
    x = x.astype(np.float32)
    flat = runner(build_model(graph, weights), graph)(x)
    assert np.array_equal(runner(model, graph)(x), flat)
