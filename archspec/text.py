"""User text in messages: bounded reprs and terminal-safe output.

Spec text is untrusted: a value may be huge (an alias bomb given to `--set`) and a
description or a name may hold terminal control sequences. Messages show values through
`short_repr` (bounded work whatever the value), and everything the CLI prints passes
through `for_terminal` once, where it reaches the terminal.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40

# C0 controls except newline and tab, DEL, C1 controls, and the Unicode line/paragraph
# separators and bidi overrides that can disguise what a terminal shows.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def short_repr(value: Any, limit: int = 40) -> str:
    """`repr(value)` cut to about `limit` characters, without building the whole repr."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def for_terminal(text: str) -> str:
    """Control characters shown as escapes (`\\x1b`), so text cannot drive the terminal."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
