"""One error type for every invalid spec, rendered `file:line:col: spec.path: message`.

Errors carry a spec path (the YAML keys and list indexes leading to the culprit); the
file position is looked up from the source map when the error is rendered, so code
that detects a problem only needs to know *where in the spec* it is.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PathElem = str | int
Path = tuple[PathElem, ...]


def format_path(path: Sequence[PathElem]) -> str:
    """`('body', 3, 'conv1', 'out')` -> `body[3].conv1.out`."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else str(elem)
    return out


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest spelling in `known`, or ''."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def suggest(name: str, known: Iterable[str], *, limit: int = 12) -> str:
    """`; did you mean 'x'? (known: a, b, c)`: the tail every unknown-name error ends with."""
    known = sorted(set(known))
    hint = did_you_mean(name, known)
    if not known:
        return hint
    shown = ", ".join(known[:limit]) + (", ..." if len(known) > limit else "")
    return f"{hint} (known: {shown})"


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class SpecError(Exception):
    """An invalid spec. `file`/`path` say where; `message` says what, expected vs got."""

    message: str
    path: Path = ()
    file: str | None = None
    location: Location | None = field(default=None)
    context: str | None = None  # e.g. "while expanding layer2.0 (Bottleneck)"

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        where = ""
        if self.location is not None:
            where = f"{self.location.file}:{self.location.line}:{self.location.col}: "
        elif self.file is not None:
            where = f"{self.file}: "
        path = format_path(self.path)
        text = f"{where}{path}: {self.message}" if path else f"{where}{self.message}"
        if self.context:
            text += f"\n  ({self.context})"
        return text


@dataclass(frozen=True)
class SpecWarning:
    """A spec that is valid but probably not what was meant (an unused item...).

    Rendered like an error with `warning:` before the message; `--strict` makes the
    commands treat every warning as an error."""

    message: str
    path: Path
    location: Location | None = None
    file: str | None = None

    def render(self, *, strict: bool = False) -> str:
        where = ""
        if self.location is not None:
            where = f"{self.location.file}:{self.location.line}:{self.location.col}: "
        elif self.file is not None:
            where = f"{self.file}: "
        path = format_path(self.path)
        kind = "error (--strict)" if strict else "warning"
        return (
            f"{where}{path}: {kind}: {self.message}" if path else f"{where}{kind}: {self.message}"
        )

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        file = loc.file if loc else (self.file or "")
        return (
            file,
            loc.line if loc else 0,
            loc.col if loc else 0,
            format_path(self.path),
            self.message,
        )


class LimitError(SpecError):
    """A resource cap was hit before allocation; the message names the limit and the knob."""
