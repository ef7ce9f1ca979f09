"""`alexnet_bn` computes what seed 002's subclassed Keras AlexNet computes.

The seed's model is written out below as the seed writes it (a `keras.Model` subclass whose
`call()` runs Conv1 -> BatchNorm1 -> MaxPool2 -> Conv2 -> BatchNorm2 -> MaxPool2 -> ...),
with the layer sizes the seed leaves out taken as the spec's notes say. Its seeded weights
(non-trivial BatchNorm statistics) become a canonical WeightSet by the layout rules alone
(HWIO -> OIHW, Dense [in, out] -> [out, in], Dense1's rows from the seed's H,W,C flatten order
to the canonical C,H,W), which then runs through our generated Keras (both styles) and torch
models. 96x96 inputs leave a 2x2 map before the flatten, so the order matters.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from archspec_keras import generate_module as keras_module
from archspec_keras.weights import load_into as keras_load_into
from archspec_torch import generate_module as torch_module
from archspec_torch.weights import load_into as torch_load_into
from test_keras_runtime import assert_close
from test_keras_zoo import keras_run

from archspec.analysis import totals
from archspec.lower import lower
from archspec.registry import load
from archspec.weights import WeightSet

SIZE = 96
NUM_CLASSES = 10


class SeedAlexNet(keras.Model):
    """Seed 002's AlexNet: its __init__ (Conv1, BatchNorm1, the MaxPool1 it never calls) and
    its call(), verbatim in structure; the other layers' sizes are the canonical AlexNet's."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.Conv1 = keras.layers.Conv2D(
            96, (3, 3), strides=(4, 4), padding="SAME", activation="relu"
        )
        self.BatchNorm1 = keras.layers.BatchNormalization()
        self.MaxPool1 = keras.layers.MaxPool2D(pool_size=(2, 2), strides=(1, 1), padding="VALID")
        self.Conv2 = keras.layers.Conv2D(256, (5, 5), padding="SAME", activation="relu")
        self.BatchNorm2 = keras.layers.BatchNormalization()
        self.MaxPool2 = keras.layers.MaxPool2D(pool_size=(3, 3), strides=(2, 2), padding="VALID")
        self.Conv3 = keras.layers.Conv2D(384, (3, 3), padding="SAME", activation="relu")
        self.Conv4 = keras.layers.Conv2D(384, (3, 3), padding="SAME", activation="relu")
        self.Conv5 = keras.layers.Conv2D(256, (3, 3), padding="SAME", activation="relu")
        self.MaxPool3 = keras.layers.MaxPool2D(pool_size=(3, 3), strides=(2, 2), padding="VALID")
        self.Flat = keras.layers.Flatten()
        self.Dense1 = keras.layers.Dense(4096, activation="relu")
        self.DropOut1 = keras.layers.Dropout(0.5)
        self.Dense2 = keras.layers.Dense(4096, activation="relu")
        self.DropOut2 = keras.layers.Dropout(0.5)
        self.OutDense = keras.layers.Dense(num_classes)

    def call(self, Input, training=None):  # the seed's names
        X = self.Conv1(Input)
        X = self.BatchNorm1(X, training=training)
        X = self.MaxPool2(X)
        X = self.Conv2(X)
        X = self.BatchNorm2(X, training=training)
        X = self.MaxPool2(X)
        X = self.Conv3(X)
        X = self.Conv4(X)
        X = self.Conv5(X)
        X = self.MaxPool3(X)
        X = self.Flat(X)
        X = self.Dense1(X)
        X = self.DropOut1(X, training=training)
        X = self.Dense2(X)
        X = self.DropOut2(X, training=training)
        return self.OutDense(X)


