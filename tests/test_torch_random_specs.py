"""Property test: random small specs agree between the IR, the generated torch model and
the ONNX model.

Hypothesis writes chains of conv / pool / batch_norm / activation items (every activation,
the spec language v2 ops too: clips, stochastic depth, channel shuffle, chunk, layer norm, scale,
a squeeze-and-excitation gate, a channels-last per-pixel MLP, ShuffleNetV2's split into halves
and a split into unequal parts read out of order; random kernels,
strides, dilations, groups, and every padding form: int, [h, w], per-side, same, valid;
ceil_mode), sometimes an inline repeat, a residual block with a shared conv, a dense head. Any
spec the lowering accepts must generate, import, count the IR's parameters and produce the
IR's output shapes at the declared and at a second, odd input size; with the same seeded
WeightSet, the ONNX model (flat and BatchNorm-folded) must pass the checker and compute the
torch model's float64 output within docs/design.md's fp32 tolerance in onnxruntime.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from archspec_onnx.model import build_model
from archspec_torch import generate_module
from archspec_torch.weights import load_into
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx_support import errors, runner, sample

from archspec.analysis import totals
from archspec.errors import SpecError
from archspec.lower import lower
from archspec.registry import load
from archspec.weights import WeightSet

# docs/design.md's max-abs bound holds as is. Its relative L2 bound (1e-6) is for real models:
# a tiny random net that ends in a global pool often averages O(1) activations to outputs
# near 0, whose relative error measures that cancellation (fp32 rounding of the O(1)
# terms), not a semantic difference; any real mistake (padding, pooling, order) is >= 1e-3.
RANDOM_REL_L2 = 1e-5

PADDINGS = st.one_of(
    st.just("same"),
    st.just("valid"),
    st.integers(0, 2),
    st.lists(st.integers(0, 2), min_size=2, max_size=2),
    st.lists(st.integers(0, 2), min_size=4, max_size=4),
)


@st.composite
def conv_item(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 1, 2]))
    return {
        "op": "conv",
        "out": 2 * draw(st.integers(1, 4)),
        "kernel": draw(st.sampled_from([1, 2, 3, [3, 1], [2, 3]])),
        "stride": draw(st.sampled_from([1, 1, 2, [2, 1]])),
        "dilation": draw(st.sampled_from([1, 1, 2])),
        "padding": draw(PADDINGS),
        "groups": groups,
        "bias": draw(st.booleans()),
    }


@st.composite
def pool_item(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["max_pool", "avg_pool"]))
    kernel = draw(st.sampled_from([2, 3]))
    padding = draw(st.sampled_from(["same", 0, 1]))
    if padding == 1 and kernel == 2:
        padding = 0
    item = {
        "op": kind,
        "kernel": kernel,
        "stride": draw(st.sampled_from([1, 2])),
        "padding": padding,
    }
    if padding != "same":
        item["ceil_mode"] = draw(st.booleans())
    return item


SIMPLE = st.sampled_from(
    [
        {"op": "batch_norm"},
        {"op": "relu"},
        {"op": "leaky_relu", "slope": 0.2},
        {"op": "gelu", "approximate": "tanh"},
        {"op": "sigmoid"},
        {"op": "dropout", "rate": 0.3},
        # spec language v2 (channel counts here are always even)
        {"op": "relu6"},
        {"op": "clip", "min": -0.5, "max": 1.5},
        {"op": "hardswish"},
        {"op": "hardsigmoid"},
        {"op": "silu"},
        {"op": "stochastic_depth", "rate": 0.2},
        {"op": "channel_shuffle", "groups": 2},
        {"op": "layer_norm"},
        {"op": "scale", "init_value": 0.5},
        {"op": "chunk", "chunks": 2, "index": 1},
        {"gate": {"block": "Gate"}},  # squeeze-and-excitation: a (C, 1, 1) mul
        {"mlp": {"block": "PixelMlp"}},  # ConvNeXt's channels-last LayerNorm / Linear MLP
    ]
)
SPLITS = st.sampled_from(
    [
        {"unit": {"block": "ShuffleUnit"}},  # split: `x1, x2 = x.chunk(2, dim=1)`
        {"uneven": {"block": "Uneven"}},  # split by sizes (torch's ChannelSplit module)
    ]
)


@st.composite
def random_spec(draw: st.DrawFn) -> dict[str, Any]:
    body: list[Any] = [{"stem": {"op": "conv", "out": 4, "kernel": 3, "padding": 1}}]
    for _ in range(draw(st.integers(1, 5))):
        body.append(draw(st.one_of(conv_item(), pool_item(), SIMPLE)))
    if draw(st.booleans()):  # a multi-output op somewhere in the chain
        body.insert(draw(st.integers(1, len(body))), draw(SPLITS))
    if draw(st.booleans()):  # an inline repeat: the first iteration may change channels
        width = 2 * draw(st.integers(1, 3))
        steps = [{"op": "conv", "out": width, "kernel": 3, "padding": "same"}, {"op": "relu"}]
        body.append({"loop": {"repeat": draw(st.integers(1, 3)), "body": steps}})
    if draw(st.booleans()):  # a residual block with a shared conv used twice
        body.append({"res": {"block": "Twice", "args": {"width": 2 * draw(st.integers(1, 3))}}})
    if draw(st.booleans()):
        body += [{"op": "flatten"}, {"head": {"op": "linear", "out": 3}}]
    else:
        body += [{"op": "global_avg_pool", "keepdims": draw(st.booleans())}]
    size = draw(st.integers(9, 16))
    return {
        "inputs": {"image": [4, size, size + draw(st.integers(0, 3))]},
        "blocks": {
            "PixelMlp": {
                "body": [
                    {"op": "channels_last"},
                    {"op": "layer_norm"},
                    {"fc1": {"op": "linear", "out": "${2 * in_channels}"}},
                    {"op": "gelu"},
                    {"fc2": {"op": "linear", "out": "${in_channels}", "bias": False}},
                    {"res": {"op": "add", "inputs": ["fc2", "0"]}},
                    {"op": "channels_first"},
                ]
            },
            "ShuffleUnit": {
                "body": [
                    {"op": "split", "chunks": 2, "outputs": ["x1", "x2"]},
                    {
                        "branch": {
                            "op": "conv",
                            "input": "x2",
                            "out": "${in_channels // 2}",
                            "kernel": 3,
                            "padding": 1,
                        }
                    },
                    {"cat": {"op": "concat", "inputs": ["x1", "branch"]}},
                ]
            },
            "Uneven": {
                "body": [
                    {"parts": {"op": "split", "sizes": [1, "${in_channels - 1}"]}},
                    {"act": {"op": "relu", "input": "parts.1"}},
                    {"cat": {"op": "concat", "inputs": ["act", "parts.0"]}},
                ]
            },
            "Gate": {
                "body": [
                    {"squeeze": {"op": "global_avg_pool", "keepdims": True}},
                    {"excite": {"op": "conv", "out": "${in_channels}", "kernel": 1}},
                    {"hard": {"op": "hardsigmoid"}},
                    {"scale": {"op": "mul", "inputs": ["input", "hard"]}},
                ]
            },
            "Twice": {
                "params": {"width": "int"},
                "body": [
                    {
                        "a": {
                            "op": "conv",
                            "out": "$width",
                            "kernel": 3,
                            "padding": "same",
                            "share": "w",
                        }
                    },
                    {
                        "b": {
                            "op": "conv",
                            "out": "$width",
                            "kernel": 3,
                            "padding": "same",
                            "share": "w",
                        }
                    },
                    {"skip": {"op": "conv", "input": "input", "out": "$width", "kernel": 1}},
                    {"sum": {"op": "add", "inputs": ["b", "skip"]}},
                ],
            },
        },
        "body": body,
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=random_spec())
def test_random_specs_match_the_ir(tmp_path_factory: pytest.TempPathFactory, data: dict) -> None:
    folder = tmp_path_factory.mktemp("spec")
    path = folder / "random_net.yaml"
    path.write_text(json.dumps(data))
    spec = load(path)
    if any({"unit", "uneven"} & set(item) for item in data["body"]):
        event("with a split")
    height, width = data["inputs"]["image"][1:]
    for size in [(height, width), (height + 3, width + 1)]:
        try:
            graph = lower(spec, input_size=size)
        except SpecError:
            event("rejected by lowering")
            return  # e.g. a kernel larger than its padded input: lowering says so, fine
        module, graph = generate_module(spec, input_size=size, directory=folder)
        model = getattr(module, graph.name)().eval()
        n_params = sum(p.numel() for p in model.parameters())
        assert n_params == totals(graph).trainable
        x = torch.randn(2, *graph.node("image").shape)
        with torch.no_grad():
            out = model(x)
        assert tuple(out.shape[1:]) == graph.node(graph.outputs[0]).shape
        assert torch.isfinite(out).all()
        event("checked against torch")

        weights = WeightSet.random(graph, seed=0)
        reference = load_into(model, weights, graph).double()
        x64 = sample(graph, 2)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x64).double()).numpy()
        for fold_bn in (False, True):
            onnx_model = build_model(graph, weights, fold_bn=fold_bn)
            onnx.checker.check_model(onnx_model, full_check=True)
            ours = runner(onnx_model, graph)(x64)
            assert np.isfinite(ours).all()
            rel, worst = errors(ours, expected)
            event(f"onnx relative L2 <= 1e-{min(7, int(-np.log10(max(rel, 1e-12))))}")
            assert rel <= RANDOM_REL_L2 and worst <= 1e-4, (
                f"random spec {size} fold_bn={fold_bn}: relative L2 {rel:.3g}, max abs {worst:.3g}"
            )
        event("checked against onnx")
