"""Validation and generation time grow linearly with spec size (issue 9: 45k items took 42 s
to validate and never generated).

Writes specs of N conv items for doubling N, times load + lower and torch emit in this
process, and prints microseconds per item and the ratio to the smallest N: a ratio near 1
is linear, near N/N0 quadratic.

    .venv/bin/python benchmarks/large_specs.py [--max 40000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from archspec_torch import backend

from archspec.lower import lower
from archspec.registry import load


def spec_text(n: int) -> str:
    items = "".join("  - {op: conv, out: 4, kernel: 1}\n" for _ in range(n))
    return "inputs: {image: [4, 8, 8]}\nbody:\n" + items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max", type=int, default=40_000)
    parser.add_argument("--min", type=int, default=2_500)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        n = args.min
        while n <= args.max:
            path = Path(tmp) / f"net{n}.yaml"
            path.write_text(spec_text(n))
            start = time.perf_counter()
            spec = load(path)
            graph = lower(spec)
            mid = time.perf_counter()
            backend.emit(spec, graph)
            end = time.perf_counter()
            rows.append((n, (mid - start) / n * 1e6, (end - mid) / n * 1e6))
            n *= 2
    base_v, base_g = rows[0][1], rows[0][2]
    print(f"{'items':>8} {'validate us/item':>17} {'ratio':>6} {'emit us/item':>13} {'ratio':>6}")
    for n, v, g in rows:
        print(f"{n:>8} {v:>17.1f} {v / base_v:>6.2f} {g:>13.1f} {g / base_g:>6.2f}")


if __name__ == "__main__":
    main()
