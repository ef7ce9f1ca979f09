"""`archspec port`: a real checkpoint -> the canonical WeightSet -> another framework's files.

Framework-free (numpy only). Each framework contributes a `Porter` through the
`archspec.port` entry-point group (`torch`, `keras`, `onnx`); the core names none of them:

1. the source porter's `read` turns a checkpoint file into canonical names and arrays
   (what the file holds, nothing checked yet) and says what it found;
2. `fit` compares those names and shapes with what the spec expects
   (`expected_shapes(graph)`, the names `WeightSet.random(graph)` has) and lists every
   difference at once (missing, unexpected, wrong shape with both shapes, nearest names);
   a checkpoint that does not fit is refused before anything is written;
3. the target porter's `write` renders the files (bytes in memory: a generated module
   and its weights, or an ONNX model), which `place_all` writes atomically into the
   output folder under the usual ownership rule (archspec/generate.py: it replaces only
   files its manifest or header proves it wrote, unless `--force`);
4. parity: the source framework's model holding the checkpoint's weights (its parity
   runner, `reference`; in a process of its own, started early, when the source porter
   says `isolated_reference`) against a runner that loads the WRITTEN files back
   (`Porter.runner`), on a seeded input, reported like `archspec parity`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np

from archspec.backend import Artifact
from archspec.codegen.printers import import_artifact
from archspec.errors import suggest
from archspec.generate import Manifest, OwnershipError, ours, place
from archspec.ir import Graph
from archspec.parity import Runner, conforms
from archspec.registry import ResolvedSpec, display_path
from archspec.weights import Shape, WeightSet, expected_shapes

GROUP = "archspec.port"


class PortError(Exception):
    """A port cannot go ahead (bad option, unreadable checkpoint, misfit); exit 2."""


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds, in canonical names and layout (not yet checked)."""

    arrays: dict[str, np.ndarray]
    notes: tuple[str, ...] = ()  # what the reader found and did ("state_dict under 'model'")


@runtime_checkable
class Porter(Protocol):
    name: str  # "torch": the --from/--to name
    extra: str  # the pip extra that installs its framework
    reads: tuple[str, ...]  # checkpoint file endings it reads (empty: write-only)
    reference: str  # parity runner name for this framework as the source
    # True: `read` needs no framework, so the reference runs in a process of its own
    # (archspec/isolated.py), started before reading: the framework never enters this
    # process, and its import and run overlap the conversion.
    isolated_reference: bool

    def available(self) -> str | None:
        """None when its framework imports; else why not (shown to the user)."""
        ...

    def read(self, path: Path, spec: ResolvedSpec, graph: Graph) -> Checkpoint:
        """The checkpoint's canonical arrays; PortError naming the file if unreadable."""
        ...

    def write(self, weights: WeightSet, spec: ResolvedSpec, graph: Graph) -> list[Artifact]:
        """The target files, rendered in memory (nothing written here)."""
        ...

    def runner(self, folder: Path, artifacts: Sequence[Artifact]) -> Runner:
        """A parity runner that loads the written files from `folder`."""
        ...


def porter_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def get_porter(name: str) -> Porter:
    eps = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not eps:
        raise PortError(f"unknown framework '{name}'{suggest(name, porter_names())}")
    try:
        porter = eps[0].load()
    except Exception as exc:  # a broken plugin is a message, not a traceback
        raise PortError(
            f"framework '{name}' ({eps[0].value}) failed to load: {type(exc).__name__}: {exc}"
        ) from None
    if not conforms(porter, Porter):
        raise PortError(f"entry point '{name}' ({eps[0].value}) is not an archspec Porter")
    why = porter.available()
    if why is not None:
        raise PortError(
            f"framework '{name}' cannot run: {why} (pip install 'archspec[{porter.extra}]')"
        )
    return porter


def check_pair(source: str, target: str) -> None:
    """Refuse a port from a framework to itself (nothing to convert)."""
    if source == target:
        raise PortError(f"--from and --to are both '{source}': nothing to port")


# ---------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class Misfit:
    name: str
    detail: str  # "expected (64, 3, 7, 7)", "nearest expected: conv1.weight"


@dataclass
class Fit:
    """Differences between a checkpoint's names/shapes and the spec's, in graph order."""

    missing: list[Misfit] = field(default_factory=list)
    unexpected: list[Misfit] = field(default_factory=list)
    wrong_shape: list[Misfit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def render(self, limit: int = 20) -> str:
        lines: list[str] = []
        for title, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("wrong shape", self.wrong_shape),
        ):
            if not items:
                continue
            lines.append(f"  {title} ({len(items)}):")
            lines += [f"    {m.name}: {m.detail}" for m in items[:limit]]
            if len(items) > limit:
                lines.append(f"    ... ({len(items) - limit} more)")
        return "\n".join(lines)


def _nearest(name: str, candidates: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _shape(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def fit(arrays: Mapping[str, np.ndarray], graph: Graph) -> Fit:
    """Compare a checkpoint with the graph: every missing name (with the nearest
    unexpected one it may have been renamed to), every unexpected name (with the nearest
    expected one), every shape that differs (both shapes)."""
    expected = expected_shapes(graph)
    missing = [n for n in expected if n not in arrays]
    unexpected = [n for n in arrays if n not in expected]
    out = Fit()
    for name in missing:
        near = _nearest(name, unexpected)
        hint = f"; nearest in the checkpoint: {near}" if near else ""
        out.missing.append(Misfit(name, f"expected {_shape(expected[name])}{hint}"))
    for name in unexpected:
        near = _nearest(name, list(expected))
        hint = f"; nearest expected: {near}" if near else ""
        out.unexpected.append(Misfit(name, f"{_shape(np.shape(arrays[name]))}{hint}"))
    for name, shape in expected.items():
        if name in arrays and tuple(np.shape(arrays[name])) != shape:
            got = tuple(np.shape(arrays[name]))
            out.wrong_shape.append(Misfit(name, f"expected {_shape(shape)}, got {_shape(got)}"))
    return out


def to_weights(checkpoint: Checkpoint, graph: Graph, path: Path) -> WeightSet:
    """The checkpoint as the graph's WeightSet, or a PortError listing every difference."""
    found = fit(checkpoint.arrays, graph)
    if not found.ok:
        raise PortError(
            f"{display_path(path)} does not fit spec '{graph.name}'; nothing was written:\n"
            + found.render()
        )
    return WeightSet.for_graph(checkpoint.arrays, graph)


def import_written(path: Path, module_name: str) -> ModuleType:
    """Import a module `port` wrote, from a copy of its bytes in a temporary folder (so
    no `__pycache__` lands in the user's output folder)."""
    return import_artifact(Artifact(path.name, path.read_bytes()), module_name, None)


# ---------------------------------------------------------------------------- writing


def place_all(
    folder: Path, artifacts: Sequence[Artifact], force: bool, echo: Callable[[str], None]
) -> None:
    """Write every artifact, or none: ownership is checked for all of them first."""
    manifest = Manifest.load(folder)
    for artifact in artifacts:
        path = folder / artifact.filename
        if path.exists() and not path.is_file():
            raise OwnershipError(
                f"{display_path(path)} exists and is not a regular file; nothing was written"
            )
        if path.is_file() and not force and not ours(manifest, artifact.filename):
            raise OwnershipError(
                f"refusing to overwrite {display_path(path)}: archspec did not write it; "
                "nothing was written (move it away, choose another folder with -o, or "
                "pass --force)"
            )
    try:
        for artifact in artifacts:
            place(manifest, artifact.filename, artifact.content, force, echo)
    finally:
        manifest.save()
