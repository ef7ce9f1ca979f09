"""Safe YAML loading that remembers where every value came from.

PyYAML's safe composer builds the node tree; we convert it to plain Python ourselves so
we can (a) record the line/column of every key and value under its spec path, (b) reject
duplicate keys, and (c) cap size, depth and alias expansion before anything big exists.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from archspec.errors import LimitError, Location, Path, SpecError, format_path
from archspec.limits import LIMITS, describe


@dataclass
class Source:
    """One loaded YAML file: its data and the position of every spec path in it."""

    file: str
    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """Position of `path`, or of its nearest located ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                line, col = table[probe]
                return Location(self.file, line, col)
            if not key and probe in self.keys:
                line, col = self.keys[probe]
                return Location(self.file, line, col)
            probe = probe[:-1]
        line, col = self.values.get((), (0, 0))
        return Location(self.file, line + 1 if line == 0 else line, max(col, 1))

    def error(self, path: Path, message: str, *, key: bool = False) -> SpecError:
        return SpecError(message, path=path, file=self.file, location=self.locate(path, key=key))


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.src = Source(file, None)
        self._scalar = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, path: Path, message: str) -> SpecError:
        loc = Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)
        return SpecError(message, path=path, file=self.file, location=loc)

    def convert(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > LIMITS.max_yaml_nodes:
            raise self.fail(
                node,
                path,
                describe("max_yaml_nodes", self.count, LIMITS.max_yaml_nodes, "YAML value count")
                + "; aliases are expanded, so deep alias chains count many times",
            )
        if depth > LIMITS.max_yaml_depth:
            raise self.fail(
                node, path, describe("max_yaml_depth", depth, LIMITS.max_yaml_depth, "nesting")
            )
        self.src.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        plain = {
            yaml.MappingNode: "tag:yaml.org,2002:map",
            yaml.SequenceNode: "tag:yaml.org,2002:seq",
        }
        expected_tag = plain.get(type(node))
        if expected_tag is not None and node.tag != expected_tag:
            raise self.fail(node, path, f"YAML tag '{node.tag}' is not allowed in a spec")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(key_node, path, "YAML merge keys ('<<') are not supported")
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, path, "mapping keys must be plain names")
                key = self.scalar(key_node, path)
                if isinstance(key, bool | int | float) or key is None:
                    key = str(key) if not isinstance(key, bool) else str(key).lower()
                if not isinstance(key, str):
                    raise self.fail(key_node, path, f"mapping keys must be strings, got {key!r}")
                if key in out:
                    raise self.fail(
                        key_node, (*path, key), f"duplicate key '{key}' (each key may appear once)"
                    )
                self.src.keys[(*path, key)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                out[key] = self.convert(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.scalar(node, path)

    def scalar(self, node: yaml.Node, path: Path) -> Any:
        try:
            value = self._scalar.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail(node, path, f"invalid YAML value: {exc}") from None
        except (ValueError, OverflowError) as exc:  # over-long ints, impossible dates
            if node.tag == "tag:yaml.org,2002:int":
                message = (
                    f"a number with {len(str(node.value)):,} digits exceeds the limit "
                    f"max_expr_value={LIMITS.max_expr_value:,}"
                )
            else:
                message = f"invalid YAML value: {exc}"
            raise self.fail(node, path, message) from None
        problem = number_problem(value)
        if problem is not None:
            raise self.fail(node, path, problem)
        return value


def number_problem(value: Any) -> str | None:
    """Spec numbers are finite and within max_expr_value (the bound on anything computed)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if abs(value) > LIMITS.max_expr_value:
        return describe("max_expr_value", value, LIMITS.max_expr_value, "number")
    return None


class _ComposeLimit(Exception):
    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _GuardedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the depth and node caps applied while composing: its
    composer recurses once per nesting level, so a deeply nested flow collection would
    end in Python's RecursionError before the converter's own caps ever ran."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        self.nodes += 1
        try:
            if self.depth > LIMITS.max_yaml_depth + 1:
                raise _ComposeLimit(
                    describe("max_yaml_depth", self.depth - 1, LIMITS.max_yaml_depth, "nesting"),
                    self.peek_event().start_mark,
                )
            if self.nodes > LIMITS.max_yaml_nodes:
                raise _ComposeLimit(
                    describe(
                        "max_yaml_nodes", self.nodes, LIMITS.max_yaml_nodes, "YAML value count"
                    ),
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _compose_python(text: str) -> yaml.Node | None:
    loader = _GuardedLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _prescan(text: str) -> None:
    """The guarded loader's caps, applied to libyaml's (iterative) event stream: its
    composer recurses in C, so depth must be known to be safe before it runs."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        nodes += 1
        if depth + 1 > LIMITS.max_yaml_depth + 1:
            raise _ComposeLimit(
                describe("max_yaml_depth", depth, LIMITS.max_yaml_depth, "nesting"),
                event.start_mark,
            )
        if nodes > LIMITS.max_yaml_nodes:
            raise _ComposeLimit(
                describe("max_yaml_nodes", nodes, LIMITS.max_yaml_nodes, "YAML value count"),
                event.start_mark,
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree: libyaml when installed (several times faster), else PyYAML.
    Invalid YAML is always reported by PyYAML, whose messages name the problem better."""
    if not getattr(yaml, "__with_libyaml__", False):
        return _compose_python(text)
    try:
        _prescan(text)
        return yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return _compose_python(text)


def yaml_hint(exc: yaml.MarkedYAMLError) -> str:
    """The usual fix for a YAML syntax error, as `; ...` (or '' when none applies)."""
    problem = exc.problem or ""
    context = exc.context or ""
    start = f" (opened at line {exc.context_mark.line + 1})" if exc.context_mark else ""
    if "mapping values are not allowed" in problem:
        return (
            "; a plain value cannot contain ': ': quote it (`notes: \"step 1: conv\"`), "
            "or check this line's indentation"
        )
    if "'\\t'" in problem or "\t" in problem:
        return "; indent with spaces: YAML does not allow tabs"
    if "quoted scalar" in context:
        return f"; a quoted string is not closed{start}: add the closing quote"
    if "flow mapping" in context and "got '{'" in problem:
        return '; inside {...}, quote expressions: `out: "${planes * 4}"`'
    if "flow sequence" in context:
        return f"; a [...] list is not closed with ']'{start}, or an item needs quotes"
    if "flow mapping" in context:
        return f"; a {{...}} mapping is not closed with '}}'{start}, or a value needs quotes"
    if "expected <block end>" in problem:
        return "; check the indentation: keys at one level need the same number of spaces"
    if "undefined alias" in problem:
        return "; '*' starts a YAML alias: quote the value if '*' is meant literally"
    if "cannot start any token" in problem:
        return "; quote the value"
    return ""


def load_text(text: str, file: str) -> Source:
    """Parse untrusted YAML text into a Source, raising SpecError on any problem."""
    src = _convert(text, file)
    if not isinstance(src.data, dict):
        raise src.error((), f"expected a mapping at the top level, got {type(src.data).__name__}")
    return src


def load_value(text: str, file: str) -> Any:
    """One YAML value (a `--set` value), under the same caps and number rules as a file."""
    return _convert(text, file).data


def _convert(text: str, file: str) -> Source:
    size = len(text.encode("utf-8", errors="replace"))
    if size > LIMITS.max_file_bytes:
        raise LimitError(
            describe("max_file_bytes", size, LIMITS.max_file_bytes, "spec file size"),
            file=file,
            location=Location(file, 1, 1),
        )
    try:
        node = _compose(text)
    except _ComposeLimit as exc:
        loc = Location(file, exc.mark.line + 1, exc.mark.column + 1)
        raise LimitError(exc.message, file=file, location=loc) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or str(exc)
        raise SpecError(
            f"invalid YAML: {problem}{yaml_hint(exc)}",
            file=file,
            location=Location(file, line, col),
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file, location=Location(file, 1, 1)) from None
    except RecursionError:  # only when a raised max_yaml_depth exceeds Python's own limit
        raise LimitError(
            f"YAML nesting too deep for Python (max_yaml_depth={LIMITS.max_yaml_depth:,})",
            file=file,
            location=Location(file, 1, 1),
        ) from None
    if node is None:
        raise SpecError(
            "the file is empty; expected a spec mapping", file=file, location=Location(file, 1, 1)
        )
    conv = _Converter(file)
    try:
        conv.src.data = conv.convert(node, (), 0)
    except RecursionError:
        raise LimitError(
            f"YAML nesting too deep for Python (max_yaml_depth={LIMITS.max_yaml_depth:,})",
            file=file,
            location=Location(file, 1, 1),
        ) from None
    return conv.src


def read_spec_bytes(path: FsPath, name: str) -> bytes:
    """The file's bytes; its kind and size are checked before anything is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", file=name) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError("not a regular file; a spec is a YAML file", file=name)
        if info.st_size > LIMITS.max_file_bytes:
            raise LimitError(
                describe("max_file_bytes", info.st_size, LIMITS.max_file_bytes, "spec file size"),
                file=name,
            )
        chunks: list[bytes] = []
        size = 0
        while size <= LIMITS.max_file_bytes:  # it may grow while we read
            chunk = os.read(fd, LIMITS.max_file_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", file=name) from None
    finally:
        os.close(fd)
    if size > LIMITS.max_file_bytes:
        raise LimitError(
            describe("max_file_bytes", size, LIMITS.max_file_bytes, "spec file size"), file=name
        )
    return b"".join(chunks)


def load_file(path: FsPath, display: str | None = None) -> Source:
    name = display or str(path)
    raw = read_spec_bytes(path, name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=name
        ) from None
    return load_text(text, name)


__all__ = ["Source", "format_path", "load_file", "load_text", "load_value"]
