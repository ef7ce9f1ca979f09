"""PyTorch backend: idiomatic nn.Module source from the IR, and the torch weight adapter.

`backend` is the entry point (`archspec.backends: torch`). Generating source does not
import torch; importing generated code (`generate_module`) and `archspec_torch.weights` do.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from archspec_torch.emitter import TorchEmitError, TorchEmitter, emit_source

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
    folder = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="archspec_"))
    )
    path = folder / artifact.filename
    path.write_bytes(artifact.content)
    module_spec = importlib.util.spec_from_file_location(f"archspec_generated_{graph.name}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, graph
