"""The canonical WeightSet: named float32 numpy arrays in the IR's layout (numpy only).

Names are `f"{node.param_name}.{tensor}"` with torch's tensor names: `weight`/`bias` for
conv (OIHW, groups folded into I) and linear ([out, in]); `weight`/`bias`/`running_mean`/
`running_var` for batch norm; `weight`/`bias` (C,) for layer norm. A scale's factor is a
parameter of its own, named `param_name` alone (torchvision's `layer_scale`), shaped
(C, 1, 1) on (C, H, W) inputs and (F,) on features. A shared-weight group appears once,
under its param_name.
Backend adapters convert to and from their frameworks; this module never imports one.

`WeightSet.random(graph, seed)` draws a deterministic, well-scaled set for parity tests:
conv/linear weights with variance 1/fan_in (deep nets stay finite), small random biases,
and NON-TRIVIAL BatchNorm state (random gamma, beta, running mean and variance), so a
backend that ignores BN statistics or swaps them cannot pass by accident.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from archspec import ir
from archspec.analysis import input_shape, param_sets
from archspec.ir import Graph, Node

Shape = tuple[int, ...]


# The tensor name of a parameter that is its op's whole parameter set (a scale's factor):
# its WeightSet name is the param_name itself.
PARAMETER = ""


def weight_name(param_name: str, tensor: str) -> str:
    """`layer1.0.conv1` + `weight` -> `layer1.0.conv1.weight`; a PARAMETER is `param_name`."""
    return param_name if tensor == PARAMETER else f"{param_name}.{tensor}"


class WeightError(ValueError):
    """Names or shapes of a WeightSet do not fit a graph (the message lists every problem)."""


def _tensors(node: Node, graph: Graph) -> dict[str, Shape]:
    op = node.op
    if isinstance(op, ir.Conv2d):
        kh, kw = op.kernel_size
        shapes: dict[str, Shape] = {
            "weight": (op.out_channels, op.in_channels // op.groups, kh, kw)
        }
        if op.bias:
            shapes["bias"] = (op.out_channels,)
        return shapes
    if isinstance(op, ir.Linear):
        shapes = {"weight": (op.out_features, op.in_features)}
        if op.bias:
            shapes["bias"] = (op.out_features,)
        return shapes
    if isinstance(op, ir.BatchNorm):
        c = (op.num_features,)
        shapes = {"weight": c, "bias": c} if op.affine else {}
        return {**shapes, "running_mean": c, "running_var": c}
    if isinstance(op, ir.LayerNorm):
        return {"weight": (op.num_features,), "bias": (op.num_features,)} if op.affine else {}
    if isinstance(op, ir.Scale):
        return {PARAMETER: op.weight_shape}
    return {}


def tensor_names(param_name: str, node: Node, graph: Graph) -> list[str]:
    """The WeightSet names of one parameter set (`node` is its first user)."""
    return [weight_name(param_name, tensor) for tensor in _tensors(node, graph)]


def expected_shapes(graph: Graph) -> dict[str, Shape]:
    """Every tensor name the graph needs, with its canonical shape, in graph order."""
    out: dict[str, Shape] = {}
    for prefix, node in param_sets(graph).items():
        for tensor, shape in _tensors(node, graph).items():
            out[weight_name(prefix, tensor)] = shape
    return out


def _fan_in(node: Node, graph: Graph) -> int:
    op = node.op
    if isinstance(op, ir.Conv2d):
        return op.in_channels // op.groups * op.kernel_size[0] * op.kernel_size[1]
    if isinstance(op, ir.Linear):
        return op.in_features
    return math.prod(input_shape(graph, node))


class WeightSet(Mapping[str, np.ndarray]):
    """Named float32 arrays in canonical layout; read-only mapping, insertion-ordered."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            array = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
            array.setflags(write=False)
            self._arrays[name] = array

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._arrays[name]
        except KeyError:
            raise KeyError(f"no weight named '{name}' ({len(self)} names)") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"WeightSet({len(self)} arrays, {self.size} values)"

    @property
    def size(self) -> int:
        return sum(a.size for a in self._arrays.values())

    # ------------------------------------------------------------------ construction

    @classmethod
    def random(cls, graph: Graph, seed: int = 0) -> WeightSet:
        """Deterministic per (seed, name): adding a layer does not change the others."""
        arrays: dict[str, np.ndarray] = {}
        tensors = [
            (prefix, node, tensor, shape)
            for prefix, node in param_sets(graph).items()
            for tensor, shape in _tensors(node, graph).items()
        ]
        for prefix, node, tensor, shape in tensors:
            name = weight_name(prefix, tensor)
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            if isinstance(node.op, ir.BatchNorm):
                low_high = {"weight": (0.5, 1.5), "bias": (-0.2, 0.2), "running_var": (0.5, 2.0)}
                if tensor == "running_mean":
                    value = rng.normal(0.0, 0.2, shape)
                else:
                    value = rng.uniform(*low_high[tensor], shape)
            elif isinstance(node.op, ir.Scale):  # factors around 1, not the init's 1e-6
                value = rng.uniform(0.5, 1.5, shape)
            elif isinstance(node.op, ir.LayerNorm):  # non-trivial, as BatchNorm's
                value = rng.uniform(*{"weight": (0.5, 1.5), "bias": (-0.2, 0.2)}[tensor], shape)
            elif tensor == "weight":
                value = rng.normal(0.0, math.sqrt(1.0 / _fan_in(node, graph)), shape)
            else:
                value = rng.uniform(-0.1, 0.1, shape)
            arrays[name] = value.astype(np.float32)
        return cls(arrays)

    @classmethod
    def for_graph(cls, arrays: Mapping[str, np.ndarray], graph: Graph) -> WeightSet:
        """Arrays checked against the graph (names and shapes), in the graph's order."""
        weights = cls(arrays)
        weights.check(graph)
        return cls({name: weights[name] for name in expected_shapes(graph)})

    # ------------------------------------------------------------------ checks

    def check(self, graph: Graph) -> None:
        expected = expected_shapes(graph)
        missing = [n for n in expected if n not in self._arrays]
        extra = [n for n in self._arrays if n not in expected]
        wrong = [
            f"{n}: expected {expected[n]}, got {self._arrays[n].shape}"
            for n in expected
            if n in self._arrays and self._arrays[n].shape != expected[n]
        ]
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_preview(missing)}")
        if extra:
            problems.append(f"unexpected {len(extra)}: {_preview(extra)}")
        if wrong:
            problems.append(f"wrong shape {len(wrong)}: {_preview(wrong)}")
        if problems:
            raise WeightError(f"weights do not fit graph '{graph.name}': " + "; ".join(problems))

    def equal(self, other: Mapping[str, np.ndarray]) -> bool:
        """Same names and bitwise-identical arrays."""
        return list(self) == list(other) and all(
            self[n].shape == other[n].shape and self[n].tobytes() == np.asarray(other[n]).tobytes()
            for n in self
        )

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> None:
        np.savez(path, **self._arrays)

    @classmethod
    def load(cls, path: str | Path) -> WeightSet:
        with np.load(path, allow_pickle=False) as data:
            return cls({name: data[name] for name in data.files})


def _preview(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
