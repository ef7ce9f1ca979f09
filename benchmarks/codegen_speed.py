"""CLI and code-generation speed against docs/design.md's targets, measured end to end.

Each command runs as a fresh process (what a user waits for), N times; the median is
compared with its target:
  archspec --help                         < 0.3 s
  archspec gen resnet50 --backend torch   < 1 s
  archspec gen --all (every source backend, whole zoo) < 3 s

Usage: python benchmarks/codegen_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).with_name("archspec"))


def median_seconds(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cases = [
            ("archspec --help", [EXE, "--help"], 0.3),
            ("archspec list", [EXE, "list"], None),
            ("archspec summary resnet50", [EXE, "summary", "resnet50"], None),
            ("archspec gen resnet50 --backend torch",
             [EXE, "gen", "resnet50", "--backend", "torch", "-o", out], 1.0),
            ("archspec gen --all (whole zoo)", [EXE, "gen", "--all", "-o", out], 3.0),
        ]  # fmt: skip
        print(f"{'command':<42} {'median':>9} {'target':>8} {'ratio':>7}")
        for label, argv, target in cases:
            seconds = median_seconds(argv, args.repeat)
            shown = f"{target:.1f} s" if target else "-"
            ratio = f"{seconds / target:.2f}" if target else "-"
            print(f"{label:<42} {seconds:>7.3f} s {shown:>8} {ratio:>7}")


if __name__ == "__main__":
    main()
