"""Generated Keras models run and equal the generated torch models.

Every zoo spec in both styles is checked by the parity matrix (test_parity_zoo: outputs
and block probes against torch in float64, an even and an odd size), which also asserts
`assert_keras_model_facts` below on the model it ran: count_params() equals the IR's total
(BN state included), output shapes equal the IR's, the weights come back bitwise, `.keras`
save/load round trip. Here: XLA (`jit_compile=True`), the JAX and torch Keras backends,
keras.applications ResNet50 and DenseNet121 loaded into our generated models by name, and
random specs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import torch
from archspec_keras import generate_module as keras_module
from archspec_keras.reference_names import (
    convnext_tiny_names,
    densenet121_names,
    resnet50_v1_names,
)
from archspec_keras.weights import from_keras, load_into, walk_layers
from archspec_torch import generate_module as torch_module
from archspec_torch.weights import load_into as torch_load_into
from hypothesis import HealthCheck, event, given, settings
from test_keras_runtime import assert_close
from test_torch_random_specs import RANDOM_REL_L2, random_spec

from archspec.analysis import totals
from archspec.backend import BackendError
from archspec.errors import SpecError
from archspec.ir import Graph
from archspec.lower import lower
from archspec.registry import load
from archspec.weights import WeightSet

STYLES = ("functional", "subclass")
SMALL = {"densenet121_cifar": (32, 33), "rcnn": (32, 33)}  # even and odd sizes; else 64, 67
HERE = Path(__file__).resolve().parent


def sizes(name: str) -> tuple[int, int]:
    return SMALL.get(name, (64, 67))


def nchw_input(graph: Graph, batch: int = 2, seed: int = 1) -> np.ndarray:
    shape = graph.node(graph.inputs[0]).shape
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32) - 0.5


def keras_run(model: Any, x: np.ndarray) -> np.ndarray:
    out = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


def torch_reference(name: str, size: int, weights_seed: int = 0) -> tuple[Graph, WeightSet, Any]:
    module, graph = torch_module(name, input_size=(size, size))
    weights = WeightSet.random(graph, seed=weights_seed)
    model = torch_load_into(getattr(module, graph.name)(), weights, graph).eval()
    return graph, weights, model


def assert_keras_model_facts(
    model: Any, graph: Graph, weights: WeightSet, folder: Path, *, save: bool
) -> None:
    """What a generated Keras model with `weights` loaded must show besides its outputs
    (those are test_parity_zoo's, on this same model): the weights come back bitwise,
    count_params() is the IR's total with BN state and the trainable count the IR's, and
    (`save`) the output shape is the IR's and a `.keras` round trip gives equal outputs."""
    assert from_keras(model, graph).equal(weights)
    counts = totals(graph)
    assert model.count_params() == counts.trainable + counts.non_trainable
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == counts.trainable
    if save:
        x = nchw_input(graph)
        got = keras_run(model, x)
        assert got.shape[1:] == graph.node(graph.outputs[0]).shape
        path = folder / f"{graph.name}.keras"
        model.save(path)
        again = keras.saving.load_model(path)
        np.testing.assert_array_equal(keras_run(again, x), got)


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
def test_xla_compiles_resnet18(style: str, tmp_path: Path) -> None:
    graph, weights, reference = torch_reference("resnet18", 64)
    module, _ = keras_module("resnet18", input_size=(64, 64), style=style, directory=tmp_path)
    model = load_into(module.resnet18(), weights, graph)
    model.compile(jit_compile=True)
    x = nchw_input(graph)
    got = model.predict(x.transpose(0, 2, 3, 1), batch_size=2, verbose=0)
    with torch.no_grad():
        assert_close(got, reference(torch.from_numpy(x)).numpy())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("style", STYLES)
def test_other_keras_backends_give_the_tensorflow_outputs(
    backend: str, style: str, tmp_path: Path
) -> None:
    """One generated model per style, run in a subprocess under KERAS_BACKEND=jax/torch."""
    name, size = "resnet18", 64
    module, graph = keras_module(name, input_size=(size, size), style=style, directory=tmp_path)
    weights = WeightSet.random(graph, seed=3)
    model = load_into(getattr(module, name)(), weights, graph)
    x = nchw_input(graph)
    want = keras_run(model, x)
    weights.save(tmp_path / "weights.npz")
    np.save(tmp_path / "x.npy", x)
    job = {"spec": name, "size": size, "module": str(tmp_path / f"{name}.py"), "dir": str(tmp_path)}
    env = {**os.environ, "KERAS_BACKEND": backend}
    subprocess.run(
        [sys.executable, str(HERE / "keras_backend_run.py"), json.dumps(job)],
        check=True,
        env=env,
        timeout=600,
    )
    assert_close(np.load(tmp_path / "out.npy"), want)


@pytest.mark.parametrize("style", STYLES)
def test_torch_batch_norm_inference_graph_is_batch_normalization(
    style: str, tmp_path: Path
) -> None:
    """TorchBatchNormalization changes only the training step: the inference graph of a
    generated model (tf.function) is op for op the one with Keras's BatchNormalization, so
    it runs exactly as fast (benchmarks/keras_vs_reference.py measures against
    keras.applications)."""
    import tensorflow as tf

    module, _ = keras_module("rcnn", input_size=(32, 32), style=style, directory=tmp_path)
    x = tf.zeros((2, 32, 32, 3))

    def op_types(model: Any) -> list[str]:
        fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(x)
        return [op.type for op in fn.graph.get_operations()]

    ours = op_types(module.rcnn())
    module.TorchBatchNormalization = keras.layers.BatchNormalization  # what the file used to say
    assert ours == op_types(module.rcnn())


APPLICATIONS = {  # the application, the name mapping, spec overrides, its arguments
    "resnet50_v1": (keras.applications.ResNet50, resnet50_v1_names, {}, {}),
    "densenet121": (
        keras.applications.DenseNet121,
        densenet121_names,
        {"bn_eps": 1.001e-5},  # keras.applications' epsilon
        {},
    ),
    "convnext_tiny": (
        keras.applications.ConvNeXtTiny,
        convnext_tiny_names,
        {},
        {"include_preprocessing": False, "classifier_activation": None},
    ),
}


def randomize(model: keras.Model) -> None:
    """Non-trivial BatchNorm statistics and affines, LayerNorm affines and layer scales
    (at ConvNeXt's 1e-6 every block would be close to the identity)."""
    rng = np.random.default_rng(5)
    for layer in walk_layers(model, include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
        if isinstance(layer, keras.layers.BatchNormalization | keras.layers.LayerNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape))
        if type(layer).__name__ == "LayerScale":
            (scale,) = layer.weights
            scale.assign(rng.uniform(0.5, 1.5, scale.shape))


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("spec", sorted(APPLICATIONS))
def test_keras_applications_weights_give_its_outputs(spec: str, style: str, tmp_path: Path) -> None:
    """keras.applications (weights=None, BN statistics randomized) read into a WeightSet
    through the name mapping (not layer order), loaded into our generated model: the same
    outputs (max abs <= 1e-5) and the same trainable and non-trainable counts."""
    application, names, overrides, arguments = APPLICATIONS[spec]
    module, graph = keras_module(
        spec, overrides, input_size=(64, 64), style=style, directory=tmp_path
    )
    reference = application(weights=None, input_shape=(64, 64, 3), **arguments)
    randomize(reference)
    weights = from_keras(reference, graph, map_names=names(graph))
    model = load_into(getattr(module, spec)(), weights, graph)
    x = nchw_input(graph)
    got = keras_run(model, x)
    if spec == "densenet121":  # keras.applications ends in a softmax; ours in logits
        got = keras.ops.convert_to_numpy(keras.ops.softmax(got))
    want = keras.ops.convert_to_numpy(reference(x.transpose(0, 2, 3, 1), training=False))
    assert np.abs(got - want).max() <= 1e-5
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    reference_trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert trainable == reference_trainable
    assert model.count_params() == reference.count_params()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=random_spec())
