"""Forward statements and their variables, for source backends printing a plan's wiring.

A backend turns a class plan's steps into `Stmt`s (one call each, maybe conditional) and
`Loop`s, each reading and writing `Slot`s (the plan's `Value`s as variables). Then
`assign_vars` names the variables the way hand-written forward code does: one
accumulator (`out` in torchvision, `x` in keras.applications) for values read only by
later statements while it is free, the value's spec name for the others (`identity`,
`shortcut`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .layout import Code, Namespace


@dataclass(eq=False)
class Slot:
    """A plan value as a forward variable: its name and who reads it."""

    local: str  # spec name, the base of its variable name
    var: str | None = None
    readers: list[Any] = field(default_factory=list)  # Stmt, Loop or "return"
    fresh: bool = False  # a new tensor no other value aliases (in-place ops may reuse it)


@dataclass(eq=False)
class Stmt:
    inputs: list[Slot]
    out: Slot
    call: Callable[[Sequence[str]], Code] | None = None  # the statement's expression
    cond: str | None = None  # runs only under this test (an optional member, a flag)
    inplace: Callable[[Sequence[str]], str] | None = None  # statement updating inputs[0]
    through: int = 0  # the input whose value `out` keeps when the test is false
    # Several results bound at once (a split's parts: `x1, x2 = x.chunk(2, dim=1)`);
    # `out` is then their target list and stands for no value of its own.
    outs: list[Slot] = field(default_factory=list)


@dataclass(eq=False)
class Loop:
    pre: Slot  # enters the first iteration
    carry: Slot  # the iteration's input
    body: list[Any]
    last: Slot  # the iteration's output
    result: Slot  # after the loop
    header: str


def assign_vars(body: list[Any], names: Namespace, acc: str) -> None:
    """`acc` for a value whose readers all follow while nothing else needs `acc`, else a name."""
    busy_until = -1  # `acc` holds a live value until this position
    position = {id(t): q for q, t in enumerate(body)}
    for pos, s in enumerate(body):
        if isinstance(s, Loop):
            s.carry.var = acc
            first = s.body[0] if s.body else None
            if any(r is not first for r in s.carry.readers):
                s.carry.var = names.new("prev")
            assign_vars(s.body, names, acc)
            s.last.var = acc
            value = s.result
        else:
            value = s.out
        if isinstance(s, Stmt) and s.outs:  # each part its own name, as `x1, x2`
            for part in s.outs:
                part.var = part.var or names.new(part.local)
            s.out.var = ", ".join(str(part.var) for part in s.outs)
            continue
        if value.var is not None:
            continue
        ends = [len(body) if r == "return" else position.get(id(r), -1) for r in value.readers]
        conditional = isinstance(s, Stmt) and s.cond is not None
        if conditional and takes_over(s, acc, pos, position):  # `if flag: out = out + x`
            conditional = False
        crosses_loop = any(isinstance(t, Loop) for t in body[pos + 1 : max(ends, default=0)])
        if pos >= busy_until and ends and min(ends) > pos and not conditional and not crosses_loop:
            value.var = acc
            busy_until = max(ends)
        else:
            value.var = names.new(value.local)


def takes_over(s: Stmt, acc: str, pos: int, position: dict[int, int]) -> bool:
    """Whether a conditional statement may keep the accumulator: the value it passes on
    when its test is false is the accumulator, read by nothing after it."""
    kept = s.inputs[s.through]
    ends = [10**9 if r == "return" else position.get(id(r), -1) for r in kept.readers]
    return kept.var == acc and max(ends, default=-1) <= pos
