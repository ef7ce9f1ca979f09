"""The torch weight adapter: state_dict <-> the canonical WeightSet, bit for bit.

The IR's layout is PyTorch's (NCHW, OIHW, [out, in]) and generated modules sit at the
IR's node paths, so the mapping is by name: a WeightSet name is a state_dict key. The
only torch-specific state is BatchNorm's `num_batches_tracked` counter, which has no
canonical meaning: it is dropped on the way in and set to zero on the way out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from archspec_torch.savefile import COUNTER

import torch
from archspec.ir import Graph
from archspec.weights import WeightError, WeightSet, expected_shapes
from torch import nn


def to_state_dict(
    weights: WeightSet, graph: Graph, *, counters: bool = True
) -> dict[str, torch.Tensor]:
    """The state_dict of a generated model holding `weights` (num_batches_tracked = 0)."""
    weights.check(graph)
    state: dict[str, torch.Tensor] = {}
    for name in expected_shapes(graph):
        state[name] = torch.from_numpy(np.array(weights[name], dtype=np.float32, copy=True))
        if counters and name.endswith(".running_var"):
            state[f"{name.rsplit('.', 1)[0]}.{COUNTER}"] = torch.tensor(0, dtype=torch.long)
    return state


def from_state_dict(state: Mapping[str, torch.Tensor], graph: Graph) -> WeightSet:
    """A WeightSet from a state_dict (counters ignored; other unknown keys are errors)."""
    arrays = {
        key: value.detach().to("cpu", torch.float32).numpy().copy()
        for key, value in state.items()
        if not key.endswith(f".{COUNTER}")
    }
    try:
        return WeightSet.for_graph(arrays, graph)
    except WeightError as exc:
        raise WeightError(f"state_dict -> WeightSet: {exc}") from None


def from_module(model: nn.Module, graph: Graph) -> WeightSet:
    return from_state_dict(model.state_dict(), graph)


def load_into(model: nn.Module, weights: WeightSet, graph: Graph) -> nn.Module:
    """Copy `weights` into `model` (strict: every key must match); returns the model."""
    model.load_state_dict(to_state_dict(weights, graph), strict=True)
    return model
