"""The ONNX printers, op by op: every IR kind has one, and each computes the contract.

Small specs exercise each semantic point (TF `same` padding at even and odd sizes,
max pools that never pad zeros, average pools with and without counting the padding,
ceil_mode windows that hang over the end, PyTorch's adaptive bins including unequal and
overlapping ones, flatten's C,H,W order, LeakyReLU's slope, GELU both ways, BatchNorm on
features and without affine, n-ary add, constant pad) against the generated torch model
in float64, with the same seeded weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from archspec_onnx.fold import fold_plan
from archspec_onnx.model import build_model
from archspec_onnx.ops import PRINTERS, adaptive_bins
from onnx_support import assert_close, runner, sample, torch_reference, write_spec

from archspec import ir
from archspec.lower import lower
from archspec.registry import load, zoo_names
from archspec.weights import expected_shapes


def test_every_op_kind_has_a_printer() -> None:
    assert set(PRINTERS) == set(ir.OP_KINDS)


def net(body: list[Any], channels: int = 3, size: int = 12, **extra: Any) -> dict[str, Any]:
    return {"inputs": {"image": [channels, size, size]}, "body": body, **extra}


CASES: dict[str, dict[str, Any]] = {
    "tf_same_padding": net(
        [
            {"c1": {"op": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": "same"}},
            {"c2": {"op": "conv", "out": 4, "kernel": 2, "padding": "same"}},
            {"mp": {"op": "max_pool", "kernel": 3, "stride": 2, "padding": "same"}},
            {"c3": {"op": "conv", "out": 4, "kernel": [3, 1], "padding": "same", "dilation": 2}},
            {"ap": {"op": "avg_pool", "kernel": 3, "stride": 2, "padding": "same"}},
        ],
        size=16,
    ),
    "ceil_mode_pools": net(
        [
            {"stem": {"op": "conv", "out": 4, "kernel": 1}},
            {"mp": {"op": "max_pool", "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}},
            {
                "ap": {
                    "op": "avg_pool",
                    "kernel": 3,
                    "stride": 2,
                    "padding": 1,
                    "ceil_mode": True,
                    "count_include_pad": True,
                }
            },
            {"ap2": {"op": "avg_pool", "kernel": 2, "stride": 2, "ceil_mode": True}},
        ],
        size=14,
    ),
    "avg_pool_padding_counts": net(
        [
            {"a": {"op": "avg_pool", "kernel": 3, "stride": 1, "padding": 1}},
            {
                "b": {
                    "op": "avg_pool",
                    "kernel": 3,
                    "stride": 2,
                    "padding": 1,
                    "count_include_pad": False,
                }
            },
            {
                "c": {
                    "op": "avg_pool",
                    "kernel": 3,
                    "stride": 2,
                    "padding": 1,
                    "ceil_mode": True,
                    "count_include_pad": False,
                }
            },
        ]
    ),
    "max_pool_never_pads_zeros": net(
        [
            {"mp": {"op": "max_pool", "kernel": 3, "stride": 2, "padding": 1}},
            {"mp2": {"op": "max_pool", "kernel": 2, "stride": 2, "padding": "same"}},
        ],
        size=11,
    ),
    "adaptive_pools": net(
        [
            {"unequal": {"op": "adaptive_avg_pool", "size": [5, 3]}},
            {"up": {"op": "adaptive_avg_pool", "size": 7}},  # larger than its input
            {"equal": {"op": "adaptive_avg_pool", "size": 7}},
            {"halve": {"op": "adaptive_avg_pool", "size": [7, 1]}},
        ]
    ),
    "activations_and_head": net(
        [
            {"c": {"op": "conv", "out": 4, "kernel": 3, "padding": 1}},
            {"leaky": {"op": "leaky_relu", "slope": 0.2}},
            {"exact": {"op": "gelu"}},
            {"tanh_gelu": {"op": "gelu", "approximate": "tanh"}},
            {"sig": {"op": "sigmoid"}},
            {"th": {"op": "tanh"}},
            {"drop": {"op": "dropout", "rate": 0.5}},
            {"sm": {"op": "softmax"}},
            {"flat": {"op": "flatten"}},  # C,H,W order: the linear's rows would catch H,W,C
            {"fc": {"op": "linear", "out": 6}},
            {"bn": {"op": "batch_norm"}},
            {"out": {"op": "dropout", "rate": 0.1}},  # a model output that is absent
        ],
        size=5,
    ),
    "wiring": net(
        [
            {"a": {"op": "conv", "out": 4, "kernel": 3, "padding": 1}},
            {"b": {"op": "conv", "out": 4, "kernel": 3, "padding": [0, 2, 1, 1], "input": "a"}},
            {"c": {"op": "batch_norm", "affine": False, "input": "a"}},
            {"sum": {"op": "add", "inputs": ["a", "b", "c"]}},
            {"pad": {"op": "pad", "padding": [1, 0, 2, 1], "value": 0.5}},
            {"cat": {"op": "concat", "inputs": ["pad", "pad"]}},
            {"g": {"op": "global_max_pool"}},
        ]
    ),
}
# Each case at its declared size and at an odd one (H and W differing).
SIZES = {
    name: [None, (case["inputs"]["image"][1] + 3, case["inputs"]["image"][2] + 2)]
    for name, case in CASES.items()
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("which", [0, 1], ids=["declared", "odd"])
def test_op_semantics_equal_torch(case: str, which: int, tmp_path: Path) -> None:
    path = write_spec(tmp_path, case, CASES[case])
    graph, weights, expected = torch_reference(path, SIZES[case][which])
    x = sample(graph, 3)
    if case == "max_pool_never_pads_zeros":
        x = -np.abs(x) - 1  # all negative: a zero-padded max pool would show 0 at borders
    for fold_bn in (False, True):
        model = build_model(graph, weights, fold_bn=fold_bn)
        onnx.checker.check_model(model, full_check=True)
        assert_close(runner(model, graph)(x), expected(x), f"{case} fold_bn={fold_bn}")


def test_ceil_mode_case_hangs_over_the_end(tmp_path: Path) -> None:
    """The ceil_mode case really exercises the overhang: floor-mode ONNX pools with more end
    padding than the IR's, and the counted padding of `ap` as zeros padded before it."""
    model = build_model(lower(load(write_spec(tmp_path, "c", CASES["ceil_mode_pools"]))), None)
    nodes = {n.name: n for n in model.graph.node}

    def attr(node: str, name: str) -> Any:
        return onnx.helper.get_attribute_value(
            next(a for a in nodes[node].attribute if a.name == name)
        )

    # 14 + 1 + 1 -> 8 windows of 3 by 2 end at 17: one more row/column than padded
    assert attr("mp", "pads") == [1, 1, 2, 2]
    assert nodes["ap/pad"].op_type == "Pad"  # 8 -> zeros padded as data, then 5 windows
    assert attr("ap", "pads") == [0, 0, 1, 1] and attr("ap", "count_include_pad") == 0
    assert attr("ap2", "pads") == [0, 0, 1, 1]  # 5 -> 3 windows of 2


