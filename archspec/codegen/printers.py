"""What every source backend's package needs besides its printers: a printer table keyed
by IR op kind, its jinja2 templates, and importing a generated file (tests, benchmarks)."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import jinja2

from archspec.backend import Artifact
from archspec.codegen.layout import docstring, header_lines
from archspec.ir import Graph

P = TypeVar("P", bound=Callable[..., Any])


class PrinterTable(dict[str, P], Generic[P]):
    """One printer per IR op kind (torch.fx's one branch per opcode); a second printer for
    the same kind is a bug in the backend, refused at import."""

    def printer(self, kind: str) -> Callable[[P], P]:
        def register(fn: P) -> P:
            if kind in self:
                raise ValueError(f"two printers for op kind '{kind}'")
            self[kind] = fn
            return fn

        return register


@cache
def templates(package: str) -> jinja2.Environment:
    """The jinja2 templates shipped in `package`'s `templates/` folder."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_file(package: str, graph: Graph, sections: list[str], **parts: Any) -> str:
    """A generated Python file: `package`'s module.py.j2 with the header, the spec's
    description as module docstring, the sections (helpers, classes, factory) and `parts`."""
    template = templates(package).get_template("module.py.j2")
    return template.render(
        header=header_lines(graph.spec_file),
        module_doc=docstring(graph.description, 0),
        sections=sections,
        **parts,
    )


def import_artifact(
    artifact: Artifact, module_name: str, directory: str | Path | None
) -> ModuleType:
    """Write a generated Python file to `directory` (a new temporary one by default), import it."""
    folder = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="archspec_"))
    )
    path = folder / artifact.filename
    path.write_bytes(artifact.content)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # TorchScript and Keras deserialization look it up
    spec.loader.exec_module(module)
    return module
