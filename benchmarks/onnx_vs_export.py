"""Our ONNX graphs vs `torch.onnx.export` of the generated torch model, same weights.

For each model: the exporter's graph (the TorchScript-based exporter, `dynamo=False`:
the dynamo exporter needs onnxscript, which the environment does not ship; it constant-
folds BatchNorm into the convs in eval mode) against ours without and with `--fold-bn`.
Reported: node count, serialized size, and onnxruntime latency at batch 8, 224x224, both
sessions in the same process with the same session options, one run of each per round
in rotating order; the ratio is the median over rounds of (ours / exporter) in the same
round, so load drift on a shared machine cancels. A second session of the exporter's own
bytes shows the noise floor, and the script compares what onnxruntime actually runs: the
op counts of each session's optimized graph (`same opt` = identical to the exporter's). Outputs are
compared with the torch model's (max abs difference).
Targets: latency ratio ours/exporter <= 1.0, no more nodes than the exporter's graph.

    .venv/bin/python benchmarks/onnx_vs_export.py --models resnet50 densenet121 --iters 10
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from archspec_onnx.model import OPSET, build_model, serialize
from archspec_torch import generate_module
from archspec_torch.weights import load_into

from archspec.weights import WeightSet


def exported(model: torch.nn.Module, x: torch.Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (x,),
        buffer,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return buffer.getvalue()


def session(content: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])


def optimized_ops(content: bytes) -> Counter[str]:
    """Op counts of the graph onnxruntime runs after its optimizations (fusions)."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath, load_external_data=False)
    return Counter(n.op_type for n in model.graph.node)


def timings(
    sessions: dict[str, ort.InferenceSession], x: np.ndarray, iters: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per run of each session, round by round; the order rotates every round."""
    feeds = {label: {s.get_inputs()[0].name: x} for label, s in sessions.items()}
    for _ in range(warmup):
        for label, s in sessions.items():
            s.run(None, feeds[label])
    times: dict[str, list[float]] = {label: [] for label in sessions}
    labels = list(sessions)
    for i in range(iters):
        for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
            start = time.perf_counter()
            sessions[label].run(None, feeds[label])
            times[label].append(time.perf_counter() - start)
    return times


def bench(name: str, batch: int, size: int, iters: int, warmup: int, threads: int) -> None:
    module, graph = generate_module(name, input_size=(size, size))
    weights = WeightSet.random(graph, seed=0)
    model = load_into(getattr(module, graph.name)(), weights, graph).eval()
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    theirs = exported(model, torch.from_numpy(x[:1]), min(OPSET, 20))
    contents = {
        "exporter": theirs,
        "exporter again": theirs,  # a second session of the same bytes: the noise floor
        "ours": serialize(build_model(graph, weights)),
        "ours --fold-bn": serialize(build_model(graph, weights, fold_bn=True)),
    }
    sessions = {label: session(c, threads) for label, c in contents.items()}
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    times = timings(sessions, x, iters, warmup)
    base = onnx.load_from_string(theirs)
    base_ops = optimized_ops(theirs)
    for label, content in contents.items():
        proto = onnx.load_from_string(content)
        out = sessions[label].run(None, {sessions[label].get_inputs()[0].name: x})[0]
        # paired per round (both ran within the same second), then the median
        pairs = zip(times[label], times["exporter"], strict=True)
        ratio = statistics.median(t / e for t, e in pairs)
        print(
            f"{name:<12} {label:<15} {len(proto.graph.node):>6} "
            f"{len(content) / 2**20:>9.2f} {statistics.median(times[label]) * 1e3:>10.1f} "
            f"{ratio:>6.3f} "
            f"{np.abs(out - expected).max():>10.2e} "
            f"{'yes' if optimized_ops(content) == base_ops else 'no':>8}",
            flush=True,
        )
    ops = sorted({n.op_type for n in base.graph.node})
    print(f"{'':<12} exporter ops: {', '.join(ops)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "densenet121"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=15, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    print(
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, {args.threads} threads, "
        f"batch {args.batch}, {args.size}x{args.size}, {args.iters} rounds; ratio: median of paired"
    )
    print(
        f"{'model':<12} {'graph':<15} {'nodes':>6} {'size MiB':>9} {'ms/batch':>10} "
        f"{'ratio':>6} {'max |diff|':>10} {'same opt':>8}"
    )
    for name in args.models:
        bench(name, args.batch, args.size, args.iters, args.warmup, args.threads)


if __name__ == "__main__":
    main()
