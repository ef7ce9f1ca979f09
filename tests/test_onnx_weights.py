"""The ONNX weight adapter: initializers <-> WeightSet, exact, with clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from archspec_onnx.builder import OnnxEmitError
from archspec_onnx.model import build_model, serialize
from archspec_onnx.weights import from_model, load_into

from archspec.lower import lower
from archspec.registry import load
from archspec.weights import WeightError, WeightSet, expected_shapes


@pytest.mark.parametrize("name", ["resnet18", "rcnn", "densenet121_cifar", "preact_resnet22"])
def test_round_trip_is_bitwise_through_the_file_format(name: str) -> None:
    graph = lower(load(name))
    weights = WeightSet.random(graph, seed=3)
    model = onnx.load_from_string(serialize(build_model(graph, weights)))
    back = from_model(model, graph)
    assert back.equal(weights)
    assert [t.name for t in model.graph.initializer] == list(expected_shapes(graph))


def test_load_into_replaces_every_initializer() -> None:
    graph = lower(load("rcnn"))
    model = build_model(graph, WeightSet.random(graph, seed=0))
    other = WeightSet.random(graph, seed=1)
    loaded = load_into(model, other, graph)
    assert from_model(loaded, graph).equal(other)
    assert from_model(model, graph).equal(WeightSet.random(graph, seed=0))  # a copy


def test_shared_group_is_one_initializer_read_by_every_use() -> None:
    graph = lower(load("rcnn"))
    model = build_model(graph, WeightSet.random(graph, seed=0))
    names = [t.name for t in model.graph.initializer]
    for param, uses in graph.shared_groups:
        assert names.count(f"{param}.weight") == 1 and names.count(f"{param}.bias") == 1
        readers = [n.name for n in model.graph.node if f"{param}.weight" in n.input]
        assert readers == list(uses)  # rcl1.steps.0.conv ... rcl1.steps.3.conv


def test_missing_and_extra_initializers_are_named() -> None:
    graph = lower(load("resnet18"))
    model = build_model(graph, WeightSet.random(graph, seed=0))
    del model.graph.initializer[0]
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(2, np.float32), "junk"))
    with pytest.raises(WeightError, match=r"missing 1: conv1\.weight.*unexpected 1: junk"):
        from_model(model, graph)


def test_folded_and_weightless_models_do_not_give_weights() -> None:
    graph = lower(load("resnet18"))
    weights = WeightSet.random(graph, seed=0)
    with pytest.raises(WeightError, match="--fold-bn"):
        from_model(build_model(graph, weights, fold_bn=True), graph)
    with pytest.raises(OnnxEmitError, match="--fold-bn"):
        load_into(build_model(graph, weights, fold_bn=True), weights, graph)
    with pytest.raises(WeightError, match="without values"):
        from_model(build_model(graph, None), graph)


def test_build_model_checks_the_weights_against_the_graph() -> None:
    graph = lower(load("resnet18"))
    weights = dict(WeightSet.random(graph, seed=0))
    weights["fc.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightError, match=r"fc\.weight: expected \(1000, 512\), got \(3, 3\)"):
        build_model(graph, WeightSet(weights))
