"""The semantic contract in generated torch code, against independent references.

TensorFlow's own ops are the reference for 'same' padding (conv, max pool, avg pool), at
even and odd input sizes the model was not generated for; hand-written functional torch
code is the reference for explicit padding, activations and pooling flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from archspec_torch import generate_module
from archspec_torch.weights import load_into

from archspec.registry import load
from archspec.weights import WeightSet

TOL = 1e-5  # max abs error allowed, relative to max(1, max |reference|)


def build(
    tmp_path: Path,
    body: list[dict[str, Any]],
    channels: int = 3,
    size: int = 16,
    name: str = "probe",
) -> tuple[torch.nn.Module, WeightSet]:
    spec_file = tmp_path / f"{name}.yaml"
    spec_file.write_text(json.dumps({"inputs": {"image": [channels, size, size]}, "body": body}))
    module, graph = generate_module(load(spec_file), directory=tmp_path)
    model = getattr(module, graph.name)()
    weights = WeightSet.random(graph, seed=0)
    load_into(model, weights, graph)
    return model.eval(), weights


def close(got: torch.Tensor, want: np.ndarray | torch.Tensor) -> None:
    if isinstance(want, torch.Tensor):
        want_t = want.detach()
    else:
        want_t = torch.from_numpy(np.array(want, dtype=np.float32))
    assert got.shape == want_t.shape
    scale = max(1.0, want_t.abs().max().item())
    assert (got - want_t).abs().max().item() <= TOL * scale


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def nchw(y: Any) -> np.ndarray:
    return np.transpose(np.asarray(y), (0, 3, 1, 2))


SAME_CONVS = [  # kernel, stride, dilation
    (3, 1, 1),  # symmetric for every size: Conv2d's own padding
    (2, 1, 1),  # constant but asymmetric
    (3, 2, 1),  # depends on the input size
    (5, 3, 1),
    (1, 2, 1),  # never pads
    (3, 1, 2),
]


@pytest.mark.parametrize(("k", "s", "d"), SAME_CONVS)
def test_conv_same_matches_tensorflow_at_any_size(tmp_path: Path, k: int, s: int, d: int) -> None:
    tf = pytest.importorskip("tensorflow")
    conv = {"op": "conv", "out": 5, "kernel": k, "stride": s, "dilation": d, "padding": "same"}
    model, weights = build(tmp_path, [{"conv": conv}])
    kernel = np.transpose(weights["conv.weight"], (2, 3, 1, 0))  # OIHW -> HWIO
    for size in (16, 17, 15, 20):
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        ref = tf.nn.conv2d(nhwc(x), kernel, strides=s, padding="SAME", dilations=d)
        ref = nchw(ref) + weights["conv.bias"][None, :, None, None]
        with torch.no_grad():
            close(model(x), ref)


@pytest.mark.parametrize(("k", "s"), [(2, 2), (3, 2), (3, 1), (2, 1)])
def test_max_pool_same_matches_tensorflow(tmp_path: Path, k: int, s: int) -> None:
    tf = pytest.importorskip("tensorflow")
    model, _ = build(
        tmp_path, [{"pool": {"op": "max_pool", "kernel": k, "stride": s, "padding": "same"}}]
    )
    for size in (16, 17):
        x = -torch.rand(1, 3, size, size) - 1.0  # all negative: a zero pad would win, -inf must not
        ref = nchw(tf.nn.max_pool2d(nhwc(x), k, s, "SAME"))
        with torch.no_grad():
            close(model(x), ref)


@pytest.mark.parametrize(("k", "s"), [(2, 2), (3, 2), (3, 1)])
def test_avg_pool_same_matches_tensorflow(tmp_path: Path, k: int, s: int) -> None:
    tf = pytest.importorskip("tensorflow")
    model, _ = build(
        tmp_path, [{"pool": {"op": "avg_pool", "kernel": k, "stride": s, "padding": "same"}}]
    )
    for size in (16, 17):
        x = torch.rand(1, 3, size, size) + 1.0
        ref = nchw(tf.nn.avg_pool2d(nhwc(x), k, s, "SAME"))  # TF does not count the padding
        with torch.no_grad():
            close(model(x), ref)


def test_explicit_asymmetric_padding(tmp_path: Path) -> None:
    body = [
        {"conv": {"op": "conv", "out": 4, "kernel": 3, "padding": [0, 2, 1, 0], "bias": False}},
        {"pool": {"op": "max_pool", "kernel": 2, "stride": 2, "padding": [1, 0, 0, 1]}},
    ]
    model, w = build(tmp_path, body)
    x = torch.randn(1, 3, 16, 16)
    ref = F.conv2d(F.pad(x, (1, 0, 0, 2)), torch.from_numpy(np.array(w["conv.weight"])))
    ref = F.max_pool2d(F.pad(ref, (0, 1, 1, 0), value=float("-inf")), 2, 2)
    with torch.no_grad():
        close(model(x), ref)


def test_activations_and_pool_flags(tmp_path: Path) -> None:
    body = [
        {"a": {"op": "leaky_relu", "slope": 0.3}},
        {"b": {"op": "gelu", "approximate": "tanh"}},
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
        {"d": {"op": "max_pool", "kernel": 3, "stride": 2, "ceil_mode": True}},
        {"e": {"op": "pad", "padding": [1, 2, 3, 0], "value": 0.5}},
        {"f": {"op": "softmax"}},
    ]
    model, _ = build(tmp_path, body, size=17)
    x = torch.randn(2, 3, 17, 17)
    ref = F.gelu(F.leaky_relu(x, 0.3), approximate="tanh")
    ref = F.avg_pool2d(ref, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    ref = F.max_pool2d(ref, 3, 2, ceil_mode=True)
    ref = torch.softmax(F.pad(ref, (3, 0, 1, 2), value=0.5), dim=1)
    with torch.no_grad():
        close(model(x), ref)


def test_batch_norm_uses_eps_momentum_and_running_stats(tmp_path: Path) -> None:
    body = [{"bn": {"op": "batch_norm", "eps": 0.01, "momentum": 0.3}}]
    model, w = build(tmp_path, body)
    assert model.bn.eps == 0.01 and model.bn.momentum == 0.3
    x = torch.randn(4, 3, 8, 8)
    mean, var = (torch.from_numpy(np.array(w[f"bn.running_{t}"])) for t in ("mean", "var"))
    gamma, beta = (torch.from_numpy(np.array(w[f"bn.{t}"])) for t in ("weight", "bias"))
    ref = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 0.01) * gamma[:, None, None]
    with torch.no_grad():
        close(model(x), ref + beta[:, None, None])
    model.train()
    with torch.no_grad():
        model(x)
    expected = 0.7 * mean + 0.3 * x.mean((0, 2, 3))  # torch convention, as in the IR
    assert torch.allclose(model.bn.running_mean, expected, atol=1e-6)


def test_symbolic_block_class_is_reusable_with_new_arguments(tmp_path: Path) -> None:
    module, _ = generate_module("resnet50", input_size=(64, 64), directory=tmp_path)
    block = module.Bottleneck(64, planes=32, stride=2)  # an instance the spec never made
    assert block.downsample is not None and block.conv2.stride == (2, 2)
    assert block(torch.randn(1, 64, 9, 9)).shape == (1, 128, 5, 5)
    same = module.Bottleneck(128, planes=32)
    assert same.downsample is None
