"""Generated torch models vs torchvision's: throughput, same process, same weights.

For each model the generated and the reference implementations run ALTERNATELY (so drift
in machine load hits both), each timed run is one forward pass of a batch in eval mode
under torch.inference_mode, and the median over the runs gives the throughput. Eager,
then torch.compile (default mode) after warm-up. Target: ratio generated/reference >= 0.98.

    .venv/bin/python benchmarks/torch_vs_reference.py --batch 4 --size 160 --iters 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from archspec_torch import generate_module


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(
    name: str, batch: int, size: int, iters: int, warmup: int, compile_: bool
) -> dict[str, float]:
    module, graph = generate_module(name, input_size=(size, size))
    ours = getattr(module, graph.name)().eval()
    ref = getattr(torchvision.models, name)(weights=None).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    if compile_:
        ours, ref = torch.compile(ours), torch.compile(ref)
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        for _ in range(warmup):
            ours(x)
            ref(x)
        times: dict[str, list[float]] = {"generated": [], "reference": []}
        for i in range(iters):  # alternate, and swap who goes first every other round
            order = [("generated", ours), ("reference", ref)]
            for label, model in order if i % 2 == 0 else order[::-1]:
                times[label].append(timed(lambda model=model: model(x)))
    return {label: batch / statistics.median(t) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "densenet121"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--iters", type=int, default=7, help="timed runs per implementation")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.size}x{args.size}, median of {args.iters}"
    )
    print(f"{'model':<12} {'mode':<8} {'generated img/s':>16} {'reference img/s':>16} {'ratio':>7}")
    modes = ["eager"] + ([] if args.no_compile else ["compile"])
    for mode in modes:
        for name in args.models:
            result = bench(name, args.batch, args.size, args.iters, args.warmup, mode == "compile")
            ratio = result["generated"] / result["reference"]
            print(
                f"{name:<12} {mode:<8} {result['generated']:>16.2f} {result['reference']:>16.2f} "
                f"{ratio:>7.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
