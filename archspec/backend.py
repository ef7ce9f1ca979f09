"""The backend plugin interface and its discovery through the `archspec.backends` entry points.

The core never names a backend: `archspec gen --backend X` looks X up here. A backend
package exposes an object satisfying `Backend`; generating source must not import the
framework (only running or converting weights may).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from archspec.errors import suggest
from archspec.ir import Graph
from archspec.names import GROUP, NONE, ReservedNames
from archspec.registry import ResolvedSpec


@dataclass(frozen=True)
class Artifact:
    """One generated file: its name relative to the output folder and its bytes."""

    filename: str
    content: bytes


@dataclass(frozen=True)
class ZooVariant:
    """One folder of the checked-in zoo: `generated/<folder>/`, emitted with `options`."""

    folder: str
    options: Mapping[str, Any] = field(default_factory=dict)


# CLI flag -> option name. A backend lists the names it accepts in `Backend.options`.
OPTION_FLAGS: dict[str, str] = {
    "style": "--style",
    "fold_bn": "--fold-bn",
    "functions": "--functions",
    "weights": "--weights",
}


@runtime_checkable
class Backend(Protocol):
    """A backend. Optionally also `reserved_names: ReservedNames`, the names its generated
    code owns (read through `reserved_names(backend)`; none when absent)."""

    name: str  # "torch": the --backend name
    file_suffix: str  # ".py"
    options: tuple[str, ...]  # option names it accepts (keys of OPTION_FLAGS, or its own)
    zoo_variants: tuple[ZooVariant, ...]  # what `gen --all` writes for the zoo

    def emit(
        self, spec: ResolvedSpec, graph: Graph, options: Mapping[str, Any] | None = None
    ) -> Artifact:
        """Generate the artifact for one lowered spec (deterministic: same input, same bytes)."""
        ...


class BackendError(Exception):
    """A backend cannot be found or loaded, or cannot express a spec (the message says what).

    Backends raise subclasses of it; the CLI prints the message and exits 2."""


def check_options(backend: Backend, options: Mapping[str, Any]) -> None:
    """Refuse an option the backend does not take, naming the flag and what it does take."""
    for name in options:
        if name not in backend.options:
            takes = ", ".join(OPTION_FLAGS.get(o, o) for o in backend.options) or "none"
            raise BackendError(
                f"backend '{backend.name}' has no option {OPTION_FLAGS.get(name, name)} "
                f"(its options: {takes})"
            )


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
