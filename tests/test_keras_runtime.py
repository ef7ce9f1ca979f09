"""The Keras runtime helpers and the Keras built-ins docs/keras.md relies on, against the
PyTorch ops they must equal (random NCHW inputs, transposed to NHWC), plus .keras save
and load, XLA, the JAX and torch Keras backends, and helper source extraction."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from archspec_keras import helpers
from archspec_keras import runtime as rt
from keras_cases import CASES, TRAIN_CASES, case_input, joined, run_cases, run_training

ROOT = Path(__file__).resolve().parent.parent

# Keras built-ins that differ from TensorFlow's result on another backend (docs/keras.md):
# the torch backend pads an asymmetric AveragePooling2D "same" by replicating edge pixels.
KERAS_DEFECTS = {"torch": {"same_avg_even"}}


def assert_close(got: object, want: object) -> None:
    """The design's fp32 tolerance: relative L2 <= 1e-6, max abs <= 1e-4 * max(1, max |want|)."""
    got = np.asarray(keras.ops.convert_to_numpy(got), dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    diff = got - want
    assert np.linalg.norm(diff) <= 1e-6 * max(np.linalg.norm(want), 1e-30)
    assert np.abs(diff).max() <= 1e-4 * max(1.0, np.abs(want).max())


def nchw(*shape: int, seed: int = 0, shift: float = -1.0) -> torch.Tensor:
    """Random NCHW input; shifted negative so that zero padding would win a max pool."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.normal(size=shape) + shift).astype(np.float32))


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


# (height, width, kernel, stride, padding, ceil_mode): odd and even sizes, PyTorch's
# ceil-mode drop rule (5 with k2 s2 p1 gives 3), rectangular kernels and strides.
POOLS = [
    (7, 8, 3, 2, 1, False),
    (5, 5, 2, 2, 1, True),
    (6, 7, 3, 2, 1, True),
    (7, 9, 3, 2, 0, True),
    (10, 11, 3, 3, 1, True),
    (9, 6, (3, 2), (2, 1), (1, 0), True),
]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize(("h", "w", "k", "s", "p", "ceil"), POOLS)
def test_max_pool_matches_torch(h, w, k, s, p, ceil) -> None:
    x = nchw(2, 3, h, w)
    want = F.max_pool2d(x, k, s, p, ceil_mode=ceil)
    ph, pw = _pair(p)
    got = rt.PaddedMaxPooling2D(k, s, ((ph, ph), (pw, pw)), ceil)(nhwc(x))
    assert_close(got, nhwc(want))


def test_max_pool_pads_with_minus_infinity() -> None:
    x = nchw(1, 1, 4, 4, shift=-10.0)  # every value negative: a zero pad would win
    got = keras.ops.convert_to_numpy(rt.PaddedMaxPooling2D(3, 2, ((1, 1), (1, 1)))(nhwc(x)))
    assert got.max() < 0
    assert got[0, 0, 0, 0] == x[0, 0, :2, :2].max().item()


def test_max_pool_asymmetric_padding() -> None:
    x = nchw(2, 3, 8, 7)
    want = F.max_pool2d(F.pad(x, (0, 1, 1, 0), value=-math.inf), 3, 2)
    got = rt.PaddedMaxPooling2D(3, 2, ((1, 0), (0, 1)))(nhwc(x))
    assert_close(got, nhwc(want))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize(("h", "w", "k", "s", "p", "ceil"), POOLS)
def test_avg_pool_matches_torch(h, w, k, s, p, ceil, count_include_pad) -> None:
    x = nchw(2, 3, h, w)
    want = F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)
    ph, pw = _pair(p)
    layer = rt.PaddedAveragePooling2D(k, s, ((ph, ph), (pw, pw)), ceil, count_include_pad)
    assert_close(layer(nhwc(x)), nhwc(want))


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_asymmetric_padding(count_include_pad: bool) -> None:
    x = nchw(2, 3, 8, 7)
    sides = (0, 1, 1, 0)  # torch's F.pad order: left, right, top, bottom
    total = F.avg_pool2d(F.pad(x, sides), 3, 2) * 9
    ones = torch.ones_like(x) if not count_include_pad else None
    count = 9.0 if count_include_pad else F.avg_pool2d(F.pad(ones, sides), 3, 2) * 9
    got = rt.PaddedAveragePooling2D(3, 2, ((1, 0), (0, 1)), False, count_include_pad)(nhwc(x))
    assert_close(got, nhwc(total / count))


@pytest.mark.parametrize(("size", "out"), [((7, 7), (3, 3)), ((10, 9), (4, 4)), ((5, 7), (6, 3))])
def test_adaptive_avg_pool_matches_torch(size, out) -> None:
    x = nchw(2, 3, *size)
    got = rt.TorchAdaptiveAveragePooling2D(out)(nhwc(x))
    assert_close(got, nhwc(F.adaptive_avg_pool2d(x, out)))


def test_constant_padding_matches_torch() -> None:
    x = nchw(2, 3, 4, 5)
    got = rt.ConstantPadding2D(((1, 2), (0, 3)), 1.5)(nhwc(x))
    assert_close(got, nhwc(F.pad(x, (0, 3, 1, 2), value=1.5)))


def test_grouped_conv_matches_torch() -> None:
    """Conv2D(groups=g) runs on every backend (TensorFlow compiles it with XLA on CPU) and
    its kernel is OIHW transposed to (kh, kw, in/groups, out)."""
    x, weight, bias = nchw(2, 6, 9, 8), nchw(9, 2, 3, 3, seed=1), nchw(9, seed=2, shift=0)
    layer = keras.layers.Conv2D(9, 3, strides=2, groups=3)
    layer.build((None, 9, 8, 6))
    layer.set_weights([weight.permute(2, 3, 1, 0).numpy(), bias.numpy()])
    want = F.conv2d(x, weight, bias, stride=2, groups=3)
    assert_close(layer(nhwc(x)), nhwc(want))


def test_depthwise_conv_matches_torch() -> None:
    """DepthwiseConv2D(depth_multiplier=m) is conv groups == in_channels, out = in * m, with
    kernel (kh, kw, in, m) = OIHW (in * m, 1, kh, kw) reshaped (in, m, kh, kw)."""
    x, weight = nchw(2, 4, 8, 9), nchw(8, 1, 3, 3, seed=1)
    layer = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)
    layer.build((None, 8, 9, 4))
    layer.set_weights([weight.reshape(4, 2, 3, 3).permute(2, 3, 0, 1).numpy()])
    assert_close(layer(nhwc(x)), nhwc(F.conv2d(x, weight, groups=4)))


@pytest.mark.parametrize(("chunks", "sizes"), [(3, ()), (0, (1, 4, 1))])
def test_channel_split_matches_torch(chunks: int, sizes: tuple[int, ...]) -> None:
    x = nchw(2, 6, 3, 4)
    want = x.split(list(sizes), dim=1) if sizes else x.chunk(chunks, dim=1)
    layer = rt.ChannelSplit(chunks, sizes)
    got = layer(nhwc(x))
    assert len(got) == len(want)
    for part, expected in zip(got, want, strict=True):
        assert_close(part, nhwc(expected))
    again = rt.ChannelSplit.from_config(layer.get_config())
    assert (again.chunks, again.sizes) == (chunks, list(sizes))


def test_strided_dilated_conv_matches_torch() -> None:
    name = "strided_dilated_conv"
    layer = CASES[name][1]()
    x = torch.from_numpy(case_input(name)).permute(0, 3, 1, 2)
    kernel, bias = (torch.from_numpy(w) for w in layer.get_weights())
    want = F.conv2d(x, kernel.permute(3, 2, 0, 1), bias, stride=2, dilation=2)
    assert_close(layer(nhwc(x)), nhwc(want))
    assert layer.compute_output_shape((None, 11, 10, 4)) == (None, 4, 3, 5)
    with pytest.raises(ValueError, match="padding='valid' only"):
        rt.StridedDilatedConv2D(5, 3, 2, 2, padding="same")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate: str) -> None:
    x = nchw(2, 3, 4, 4, shift=0.0) * 3
    want = nhwc(F.gelu(x, approximate=approximate))
    assert_close(rt.GELU(approximate=approximate == "tanh")(nhwc(x)), want)
    if approximate == "none":  # the built-in activation is the exact form
        assert_close(keras.layers.Activation("gelu")(nhwc(x)), want)


def torch_batch_norm_step(layer: keras.layers.Layer, x: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's training-mode batch_norm with `layer`'s weights (channels last moved to
    axis 1): its output and the running statistics it leaves."""
    gamma, beta, mean, var = (torch.from_numpy(np.array(w)) for w in layer.get_weights())
    t = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    out = F.batch_norm(t, mean, var, gamma, beta, True, 1 - layer.momentum, layer.epsilon)
    return {
        "": np.moveaxis(out.numpy(), 1, -1),
        "moving_mean": mean.numpy(),
        "moving_variance": var.numpy(),
    }


@pytest.mark.parametrize("name", sorted(TRAIN_CASES))
def test_batch_norm_training_step_matches_torch(name: str) -> None:
    """Output from the biased batch variance, running_var from the unbiased one (PyTorch's
    update), running_mean with the converted momentum; 4-d and 1-d inputs."""
    want = torch_batch_norm_step(TRAIN_CASES[name][1](), case_input(name))
    got = run_training(name)
    for key, value in want.items():
        assert_close(got[f"{name}.{key}" if key else name], value)
    keras_own = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)
    keras_own.build(case_input(name).shape)
    keras_own.set_weights(TRAIN_CASES[name][1]().get_weights())
    keras_own(case_input(name), training=True)  # biased: the difference this layer fixes
    assert (
        np.abs(
            keras.ops.convert_to_numpy(keras_own.moving_variance) - want["moving_variance"]
        ).max()
        > 1e-4
    )


