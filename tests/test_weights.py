"""The canonical WeightSet (numpy only): names, shapes, seeded random values, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archspec.analysis import totals
from archspec.lower import lower
from archspec.registry import load, zoo_names
from archspec.weights import WeightError, WeightSet, expected_shapes


@pytest.fixture(scope="module")
def resnet18():
    return lower(load("resnet18"))


@pytest.mark.parametrize("name", zoo_names())
def test_expected_sizes_equal_the_graph_totals(name: str) -> None:
    graph = lower(load(name))
    counts = totals(graph)
    size = sum(math.prod(s) for s in expected_shapes(graph).values())
    assert size == counts.trainable + counts.non_trainable


def test_names_and_layout_follow_torch(resnet18) -> None:
    shapes = expected_shapes(resnet18)
    assert shapes["conv1.weight"] == (64, 3, 7, 7)  # OIHW
    assert "conv1.bias" not in shapes  # bias: false
    assert shapes["fc.weight"] == (1000, 512)  # [out, in]
    assert shapes["fc.bias"] == (1000,)
    for tensor in ("weight", "bias", "running_mean", "running_var"):
        assert shapes[f"layer2.0.downsample.1.{tensor}"] == (128,)


def test_shared_group_appears_once() -> None:
    graph = lower(load("rcnn"))
    names = list(expected_shapes(graph))
    assert names.count("rcl1.recurrent.weight") == 1
    assert not any(n.startswith("rcl1.steps.0.conv") for n in names)
    assert "rcl1.steps.0.bn.running_var" in names  # per-step BatchNorm stays separate


def test_random_is_deterministic_per_seed(resnet18) -> None:
    a, b, c = (WeightSet.random(resnet18, s) for s in (0, 0, 1))
    assert a.equal(b)
    assert not a.equal(c)
    assert all(a[n].dtype == np.float32 for n in a)


def test_random_batch_norm_state_is_not_trivial(resnet18) -> None:
    w = WeightSet.random(resnet18, 0)
    var = np.concatenate([w[n] for n in w if n.endswith("running_var")])
    mean = np.concatenate([w[n] for n in w if n.endswith("running_mean")])
    gamma = np.concatenate([w[n] for n in w if n.endswith("bn1.weight")])
    assert var.min() >= 0.5 and var.max() <= 2.0 and var.std() > 0.2
    assert abs(mean).max() > 0.1 and mean.std() > 0.1
    assert gamma.min() >= 0.5 and gamma.max() <= 1.5 and gamma.std() > 0.1


def test_random_weights_have_variance_one_over_fan_in(resnet18) -> None:
    w = WeightSet.random(resnet18, 0)["layer3.0.conv2.weight"]  # 256 x 256 x 3 x 3
    fan_in = 256 * 9
    assert w.std() == pytest.approx(math.sqrt(1 / fan_in), rel=0.02)
    assert abs(w.mean()) < 0.01 * w.std() * 10


def test_check_lists_missing_extra_and_misshaped(resnet18) -> None:
    w = dict(WeightSet.random(resnet18, 0))
    del w["conv1.weight"]
    w["nonsense.weight"] = np.zeros(3, np.float32)
    w["fc.bias"] = np.zeros(7, np.float32)
    with pytest.raises(WeightError) as err:
        WeightSet.for_graph(w, resnet18)
    message = str(err.value)
    assert "missing 1: conv1.weight" in message
    assert "unexpected 1: nonsense.weight" in message
    assert "fc.bias: expected (1000,), got (7,)" in message


def test_arrays_are_read_only_float32(resnet18) -> None:
    w = WeightSet({"a": np.arange(3, dtype=np.float64)})
    assert w["a"].dtype == np.float32
    with pytest.raises(ValueError):
        w["a"][0] = 1.0
    with pytest.raises(KeyError, match="no weight named 'b'"):
        w["b"]


def test_save_load_round_trip_is_bitwise(resnet18, tmp_path) -> None:
    w = WeightSet.random(resnet18, 3)
    w.save(tmp_path / "w.npz")
    assert WeightSet.load(tmp_path / "w.npz").equal(w)
