"""Running backends over specs and writing their artifacts atomically.

A failed generation leaves no partial file: content is produced in memory first, then
written to a temporary file in the target folder and renamed over the destination.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from archspec.backend import Backend
from archspec.lower import lower
from archspec.registry import display_path, load, zoo_names


def write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def output_dir(backend: Backend, out_dir: str | None) -> Path:
    return Path(out_dir) if out_dir is not None else Path("generated") / backend.name


def generate_one(
    backend: Backend,
    target: str,
    overrides: Mapping[str, Any],
    out_dir: str | None,
    echo: Callable[[str], None],
) -> Path:
    spec = load(target)
    artifact = backend.emit(spec, lower(spec, overrides))
    path = output_dir(backend, out_dir) / artifact.filename
    write_atomic(path, artifact.content)
    echo(f"wrote {display_path(path)}")
    return path


def render_zoo(backend: Backend) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name in zoo_names():
        spec = load(name)
        artifact = backend.emit(spec, lower(spec))
        out[artifact.filename] = artifact.content
    return out


def generate_zoo(backends: list[Backend], out_dir: str | None, echo: Callable[[str], None]) -> None:
    for backend in backends:
        folder = output_dir(backend, out_dir)
        files = render_zoo(backend)
        for filename, content in files.items():
            path = folder / filename
            if path.is_file() and path.read_bytes() == content:
                echo(f"unchanged {display_path(path)}")
                continue
            write_atomic(path, content)
            echo(f"wrote {display_path(path)}")
        for extra in sorted(folder.glob(f"*{backend.file_suffix}")):
            if extra.name not in files and extra.name != "__init__.py":
                extra.unlink()
                echo(f"removed {display_path(extra)} (no such spec)")


def check_zoo(backends: list[Backend], out_dir: str | None) -> list[str]:
    """Files that differ from what generation would write now (missing, stale, extra)."""
    problems: list[str] = []
    for backend in backends:
        folder = output_dir(backend, out_dir)
        files = render_zoo(backend)
        for filename, content in files.items():
            path = folder / filename
            if not path.is_file():
                problems.append(f"{display_path(path)}: missing")
            elif path.read_bytes() != content:
                problems.append(f"{display_path(path)}: stale")
        for extra in sorted(folder.glob(f"*{backend.file_suffix}")):
            if extra.name not in files and extra.name != "__init__.py":
                problems.append(f"{display_path(extra)}: no spec generates it")
    return problems
