"""PyTorch backend: idiomatic nn.Module source from the IR, and the torch weight adapter.

`backend` is the entry point (`archspec.backends: torch`). Generating source does not
import torch; importing generated code (`generate_module`) and `archspec_torch.weights` do.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from archspec_torch.emitter import TorchEmitError, TorchEmitter, emit_source

from archspec.codegen.printers import import_artifact
from archspec.ir import Graph
from archspec.lower import lower
from archspec.registry import ResolvedSpec, load

backend = TorchEmitter()

__all__ = ["TorchEmitError", "TorchEmitter", "backend", "emit_source", "generate_module"]


def generate_module(
    target: str | Path | ResolvedSpec,
    overrides: dict[str, Any] | None = None,
    input_size: tuple[int, int] | None = None,
    directory: str | Path | None = None,
) -> tuple[ModuleType, Graph]:
    """Generate the torch source for a spec, write it to `directory`, import it (no CLI).

    Returns the imported module (its factory is `getattr(module, graph.name)`) and the graph.
    """
    spec = target if isinstance(target, ResolvedSpec) else load(target)
    graph = lower(spec, overrides, input_size)
    artifact = backend.emit(spec, graph)
    module = import_artifact(artifact, f"archspec_generated_{graph.name}", directory)
    return module, graph
