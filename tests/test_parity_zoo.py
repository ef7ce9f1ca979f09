"""The parity matrix over the zoo: every spec, every other backend against torch in float64.

Inference at an even and an odd input size, batch 3, DESIGN's fp32 tolerance, block-level
probes (so a failure names the first divergent block). The reference is torch in float64:
two fp32 implementations may differ by the whole tolerance on AlexNet's wide dense layers
(see archspec_torch.parity), so each backend's fp32 result is measured against the exact one.
Train and gradient modes run on the small specs the parity issue names.
"""

from __future__ import annotations

import pytest
from archspec_onnx.parity import OnnxRunner
from archspec_torch.parity import TorchRunner

from archspec.lower import lower
from archspec.parity import PairReport, Tolerance, run_parity
from archspec.registry import load, zoo_names
from archspec.weights import WeightSet

HEAVY = {"resnet101", "resnet152", "densenet169", "densenet201", "alexnet", "alexnet_bn"}


def sizes(name: str) -> list[tuple[int, int]]:
    """The smallest inputs each architecture takes comfortably: 64/67, CIFAR-size 32/35."""
    default = lower(load(name)).node(lower(load(name)).inputs[0]).shape
    return [(32, 32), (35, 35)] if default[1] <= 32 else [(64, 64), (67, 67)]


def explain(report: PairReport) -> str:
    div = report.first_divergence
    failing = {k: e for k, e in report.outputs.items() if not Tolerance().check(e)}
    worst = {k: f"rel L2 {e.rel_l2:.2e}, max abs {e.max_abs:.2e}" for k, e in failing.items()}
    where = (
        f"first divergence {div.node} ({div.where}): {div.errors}" if div else "no probe diverged"
    )
    return f"{report.other} vs {report.reference}: {worst}; {where}"


@pytest.mark.parametrize("which", [0, 1], ids=["even", "odd"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in zoo_names()]
)
def test_onnx_matches_torch(name: str, which: int) -> None:
    spec = load(name)
    graph = lower(spec, input_size=sizes(name)[which])
    runners = [TorchRunner(name="torch64", float64=True), OnnxRunner()]
    (report,) = run_parity(spec, graph, runners, batch=3, seed=0)
    assert report.passed, explain(report)
    assert report.probes or not graph.scopes  # block boundaries were compared


@pytest.mark.parametrize("name", ["resnet18", "densenet121_cifar", "preact_resnet22", "rcnn"])
@pytest.mark.parametrize("mode", ["train", "grad"])
def test_train_and_grad_modes_compare_state_and_gradients(name: str, mode: str) -> None:
    """The modes' machinery on the reference backend (Keras joins when it lands): in float64
    (the modes' default), two torch runs agree, and every BN state or gradient is compared."""
    spec = load(name)
    graph = lower(spec, input_size=(32, 32))
    runners = [TorchRunner(name="torch64", float64=True), TorchRunner()]
    (report,) = run_parity(spec, graph, runners, mode=mode, batch=3)  # type: ignore[arg-type]
    assert report.passed, explain(report)
    compared = {k.split(":", 1)[1] for k in report.outputs if ":" in k}
    weights = WeightSet.random(graph)
    if mode == "train":
        assert compared == {n for n in weights if n.endswith(("running_mean", "running_var"))}
    else:
        assert compared == {f"input:{i}" for i in graph.inputs} | {
            n for n in weights if not n.endswith(("running_mean", "running_var"))
        }


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA device (none here)"
)
def test_cuda_fp32_matches_float64() -> None:
    spec = load("resnet18")
    graph = lower(spec, input_size=(64, 64))
    (report,) = run_parity(
        spec, graph, [TorchRunner(name="torch64", float64=True), TorchRunner()], device="cuda"
    )
    assert report.passed, explain(report)