def test_random_specs_equal_torch(tmp_path_factory: pytest.TempPathFactory, data: dict) -> None:
    """Random specs (test_torch_random_specs): the functional Keras model counts the IR's
    parameters, gives the IR's output shape and the torch model's outputs, at the declared
    and a second input size."""
    folder = tmp_path_factory.mktemp("spec")
    path = folder / "random_net.yaml"
    path.write_text(json.dumps(data))
    spec = load(path)
    height, width = data["inputs"]["image"][1:]
    for size in [(height, width), (height + 3, width + 1)]:
        try:
            graph = lower(spec, input_size=size)
            module, graph = keras_module(spec, input_size=size, directory=folder)
        except (SpecError, BackendError):
            event("rejected by lowering or the Keras emitter")
            return
        (folder / "torch").mkdir(exist_ok=True)
        reference_module, _ = torch_module(spec, input_size=size, directory=folder / "torch")
        weights = WeightSet.random(graph, seed=0)
        reference = getattr(reference_module, graph.name)().eval()
        torch_load_into(reference, weights, graph)
        model = load_into(getattr(module, graph.name)(), weights, graph)
        counts = totals(graph)
        assert model.count_params() == counts.trainable + counts.non_trainable
        x = nchw_input(graph)
        got = keras_run(model, x)
        assert got.shape[1:] == graph.node(graph.outputs[0]).shape
        with torch.no_grad():  # the exact (float64) result, as the ONNX property test does
            want = reference.double()(torch.from_numpy(x).double()).numpy()
        diff = got.astype(np.float64) - want
        assert np.abs(diff).max() <= 1e-4 * max(1.0, np.abs(want).max())
        assert np.linalg.norm(diff) <= RANDOM_REL_L2 * max(np.linalg.norm(want), 1e-30)
        event("checked against torch")
