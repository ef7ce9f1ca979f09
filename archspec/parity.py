"""The parity harness: one WeightSet and one input through several backends, compared.

Framework-free (numpy only). Each backend contributes a `Runner` through the
`archspec.parity` entry-point group (`torch`, `keras`, `keras_subclass`, `onnx`); a runner
builds its model from the spec, loads the canonical WeightSet through its own weight
adapter, runs it, and returns values in canonical layout (NCHW, IR names):

- the graph outputs;
- probes: the outputs of the IR nodes the harness asks for (block boundaries, or every op
  with `per_op`), as far as that backend can observe them;
- in `train` mode, the batch-statistics forward and the running statistics after the step;
- in `grad` mode, gradients of a fixed scalar loss w.r.t. the inputs and every weight.

The first runner is the reference (`archspec parity` defaults to `torch64`, torch in
float64). Backends compute in float32 for inference and in float64 for train and grad
modes (`default_dtype` says why; `--dtype` overrides). For every other runner the report
holds the errors of every output and the FIRST IR node, in graph order, whose output
diverges beyond the tolerance: where a port goes wrong, not just that it does.

Tolerance (fp32, the design's, docs/design.md): relative L2 <= rtol (1e-6) and
max abs <= atol * max(1, max |reference|) (atol 1e-4).
"""

from __future__ import annotations

import inspect
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from archspec.analysis import param_sets
from archspec.errors import suggest
from archspec.ir import Graph, Node
from archspec.registry import ResolvedSpec
from archspec.weights import WeightSet

GROUP = "archspec.parity"
Mode = Literal["inference", "train", "grad"]
MODES: tuple[str, ...] = ("inference", "train", "grad")
DType = Literal["float32", "float64"]


def default_dtype(mode: str) -> DType:
    """float32 for inference; float64 for train and grad, where fp32 rounding alone exceeds
    the tolerance: BatchNorm over a batch of 3 at 1x1 (resnet18 at 32x32, layer4) moves
    torch's own train-mode output by 1.7e-5 relative L2 between fp32 and fp64, and the
    gradients of densenet121_cifar's first layers by 1.4e-4. In float64 those effects vanish
    and what remains is a difference of semantics (momentum, variance estimator, ...)."""
    return "float32" if mode == "inference" else "float64"


class ParityError(Exception):
    """A parity run cannot start (unknown or missing backend, bad option); exit 2."""


# ---------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4  # max abs error, scaled by max(1, max |reference|)
    rtol: float = 1e-6  # relative L2 error

    def check(self, errors: Errors) -> bool:
        return (
            errors.finite
            and errors.max_abs <= self.atol * max(1.0, errors.ref_max)
            and errors.rel_l2 <= self.rtol
        )


@dataclass(frozen=True)
class Errors:
    max_abs: float
    max_rel: float
    rel_l2: float
    ref_max: float  # max |reference|, the scale of max_abs
    finite: bool = True

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "rel_l2": self.rel_l2,
            "ref_max": self.ref_max,
            "finite": self.finite,
        }


def compare(reference: np.ndarray, other: np.ndarray) -> Errors:
    """Errors of `other` against `reference` (float64 arithmetic; shapes must agree)."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(other, dtype=np.float64)
    if ref.shape != got.shape:  # a shape bug diverges as badly as it gets
        return Errors(math.inf, math.inf, math.inf, float(np.abs(ref).max(initial=0)), False)
    if ref.size == 0:
        return Errors(0.0, 0.0, 0.0, 0.0)
    finite = bool(np.isfinite(ref).all() and np.isfinite(got).all())
    if not finite:
        return Errors(math.inf, math.inf, math.inf, float(np.nanmax(np.abs(ref))), False)
    diff = np.abs(got - ref)
    scale = np.abs(ref)
    ref_max = float(scale.max())
    norm = float(np.linalg.norm(ref))
    tiny = np.finfo(np.float32).tiny
    return Errors(
        max_abs=float(diff.max()),
        max_rel=float((diff / np.maximum(scale, tiny)).max()),
        rel_l2=float(np.linalg.norm(got - ref) / max(norm, tiny)),
        ref_max=ref_max,
    )


# ---------------------------------------------------------------------------- the inputs


def canonical_inputs(
    graph: Graph, batch: int = 2, seed: int = 0, scale: float = 1.0
) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs in canonical layout, one per graph input (by name)."""
    out: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        shape = (batch, *graph.node(name).shape)
        out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


