"""Finding and loading specs: the built-in zoo, user files, `extends:` and `use:`.

The registry is explicit and side-effect free: the zoo is the `*.yaml` files directly in
the specs folder (file stem = spec name = generated module name); libraries of blocks
and abstract families live in `specs/lib/`. Loading returns a ResolvedSpec in which
inherited parameters, defaults and blocks are merged and every piece still knows the
file and spec path it came from, so later errors point at the right line.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path as FsPath
from typing import Any, Generic, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from archspec.catalog import unknown_op_message
from archspec.errors import Path, SpecError, suggest
from archspec.names import check_spec_names, check_stem, installed_reserved_names
from archspec.params import check_value, describe_value
from archspec.source import Source, load_file
from archspec.spec import OP_MODELS, BlockDef, InputDecl, Item, ParamDecl, Spec
from archspec.validation_errors import translate

T = TypeVar("T")
STRICT = ConfigDict(strict=True)
PER_ITEM_FIELDS = frozenset(
    {"op", "name", "input", "inputs", "when", "otherwise", "doc", "share", "outputs"}
)


@dataclass(frozen=True)
class Located(Generic[T]):
    """A spec value with the file and spec path it was declared at."""

    value: T
    source: Source
    path: Path


@dataclass
class ResolvedSpec:
    name: str
    file: str
    description: str
    notes: str
    abstract: bool
    params: dict[str, Located[ParamDecl]]
    inputs: Located[dict[str, InputDecl]] | None
    outputs: Located[list[str]] | None
    defaults: dict[str, dict[str, Located[Any]]]
    blocks: dict[str, Located[BlockDef]]
    body: Located[list[Item]] | None
    sources: dict[str, Source] = field(default_factory=dict)


@cache
def specs_root() -> FsPath:
    """The zoo folder: from the installed package (wheel or editable), else the checkout."""
    found = importlib.util.find_spec("archspec_specs")
    if found is not None and found.submodule_search_locations:
        return FsPath(next(iter(found.submodule_search_locations)))
    return FsPath(__file__).resolve().parent.parent / "specs"


def zoo_names() -> list[str]:
    return sorted(p.stem for p in specs_root().glob("*.yaml"))


_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


def header_path(spec_file: str) -> str:
    """The spec's path for generated-file headers: `specs/<name>.yaml` for the zoo, never
    absolute, only safe characters (the bytes must not depend on where `gen` runs)."""
    path = FsPath(spec_file)
    try:
        shown = "specs/" + path.resolve().relative_to(specs_root().resolve()).as_posix()
    except (ValueError, OSError):
        shown = path.as_posix() if not path.is_absolute() else path.name
    if not _SAFE_PATH.match(shown) or len(shown) > 40:
        shown = path.name if _SAFE_PATH.match(path.name) and len(path.name) <= 40 else "a spec file"
    return shown


def display_path(path: FsPath) -> str:
    """Paths in messages: relative to the cwd when below it, like compilers print them."""
    try:
        return str(path.resolve().relative_to(FsPath.cwd().resolve()))
    except ValueError:
        return str(path)


def locate(target: str) -> FsPath:
    """A CLI argument (zoo name or file path) -> the spec file."""
    candidate = FsPath(target)
    if target.endswith((".yaml", ".yml")) or "/" in target or candidate.is_file():
        if not candidate.exists():
            raise SpecError(f"no such spec file: {target}", file=target)
        return candidate  # what kind of file it is, load_file checks
    zoo = specs_root() / f"{target}.yaml"
    if zoo.is_file():
        return zoo
    raise SpecError(f"unknown spec '{target}'{suggest(target, zoo_names())}", file=target)


def parse_spec(source: Source) -> Spec:
    """The file's Spec: its structure and types (pydantic), then its names (one rule)."""
    try:
        spec = Spec.model_validate(source.data)
    except ValidationError as exc:
        raise translate(exc, source) from None
    check_spec_names(spec, source, installed_reserved_names())
    return spec


def load(target: str | FsPath) -> ResolvedSpec:
    path = target if isinstance(target, FsPath) else locate(target)
    return _Loader().load(path, chain=())


