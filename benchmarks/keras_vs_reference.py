"""Generated Keras models vs keras.applications: throughput, same process, same weights.

resnet50_v1 against keras.applications.ResNet50 and densenet121 (with keras.applications'
BN epsilon) against keras.applications.DenseNet121, weights moved by name. Each model is
wrapped in a `tf.function` (graph mode) or a `tf.function(jit_compile=True)` (XLA); the
generated and reference models run ALTERNATELY (load drift hits both), each timed run is
one inference forward pass of a batch, and the median gives the throughput.
Target: ratio generated/reference >= 0.98.

    .venv/bin/python benchmarks/keras_vs_reference.py --batch 8 --size 224 --iters 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import tensorflow as tf
from archspec_keras import generate_module
from archspec_keras.reference_names import densenet121_names, resnet50_v1_names
from archspec_keras.weights import from_keras, load_into

PAIRS = {
    "resnet50_v1": (keras.applications.ResNet50, resnet50_v1_names, {}, {}),
    "densenet121": (
        keras.applications.DenseNet121,
        densenet121_names,
        {"bn_eps": 1.001e-5},
        {"classifier_activation": None},
    ),
}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(
    name: str, style: str, batch: int, size: int, iters: int, warmup: int, xla: bool
) -> dict[str, float]:
    application, names, overrides, extra = PAIRS[name]
    module, graph = generate_module(name, overrides, input_size=(size, size), style=style)
    reference = application(weights=None, input_shape=(size, size, 3), **extra)
    ours = load_into(
        getattr(module, graph.name)(), from_keras(reference, graph, map_names=names(graph)), graph
    )
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype("float32"))
    runs = {
        label: tf.function(lambda t, m=model: m(t, training=False), jit_compile=xla)
        for label, model in (("generated", ours), ("reference", reference))
    }
    for _ in range(warmup):
        for fn in runs.values():
            fn(x).numpy()
    times: dict[str, list[float]] = {"generated": [], "reference": []}
    for i in range(iters):  # alternate, and swap who goes first every other round
        order = list(runs.items())
        for label, fn in order if i % 2 == 0 else order[::-1]:
            times[label].append(timed(lambda fn=fn: fn(x).numpy()))
    return {label: batch / statistics.median(t) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAIRS))
    parser.add_argument("--style", choices=["functional", "subclass"], default="functional")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=7, help="timed runs per implementation")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-xla", action="store_true", help="tf.function without XLA only")
    args = parser.parse_args()
    print(
        f"keras {keras.__version__}, tensorflow {tf.__version__}, style {args.style}, "
        f"batch {args.batch}, {args.size}x{args.size}, median of {args.iters}"
    )
    print(
        f"{'model':<12} {'mode':<12} {'generated img/s':>16} {'reference img/s':>16} {'ratio':>7}"
    )
    for mode in ["tf.function"] + ([] if args.no_xla else ["xla"]):
        for name in args.models:
            result = bench(
                name, args.style, args.batch, args.size, args.iters, args.warmup, mode == "xla"
            )
            ratio = result["generated"] / result["reference"]
            print(
                f"{name:<12} {mode:<12} {result['generated']:>16.2f} "
                f"{result['reference']:>16.2f} {ratio:>7.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
