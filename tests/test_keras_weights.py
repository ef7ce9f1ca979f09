"""The Keras weight adapter: bitwise round trips on hand-built models that follow the
naming contract (functional and subclassed; shared layer, grouped and depthwise conv,
BatchNorm without affine and on (N, F), Dense after a channels-last flatten), outputs equal to the
generated torch model with the same WeightSet, every problem in one error, and the
keras.applications name mappings."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from archspec_keras import generate_module as keras_module
from archspec_keras.reference_names import densenet121_names, resnet50_v1_names
from archspec_keras.weights import from_keras, load_into, sublayers, to_keras, walk_layers
from archspec_torch import generate_module
from archspec_torch.weights import load_into as torch_load_into
from keras import layers
from test_keras_runtime import assert_close

from archspec.analysis import totals
from archspec.lower import lower
from archspec.registry import load
from archspec.weights import WeightError, WeightSet

PROBE = """
inputs: {image: [4, 9, 8]}
body:
  - features:
      body:
        - stem: {op: conv, out: 8, kernel: 3, padding: 1}
        - norm: {op: batch_norm, affine: false}
        - relu: {op: relu}
        - grouped: {op: conv, out: 8, kernel: 3, padding: 1, groups: 2, bias: false}
        - dw: {op: conv, out: 16, kernel: 3, stride: 2, groups: 8}
        - mix1: {op: conv, out: 16, kernel: 1, share: mix}
        - mix2: {op: conv, out: 16, kernel: 1, share: mix}
        - bn: {op: batch_norm}
  - flatten: {op: flatten}
  - fc: {op: linear, out: 5}
  - head_bn: {op: batch_norm}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory):
    """The probe spec: its graph and its generated torch model (the reference)."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.yaml").write_text(PROBE)
    module, graph = generate_module(load(folder / "probe.yaml"), directory=folder)
    return graph, module.probe()


def _layers(names: dict[str, str] | None = None, fc: int = 5) -> dict[str, layers.Layer]:
    """The probe's parameter layers, named by the contract (or `names` instead)."""
    names = names or {}

    def n(default: str) -> str:
        return names.get(default, default)

    return {
        "stem": layers.Conv2D(8, 3, padding="same", name=n("features_stem")),
        "norm": layers.BatchNormalization(
            epsilon=1e-5, momentum=0.9, center=False, scale=False, name=n("features_norm")
        ),
        "grouped": layers.Conv2D(
            8, 3, padding="same", groups=2, use_bias=False, name=n("features_grouped")
        ),
        "dw": layers.DepthwiseConv2D(3, 2, depth_multiplier=2, name=n("features_dw")),
        "mix": layers.Conv2D(16, 1, name=n("mix")),  # one layer, called twice
        "bn": layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=n("features_bn")),
        "fc": layers.Dense(fc, name=n("fc")),
        "head_bn": layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=n("head_bn")),
    }


def _features(p: dict[str, layers.Layer], x):
    x = layers.ReLU()(p["norm"](p["stem"](x)))
    x = p["mix"](p["mix"](p["dw"](p["grouped"](x))))
    return p["bn"](x)


def functional_probe(**kwargs) -> keras.Model:
    p = _layers(**kwargs)
    inputs = keras.Input((9, 8, 4))
    x = layers.Flatten()(layers.Permute((3, 1, 2))(_features(p, inputs)))
    return keras.Model(inputs, p["head_bn"](p["fc"](x)), name="probe")


class Features(keras.layers.Layer):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.parts = _layers()

    def call(self, x):
        return _features(self.parts, x)


class SubclassProbe(keras.Model):
    def __init__(self) -> None:
        super().__init__(name="probe")
        self.features = Features(name="features")
        self.permute = layers.Permute((3, 1, 2))
        self.flatten = layers.Flatten()
        self.fc = self.features.parts["fc"]
        self.head_bn = self.features.parts["head_bn"]

    def call(self, x):
        return self.head_bn(self.fc(self.flatten(self.permute(self.features(x)))))


def subclass_probe() -> keras.Model:
    model = SubclassProbe()
    model(np.zeros((1, 9, 8, 4), np.float32))
    return model


