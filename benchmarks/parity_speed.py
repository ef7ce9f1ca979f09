"""Wall time of `archspec parity resnet50` and `archspec port` (resnet50, torch -> keras),
against docs/design.md's targets, end to end (fresh processes: imports included).

  archspec parity resnet50 --backends torch64,torch,keras,onnx   < 60 s on 2 cores
  archspec port resnet50.pt --spec resnet50 --from torch --to keras   < 10 s
(for comparison, the converters we measured take 73 s and 442 s for that port)

The checkpoint is torchvision's resnet50 with seeded random weights and BatchNorm
statistics, written to a temporary folder. Each command runs `--repeat` times; the median
wall time is reported with the CPU time (user + sys) of the same runs, which is what the
command costs when the machine is shared (the load average at the start is printed too),
and the per-step times the command prints on stderr (last run). The port's torch64 runs in
a process of its own, overlapping the conversion: its step time is that run's own, not
part of the wall time's sum; the CPU time includes that process.

Usage: python benchmarks/parity_speed.py [--repeat N] [--input-size H W]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).with_name("archspec"))
STEP = re.compile(r"^\s+(.+): (\d+\.\d+) s$")


def checkpoint(folder: Path) -> Path:
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    path = folder / "resnet50.pt"
    torch.save(model.state_dict(), path)
    return path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], repeat: int) -> tuple[float, float, list[str]]:
    walls, cpus, steps = [], [], []
    for _ in range(repeat):
        cpu = children_cpu()
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        cpus.append(children_cpu() - cpu)
        if done.returncode != 0:
            sys.exit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}")
        steps = [m.group(1) + f" {m.group(2)} s" for line in done.stderr.splitlines()
                 if (m := STEP.match(line))]  # fmt: skip
    return statistics.median(walls), statistics.median(cpus), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--input-size", nargs=2, type=int, default=None, metavar=("H", "W"))
    args = parser.parse_args()
    size = ["--input-size", *map(str, args.input_size)] if args.input_size else []
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = checkpoint(Path(tmp))
        cases = [
            ("archspec parity resnet50 (torch64,torch,keras,onnx)",
             [EXE, "parity", "resnet50", "--backends", "torch64,torch,keras,onnx", *size], 60.0),
            ("archspec port resnet50 torch -> keras",
             [EXE, "port", str(ckpt), "--spec", "resnet50", "--from", "torch", "--to", "keras",
              "-o", str(Path(tmp) / "out"), "--force", *size], 10.0),
        ]  # fmt: skip
        print(f"{'command':<54} {'wall':>8} {'cpu':>8} {'target':>7} {'ratio':>6}")
        for label, argv, target in cases:
            wall, cpu, steps = measure(argv, args.repeat)
            print(
                f"{label:<54} {wall:>6.1f} s {cpu:>6.1f} s {target:>5.0f} s {wall / target:>6.2f}"
            )
            for step in steps:
                print(f"    {step}")


if __name__ == "__main__":
    main()