def test_batch_norm_training_with_a_mask_counts_only_the_masked_values() -> None:
    """With a mask, the batch statistics (and n) are those of the unmasked rows: what
    PyTorch's BatchNorm1d computes on those rows alone."""
    name = "batch_norm_train_1d"
    layer, x = TRAIN_CASES[name][1](), case_input(name)
    mask = np.array([True, False, True, True, False])
    want = torch_batch_norm_step(layer, x[mask])
    out = layer(x, training=True, mask=mask)
    assert_close(keras.ops.convert_to_numpy(out)[mask], want[""])
    assert_close(layer.moving_mean, want["moving_mean"])
    assert_close(layer.moving_variance, want["moving_variance"])


def test_batch_norm_inference_is_keras_own() -> None:
    layer = CASES["batch_norm"][1]()
    keras_own = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)
    keras_own.build(CASES["batch_norm"][0])
    keras_own.set_weights(layer.get_weights())
    x = case_input("batch_norm")
    np.testing.assert_array_equal(layer(x), keras_own(x))
    assert [w.path.split("/")[-1] for w in layer.weights] == [
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
    ]


def test_batch_norm_trains_under_xla() -> None:
    """model.fit with jit_compile=True (the training step compiled by XLA): the moving
    statistics after one step are PyTorch's."""
    name = "batch_norm_train"
    layer = TRAIN_CASES[name][1]()
    x = case_input(name)
    want = torch_batch_norm_step(layer, x)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=True)
    model.fit(x, np.zeros_like(x), batch_size=len(x), epochs=1, verbose=0)
    assert model.jit_compile
    assert_close(layer.moving_mean, want["moving_mean"])
    assert_close(layer.moving_variance, want["moving_variance"])