BUILDERS = {"functional": functional_probe, "subclass": subclass_probe}


@pytest.mark.parametrize("style", sorted(BUILDERS))
def test_round_trip_is_bitwise(style: str, probe) -> None:
    graph, _ = probe
    weights = WeightSet.random(graph, seed=3)
    model = load_into(BUILDERS[style](), weights, graph)
    back = from_keras(model, graph)
    assert back.equal(weights)
    assert model.count_params() == totals(graph).total


@pytest.mark.parametrize("style", sorted(BUILDERS))
def test_loaded_model_computes_what_torch_computes(style: str, probe) -> None:
    """Layouts are right, not merely invertible: the same WeightSet in the generated torch
    model and in the Keras model gives the same outputs (inference)."""
    graph, torch_model = probe
    weights = WeightSet.random(graph, seed=4)
    torch_load_into(torch_model, weights, graph).eval()
    x = np.random.default_rng(0).normal(size=(2, 4, 9, 8)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    model = load_into(BUILDERS[style](), weights, graph)
    assert_close(model(x.transpose(0, 2, 3, 1), training=False), want)


def test_to_keras_gives_keras_layouts(probe) -> None:
    graph, _ = probe
    weights = WeightSet.random(graph, seed=5)
    arrays = to_keras(functional_probe(), weights, graph)
    w = weights["features.dw.weight"]  # OIHW (16, 1, 3, 3): out = 2 * in_channel + j
    dw = arrays["features_dw/kernel"]  # (3, 3, 8, 2)
    assert dw.shape == (3, 3, 8, 2)
    assert dw[1, 2, 5, 1] == w[2 * 5 + 1, 0, 1, 2]
    grouped = arrays["features_grouped/kernel"]  # (3, 3, 8 / 2, 8)
    assert grouped.shape == (3, 3, 4, 8)
    assert grouped[0, 1, 3, 6] == weights["features.grouped.weight"][6, 3, 0, 1]
    assert np.array_equal(arrays["fc/kernel"], weights["fc.weight"].T)
    assert np.array_equal(arrays["features_bn/moving_variance"], weights["features.bn.running_var"])
    assert "features_norm/gamma" not in arrays and "mix/kernel" in arrays


def test_every_problem_is_reported_at_once(probe) -> None:
    graph, _ = probe
    model = functional_probe(names={"features_stem": "stem"}, fc=6)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightError) as err:
        load_into(model, WeightSet.random(graph), graph)
    message = str(err.value)
    assert "missing 1: layer 'features_stem' (for features.stem)" in message
    assert "unexpected 1: layer 'stem'" in message
    assert "wrong shape 6: fc/kernel: expected (192, 5), got (192, 6)" in message
    assert "head_bn/moving_variance: expected (5,), got (6,)" in message
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_missing_and_unexpected_variables(probe) -> None:
    graph, _ = probe
    inputs = keras.Input((9, 8, 4))
    p = _layers()
    p["norm"] = layers.BatchNormalization(name="features_norm")  # affine, the IR's is not
    p["bn"] = layers.BatchNormalization(center=False, name="features_bn")  # no beta
    x = p["fc"](layers.Flatten()(_features(p, inputs)))
    model = keras.Model(inputs, p["head_bn"](x))
    with pytest.raises(WeightError) as err:
        from_keras(model, graph)
    message = str(err.value)
    assert "missing 1: features.bn.bias (in layer 'features_bn')" in message
    assert "unexpected 2: variable features_norm/gamma, variable features_norm/beta" in message


def test_map_names_loads_other_layer_names(probe) -> None:
    graph, _ = probe
    names = {"features.stem": "stem", "fc": "head"}
    model = functional_probe(names={"features_stem": "stem", "fc": "head"})
    weights = WeightSet.random(graph, seed=6)
    load_into(model, weights, graph, map_names=names)
    assert from_keras(model, graph, map_names=names).equal(weights)
    with pytest.raises(WeightError, match="unknown parameter sets in map_names 1: nope"):
        from_keras(model, graph, map_names={**names, "nope": "x"})
    with pytest.raises(WeightError, match=r"bound to several parameter sets 1: head \(mix, fc\)"):
        from_keras(model, graph, map_names={**names, "mix": "head"})


