"""Helpers shared by the ONNX backend tests: running a model, comparing, inferred shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from archspec_onnx.model import serialize
from archspec_torch import generate_module
from archspec_torch.weights import load_into
from onnx import shape_inference

from archspec.ir import Graph
from archspec.weights import WeightSet


def runner(model: onnx.ModelProto, graph: Graph) -> Callable[[np.ndarray], np.ndarray]:
    """x -> the model's first output in onnxruntime (CPU, default session options)."""
    session = ort.InferenceSession(serialize(model), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {graph.inputs[0]: x})[0]


def run(model: onnx.ModelProto, graph: Graph, x: np.ndarray) -> np.ndarray:
    return runner(model, graph)(x)


def errors(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(relative L2 error, max abs error / max(1, max |ref|)): docs/design.md's two measures.

    An all-zero reference (a random net whose last ReLU is dead) has no relative error;
    the absolute measure alone decides then."""
    ref64 = ref.astype(np.float64)
    diff = ours.astype(np.float64) - ref64
    norm = np.linalg.norm(ref64)
    return (
        float(np.linalg.norm(diff) / norm) if norm > 0 else 0.0,
        float(np.abs(diff).max() / max(1.0, np.abs(ref64).max())),
    )


def assert_close(ours: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    """docs/design.md's fp32 tolerance: relative L2 <= 1e-6, max abs <= 1e-4 * max(1, max|ref|)."""
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    rel, worst = errors(ours, ref)
    assert rel <= 1e-6 and worst <= 1e-4, f"{what}: relative L2 {rel:.3g}, max abs {worst:.3g}"


def inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Every value's shape as ONNX shape inference (strict) sees it, batch dim included."""
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values
    }


def torch_reference(
    target: str | Path, size: tuple[int, int] | None, weights: WeightSet | None = None
) -> tuple[Graph, WeightSet, Callable[[np.ndarray], np.ndarray]]:
    """The generated torch model of a spec with seeded weights, run in float64 (the exact
    answer to fp32 rounding): (graph, weights, x -> output)."""
    module, graph = generate_module(target, input_size=size)
    weights = weights if weights is not None else WeightSet.random(graph, seed=0)
    model = load_into(getattr(module, graph.name)(), weights, graph).eval().double()

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x).double()).numpy()

    return graph, weights, forward


def write_spec(folder: Path, name: str, data: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(data))
    return path


def sample(graph: Graph, batch: int, seed: int = 1) -> np.ndarray:
    shape = (batch, *graph.node(graph.inputs[0]).shape)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