def test_permute_then_flatten_is_chw_order() -> None:
    x = nchw(2, 3, 4, 5)
    got = keras.layers.Flatten()(keras.layers.Permute((3, 1, 2))(nhwc(x)))
    assert_close(got, torch.flatten(x, 1).numpy())


def _tf_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow's 'same' sides (odd pixel bottom/right), written out for torch."""
    sides = []
    for size in (x.shape[3], x.shape[2]):  # F.pad order: width first
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        sides += [total // 2, total - total // 2]
    return F.pad(x, sides, value=value)


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("same_")])
def test_keras_same_is_tensorflow_rule(name: str) -> None:
    """Keras's padding='same' pads like TensorFlow (odd pixel at the bottom/right) and an
    average pool excludes the padding from the count: the IR's `same`."""
    layer = CASES[name][1]()
    x = torch.from_numpy(case_input(name)).permute(0, 3, 1, 2)
    got = layer(nhwc(x))
    k, s = (layer.kernel_size if "conv" in name else layer.pool_size)[0], layer.strides[0]
    if "conv" in name:
        kernel, bias = layer.get_weights()
        want = F.conv2d(_tf_same(x, k, s), torch.from_numpy(kernel).permute(3, 2, 0, 1), None, s)
        want = want + torch.from_numpy(bias)[:, None, None]
    elif "max" in name:
        want = F.max_pool2d(_tf_same(x, k, s, -math.inf), k, s)
    else:
        ones = _tf_same(torch.ones_like(x), k, s)
        want = F.avg_pool2d(_tf_same(x, k, s), k, s) / F.avg_pool2d(ones, k, s)
    assert_close(got, nhwc(want))


def test_initializers_bound_is_torch_default() -> None:
    """PyTorch's default conv/linear init is uniform in +-1/sqrt(fan_in): Keras's
    VarianceScaling(1/3, fan_in, uniform) for Conv2D/Dense kernels, FanInUniform(fan_in)
    for biases (and kernels whose Keras fan_in differs, e.g. depthwise)."""
    bound = 1 / math.sqrt(16 * 9)
    torch_w = torch.nn.Conv2d(16, 32, 3).weight.detach().numpy()
    vs = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=0)
    for w in (torch_w, vs((3, 3, 16, 32)), rt.FanInUniform(16 * 9, seed=0)((3, 3, 16, 32))):
        w = np.abs(keras.ops.convert_to_numpy(w))
        assert bound * 0.99 < w.max() <= bound


