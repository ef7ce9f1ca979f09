"""Spec language v2 ops, end to end: each op's IR, counts and generated source, and its
numbers in every backend (torch, Keras functional and subclass, onnxruntime) against the
generated torch model in float64, with one seeded WeightSet and docs/design.md's fp32
tolerance. Inputs put values on the activations' knees (-3, 0, 3, 6) and at scale 20.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx_support import assert_close

from archspec.analysis import totals
from archspec.backend import get as get_backend
from archspec.errors import SpecError
from archspec.lower import lower
from archspec.parity import RunRequest, get_runner
from archspec.registry import load
from archspec.weights import WeightSet

BACKENDS = ("torch", "keras", "keras_subclass", "onnx")


def write(folder: Path, data: dict[str, Any], name: str = "net") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(data))
    return path


def knees(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A batch of 2 whose values include the clip knees, points just beside them, and a
    scale-20 normal sample."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    points = np.array([-3, 0, 3, 6, -6, 1.5, -1.5], np.float64)
    fixed = np.concatenate([points, points + 1e-3, points - 1e-3])
    first = np.resize(fixed, size)
    second = rng.normal(0.0, 20.0, size)
    return np.stack([first, second]).reshape(2, *shape).astype(np.float32)


def outputs(
    path: Path, x: np.ndarray | None = None, mode: str = "inference", seed: int = 0
) -> dict[str, np.ndarray]:
    """The first output of every backend and of the float64 torch reference."""
    spec = load(path)
    graph = lower(spec)
    if x is None:
        x = knees(graph.node(graph.inputs[0]).shape, seed)
    request = RunRequest(
        spec=spec,
        graph=graph,
        weights=WeightSet.random(graph, seed),
        inputs={graph.inputs[0]: x},
        probes=(),
        mode=mode,  # type: ignore[arg-type]
        dtype="float32",
    )
    out = graph.outputs[0]
    results = {"torch64": get_runner("torch64").run(request).outputs[out]}
    for name in BACKENDS:
        if mode == "inference" or "train" in get_runner(name).modes:
            results[name] = get_runner(name).run(request).outputs[out]
    return results


def assert_backends_agree(path: Path, x: np.ndarray | None = None, mode: str = "inference") -> None:
    results = outputs(path, x, mode)
    reference = results.pop("torch64")
    for name, value in results.items():
        assert_close(value, reference, f"{name} vs torch float64 ({mode})")


def source(path: Path, backend: str, **options: Any) -> str:
    spec = load(path)
    return get_backend(backend).emit(spec, lower(spec), options).content.decode()


# ---------------------------------------------------------------------------- activations

ACTIVATIONS: dict[str, tuple[dict[str, Any], str, str]] = {
    # op item, torch module or call printed, Keras layer printed
    "relu6": ({"op": "relu6"}, "F.relu6(", "layers.ReLU(max_value=6.0"),
    "clip": ({"op": "clip", "min": -1.5, "max": 2.0}, "F.hardtanh(", "Clip(-1.5, 2.0"),
    "clip_at_0": ({"op": "clip", "min": 0, "max": 3}, "F.hardtanh(", "layers.ReLU(max_value=3.0"),
    "hardswish": ({"op": "hardswish"}, "F.hardswish(", 'layers.Activation("hard_swish"'),
    "hardsigmoid": ({"op": "hardsigmoid"}, "F.hardsigmoid(", 'layers.Activation("hard_sigmoid"'),
    "silu": ({"op": "silu"}, "F.silu(", 'layers.Activation("silu"'),
}


def activation_net(item: dict[str, Any]) -> dict[str, Any]:
    """The activation on the input itself (so the knees reach it), then after a conv and
    a BatchNorm (so it also runs on a fresh tensor, in place in torch) and as a named
    module inside a sequential scope."""
    return {
        "inputs": {"image": [4, 5, 5]},
        "body": [
            {"first": item},
            {"conv": {"op": "conv", "out": 6, "kernel": 3, "padding": 1, "bias": False}},
            {"bn": {"op": "batch_norm"}},
            {"second": item},
            {"seq": {"body": [{"op": "conv", "out": 6, "kernel": 1}, item]}},
        ],
    }


@pytest.mark.parametrize("case", sorted(ACTIVATIONS))
def test_activation_matches_in_every_backend(case: str, tmp_path: Path) -> None:
    item, torch_src, keras_src = ACTIVATIONS[case]
    path = write(tmp_path, activation_net(item))
    assert torch_src in source(path, "torch")
    assert keras_src in source(path, "keras")
    assert_backends_agree(path)


def test_activation_knees_are_the_contract(tmp_path: Path) -> None:
    """The float64 reference itself computes the written-down formulas (not a library's
    idea of them): relu6 clip(x, 0, 6), hardswish x * relu6(x + 3) / 6, hardsigmoid
    relu6(x + 3) / 6, silu x * sigmoid(x), clip(x, min, max)."""
    relu6 = lambda v: np.clip(v, 0.0, 6.0)  # noqa: E731
    formulas = {
        "relu6": relu6,
        "clip": lambda v: np.clip(v, -1.5, 2.0),
        "hardswish": lambda v: v * relu6(v + 3) / 6,
        "hardsigmoid": lambda v: relu6(v + 3) / 6,
        "silu": lambda v: v / (1 + np.exp(-v)),
    }
    for case, formula in formulas.items():
        path = write(
            tmp_path, {"inputs": {"image": [3, 4, 4]}, "body": [{"act": ACTIVATIONS[case][0]}]}
        )
        x = knees((3, 4, 4))
        results = outputs(path, x)
        want = formula(x.astype(np.float64))
        for name, value in results.items():
            assert_close(value, want, f"{case}: {name} vs the formula")


def test_clip_needs_max_above_min(tmp_path: Path) -> None:
    path = write(
        tmp_path, {"inputs": {"image": [3, 4, 4]}, "body": [{"op": "clip", "min": 2, "max": 1}]}
    )
    with pytest.raises(SpecError, match=r"body\[0\]\.max: max must be greater than min"):
        lower(load(path))


def test_activations_have_no_parameters(tmp_path: Path) -> None:
    path = write(tmp_path, activation_net({"op": "hardswish"}))
    graph = lower(load(path))
    # conv 4*6*9, bn 2*6, 1x1 conv 6*6+6
    assert totals(graph).trainable == 4 * 6 * 9 + 2 * 6 + 6 * 6 + 6


# ---------------------------------------------------------------------------- mul


def se_net(gate: dict[str, Any]) -> dict[str, Any]:
    """Squeeze-and-excitation as torchvision's SqueezeExcitation: pool, 1x1 convs, gate,
    then the (C, 1, 1) scale times the (C, H, W) input, plus a same-shape product."""
    return {
        "inputs": {"image": [6, 5, 7]},
        "blocks": {
            "SE": {
                "params": {"squeeze": "int"},
                "body": [
                    {"avgpool": {"op": "global_avg_pool", "keepdims": True}},
                    {"fc1": {"op": "conv", "out": "$squeeze", "kernel": 1}},
                    {"activation": {"op": "relu"}},
                    {"fc2": {"op": "conv", "out": "${in_channels}", "kernel": 1}},
                    {"scale_activation": gate},
                    {"scale": {"op": "mul", "inputs": ["scale_activation", "input"]}},
                ],
            }
        },
        "body": [
            {"stem": {"op": "conv", "out": 6, "kernel": 3, "padding": 1}},
            {"se": {"block": "SE", "args": {"squeeze": 2}}},
            {"square": {"op": "mul", "inputs": ["se", "stem"]}},
        ],
    }


@pytest.mark.parametrize("gate", [{"op": "sigmoid"}, {"op": "hardsigmoid"}])
def test_mul_broadcasts_a_gate_in_every_backend(gate: dict[str, Any], tmp_path: Path) -> None:
    path = write(tmp_path, se_net(gate))
    graph = lower(load(path))
    assert graph.node("se.scale").shape == (6, 5, 7)
    assert graph.node("se.scale_activation").shape == (6, 1, 1)
    assert "out = out * x" in source(path, "torch")
    assert "layers.Multiply(" in source(path, "keras")
    assert_backends_agree(path)


@pytest.mark.parametrize(
    ("a", "b"),
    [((6, 5, 7), (4, 1, 1)), ((6, 5, 7), (6, 2, 1)), ((6, 5, 7), (6,)), ((6, 5, 7), (6, 5, 3))],
)
def test_mul_of_shapes_that_do_not_broadcast_is_a_located_error(
    a: tuple[int, ...], b: tuple[int, ...], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        {
            "inputs": {"u": list(a), "v": list(b)},
            "body": [{"m": {"op": "mul", "inputs": ["u", "v"]}}],
        },
    )
    shapes = f"'u' is ({', '.join(map(str, a))}) but 'v' is ({', '.join(map(str, b))})"
    with pytest.raises(SpecError, match=r"net\.yaml:\d+:\d+: body\[0\]\.m: mul of shapes") as err:
        lower(load(path))
    assert shapes in str(err.value)


def test_mul_takes_exactly_two_inputs(tmp_path: Path) -> None:
    body = [{"m": {"op": "mul", "inputs": ["u", "u", "u"]}}]
    path = write(tmp_path, {"inputs": {"u": [2, 3, 3]}, "body": body})
    with pytest.raises(SpecError, match="mul takes 2 input"):
        lower(load(path))


# ---------------------------------------------------------------------------- stochastic depth


def residual_net(rate: float, mode: str = "row") -> dict[str, Any]:
    """ConvNeXt's and EfficientNet's use: the branch's stochastic depth, then the add."""
    return {
        "inputs": {"image": [4, 5, 5]},
        "body": [
            {"conv": {"op": "conv", "out": 4, "kernel": 3, "padding": 1}},
            {"stochastic_depth": {"op": "stochastic_depth", "rate": rate, "mode": mode}},
            {"add": {"op": "add", "inputs": ["stochastic_depth", "input"]}},
        ],
    }


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_stochastic_depth_matches_in_every_backend(mode: str, tmp_path: Path) -> None:
    """Inference: identity. Train mode (the parity harness turns it off as it does dropout):
    the same numbers too."""
    path = write(tmp_path, residual_net(0.2))
    assert 'StochasticDepth(0.2, "row")' in source(path, "torch")
    assert "import torchvision" not in source(path, "torch")
    keras_src = source(path, "keras")
    assert 'layers.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="stochastic_depth")' in keras_src
    assert_backends_agree(path, mode=mode)


