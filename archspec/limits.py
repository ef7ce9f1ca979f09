"""Resource caps checked before anything is allocated (spec text is untrusted).

Each cap can be raised with an environment variable `ARCHSPEC_LIMIT_<NAME>`; the error
that reports a hit names the variable.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 1_000_000
    max_yaml_nodes: int = 200_000
    max_yaml_depth: int = 64
    max_expr_chars: int = 500
    max_expr_value: int = 10**12
    max_repeat: int = 10_000
    max_channels: int = 1 << 20
    max_spatial: int = 1 << 16
    max_nodes: int = 200_000
    max_expansions: int = 500_000
    max_list_items: int = 10_000
    max_params: int = 10**10

    @classmethod
    def from_env(cls) -> Limits:
        values = {}
        for f in fields(cls):
            raw = os.environ.get(env_name(f.name))
            if raw is None:
                continue
            value = _positive_int(raw)
            if value is not None:
                values[f.name] = value
            else:
                print(
                    f"archspec: ignoring {env_name(f.name)}={raw!r}: expected a positive integer",
                    file=sys.stderr,
                )
        return cls(**values)


def _positive_int(raw: str) -> int | None:
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 30:
        return None
    return int(text) or None


def env_name(limit: str) -> str:
    return f"ARCHSPEC_LIMIT_{limit.upper()}"


def describe(limit: str, value: int, cap: int, what: str) -> str:
    return (
        f"{what} {value:,} exceeds the limit {limit}={cap:,} "
        f"(raise it with {env_name(limit)}=N if this is intended)"
    )


LIMITS = Limits.from_env()
