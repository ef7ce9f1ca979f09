"""The ONNX porter (`archspec port --to onnx`): write-only.

Writing: `<spec>.onnx`, the model `archspec gen --backend onnx` builds, holding the ported
weights as initializers named like the WeightSet (BatchNorm kept, not folded, so the file
gives the WeightSet back). ONNX is no training framework: there are no ONNX checkpoints
to port from (`--from onnx` is refused).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archspec_onnx.parity import OnnxRunner

from archspec.backend import Artifact
from archspec.ir import Graph
from archspec.parity import RunRequest
from archspec.port import Checkpoint, PortError
from archspec.registry import ResolvedSpec, display_path
from archspec.weights import WeightSet


class OnnxPorter:
    name = "onnx"
    extra = "onnx"
    reads: tuple[str, ...] = ()
    reference = "onnx"
    isolated_reference = False

    def available(self) -> str | None:
        for module in ("onnx", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def read(self, path: Path, spec: ResolvedSpec, graph: Graph) -> Checkpoint:
        raise PortError("onnx is a target only: port from torch or keras")

    def write(self, weights: WeightSet, spec: ResolvedSpec, graph: Graph) -> list[Artifact]:
        from archspec_onnx.model import build_model, serialize

        model = build_model(graph, weights, spec=spec)
        return [Artifact(f"{graph.name}.onnx", serialize(model))]

    def runner(self, folder: Path, artifacts: Sequence[Artifact]) -> WrittenOnnx:
        return WrittenOnnx(folder / artifacts[0].filename)


class WrittenOnnx(OnnxRunner):
    """The parity runner of a port's output: the written .onnx file, as written."""

    def __init__(self, path: Path) -> None:
        super().__init__(name=f"onnx ({display_path(path)})")
        self.path = path

    def model(self, request: RunRequest) -> Any:
        import onnx

        return onnx.load(self.path)


porter = OnnxPorter()
