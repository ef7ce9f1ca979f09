"""Fixed Keras cases (runtime helpers and the built-ins docs/keras.md relies on) that run
under any Keras backend: test_keras_runtime.py runs them in-process under TensorFlow and
once per other backend (jax, torch) in a subprocess, and compares the outputs. TRAIN_CASES
(a BatchNorm training step) record the moving statistics after the step too.

Run as a script, it writes the outputs to the .npz file named by its argument.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import keras
import numpy as np
from archspec_keras import runtime as rt

Case = tuple[tuple[int, ...], Callable[[], keras.layers.Layer]]


def _conv(layer: keras.layers.Layer, shape: tuple[int, ...]) -> keras.layers.Layer:
    """Build `layer` and give it fixed weights (initializers differ between backends)."""
    layer.build(shape)
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    return layer


def _batch_norm(shape: tuple[int, ...]) -> keras.layers.Layer:
    """A built TorchBatchNormalization (PyTorch's eps and momentum) with fixed non-trivial
    gamma, beta and moving statistics."""
    layer = rt.TorchBatchNormalization(epsilon=1e-5, momentum=0.9)
    layer.build(shape)
    rng = np.random.default_rng(1)
    c = shape[-1]
    gamma, var = rng.uniform(0.5, 1.5, c), rng.uniform(0.5, 1.5, c)
    layer.set_weights(
        [w.astype("float32") for w in (gamma, rng.normal(size=c), rng.normal(size=c), var)]
    )
    return layer


CASES: dict[str, Case] = {
    "max_pad1_odd": ((2, 7, 9, 3), lambda: rt.PaddedMaxPooling2D(3, 2, ((1, 1), (1, 1)))),
    "max_ceil": ((2, 5, 6, 3), lambda: rt.PaddedMaxPooling2D(2, 2, ((1, 1), (1, 1)), True)),
    "avg_ceil_exclude": (
        (2, 6, 7, 3),
        lambda: rt.PaddedAveragePooling2D(3, 2, ((1, 1), (1, 1)), True, False),
    ),
    "avg_ceil_include": (
        (2, 6, 7, 3),
        lambda: rt.PaddedAveragePooling2D(3, 2, ((1, 1), (0, 1)), True, True),
    ),
    "adaptive_7_to_3": ((2, 7, 10, 3), lambda: rt.TorchAdaptiveAveragePooling2D((3, 4))),
    "adaptive_5_to_6": ((2, 5, 5, 3), lambda: rt.TorchAdaptiveAveragePooling2D(6)),
    "adaptive_13_to_7": ((2, 13, 13, 3), lambda: rt.TorchAdaptiveAveragePooling2D(7)),
    "constant_pad": ((2, 4, 5, 3), lambda: rt.ConstantPadding2D(((1, 2), (0, 3)), 1.5)),
    "gelu_tanh": ((2, 4, 4, 3), lambda: rt.GELU(approximate=True)),
    "clip": ((2, 4, 4, 3), lambda: rt.Clip(-0.5, 1.5)),
    "channel_shuffle": ((2, 3, 4, 6), lambda: rt.ChannelShuffle(3)),
    "channel_chunk": ((2, 3, 4, 6), lambda: rt.ChannelChunk(3, 1)),
    "channel_split": ((2, 3, 4, 6), lambda: rt.ChannelSplit(3)),
    "channel_split_sizes": ((2, 3, 4, 6), lambda: rt.ChannelSplit(sizes=[1, 4, 1])),
    "scale": ((2, 3, 4, 5), lambda: rt.Scale(0.5)),
    "hard_swish": ((2, 4, 4, 3), lambda: keras.layers.Activation("hard_swish")),
    "hard_sigmoid": ((2, 4, 4, 3), lambda: keras.layers.Activation("hard_sigmoid")),
    "relu6": ((2, 4, 4, 3), lambda: keras.layers.ReLU(max_value=6.0)),
    "layer_norm": ((2, 3, 4, 5), lambda: keras.layers.LayerNormalization(epsilon=1e-6)),
    "gelu_exact": ((2, 4, 4, 3), lambda: keras.layers.Activation("gelu")),
    "same_max_even": ((2, 8, 8, 3), lambda: keras.layers.MaxPooling2D(3, 2, padding="same")),
    "same_max_odd": ((2, 7, 7, 3), lambda: keras.layers.MaxPooling2D(2, 2, padding="same")),
    "same_avg_even": ((2, 8, 8, 3), lambda: keras.layers.AveragePooling2D(3, 2, padding="same")),
    "same_avg_helper_even": (
        (2, 8, 8, 3),
        lambda: rt.PaddedAveragePooling2D(3, 2, "same", count_include_pad=False),
    ),
    "same_avg_odd": ((2, 7, 7, 3), lambda: keras.layers.AveragePooling2D(2, 2, padding="same")),
    "same_conv_even": (
        (2, 8, 8, 4),
        lambda: _conv(keras.layers.Conv2D(5, 3, 2, padding="same"), (2, 8, 8, 4)),
    ),
    "same_conv_odd": (
        (2, 7, 7, 4),
        lambda: _conv(keras.layers.Conv2D(5, 4, 2, padding="same"), (2, 7, 7, 4)),
    ),
    "grouped_conv": (
        (2, 7, 7, 4),
        lambda: _conv(keras.layers.Conv2D(6, 3, groups=2), (2, 7, 7, 4)),
    ),
    "strided_dilated_conv": (
        (2, 11, 10, 4),
        lambda: _conv(rt.StridedDilatedConv2D(5, 3, 2, 2), (2, 11, 10, 4)),
    ),
    "depthwise_conv": (
        (2, 7, 7, 4),
        lambda: _conv(keras.layers.DepthwiseConv2D(3, 2, depth_multiplier=2), (2, 7, 7, 4)),
    ),
    "batch_norm": ((2, 4, 5, 3), lambda: _batch_norm((2, 4, 5, 3))),
}

# Called with training=True: the output and the moving statistics after the step.
TRAIN_CASES: dict[str, Case] = {
    "batch_norm_train": ((3, 4, 5, 6), lambda: _batch_norm((3, 4, 5, 6))),
    "batch_norm_train_1d": ((5, 6), lambda: _batch_norm((5, 6))),
}


def case_input(name: str) -> np.ndarray:
    """A fixed input, shifted negative so that zero padding would win a max pool."""
    shape = {**CASES, **TRAIN_CASES}[name][0]
    return (np.random.default_rng(list(name.encode())).normal(size=shape) - 1.0).astype("float32")


def run_training(name: str) -> dict[str, np.ndarray]:
    """A training step of TRAIN_CASES[name]: its output and the layer's moving statistics."""
    layer = TRAIN_CASES[name][1]()
    out = layer(case_input(name), training=True)
    stats = {"moving_mean": layer.moving_mean, "moving_variance": layer.moving_variance}
    return {
        name: keras.ops.convert_to_numpy(out),
        **{f"{name}.{k}": keras.ops.convert_to_numpy(v) for k, v in stats.items()},
    }


def joined(value: object) -> object:
    """A layer's result as one array: a list of parts (a split) concatenated last first."""
    return keras.ops.concatenate(value[::-1], axis=-1) if isinstance(value, list) else value


def run_cases() -> dict[str, np.ndarray]:
    out = {
        name: keras.ops.convert_to_numpy(joined(make()(case_input(name))))
        for name, (_, make) in CASES.items()
    }
    for name in TRAIN_CASES:
        out.update(run_training(name))
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], backend=np.array(keras.backend.backend()), **run_cases())