def _helper_layers() -> dict[str, tuple[tuple[int, ...], keras.layers.Layer]]:
    return {
        name: (shape, make())
        for name, (shape, make) in CASES.items()
        if type(make()).__module__ == rt.__name__
    }


@pytest.mark.parametrize("name", sorted(_helper_layers()))
def test_helper_saves_and_loads(name: str, tmp_path: Path) -> None:
    shape, layer = CASES[name][0], CASES[name][1]()
    model = keras.Sequential([keras.Input(shape[1:]), layer])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[0]).__name__ == type(layer).__name__
    x = case_input(name)
    np.testing.assert_array_equal(joined(loaded(x)), joined(model(x)))


def test_fan_in_uniform_saves_and_loads(tmp_path: Path) -> None:
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(3, bias_initializer=rt.FanInUniform(5))]
    )
    model.save(tmp_path / "m.keras")
    init = keras.saving.load_model(tmp_path / "m.keras").layers[0].bias_initializer
    assert type(init).__name__ == "FanInUniform" and init.fan_in == 5


def test_pooling_helpers_compile_with_xla() -> None:
    inputs = keras.Input((9, 10, 3))
    outputs = [
        rt.PaddedMaxPooling2D(3, 2, ((1, 1), (1, 1)), True)(inputs),
        rt.PaddedAveragePooling2D(3, 2, ((1, 1), (1, 1)), True, False)(inputs),
        rt.TorchAdaptiveAveragePooling2D((4, 3))(inputs),
        rt.ConstantPadding2D(((1, 0), (2, 1)), -2.0)(inputs),
    ]
    model = keras.Model(inputs, outputs)
    model.compile(jit_compile=True)
    assert model.jit_compile
    x = nhwc(nchw(4, 3, 9, 10))
    for got, want in zip(model.predict(x, verbose=0), model(x), strict=True):
        assert_close(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_keras_backends_match_tensorflow(backend: str, tmp_path: Path) -> None:
    """Every case once under KERAS_BACKEND=jax / torch, in one subprocess per backend."""
    out = tmp_path / "out.npz"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    script = Path(__file__).with_name("keras_cases.py")
    run = subprocess.run(
        [sys.executable, str(script), str(out)], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(out) as got:
        assert str(got["backend"]) == backend
        for name, want in run_cases().items():
            if name in KERAS_DEFECTS.get(backend, ()):
                assert np.abs(got[name] - want).max() > 1e-3, f"{name}: fixed? update docs/keras.md"
            else:
                assert_close(got[name], want)


# ---------------------------------------------------------------- helper source extraction


def test_helper_sources_include_dependencies_in_file_order() -> None:
    source = helpers.helper_sources({"PaddedMaxPooling2D"})
    defined = [
        line.split()[1].split("(")[0]
        for line in source.splitlines()
        if line[:4] in ("def ", "clas")
    ]
    assert defined == [
        "pair",
        "pool_output_size",
        "pool_padding",
        "same_padding",
        "PaddedPooling2D",
        "PaddedMaxPooling2D",
    ]
    assert source.startswith("def pair(") and "@keras.saving.register_keras_serializable" in source
    assert helpers.helper_imports({"PaddedMaxPooling2D"}) == ("keras", "math")
    assert helpers.helper_imports({"TorchAdaptiveAveragePooling2D"}) == ("keras",)
    assert helpers.helper_sources(set()) == ""


def test_helper_sources_reject_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown Keras helper\(s\) \['MaxPool'\]"):
        helpers.helper_sources({"MaxPool"})


def test_embedded_helpers_are_ruff_clean_and_work(tmp_path: Path) -> None:
    """What the emitter writes: the imports, then the copied definitions, then use."""
    names = set(helpers.helper_names())
    assert helpers.helper_imports(names) == ("keras", "math")
    text = "import math\n\nimport keras\n\n\n" + helpers.helper_sources(names) + "\n"
    module = tmp_path / "generated.py"
    module.write_text(text)
    ruff = ROOT / ".venv" / "bin" / "ruff"
    for args in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        run = subprocess.run(
            [str(ruff), *args, str(module)], capture_output=True, text=True, cwd=ROOT
        )
        assert run.returncode == 0, run.stdout + run.stderr
    namespace: dict[str, object] = {}
    exec(compile(text, str(module), "exec"), namespace)
    x = nchw(2, 3, 7, 6)
    copied = namespace["PaddedAveragePooling2D"](3, 2, ((1, 1), (1, 1)), True, False)
    assert_close(copied(nhwc(x)), nhwc(F.avg_pool2d(x, 3, 2, 1, True, False)))


def test_helper_extraction_does_not_import_keras() -> None:
    code = (
        "import sys; from archspec_keras import helpers; helpers.helper_sources({'GELU'}); "
        "assert 'keras' not in sys.modules, 'keras imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
