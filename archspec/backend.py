"""The backend plugin interface and its discovery through the `archspec.backends` entry points.

The core never names a backend: `archspec gen --backend X` looks X up here. A backend
package exposes an object satisfying `Backend`; generating source must not import the
framework (only running or converting weights may).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from archspec.errors import suggest
from archspec.ir import Graph
from archspec.names import NONE, ReservedNames
from archspec.registry import ResolvedSpec

GROUP = "archspec.backends"


@dataclass(frozen=True)
class Artifact:
    """One generated file: its name relative to the output folder and its bytes."""

    filename: str
    content: bytes


@runtime_checkable
class Backend(Protocol):
    """A backend. Optionally also `reserved_names: ReservedNames`, the names its generated
    code owns (read through `reserved_names(backend)`; none when absent)."""

    name: str  # "torch"
    file_suffix: str  # ".py"

    def emit(self, spec: ResolvedSpec, graph: Graph) -> Artifact:
        """Generate the artifact for one lowered spec (deterministic: same input, same bytes)."""
        ...


class BackendError(Exception):
    """A backend cannot be found or loaded, or cannot express a spec (the message says what).

    Backends raise subclasses of it; the CLI prints the message and exits 2."""


def available() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def get(name: str) -> Backend:
    eps = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not eps:
        raise BackendError(f"unknown backend '{name}'{suggest(name, available())}")
    if len(eps) > 1:
        sources = ", ".join(ep.value for ep in eps)
        raise BackendError(f"backend '{name}' is registered twice ({sources}); uninstall one")
    try:
        backend = eps[0].load()
    except Exception as exc:  # a broken plugin must not take the CLI down with a traceback
        raise BackendError(
            f"backend '{name}' ({eps[0].value}) failed to load: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(backend, Backend):
        raise BackendError(f"entry point '{name}' ({eps[0].value}) is not an archspec Backend")
    return backend


def reserved_names(backend: Backend) -> ReservedNames:
    """The backend's table of names specs may not use (`archspec.names`); optional."""
    table = getattr(backend, "reserved_names", NONE)
    if not isinstance(table, ReservedNames):
        raise BackendError(f"backend '{backend.name}': reserved_names is not a ReservedNames")
    return table