def test_adaptive_bins_are_pytorch_bins() -> None:
    # 5 -> 3: [0, 2), [1, 4), [3, 5); 2 -> 3 (more bins than rows): [0, 1), [0, 2), [1, 2)
    third = 1 / 3
    expected = [[0.5, 0.5, 0, 0, 0], [0, third, third, third, 0], [0, 0, 0, 0.5, 0.5]]
    assert np.allclose(adaptive_bins(5, 3), expected)
    assert np.allclose(adaptive_bins(2, 3), [[1, 0], [0.5, 0.5], [0, 1]])


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_graphs_use_explicit_pads_and_no_dropout(name: str) -> None:
    model = build_model(lower(load(name)), None)
    attrs = {a.name for n in model.graph.node for a in n.attribute}
    assert "auto_pad" not in attrs
    assert "Dropout" not in {n.op_type for n in model.graph.node}


def test_names_come_from_the_ir() -> None:
    graph = lower(load("resnet18"))
    model = build_model(graph, None)
    nodes = {n.name: n for n in model.graph.node}
    conv = nodes["layer1.0.conv1"]
    assert conv.op_type == "Conv"
    assert list(conv.input) == ["maxpool", "layer1.0.conv1.weight"]
    assert list(conv.output) == ["layer1.0.conv1"]
    bn = nodes["bn1"]
    assert list(bn.input) == [
        "conv1",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
    ]
    assert [t.name for t in model.graph.initializer] == list(expected_shapes(graph))
    assert [v.name for v in model.graph.input] == ["image"]
    assert [v.name for v in model.graph.output] == ["fc"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 224, 224]