def test_stochastic_depth_is_the_identity_at_inference_exactly(tmp_path: Path) -> None:
    import keras
    import torch
    from archspec_keras import generate_module as keras_module
    from archspec_torch import generate_module as torch_module

    data = {
        "inputs": {"image": [3, 4, 4]},
        "body": [{"sd": {"op": "stochastic_depth", "rate": 0.5}}],
    }
    path = write(tmp_path, data)
    x = knees((3, 4, 4))
    module, graph = torch_module(path, directory=tmp_path)
    model = getattr(module, graph.name)().eval()
    with torch.no_grad():
        assert torch.equal(model(torch.from_numpy(x)), torch.from_numpy(x))
    for style in ("functional", "subclass"):
        kmodule, _ = keras_module(path, directory=tmp_path, style=style)
        kmodel = getattr(kmodule, graph.name)()
        nhwc = x.transpose(0, 2, 3, 1)
        out = keras.ops.convert_to_numpy(kmodel(nhwc, training=False))
        np.testing.assert_array_equal(out, nhwc)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_in_training_drops_samples_at_its_rate(mode: str, tmp_path: Path) -> None:
    """torchvision's statistics, loosely: each sample (row) or the whole batch is zero
    with probability rate, and kept ones are exactly x / (1 - rate); in torch and Keras."""
    import keras
    import torch
    from archspec_keras import generate_module as keras_module
    from archspec_torch import generate_module as torch_module

    rate, n = 0.25, 400
    item = {"sd": {"op": "stochastic_depth", "rate": rate, "mode": mode}}
    path = write(tmp_path, {"inputs": {"image": [2, 3, 3]}, "body": [item]})
    x = np.random.default_rng(0).uniform(1.0, 2.0, (n, 2, 3, 3)).astype(np.float32)
    module, graph = torch_module(path, directory=tmp_path)
    model = getattr(module, graph.name)().train()
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    kmodel = getattr(keras_module(path, directory=tmp_path)[0], graph.name)()
    runs = {
        "torch": lambda: model(torch.from_numpy(x)).numpy(),
        "keras": lambda: keras.ops.convert_to_numpy(
            kmodel(x.transpose(0, 2, 3, 1), training=True)
        ).transpose(0, 3, 1, 2),
    }
    for name, run in runs.items():
        outs = np.stack([run() for _ in range(1 if mode == "row" else 200)])
        flat = outs.reshape(-1, 2 * 3 * 3)
        dropped = (flat == 0).all(axis=1)
        kept = ~dropped
        assert ((flat == 0).any(axis=1) == dropped).all(), f"{name}: drops whole samples"
        expect = np.broadcast_to(x / (1 - rate), outs.shape).reshape(-1, 18)
        np.testing.assert_allclose(flat[kept], expect[kept], rtol=1e-6, err_msg=name)
        if mode == "batch":  # every sample of one call together
            per_call = dropped.reshape(outs.shape[0], n)
            assert (per_call.all(axis=1) | ~per_call.any(axis=1)).all(), name
        fraction = dropped.mean()
        assert abs(fraction - rate) < 0.08, f"{name}: dropped {fraction:.3f}, rate {rate}"