def loss_cotangents(graph: Graph, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The fixed scalar loss of `grad` mode is sum(output * cotangent) over every output."""
    out: dict[str, np.ndarray] = {}
    for name in graph.outputs:
        rng = np.random.default_rng([seed, 7, zlib.crc32(name.encode())])
        out[name] = rng.standard_normal((batch, *graph.node(name).shape)).astype(np.float32)
    return out


# ---------------------------------------------------------------------------- probes


def block_outputs(graph: Graph) -> dict[str, str]:
    """IR node -> the block instance (or stage, or group) it is the output of
    (`layer1.0.relu` -> `layer1.0`; AlexNet's `features.12` -> `features`).

    A scope's output is its one node read from outside it (or a graph output); a scope
    with no single such node has no probe. Inner scopes win over outer ones."""
    consumers: dict[str, list[str]] = {}
    for node in graph.nodes:
        for src in node.inputs:
            consumers.setdefault(src, []).append(node.name)
    out: dict[str, str] = {}
    for scope in sorted(graph.scopes, key=lambda sc: -sc.path.count(".")):
        prefix = scope.path + "."
        leaving = [
            n.name
            for n in graph.nodes
            if n.name.startswith(prefix)
            and (
                n.name in graph.outputs
                or any(not c.startswith(prefix) for c in consumers.get(n.name, []))
            )
        ]
        if len(leaving) == 1 and leaving[0] not in out:
            out[leaving[0]] = scope.path
    return out


def probe_nodes(graph: Graph, per_op: bool) -> list[str]:
    """The IR nodes to probe, in graph order: every op, or every block's output."""
    if per_op:
        return [n.name for n in graph.nodes if n.op.kind != "input"]
    blocks = block_outputs(graph)
    return [n.name for n in graph.nodes if n.name in blocks]


# ---------------------------------------------------------------------------- runners


@dataclass(frozen=True)
class RunRequest:
    spec: ResolvedSpec
    graph: Graph
    weights: WeightSet
    inputs: Mapping[str, np.ndarray]  # canonical layout
    probes: tuple[str, ...]  # IR node names
    mode: Mode = "inference"
    device: str = "cpu"
    cotangents: Mapping[str, np.ndarray] = field(default_factory=dict)  # grad mode
    dtype: DType = "float32"  # what the backends compute in (the reference may be wider)


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]  # graph output name -> canonical array
    probes: dict[str, np.ndarray] = field(default_factory=dict)  # node name -> array
    state: dict[str, np.ndarray] = field(default_factory=dict)  # train: BN running stats
    grads: dict[str, np.ndarray] = field(default_factory=dict)  # grad: input/weight name -> grad
    # The run's own time where it ran apart (archspec/isolated.py: a child process, while
    # the caller worked); None: the caller's wait is the run's time.
    seconds: float | None = None


@runtime_checkable
class Runner(Protocol):
    name: str  # "torch", "keras_subclass"
    extra: str  # the pip extra that installs its framework ("torch", "keras", "onnx")
    modes: tuple[str, ...]  # modes it supports
    devices: tuple[str, ...]  # devices it can run on here (after checking the hardware)
    # Optional `float64: bool`: the runner computes in float64 whatever the request's
    # dtype (torch64, the reference); progress lines show it.
    # Optional `prepare() -> None`: import the framework ahead of a run (a runner in a
    # process of its own does it while the parent works on, archspec/isolated.py).

    def available(self) -> str | None:
        """None when its framework imports; else why not (shown to the user)."""
        ...

    def run(self, request: RunRequest) -> RunResult: ...


def conforms(obj: object, protocol: type) -> bool:
    """`isinstance(obj, protocol)` for a runtime-checkable Protocol, without evaluating
    properties: Python 3.11's check calls them, and `TorchRunner.devices` imports torch
    (1.3 s, in a port whose process otherwise never needs it: archspec/isolated.py)."""
    members = set(getattr(protocol, "__annotations__", {})) | {
        name for name, value in vars(protocol).items() if callable(value) and name[0] != "_"
    }
    missing = object()
    return all(inspect.getattr_static(obj, m, missing) is not missing for m in members)


def runner_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def get_runner(name: str) -> Runner:
    eps = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not eps:
        raise ParityError(f"unknown parity backend '{name}'{suggest(name, runner_names())}")
    try:
        runner = eps[0].load()
    except Exception as exc:  # a broken plugin is a message, not a traceback
        raise ParityError(
            f"parity backend '{name}' ({eps[0].value}) failed to load: {type(exc).__name__}: {exc}"
        ) from None
    if not conforms(runner, Runner):
        raise ParityError(f"entry point '{name}' ({eps[0].value}) is not a parity Runner")
    return runner


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Divergence:
    node: str
    op: str
    block: str | None  # the block instance whose output it is, if any
    where: str | None  # spec location `file:line:col: path` of the item that made it
    errors: Errors
    # Ops feeding `node`, after the last probes that agreed, that one of the two backends
    # could not observe: the bug may sit in any of them (empty when every op was probed).
    unobserved: tuple[str, ...] = ()


@dataclass
class PairReport:
    reference: str
    other: str
    outputs: dict[str, Errors]  # graph outputs (and, in train/grad, state and gradients)
    probes: dict[str, Errors]  # node -> errors, graph order
    first_divergence: Divergence | None
    passed: bool
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        div = self.first_divergence
        return {
            "reference": self.reference,
            "other": self.other,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "outputs": {k: v.as_dict() for k, v in self.outputs.items()},
            "probes": {k: v.as_dict() for k, v in self.probes.items()},
            "first_divergence": None
            if div is None
            else {
                "node": div.node,
                "op": div.op,
                "block": div.block,
                "where": div.where,
                "unobserved": list(div.unobserved),
                **div.errors.as_dict(),
            },
        }


def node_location(spec: ResolvedSpec, node: Node) -> str | None:
    if node.source is None or node.source.file not in spec.sources:
        return None
    err = spec.sources[node.source.file].error(node.source.path, node.name)
    return err.render().rsplit(": ", 1)[0]


def _unobserved(graph: Graph, node: str, compared: Mapping[str, Errors]) -> tuple[str, ...]:
    """Ancestors of `node` reachable without passing a compared probe, in graph order."""
    found: set[str] = set()
    stack = list(graph.node(node).inputs)
    while stack:
        name = stack.pop()
        if name in found or name in compared or graph.node(name).op.kind == "input":
            continue
        found.add(name)
        stack.extend(graph.node(name).inputs)
    return tuple(n.name for n in graph.nodes if n.name in found)


def _value_node(graph: Graph, key: str) -> Node | None:
    """The IR node a compared value belongs to: an output, or the owner of a weight/state."""
    name = key.split(":", 1)[-1]
    if name in graph:
        return graph.node(name)
    owners = param_sets(graph)
    prefix = name.rsplit(".", 1)[0]
    return owners.get(prefix)


def compare_runs(
    spec: ResolvedSpec,
    graph: Graph,
    names: tuple[str, str],
    ref: RunResult,
    other: RunResult,
    tol: Tolerance,
) -> PairReport:
    outputs: dict[str, Errors] = {}
    for kind, a, b in (
        ("", ref.outputs, other.outputs),
        ("state:", ref.state, other.state),
        ("grad:", ref.grads, other.grads),
    ):
        for key, value in a.items():
            if key not in b:
                raise ParityError(f"{names[1]} returned no value for {kind}{key}")
            outputs[f"{kind}{key}"] = compare(value, b[key])
    blocks = block_outputs(graph)
    probes: dict[str, Errors] = {}
    first: Node | None = None
    for node in graph.nodes:
        if node.name in ref.probes and node.name in other.probes:
            errors = compare(ref.probes[node.name], other.probes[node.name])
            probes[node.name] = errors
            if first is None and not tol.check(errors):
                first = node
    failing = [k for k, e in outputs.items() if not tol.check(e)]
    divergence: Divergence | None = None
    if first is None and failing:  # diverged where no probe looks: the earliest failing value
        order = {n.name: i for i, n in enumerate(graph.nodes)}
        candidates = [(k, _value_node(graph, k)) for k in failing]
        key, first = min(candidates, key=lambda kn: order[kn[1].name] if kn[1] else len(order))
        errors = outputs[key]
    elif first is not None:
        errors = probes[first.name]
    if first is not None:
        divergence = Divergence(
            first.name,
            first.op.kind,
            blocks.get(first.name),
            node_location(spec, first),
            errors,
            _unobserved(graph, first.name, probes),
        )
    passed = not failing and all(tol.check(e) for e in probes.values())
    return PairReport(names[0], names[1], outputs, probes, divergence, passed)


Progress = Callable[[str], None]


def parity_request(
    spec: ResolvedSpec,
    graph: Graph,
    *,
    mode: Mode = "inference",
    batch: int = 2,
    seed: int = 0,
    per_op: bool = False,
    device: str = "cpu",
    weights: WeightSet | None = None,
    dtype: DType | None = None,
) -> RunRequest:
    """What every runner of one parity check is given: the weights, seeded inputs and
    cotangents, the probes (made before the run when a runner starts apart)."""
    return RunRequest(
        spec=spec,
        graph=graph,
        weights=weights or WeightSet.random(graph, seed),
        inputs=canonical_inputs(graph, batch, seed),
        probes=tuple(probe_nodes(graph, per_op)),
        mode=mode,
        device=device,
        cotangents=loss_cotangents(graph, batch, seed) if mode == "grad" else {},
        dtype=dtype or default_dtype(mode),
    )


def run_parity(
    spec: ResolvedSpec,
    graph: Graph,
    runners: Sequence[Runner],
    *,
    mode: Mode = "inference",
    batch: int = 2,
    seed: int = 0,
    per_op: bool = False,
    device: str = "cpu",
    tol: Tolerance | None = None,
    weights: WeightSet | None = None,
    progress: Progress | None = None,
    dtype: DType | None = None,
) -> list[PairReport]:
    """Run every runner on the same weights and inputs; compare each to the first."""
    request = parity_request(
        spec,
        graph,
        mode=mode,
        batch=batch,
        seed=seed,
        per_op=per_op,
        device=device,
        weights=weights,
        dtype=dtype,
    )
    return run_request(request, runners, tol=tol, progress=progress)


def run_request(
    request: RunRequest,
    runners: Sequence[Runner],
    *,
    tol: Tolerance | None = None,
    progress: Progress | None = None,
) -> list[PairReport]:
    """Run every runner on `request`; compare each to the first."""
    if len(runners) < 2:
        raise ParityError("parity needs at least two backends")
    tol = tol or Tolerance()
    results: list[tuple[RunResult, float]] = []
    for runner in runners:
        if progress:
            dtype = "float64" if getattr(runner, "float64", False) else request.dtype
            progress(f"running {runner.name} ({request.mode}, {dtype}, {request.device}) ...")
        start = time.perf_counter()
        result = runner.run(request)
        seconds = time.perf_counter() - start if result.seconds is None else result.seconds
        results.append((result, seconds))
        if progress:
            progress(f"  {runner.name}: {seconds:.2f} s")
    reports = []
    for runner, (result, seconds) in zip(runners[1:], results[1:], strict=True):
        report = compare_runs(
            request.spec,
            request.graph,
            (runners[0].name, runner.name),
            results[0][0],
            result,
            tol,
        )
        report.seconds = seconds
        reports.append(report)
    return reports