def test_fold_bn_removes_exactly_the_foldable_batch_norms() -> None:
    graph = lower(load("densenet121"))
    plan = fold_plan(graph)
    folded = build_model(graph, None, fold_bn=True)
    plain = build_model(graph, None)
    count = lambda m: sum(n.op_type == "BatchNormalization" for n in m.graph.node)  # noqa: E731
    batch_norms = sum(isinstance(n.op, ir.BatchNorm) for n in graph.nodes)
    assert count(plain) == batch_norms
    # DenseNet is pre-activation: only conv0->norm0 and each layer's conv1->norm2 fold
    assert len(plan) == 1 + 58
    assert count(folded) == batch_norms - len(plan)
    conv = next(n for n in folded.graph.node if n.name == "features.conv0")
    assert list(conv.output) == ["features.norm0"]
    assert conv.input[2] == "features.conv0.bias"


def test_fold_bn_keeps_shared_convs_unfolded(tmp_path: Path) -> None:
    """A shared conv followed by a BatchNorm at each use stays one initializer, unfolded."""
    conv = {"op": "conv", "out": 3, "kernel": 3, "padding": 1, "share": "w"}
    body = [
        {"a": conv},
        {"bn_a": {"op": "batch_norm"}},
        {"b": conv},
        {"bn_b": {"op": "batch_norm"}},
        {"c": {"op": "conv", "out": 3, "kernel": 1}},
        {"bn_c": {"op": "batch_norm"}},
    ]
    path = write_spec(tmp_path, "shared", net(body, size=6))
    graph, weights, expected = torch_reference(path, None)
    assert list(fold_plan(graph)) == ["c"]
    model = build_model(graph, weights, fold_bn=True)
    (shared,) = graph.shared_groups
    readers = [n.name for n in model.graph.node if f"{shared[0]}.weight" in n.input]
    assert readers == ["a", "b"]
    x = sample(graph, 2)
    assert_close(runner(model, graph)(x), expected(x), "shared conv with --fold-bn")


NESTED = {
    "inputs": {"image": [3, 10, 10]},
    "blocks": {
        "Inner": {
            "params": {"width": "int", "stride": 1},
            "body": [
                {
                    "conv": {
                        "op": "conv",
                        "out": "$width",
                        "kernel": 3,
                        "stride": "$stride",
                        "padding": "same",
                    }
                },
                {"bn": {"op": "batch_norm"}},
                {"act": {"op": "relu"}},
            ],
        },
        "Outer": {
            "params": {"width": "int"},
            "body": [
                {"first": {"block": "Inner", "args": {"width": "$width", "stride": 2}}},
                {"second": {"block": "Inner", "args": {"width": "$width"}}},
                {"sum": {"op": "add", "inputs": ["first", "second"]}},
            ],
        },
    },
    "body": [
        {"a": {"block": "Outer", "args": {"width": 4}}},
        {"b": {"block": "Outer", "args": {"width": 4}}},
        {"pool": {"op": "global_avg_pool"}},
    ],
}


def test_nested_blocks_become_functions_calling_functions(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "nested", NESTED)
    for size in [None, (11, 13)]:  # 'same' pads of the stride-2 conv differ with the size
        graph, weights, expected = torch_reference(path, size)
        model = build_model(graph, weights, functions=True)
        onnx.checker.check_model(model, full_check=True)
        functions = {f.name: f for f in model.functions}
        assert set(functions) == {"Inner", "Outer"}
        assert [n.name for n in model.graph.node if n.domain] == ["a", "b"]
        outer = functions["Outer"]
        calls = [n for n in outer.node if n.op_type == "Inner"]
        assert [c.name for c in calls] == ["first", "second"]
        assert list(outer.input) == [
            "input", "first.conv.weight", "first.conv.bias", "first.bn.weight",
            "first.bn.bias", "first.bn.running_mean", "first.bn.running_var",
            "second.conv.weight", "second.conv.bias", "second.bn.weight", "second.bn.bias",
            "second.bn.running_mean", "second.bn.running_var",
        ]  # fmt: skip
        # 'first' and 'second' differ in stride (and pads): attributes of Inner, set per call
        assert list(functions["Inner"].attribute) == ["conv_pads", "conv_strides"]
        x = sample(graph, 2)
        ours = runner(model, graph)(x)
        assert np.array_equal(ours, runner(build_model(graph, weights), graph)(x))
        assert_close(ours, expected(x), f"nested functions {size}")
        folded = build_model(graph, weights, fold_bn=True, functions=True)
        onnx.checker.check_model(folded, full_check=True)
        flat_folded = runner(build_model(graph, weights, fold_bn=True), graph)(x)
        assert np.array_equal(runner(folded, graph)(x), flat_folded)