def test_stochastic_depth_rate_is_checked(tmp_path: Path) -> None:
    for rate, message in ((1.0, "rate 1 drops every sample"), (1.5, "must be <= 1")):
        path = write(tmp_path, residual_net(rate))
        with pytest.raises(SpecError, match=rf"body\[1\]\.stochastic_depth\.rate: {message}"):
            lower(load(path))


# ---------------------------------------------------------------------------- channel shuffle


def torchvision_channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """torchvision.models.shufflenetv2.channel_shuffle, in numpy."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


@pytest.mark.parametrize("groups", [2, 3])
def test_channel_shuffle_is_shufflenets_in_every_backend(groups: int, tmp_path: Path) -> None:
    item = {"op": "channel_shuffle", "groups": groups}
    body = [{"shuffle": item}, {"conv": {"op": "conv", "out": 6, "kernel": 1}}, {"again": item}]
    path = write(tmp_path, {"inputs": {"image": [6, 3, 4]}, "body": body})
    assert f"F.channel_shuffle(image, {groups})" in source(path, "torch")
    assert f'ChannelShuffle({groups}, name="shuffle")' in source(path, "keras")
    assert_backends_agree(path)
    path = write(tmp_path, {"inputs": {"image": [6, 3, 4]}, "body": [{"shuffle": item}]}, "bare")
    x = knees((6, 3, 4))
    for name, value in outputs(path, x).items():
        np.testing.assert_array_equal(value, torchvision_channel_shuffle(x, groups), name)


def test_channel_shuffle_groups_must_divide_the_channels(tmp_path: Path) -> None:
    body = [{"shuffle": {"op": "channel_shuffle", "groups": 4}}]
    path = write(tmp_path, {"inputs": {"image": [6, 3, 4]}, "body": body})
    with pytest.raises(SpecError, match=r"shuffle\.groups: groups=4 must divide the 6 input"):
        lower(load(path))


# ---------------------------------------------------------------------------- layer norm


def layer_norm_net(eps: float = 1e-6, affine: bool = True) -> dict[str, Any]:
    """ConvNeXt's two uses: on (C, H, W) after a depthwise conv, and on the pooled (C, 1, 1)
    before the head; and a plain one on features."""
    # as an expression: json writes 1e-06, which YAML would read as a string
    norm = {"op": "layer_norm", "eps": f"${{{eps!r}}}", "affine": affine}
    return {
        "inputs": {"image": [6, 5, 4]},
        "body": [
            {"dwconv": {"op": "conv", "out": 6, "kernel": 3, "padding": 1, "groups": 6}},
            {"norm": norm},
            {"avgpool": {"op": "global_avg_pool", "keepdims": True}},
            {"head_norm": norm},
            {"flatten": {"op": "flatten"}},
            {"fc": {"op": "linear", "out": 5}},
            {"features_norm": norm},
        ],
    }


@pytest.mark.parametrize(("eps", "affine"), [(1e-6, True), (1e-5, False)])
def test_layer_norm_over_channels_in_every_backend(
    eps: float, affine: bool, tmp_path: Path
) -> None:
    path = write(tmp_path, layer_norm_net(eps, affine))
    graph = lower(load(path))
    assert totals(graph).trainable == 6 * 9 + 6 + 5 * 6 + 5 + (2 * (6 + 6 + 5) if affine else 0)
    torch_src = source(path, "torch")
    assert (
        "LayerNorm2d(6, eps=1e-06)" if affine else "LayerNorm2d(6, elementwise_affine=False)"
    ) in torch_src
    assert "nn.LayerNorm(5" in torch_src
    keras_src = source(path, "keras")
    assert "layers.LayerNormalization(" in keras_src
    assert "Permute" not in keras_src  # pooled to 1x1, normalized: flatten needs no C,H,W order
    for mode in ("inference", "train"):
        assert_backends_agree(path, mode=mode)


def test_layer_norm_is_the_contract(tmp_path: Path) -> None:
    """Each pixel's channels normalized with the biased variance, eps inside the root, then
    the per-channel weight and bias, in every backend."""
    path = write(
        tmp_path,
        {"inputs": {"image": [6, 3, 4]}, "body": [{"ln": {"op": "layer_norm", "eps": 0.1}}]},
    )
    graph = lower(load(path))
    weights = WeightSet.random(graph, 0)
    x = knees((6, 3, 4)).astype(np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    gamma, beta = (
        weights[f"ln.{t}"].astype(np.float64)[None, :, None, None] for t in ("weight", "bias")
    )
    want = (x - mean) / np.sqrt(var + 0.1) * gamma + beta
    for name, value in outputs(path, x.astype(np.float32)).items():
        assert_close(value, want, f"{name} vs the formula")


def test_layer_norm_needs_channels(tmp_path: Path) -> None:
    body = [{"op": "flatten"}, {"ln": {"op": "layer_norm", "eps": 0}}]
    path = write(tmp_path, {"inputs": {"image": [2, 3, 3]}, "body": body})
    with pytest.raises(SpecError, match=r"body\[1\]\.ln\.eps: must be > 0"):
        lower(load(path))


# ---------------------------------------------------------------------------- scale


def convnext_net(init: str = "${1e-6}") -> dict[str, Any]:
    """ConvNeXt's block as torchvision's CNBlock names it (block.0 depthwise conv, block.2
    layer norm, pointwise layers, layer_scale on the block, stochastic depth, residual),
    with 1x1 convs standing in for the channels-last Linear layers; and a scale on
    features."""
    return {
        "inputs": {"image": [4, 5, 5]},
        "blocks": {
            "CNBlock": {
                "params": {"layer_scale": "float", "sd_prob": "float"},
                "body": [
                    {
                        "name": "block",  # the key `block:` would make a block item
                        "body": [
                            {
                                "op": "conv",
                                "out": "${in_channels}",
                                "kernel": 3,
                                "padding": 1,
                                "groups": "${in_channels}",
                            },
                            {"op": "layer_norm", "eps": "${1e-6}"},
                            {"op": "conv", "out": "${4 * in_channels}", "kernel": 1},
                            {"op": "gelu"},
                            {"op": "conv", "out": "${in_channels}", "kernel": 1},
                        ],
                    },
                    {"layer_scale": {"op": "scale", "init_value": "$layer_scale"}},
                    {"stochastic_depth": {"op": "stochastic_depth", "rate": "$sd_prob"}},
                    {"add": {"op": "add", "inputs": ["stochastic_depth", "input"]}},
                ],
            }
        },
        "body": [
            {
                "features": {
                    "block": "CNBlock",
                    "repeat": 2,
                    "args": {"layer_scale": init, "sd_prob": 0.1},
                }
            },
            {"pool": {"op": "global_avg_pool"}},
            {"gain": {"op": "scale"}},
        ],
    }


def test_scale_is_a_parameter_of_its_own(tmp_path: Path) -> None:
    path = write(tmp_path, convnext_net())
    graph = lower(load(path))
    shapes = {n: w.shape for n, w in WeightSet.random(graph, 0).items()}
    assert shapes["features.0.layer_scale"] == (4, 1, 1)  # torchvision's layer_scale
    assert shapes["gain"] == (4,)
    assert "features.0.layer_scale.weight" not in shapes
    block = 4 * 9 + 4 + 2 * 4 + (4 * 16 + 16) + (16 * 4 + 4) + 4
    assert totals(graph).trainable == 2 * block + 4
    torch_src = source(path, "torch")
    assert (
        "self.layer_scale = nn.Parameter(torch.full((in_channels, 1, 1), layer_scale))" in torch_src
    )
    assert "out = self.layer_scale * out" in torch_src
    assert "self.gain = nn.Parameter(torch.full((4,), 1.0))" in torch_src
    assert 'Scale(layer_scale, name=f"{name}_layer_scale")' in source(path, "keras")


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_scale_matches_in_every_backend(mode: str, tmp_path: Path) -> None:
    assert_backends_agree(write(tmp_path, convnext_net()), mode=mode)


def test_scale_round_trips_through_every_adapter_and_counts_agree(tmp_path: Path) -> None:
    import keras
    from archspec_keras import generate_module as keras_module
    from archspec_keras.weights import from_keras
    from archspec_keras.weights import load_into as keras_load
    from archspec_onnx.model import build_model
    from archspec_onnx.weights import from_model
    from archspec_torch import generate_module as torch_module
    from archspec_torch.weights import from_module
    from archspec_torch.weights import load_into as torch_load

    path = write(tmp_path, convnext_net())
    module, graph = torch_module(path, directory=tmp_path)
    weights = WeightSet.random(graph, 3)
    count = totals(graph)
    model = torch_load(getattr(module, graph.name)(), weights, graph)
    assert sum(p.numel() for p in model.parameters()) == count.trainable
    assert from_module(model, graph).equal(weights)
    for style in ("functional", "subclass"):
        kmodel = getattr(keras_module(path, directory=tmp_path, style=style)[0], graph.name)()
        assert kmodel.count_params() == count.trainable + count.non_trainable
        assert from_keras(keras_load(kmodel, weights, graph), graph).equal(weights), style
        variable = next(v for v in kmodel.weights if "layer_scale" in v.path)
        assert tuple(variable.shape) == (4,), style
        del kmodel
        keras.backend.clear_session()
    assert from_model(build_model(graph, weights), graph).equal(weights)


def test_torch_refuses_a_scale_inside_a_sequential_scope(tmp_path: Path) -> None:
    body = [{"seq": {"body": [{"op": "conv", "out": 3, "kernel": 1}, {"op": "scale"}]}}]
    path = write(tmp_path, {"inputs": {"image": [3, 4, 4]}, "body": body})
    with pytest.raises(
        SpecError, match=r"body\[0\]\.seq.*'1': a scale's factor is an nn.Parameter"
    ):
        source(path, "torch")
    assert "Scale(" in source(path, "keras")  # other backends are fine with it


# ---------------------------------------------------------------------------- chunk (split)


def shufflenet_net() -> dict[str, Any]:
    """torchvision's ShuffleNetV2 InvertedResidual with stride 1: `x1, x2 = x.chunk(2,
    dim=1)`, `cat((x1, branch2(x2)), dim=1)`, `channel_shuffle(out, 2)`; one item per part."""
    return {
        "inputs": {"image": [8, 5, 5]},
        "blocks": {
            "InvertedResidual": {
                "body": [
                    {"x1": {"op": "chunk", "chunks": 2, "index": 0, "input": "input"}},
                    {"x2": {"op": "chunk", "chunks": 2, "index": 1, "input": "input"}},
                    {
                        "name": "branch2",
                        "input": "x2",
                        "body": [
                            {"op": "conv", "out": 4, "kernel": 1, "bias": False},
                            {"op": "batch_norm"},
                            {"op": "relu"},
                            {"op": "conv", "out": 4, "kernel": 3, "padding": 1, "groups": 4},
                            {"op": "batch_norm"},
                        ],
                    },
                    {"cat": {"op": "concat", "inputs": ["x1", "branch2"]}},
                    {"shuffle": {"op": "channel_shuffle", "groups": 2}},
                ]
            }
        },
        "body": [
            {"stage": {"block": "InvertedResidual", "repeat": 2}},
            {"tail": {"body": [{"op": "chunk", "chunks": 4, "index": 3}, {"op": "relu"}]}},
        ],
    }


def test_chunk_splits_channels_as_shufflenet_in_every_backend(tmp_path: Path) -> None:
    path = write(tmp_path, shufflenet_net())
    graph = lower(load(path))
    assert graph.node("stage.0.x2").shape == (4, 5, 5)
    assert graph.node("tail.0").shape == (2, 5, 5)
    torch_src = source(path, "torch")
    assert "x.chunk(2, dim=1)[0]" in torch_src
    assert "nn.Conv2d(in_channels // 2, 4, kernel_size=1" in torch_src
    assert "ChannelChunk(4, 3)" in torch_src  # inside the tail's nn.Sequential
    assert 'ChannelChunk(2, 1, name=f"{name}_x2")' in source(path, "keras")
    for mode in ("inference", "train"):
        assert_backends_agree(path, mode=mode)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_chunk_is_the_channel_range(index: int, tmp_path: Path) -> None:
    body = [{"part": {"op": "chunk", "chunks": 3, "index": index}}]
    path = write(tmp_path, {"inputs": {"image": [6, 2, 3]}, "body": body})
    x = knees((6, 2, 3))
    for name, value in outputs(path, x).items():
        np.testing.assert_array_equal(value, x[:, 2 * index : 2 * index + 2], name)


def test_an_unused_chunk_is_warned_about(tmp_path: Path) -> None:
    body = [
        {"x1": {"op": "chunk", "chunks": 2, "index": 0}},
        {"x2": {"op": "chunk", "chunks": 2, "index": 1, "input": "image"}},
    ]
    path = write(tmp_path, {"inputs": {"image": [4, 2, 2]}, "body": body})
    messages = [w.message for w in lower(load(path)).warnings]
    assert any("'x1' is never used" in m for m in messages), messages


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chunks": 3, "index": 0}, r"part\.chunks: chunks=3 must divide the 4 input channels"),
        ({"chunks": 2, "index": 2}, r"part\.index: expected an int from 0 to 1, got 2"),
    ],
)
def test_chunk_fields_are_checked(fields: dict[str, int], message: str, tmp_path: Path) -> None:
    body = [{"part": {"op": "chunk", **fields}}]
    path = write(tmp_path, {"inputs": {"image": [4, 2, 2]}, "body": body})
    with pytest.raises(SpecError, match=message):
        lower(load(path))


# ---------------------------------------------------------------------------- split


def branch(out: str, stride: int, conv_first: bool) -> list[dict[str, Any]]:
    """ShuffleNetV2's branches as torchvision numbers them: branch1 is a depthwise conv
    then a 1x1 conv; branch2 a 1x1 conv, a depthwise conv and a 1x1 conv."""
    depthwise = {"op": "conv", "kernel": 3, "stride": stride, "padding": 1, "bias": False}
    pointwise = {"op": "conv", "out": out, "kernel": 1, "bias": False}
    bn, relu = {"op": "batch_norm"}, {"op": "relu"}
    if not conv_first:  # branch1
        dw = {**depthwise, "out": "${in_channels}", "groups": "${in_channels}"}
        return [dw, bn, pointwise, bn, relu]
    dw = {**depthwise, "out": out, "groups": out}
    return [pointwise, bn, relu, dw, bn, pointwise, bn, relu]


def shufflenet_units() -> dict[str, Any]:
    """torchvision's ShuffleNetV2 InvertedResidual with stride 2, then twice with stride 1.
    torchvision's `if self.stride == 1` chooses the block type here (a split cannot be
    optional); the stride-1 unit splits with one item: `x1, x2 = x.chunk(2, dim=1)`."""
    half = "${oup // 2}"
    return {
        "inputs": {"image": [8, 9, 9]},
        "blocks": {
            "DownUnit": {
                "params": {"oup": "int"},
                "body": [
                    {"name": "branch1", "input": "input", "body": branch(half, 2, False)},
                    {"name": "branch2", "input": "input", "body": branch(half, 2, True)},
                    {"cat": {"op": "concat", "inputs": ["branch1", "branch2"]}},
                    {"shuffle": {"op": "channel_shuffle", "groups": 2}},
                ],
            },
            "Unit": {
                "body": [
                    {"op": "split", "chunks": 2, "outputs": ["x1", "x2"]},
                    {
                        "name": "branch2",
                        "input": "x2",
                        "body": branch("${in_channels // 2}", 1, True),
                    },
                    {"cat": {"op": "concat", "inputs": ["x1", "branch2"]}},
                    {"shuffle": {"op": "channel_shuffle", "groups": 2}},
                ]
            },
        },
        "body": [
            {"down": {"block": "DownUnit", "args": {"oup": 16}}},
            {"unit": {"block": "Unit", "repeat": 2}},
        ],
    }


def torchvision_shufflenet_units() -> Any:
    """torchvision.models.shufflenetv2.InvertedResidual, as torchvision writes it, in the
    layout of `shufflenet_units`."""
    import torch
    from torch import nn

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, oup: int, stride: int) -> None:
            super().__init__()
            self.stride = stride
            branch_features = oup // 2
            if self.stride > 1:
                self.branch1 = nn.Sequential(
                    self.depthwise_conv(inp, inp, kernel_size=3, stride=self.stride, padding=1),
                    nn.BatchNorm2d(inp),
                    nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                    nn.BatchNorm2d(branch_features),
                    nn.ReLU(inplace=True),
                )
            else:
                self.branch1 = nn.Sequential()
            self.branch2 = nn.Sequential(
                nn.Conv2d(
                    inp if (self.stride > 1) else branch_features,
                    branch_features,
                    kernel_size=1,
                    stride=1,
                    padding=0,
                    bias=False,
                ),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
                self.depthwise_conv(
                    branch_features, branch_features, kernel_size=3, stride=self.stride, padding=1
                ),
                nn.BatchNorm2d(branch_features),
                nn.Conv2d(
                    branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False
                ),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )

        @staticmethod
        def depthwise_conv(
            i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0
        ) -> nn.Conv2d:
            return nn.Conv2d(i, o, kernel_size, stride, padding, bias=False, groups=i)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return nn.functional.channel_shuffle(out, 2)

    class Units(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = InvertedResidual(8, 16, 2)
            self.unit = nn.Sequential(InvertedResidual(16, 16, 1), InvertedResidual(16, 16, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.unit(self.down(x))

    return Units()


def test_split_is_torchvisions_inverted_residual(tmp_path: Path) -> None:
    """Same state_dict keys, strict load, identical outputs (random BatchNorm statistics)
    as torchvision's InvertedResidual at stride 2 and 1; Keras in both styles and
    onnxruntime agree with torch in inference and train mode."""
    import torch
    from archspec_torch import generate_module as torch_module
    from archspec_torch.weights import load_into

    path = write(tmp_path, shufflenet_units())
    torch_src = source(path, "torch")
    assert "        x1, x2 = x.chunk(2, dim=1)\n" in torch_src
    assert "ChannelSplit" not in torch_src  # no helper: the split is written inline
    keras_src = source(path, "keras")
    assert 'x1, x2 = ChannelSplit(2, name=f"{name}_0")(x)' in keras_src
    assert "x1, x2 = self.layer_0(x)" in source(path, "keras", style="subclass")
    module, graph = torch_module(path, directory=tmp_path)
    assert graph.node("unit.0.x2").shape == (8, 5, 5)
    assert totals(graph).trainable == sum(
        p.numel() for p in torchvision_shufflenet_units().parameters()
    )
    ours = load_into(module.net(), WeightSet.random(graph, 0), graph).eval()
    theirs = torchvision_shufflenet_units().eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.from_numpy(knees((8, 9, 9)))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    for mode in ("inference", "train"):
        assert_backends_agree(path, mode=mode)


def split_net() -> dict[str, Any]:
    """Unequal parts read out of order, parts named `<item>.<i>`, and a block whose
    instances split differently (torch's ChannelSplit helper module there)."""
    return {
        "inputs": {"image": [8, 3, 4]},
        "blocks": {
            "Halves": {
                "params": {"left": "int"},
                "body": [
                    {"sp": {"op": "split", "sizes": ["$left", "${in_channels - left}"]}},
                    {"cat": {"op": "concat", "inputs": ["sp.1", "sp.0"]}},
                ],
            }
        },
        "body": [
            {"parts": {"op": "split", "sizes": [2, 5, 1]}},
            {"mid": {"op": "relu", "input": "parts.1"}},
            {"cat": {"op": "concat", "inputs": ["parts.2", "parts.0", "mid"]}},
            {"a": {"block": "Halves", "args": {"left": 3}}},
            {"b": {"block": "Halves", "args": {"left": 6}}},
        ],
    }


def test_split_parts_are_the_channel_ranges_in_every_backend(tmp_path: Path) -> None:
    path = write(tmp_path, split_net())
    graph = lower(load(path))
    assert [graph.node(n).shape[0] for n in graph.parts("parts")] == [2, 5, 1]
    assert totals(graph).trainable == 0 and totals(graph).macs == 0
    torch_src = source(path, "torch")
    assert "parts_0, parts_1, parts_2 = image.split([2, 5, 1], dim=1)" in torch_src
    assert "self.sp = ChannelSplit(sizes=[left, in_channels - left])" in torch_src
    assert "sp_0, sp_1 = self.sp(x)" in torch_src
    x = knees((8, 3, 4))
    first = np.concatenate([x[:, 7:8], x[:, :2], np.maximum(x[:, 2:7], 0)], axis=1)
    second = np.concatenate([first[:, 3:], first[:, :3]], axis=1)
    want = np.concatenate([second[:, 6:], second[:, :6]], axis=1)
    for name, value in outputs(path, x).items():
        np.testing.assert_array_equal(value, want, name)


def test_split_summary_and_graph_show_each_part(tmp_path: Path) -> None:
    from archspec.analysis import rows
    from archspec.render import to_dot, to_mermaid

    graph = lower(load(write(tmp_path, split_net())))
    table = {r.name: (r.op, r.shape, r.params) for r in rows(graph)}
    assert table["parts"] == ("split", (8, 3, 4), 0)
    assert table["parts.1"] == ("part", (5, 3, 4), 0)
    assert table["a.sp.0"] == ("part", (3, 3, 4), 0)
    mermaid = to_mermaid(graph)
    assert '["parts.2<br/>part 1x3x4"]' in mermaid
    assert "n1 --> n4" in mermaid  # the split feeds its third part
    assert '[label="a.sp.1\\npart 5x3x4"]' in to_dot(graph)


def test_split_parts_are_probed_by_name_in_every_backend(tmp_path: Path) -> None:
    """Per-op parity compares each part of every split under its own node name wherever
    a backend can observe it: ONNX values, Keras's ChannelSplit layer, torch's module."""
    from archspec.parity import run_parity

    path = write(tmp_path, split_net())
    spec = load(path)
    graph = lower(spec)
    runners = [get_runner(n) for n in ("onnx", "keras", "keras_subclass", "torch")]
    reports = run_parity(spec, graph, runners, per_op=True)
    everywhere = {"a.sp.0", "a.sp.1", "b.sp.0", "b.sp.1"}
    for report in reports:
        assert report.passed, report.other
        assert "parts" not in report.probes  # a split has no value of its own
        onnx_only = {"parts.0", "parts.1", "parts.2"} if "keras" in report.other else set()
        assert everywhere | onnx_only <= set(report.probes), (report.other, report.probes)


# ---------------------------------------------------------------------------- channels-last


def cnblock_net(sd_prob: float = 0.1) -> dict[str, Any]:
    """torchvision's CNBlock as ConvNeXt writes it: the depthwise conv, Permute to
    channels-last (block.1), LayerNorm and the Linear MLP on each pixel's channels, Permute
    back (block.6); then a channels-last stretch with a named value read twice (a residual
    around a Linear), dropout and stochastic depth on it, and a head."""
    block = [
        {
            "op": "conv",
            "out": "${in_channels}",
            "kernel": 3,
            "padding": 1,
            "groups": "${in_channels}",
        },
        {"op": "channels_last"},
        {"op": "layer_norm", "eps": "${1e-6}"},
        {"op": "linear", "out": "${4 * in_channels}"},
        {"op": "gelu"},
        {"op": "linear", "out": "${in_channels}"},
        {"op": "channels_first"},
    ]
    return {
        "inputs": {"image": [4, 5, 3]},
        "blocks": {
            "CNBlock": {
                "params": {"sd_prob": "float"},
                "body": [
                    {"name": "block", "numbering": "flat", "body": block},
                    {"layer_scale": {"op": "scale", "init_value": "${1e-6}"}},
                    {"stochastic_depth": {"op": "stochastic_depth", "rate": "$sd_prob"}},
                    {"add": {"op": "add", "inputs": ["stochastic_depth", "input"]}},
                ],
            }
        },
        "body": [
            {"features": {"block": "CNBlock", "repeat": 2, "args": {"sd_prob": sd_prob}}},
            {"nhwc": {"op": "channels_last"}},
            {"mlp": {"op": "linear", "out": 4, "bias": False}},
            {"act": {"op": "silu"}},
            {"residual": {"op": "add", "inputs": ["act", "nhwc"]}},
            {"drop": {"op": "dropout", "rate": 0.2}},
            {"droppath": {"op": "stochastic_depth", "rate": sd_prob}},
            {"norm": {"op": "layer_norm"}},
            {"nchw": {"op": "channels_first"}},
            {"pool": {"op": "global_avg_pool"}},
            {"fc": {"op": "linear", "out": 3}},
        ],
    }


def test_channels_last_ir_shapes_counts_and_sources(tmp_path: Path) -> None:
    path = write(tmp_path, cnblock_net())
    graph = lower(load(path))
    node = graph.node
    assert node("features.0.block.0").shape == (4, 5, 3)
    assert node("features.0.block.1").shape == (5, 3, 4)  # (H, W, C)
    assert node("features.0.block.3").shape == (5, 3, 16)
    assert node("features.0.block.6").shape == (4, 5, 3)
    layouts = {n.name: n.layout for n in graph.nodes}
    assert layouts["features.0.block.1"] == layouts["features.0.block.5"] == "channels_last"
    assert layouts["features.0.block.6"] == layouts["features.0.add"] == "channels_first"
    assert layouts["residual"] == layouts["droppath"] == "channels_last"
    block = 4 * 9 + 4 + 2 * 4 + (4 * 16 + 16) + (16 * 4 + 4) + 4
    assert totals(graph).trainable == 2 * block + 16 + 2 * 4 + 4 * 3 + 3
    # a Linear runs once per pixel: 15 pixels x in x out
    assert totals(graph).macs == 2 * (15 * 4 * 9 + 2 * 15 * 4 * 16) + 15 * 16 + 12
    torch_src = source(path, "torch")
    for text in (
        "Permute([0, 2, 3, 1]),",
        "nn.LayerNorm(in_channels, eps=1e-06),",
        "nn.Linear(in_channels, 4 * in_channels),",
        "Permute([0, 3, 1, 2]),",
        "class Permute(nn.Module):",
        ".permute(0, 2, 3, 1)",  # the top level's functional form
        "nn.LayerNorm(4)",
    ):
        assert text in torch_src, text
    for style in ("functional", "subclass"):
        keras_src = source(path, "keras", style=style)
        assert "Permute" not in keras_src and "Transpose" not in keras_src  # NHWC already
        assert "block_1" not in keras_src and "block_6" not in keras_src  # no layer to name
        assert "_block_3" in keras_src and "LayerNormalization(epsilon=1e-06" in keras_src
    onnx_src = source(path, "onnx", text=True)
    assert 'Transpose <perm: ints = [0, 2, 3, 1]> ("features.0.block.0")' in onnx_src
    assert '"features.0.block.3/matmul" = MatMul' in onnx_src


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_channels_last_matches_in_every_backend(mode: str, tmp_path: Path) -> None:
    assert_backends_agree(write(tmp_path, cnblock_net(0.0 if mode == "train" else 0.1)), mode=mode)


def test_channels_last_linear_is_the_contract(tmp_path: Path) -> None:
    """A linear on a channels-last map is x[n, h, w, :] @ weight.T + bias at every pixel,
    and the permutes are numpy's transposes, in every backend."""
    body = [
        {"nhwc": {"op": "channels_last"}},
        {"fc": {"op": "linear", "out": 5}},
        {"nchw": {"op": "channels_first"}},
    ]
    path = write(tmp_path, {"inputs": {"image": [3, 4, 2]}, "body": body})
    graph = lower(load(path))
    weights = WeightSet.random(graph, 0)
    x = knees((3, 4, 2))
    w, b = (weights[f"fc.{t}"].astype(np.float64) for t in ("weight", "bias"))
    want = (x.astype(np.float64).transpose(0, 2, 3, 1) @ w.T + b).transpose(0, 3, 1, 2)
    for name, value in outputs(path, x).items():
        assert value.shape == (2, 5, 4, 2)
        assert_close(value, want, f"{name} vs the formula")


def test_channels_last_values_are_probed_in_their_own_layout(tmp_path: Path) -> None:
    """The harness compares every op's value; a channels-last value from Keras (NHWC, as
    the IR's) is not transposed to NCHW like the others."""
    from archspec.parity import run_parity

    path = write(tmp_path, cnblock_net())
    spec = load(path)
    graph = lower(spec)
    runners = [get_runner("torch64"), get_runner("keras"), get_runner("onnx")]
    reports = run_parity(spec, graph, runners, per_op=True)
    for report in reports:
        assert report.passed, report.other
        for name in ("block.2", "block.3", "block.5"):
            assert f"features.0.{name}" in report.probes, (report.other, name)
        assert "mlp" in report.probes and "norm" in report.probes, report.other


def test_a_permute_is_absent_in_some_instances_is_refused_by_source_backends(
    tmp_path: Path,
) -> None:
    """One class per block type needs the same layout at an item in every instance."""
    block = [
        {"op": "channels_last", "when": "$last"},
        {"op": "relu"},
        {"op": "channels_first", "when": "$last"},
    ]
    data = {
        "inputs": {"image": [4, 5, 5]},
        "blocks": {"B": {"params": {"last": "bool"}, "body": block}},
        "body": [
            {"a": {"block": "B", "args": {"last": True}}},
            {"b": {"block": "B", "args": {"last": False}}},
        ],
    }
    path = write(tmp_path, data)
    lower(load(path))  # the IR is fine
    with pytest.raises(SpecError, match="channels-last in some instances of B"):
        source(path, "torch")


@pytest.mark.parametrize("present", [True, False])
def test_an_optional_group_of_permutes_only_passes_its_input_on(
    present: bool, tmp_path: Path
) -> None:
    """A `when:` group holding only a permute there and back is an identity: Keras (NHWC
    already) prints no layer and no `if` for it, in a block and at the top level, and every
    backend computes what torch does."""
    perms = [{"op": "channels_last"}, {"op": "channels_first"}]
    conv = {"op": "conv", "out": 4, "kernel": 3, "padding": 1}
    data = {
        "inputs": {"image": [4, 5, 5]},
        "params": {"last": {"type": "bool", "default": present}},
        "blocks": {
            "B": {
                "params": {"last": "bool"},
                "body": [conv, {"perm": {"when": "$last", "body": perms}}, {"op": "relu"}],
            }
        },
        "body": [
            {"a": {"block": "B", "args": {"last": "$last"}}},
            {"perm": {"when": "$last", "body": perms}},
            {"pool": {"op": "global_avg_pool"}},
            {"fc": {"op": "linear", "out": 3}},
        ],
    }
    path = write(tmp_path, data)
    for style in ("functional", "subclass"):
        keras_src = source(path, "keras", style=style)
        assert "if last" not in keras_src and "Sequential([]" not in keras_src, style
        assert "perm" not in keras_src, style
    assert_backends_agree(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make", [convnext_net, shufflenet_net, cnblock_net, shufflenet_units, split_net]
)
def test_generated_v2_helpers_script_and_compile(make: Any, tmp_path: Path) -> None:
    """StochasticDepth, LayerNorm2d, ChannelChunk, ChannelSplit, a split's unpacking and a
    scale's nn.Parameter work under TorchScript and torch.compile(fullgraph=True), with the
    eager model's outputs."""
    import torch
    from archspec_torch import generate_module as torch_module

    module, graph = torch_module(write(tmp_path, make()), directory=tmp_path)
    model = getattr(module, graph.name)().eval()
    x = torch.randn(2, *graph.node(graph.inputs[0]).shape)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want, rtol=0, atol=0)
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), want)


def test_channels_last_gradients_match_in_keras(tmp_path: Path) -> None:
    """grad mode (float64): the input's and every weight's gradient through the permutes
    and the per-pixel layers, both Keras styles against torch."""
    from archspec.parity import run_parity

    path = write(tmp_path, cnblock_net(0.0))
    spec = load(path)
    graph = lower(spec)
    runners = [get_runner(n) for n in ("torch64", "keras", "keras_subclass")]
    for report in run_parity(spec, graph, runners, mode="grad"):
        assert report.passed, report.other
        assert "features.0.block.3.weight" in {
            k.split(":", 1)[1] for k in report.outputs if ":" in k
        }
