"""Keras 3 backend: functional or subclassing source from the module plan, and the Keras
weight adapter.

`backend` is the entry point (`archspec.backends: keras`). Generating source does not
import Keras; importing generated code (`generate_model`) and `archspec_keras.weights` do.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from archspec_keras.emitter import KerasEmitter, emit_source
from archspec_keras.ops import KerasEmitError

from archspec.codegen.printers import import_artifact
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
    name = f"archspec_generated_keras_{style}_{graph.name}"
    module = import_artifact(artifact, name, directory)
    return module, graph