def seed_model() -> SeedAlexNet:
    model = SeedAlexNet(NUM_CLASSES)
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))
    rng = np.random.default_rng(0)
    for var in model.weights:
        shape = tuple(var.shape)
        if "moving_variance" in var.path or "gamma" in var.path:
            value = rng.uniform(0.5, 1.5, size=shape)
        elif "kernel" in var.path:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(size=shape) / np.sqrt(fan_in)
        else:
            value = rng.normal(scale=0.1, size=shape)
        var.assign(value.astype(np.float32))
    return model


def canonical(model: SeedAlexNet, flat_hwc: tuple[int, int, int]) -> WeightSet:
    """The seed's weights in the IR's layout, named like the spec's items."""
    h, w, c = flat_hwc
    out: dict[str, np.ndarray] = {}
    convs = {"conv1": model.Conv1, "conv2": model.Conv2, "conv3": model.Conv3}
    convs |= {"conv4": model.Conv4, "conv5": model.Conv5}
    for name, layer in convs.items():
        out[f"{name}.weight"] = np.transpose(layer.kernel.numpy(), (3, 2, 0, 1))
        out[f"{name}.bias"] = layer.bias.numpy()
    for name, layer in {"bn1": model.BatchNorm1, "bn2": model.BatchNorm2}.items():
        out[f"{name}.weight"] = layer.gamma.numpy()
        out[f"{name}.bias"] = layer.beta.numpy()
        out[f"{name}.running_mean"] = layer.moving_mean.numpy()
        out[f"{name}.running_var"] = layer.moving_variance.numpy()
    hwc_rows = model.Dense1.kernel.numpy().reshape(h, w, c, -1)
    out["dense1.weight"] = hwc_rows.transpose(2, 0, 1, 3).reshape(h * w * c, -1).T
    out["dense1.bias"] = model.Dense1.bias.numpy()
    for name, layer in {"dense2": model.Dense2, "out_dense": model.OutDense}.items():
        out[f"{name}.weight"] = layer.kernel.numpy().T
        out[f"{name}.bias"] = layer.bias.numpy()
    return WeightSet({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()})


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray, WeightSet]:
    model = seed_model()
    x = np.random.default_rng(1).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    want = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
    c, h, w = lower(load("alexnet_bn"), input_size=(SIZE, SIZE)).node("pool3").shape
    return x, want, canonical(model, (h, w, c))


def test_parameter_counts_equal_the_seed_model() -> None:
    model = seed_model()
    graph = lower(load("alexnet_bn"), {"num_classes": NUM_CLASSES}, (SIZE, SIZE))
    counts = totals(graph)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert counts.trainable == trainable
    assert counts.trainable + counts.non_trainable == model.count_params()


@pytest.mark.parametrize("style", ["functional", "subclass"])
def test_generated_keras_computes_the_seed_model(case, style: str) -> None:  # type: ignore[no-untyped-def]
    x, want, weights = case
    module, graph = keras_module(
        "alexnet_bn", {"num_classes": NUM_CLASSES}, (SIZE, SIZE), style=style
    )
    assert set(weights) == set(WeightSet.random(graph))
    model = keras_load_into(
        module.alexnet_bn(num_classes=NUM_CLASSES, input_shape=(SIZE, SIZE, 3)), weights, graph
    )
    assert_close(keras_run(model, x), want)


def test_generated_torch_computes_the_seed_model(case) -> None:  # type: ignore[no-untyped-def]
    """In float64 torch equals the seed within the design's tolerance (the semantics); torch's fp32
    result is ~1e-6 from its own float64 one on these 4096-wide dense layers, so the fp32
    comparison allows 3x torch's own rounding error."""
    x, want, weights = case
    module, graph = torch_module("alexnet_bn", {"num_classes": NUM_CLASSES}, (SIZE, SIZE))
    model = torch_load_into(module.alexnet_bn(num_classes=NUM_CLASSES), weights, graph).eval()
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
        exact = model.double()(torch.from_numpy(x).double()).numpy()
    assert_close(exact, want)
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    own = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert rel <= max(1e-6, 3 * own), f"relative L2 {rel:.2e}, torch's own fp32 error {own:.2e}"
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
