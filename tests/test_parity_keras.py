"""Parity through the Keras runners: every backend against torch in float64, bugs planted in
copies of the generated Keras source named at their node, train and grad modes."""

from __future__ import annotations

import pytest
from archspec_keras.parity import KerasRunner
from archspec_onnx.parity import OnnxRunner
from archspec_torch.parity import TorchRunner

from archspec.lower import lower
from archspec.parity import PairReport, Tolerance, run_parity
from archspec.registry import load

REFERENCE = TorchRunner(name="torch64", float64=True)


def compare(name: str, size: int, other: KerasRunner, **kw: object) -> PairReport:
    spec = load(name)
    graph = lower(spec, input_size=(size, size))
    (report,) = run_parity(spec, graph, [REFERENCE, other], batch=3, **kw)  # type: ignore[arg-type]
    return report


def planted(old: str, new: str) -> KerasRunner:
    def plant(source: str) -> str:
        assert old in source, f"the planted edit does not apply: {old!r}"
        return source.replace(old, new, 1)

    return KerasRunner(name="keras_planted", transform=plant)


@pytest.mark.parametrize("style", ["functional", "subclass"])
@pytest.mark.parametrize(("name", "size"), [("resnet18", 35), ("preact_resnet22", 64)])
def test_keras_styles_match_at_every_probe(name: str, size: int, style: str) -> None:
    report = compare(name, size, KerasRunner(style))
    assert report.passed, report.first_divergence
    assert len(report.probes) >= 8  # every block's output compared, not just the outputs


def test_all_four_backends_in_one_run() -> None:
    spec = load("rcnn")
    graph = lower(spec, input_size=(32, 32))
    runners = [REFERENCE, TorchRunner(), KerasRunner(), KerasRunner("subclass"), OnnxRunner()]
    reports = run_parity(spec, graph, runners, batch=3)
    assert [r.other for r in reports] == ["torch", "keras", "keras_subclass", "onnx"]
    assert all(r.passed for r in reports), [r.first_divergence for r in reports]


@pytest.mark.parametrize(
    ("old", "new", "node"),
    [
        (
            'TorchBatchNormalization(name="bn")',
            'TorchBatchNormalization(epsilon=0.1, name="bn")',
            "bn",
        ),
        ('layers.Permute((3, 1, 2), name="flatten_chw")(x)', "x", "flatten"),
    ],
    ids=["bn-epsilon", "flatten-order"],
)
def test_planted_keras_bugs_are_named_exactly(old: str, new: str, node: str) -> None:
    """ONNX is the reference here: it observes every op (torch's inline flatten has no hook)."""
    spec = load("preact_resnet22")
    graph = lower(spec, input_size=(64, 64))
    (report,) = run_parity(spec, graph, [OnnxRunner(), planted(old, new)], per_op=True)
    assert not report.passed
    assert report.first_divergence is not None and report.first_divergence.node == node


def test_grad_mode_matches_torch_autograd() -> None:
    """tf.GradientTape vs torch autograd, through the adapter's layouts (float64)."""
    report = compare("preact_resnet22", 32, KerasRunner(), mode="grad")
    assert report.passed, report.first_divergence
    assert "grad:input:image" in report.outputs and "grad:conv.weight" in report.outputs


def test_train_mode_finds_the_unconverted_momentum() -> None:
    report = compare(
        "preact_resnet22",
        32,
        planted(
            'TorchBatchNormalization(name="bn")',
            'TorchBatchNormalization(momentum=0.01, name="bn")',
        ),
        mode="train",
    )
    assert not Tolerance().check(report.outputs["state:bn.running_mean"])


@pytest.mark.parametrize("style", ["functional", "subclass"])
def test_train_mode_matches_torch_running_statistics(style: str) -> None:
    """Training-mode forward (batch statistics) and the running statistics after the step:
    TorchBatchNormalization updates moving_variance with the unbiased batch variance, as
    PyTorch does (Keras's own BatchNormalization takes the biased one)."""
    report = compare("preact_resnet22", 32, KerasRunner(style), mode="train")
    assert report.passed, report.first_divergence
    state = {k for k in report.outputs if k.startswith("state:")}
    assert any(k.endswith(".running_mean") for k in state)
    assert any(k.endswith(".running_var") for k in state)
    assert all(Tolerance().check(report.outputs[k]) for k in state)


def test_train_mode_finds_keras_own_batch_normalization() -> None:
    """Keras's BatchNormalization in its place: only the running variances diverge."""
    report = compare(
        "preact_resnet22",
        32,
        planted("if not (training and self.trainable):", "if True:"),  # always the parent's
        mode="train",
    )
    failing = {k for k, e in report.outputs.items() if not Tolerance().check(e)}
    assert failing == {k for k in report.outputs if k.endswith(".running_var")}
    assert report.first_divergence is not None and report.first_divergence.node == "bn"