def nested_probe() -> keras.Model:
    """A functional model holding a keras.Sequential and a nested functional model, one
    layer shared between the outer model and the Sequential."""
    shared = layers.Conv2D(4, 1, name="shared")
    inner_in = keras.Input((9, 8, 4))
    inner = keras.Model(inner_in, layers.BatchNormalization(name="inner_bn")(inner_in))
    seq = keras.Sequential([layers.Conv2D(4, 3, padding="same", name="seq_conv"), shared])
    inputs = keras.Input((9, 8, 4))
    return keras.Model(inputs, shared(inner(seq(inputs))), name="nested")


@pytest.mark.parametrize("style", ["functional", "subclass"])
def test_the_public_walk_finds_every_layer_once(style: str, tmp_path) -> None:
    """`walk_layers` uses public API only (`Model.layers`, a Layer's public attributes) and
    finds every layer holding weights that Keras's private `_flatten_layers` finds (not a
    nested functional model's InputLayer), each layer once: hand-built models,
    nested Sequential and functional models, shared layers, and generated rcnn (a shared
    conv, per-step dicts of layers) and resnet18 (Sequential downsample members)."""
    models = [BUILDERS[style](), nested_probe()]
    for name in ("rcnn", "resnet18"):
        module, _ = keras_module(name, input_size=(16, 16), directory=tmp_path, style=style)
        models.append(getattr(module, name)(input_shape=(16, 16, 3)))
    for model in models:
        walked = walk_layers(model)
        assert len({id(layer) for layer in walked}) == len(walked)
        private = {id(x) for x in model._flatten_layers() if x.weights}
        assert {id(layer) for layer in walked if layer.weights} == private
        leaves = [layer for layer in walked if layer.weights and not sublayers(layer)]
        assert sum(layer.count_params() for layer in leaves) == model.count_params()


# ---------------------------------------------------------------- keras.applications

APPLICATIONS = {
    "resnet50_v1": (keras.applications.ResNet50, resnet50_v1_names),
    "densenet121": (keras.applications.DenseNet121, densenet121_names),
}


@pytest.mark.parametrize("spec", sorted(APPLICATIONS))
def test_keras_applications_weights_fit_our_graph(spec: str) -> None:
    """keras.applications weights read by name into a WeightSet that fits our lowered
    graph; counts equal; a random WeightSet goes in and comes back bitwise."""
    application, names = APPLICATIONS[spec]
    graph = lower(load(spec))
    model = application(weights=None)
    mapping = names(graph)
    weights = from_keras(model, graph, map_names=mapping)
    weights.check(graph)
    counts = totals(graph)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == counts.trainable
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == counts.non_trainable
    random = WeightSet.random(graph, seed=7)
    load_into(model, random, graph, map_names=mapping)
    assert from_keras(model, graph, map_names=mapping).equal(random)


def test_reference_names_refuse_another_spec() -> None:
    with pytest.raises(ValueError, match=r"no keras\.applications name for parameter sets"):
        resnet50_v1_names(lower(load("resnet18")))


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(APPLICATIONS))
def test_keras_applications_compute_what_our_torch_model_computes(spec: str) -> None:
    """The name mapping is semantically right: keras.applications and our generated torch
    model, same random WeightSet (non-trivial BN statistics), same outputs. DenseNet121 is
    compared before its softmax; its BN eps 1.001e-5 vs our 1e-5 moves outputs ~1e-8."""
    application, names = APPLICATIONS[spec]
    module, graph = generate_module(spec, input_size=(64, 64))
    weights = WeightSet.random(graph, seed=8)
    torch_model = torch_load_into(getattr(module, graph.name)(), weights, graph).eval()
    extra = {"classifier_activation": None} if spec == "densenet121" else {}
    model = application(weights=None, input_shape=(64, 64, 3), **extra)
    load_into(model, weights, graph, map_names=names(graph))
    x = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
    # The keras.applications criterion (50+ fp32 layers in two frameworks land
    # near rel L2 1e-6); a wrong mapping or layout is off by orders of magnitude.
    assert np.abs(got - want).max() <= 1e-5
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)