class _Loader:
    def __init__(self) -> None:
        self.sources: dict[str, Source] = {}

    def read(self, path: FsPath) -> tuple[Source, Spec]:
        source = load_file(path, display_path(path))
        self.sources[source.file] = source
        return source, parse_spec(source)

    def library(self, name: str, origin: FsPath, source: Source, where: Path) -> FsPath:
        candidates = [
            origin.parent / f"{name}.yaml",
            origin.parent / "lib" / f"{name}.yaml",
            specs_root() / "lib" / f"{name}.yaml",
        ]
        if not name.replace("_", "").isalnum():
            raise source.error(where, f"library names are plain names like 'resnet', got '{name}'")
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        known = {
            p.stem for d in (origin.parent / "lib", specs_root() / "lib") for p in d.glob("*.yaml")
        }
        raise source.error(where, f"unknown library spec '{name}'{suggest(name, known)}")

    def load(self, path: FsPath, chain: tuple[FsPath, ...]) -> ResolvedSpec:
        path = path.resolve()
        if path in chain:
            names = " -> ".join(p.stem for p in (*chain, path))
            raise SpecError(f"circular extends/use: {names}", file=display_path(path))
        source, spec = self.read(path)
        if not chain:  # the model's name: the generated module, function and file
            check_stem(path.stem, source, installed_reserved_names())
        if spec.name is not None and spec.name != path.stem:
            raise source.error(
                ("name",), f"name '{spec.name}' must equal the file name '{path.stem}'"
            )
        if spec.extends is not None:
            base_path = self.library(spec.extends, path, source, ("extends",))
            resolved = self.load(base_path, (*chain, path))
        else:
            resolved = ResolvedSpec(
                name=path.stem,
                file=source.file,
                description="",
                notes="",
                abstract=False,
                params={},
                inputs=None,
                outputs=None,
                defaults={},
                blocks={},
                body=None,
            )
        used: dict[str, Located[BlockDef]] = {}
        for i, lib in enumerate(spec.use):
            lib_spec = self.load(self.library(lib, path, source, ("use", i)), (*chain, path))
            for bname, located in lib_spec.blocks.items():
                other = used.get(bname)
                if other is not None and other.source.file != located.source.file:
                    raise source.error(
                        ("use", i),
                        f"block '{bname}' is defined in both "
                        f"{other.source.file} and {located.source.file}",
                    )
                used[bname] = located
        resolved.blocks.update(used)
        resolved.name = path.stem
        resolved.file = source.file
        resolved.abstract = spec.abstract
        resolved.description = spec.description or resolved.description
        resolved.notes = spec.notes or resolved.notes
        for pname, decl in spec.params.items():
            base = resolved.params.get(pname)
            written = source.data["params"][pname]
            if base is not None and isinstance(written, dict) and decl.type != base.value.type:
                raise source.error(
                    ("params", pname, "type"),
                    f"parameter '{pname}' is {base.value.type} in {base.source.file}; "
                    f"a refinement cannot change it to {decl.type}",
                )
            if base is not None and not isinstance(written, dict):
                decl = base.value.model_copy(update={"default": decl.default})
            resolved.params[pname] = Located(decl, source, ("params", pname))
        if spec.inputs is not None:
            resolved.inputs = Located(spec.inputs, source, ("inputs",))
        if spec.outputs is not None:
            resolved.outputs = Located(spec.outputs, source, ("outputs",))
        for op, fields in spec.defaults.items():
            self.check_defaults(op, fields, source)
            for fname, value in fields.items():
                resolved.defaults.setdefault(op, {})[fname] = Located(
                    value, source, ("defaults", op, fname)
                )
        for bname, bdef in spec.blocks.items():
            for pname, decl in bdef.params.items():
                check_param_decl(pname, Located(decl, source, ("blocks", bname, "params", pname)))
            resolved.blocks[bname] = Located(bdef, source, ("blocks", bname))
        if spec.body is not None:
            resolved.body = Located(spec.body, source, ("body",))
        resolved.sources = self.sources
        for pname, located in resolved.params.items():
            check_param_decl(pname, located)
        return resolved

    @staticmethod
    def check_defaults(op: str, fields: dict[str, Any], source: Source) -> None:
        model = OP_MODELS.get(op)
        if model is None:
            raise source.error(("defaults", op), unknown_op_message(op, OP_MODELS), key=True)
        # Only optional fields can have defaults: required ones (out, kernel, slope...) are
        # written on each item, and wiring/sharing fields are per item by nature.
        allowed = {
            f
            for f, info in model.model_fields.items()
            if info.default is None and not info.is_required() and f not in PER_ITEM_FIELDS
        }
        for fname, value in fields.items():
            if fname not in allowed:
                raise source.error(
                    ("defaults", op, fname),
                    f"'{fname}' cannot have a default for {op}"
                    f"{suggest(fname, allowed) if fname not in model.model_fields else ''}"
                    f" (fields with defaults: {', '.join(sorted(allowed)) or 'none'})",
                    key=True,
                )
            try:
                TypeAdapter(model.model_fields[fname].annotation, config=STRICT).validate_python(
                    value
                )
            except ValidationError as exc:
                expected = exc.errors()[0]["msg"].replace("Input should be ", "expected ")
                raise source.error(
                    ("defaults", op, fname),
                    f"invalid default for {op}.{fname}: {expected}, got {describe_value(value)}",
                ) from None


def check_param_decl(name: str, located: Located[ParamDecl]) -> None:
    decl = located.value
    if decl.default is not None:
        problem = check_value(decl, decl.default)
        if problem:
            raise located.source.error(
                (*located.path, "default"), f"default of '{name}': {problem}"
            )
