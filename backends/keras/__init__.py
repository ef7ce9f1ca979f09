"""Keras 3 backend: functional or subclassing source from the module plan, and the Keras
weight adapter.

`backend` is the entry point (`archspec.backends: keras`). Generating source does not
import Keras; importing generated code (`generate_model`) and `archspec_keras.weights` do.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from archspec_keras.emitter import KerasEmitter, emit_source
from archspec_keras.ops import KerasEmitError

from archspec.ir import Graph
from archspec.lower import lower
from archspec.registry import ResolvedSpec, load

backend = KerasEmitter()

__all__ = ["KerasEmitError", "KerasEmitter", "backend", "emit_source", "generate_module"]


def generate_module(
    target: str | Path | ResolvedSpec,
    overrides: dict[str, Any] | None = None,
    input_size: tuple[int, int] | None = None,
    directory: str | Path | None = None,
    style: str = "functional",
) -> tuple[ModuleType, Graph]:
    """Generate the Keras source for a spec in `style`, write it to `directory`, import it.

    Returns the imported module (its factory is `getattr(module, graph.name)`) and the graph.
    """
    spec = target if isinstance(target, ResolvedSpec) else load(target)
    graph = lower(spec, overrides, input_size)
    artifact = backend.emit(spec, graph, {"style": style})
    folder = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="archspec_"))
    )
    path = folder / artifact.filename
    path.write_bytes(artifact.content)
    name = f"archspec_generated_keras_{style}_{graph.name}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, graph
