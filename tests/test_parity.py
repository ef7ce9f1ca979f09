"""The parity harness: error metrics, probes, localization of planted bugs, the CLI.

Until the Keras and ONNX runners land, the planted-bug tests compare the torch runner with
a torch runner whose generated source was edited: the harness must name the node where
the edit takes effect.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from archspec_onnx.parity import OnnxRunner
from archspec_torch.parity import TorchRunner
from click.testing import CliRunner
from onnx import helper

from archspec.cli import main
from archspec.lower import lower
from archspec.parity import (
    Errors,
    RunRequest,
    Tolerance,
    block_outputs,
    canonical_inputs,
    compare,
    parity_request,
    probe_nodes,
    run_parity,
)
from archspec.registry import load
from archspec.weights import WeightSet


def test_compare_computes_the_three_errors() -> None:
    ref = np.array([3.0, 4.0], dtype=np.float32)
    got = np.array([3.0, 4.5], dtype=np.float32)
    e = compare(ref, got)
    assert e.max_abs == pytest.approx(0.5)
    assert e.max_rel == pytest.approx(0.125)  # 0.5 / 4
    assert e.rel_l2 == pytest.approx(0.1)  # 0.5 / |(3, 4)|
    assert e.ref_max == 4.0 and e.finite


def test_tolerance_is_designs_rule() -> None:
    tol = Tolerance()  # rel L2 <= 1e-6 and max abs <= 1e-4 * max(1, max|ref|)
    assert tol.check(Errors(max_abs=1e-4, max_rel=0, rel_l2=1e-6, ref_max=0.5))
    assert not tol.check(Errors(max_abs=1.1e-4, max_rel=0, rel_l2=1e-7, ref_max=0.5))
    assert tol.check(Errors(max_abs=1e-3, max_rel=0, rel_l2=1e-7, ref_max=10.0))  # scaled
    assert not tol.check(Errors(max_abs=0, max_rel=0, rel_l2=2e-6, ref_max=1.0))


def test_nan_and_shape_mismatch_never_pass() -> None:
    ref = np.ones((2, 3), dtype=np.float32)
    assert not Tolerance().check(compare(ref, np.full((2, 3), np.nan, dtype=np.float32)))
    assert not Tolerance().check(compare(ref, np.ones((3, 2), dtype=np.float32)))
    assert compare(ref, np.ones((3, 2), dtype=np.float32)).max_abs == math.inf


def test_canonical_inputs_are_seeded_and_nchw() -> None:
    graph = lower(load("resnet18"), input_size=(32, 32))
    a, b = canonical_inputs(graph, 3, seed=1), canonical_inputs(graph, 3, seed=1)
    assert a["image"].shape == (3, 3, 32, 32) and a["image"].dtype == np.float32
    assert np.array_equal(a["image"], b["image"])
    assert not np.array_equal(a["image"], canonical_inputs(graph, 3, seed=2)["image"])


def test_block_outputs_are_what_the_next_block_reads() -> None:
    graph = lower(load("resnet18"), input_size=(32, 32))
    blocks = block_outputs(graph)
    for block, nxt in [
        ("layer1.0", "layer1.1"),
        ("layer2.1", "layer3.0"),
        ("layer4.0", "layer4.1"),
    ]:
        read = graph.node(f"{nxt}.conv1").inputs[0]
        assert blocks[read] == block
    # one per BasicBlock and one per downsample branch (stages end where their last block does)
    assert len(probe_nodes(graph, per_op=False)) == 8 + 3
    assert len(probe_nodes(graph, per_op=True)) == len(graph.nodes) - 1  # all but the input


def parity(name: str, size: tuple[int, int], edit: tuple[str, str], **kw: object) -> object:
    old, new = edit

    def plant(source: str) -> str:
        assert old in source, f"the planted edit does not apply: {old!r}"
        return source.replace(old, new)

    spec = load(name)
    graph = lower(spec, input_size=size)
    runners = [TorchRunner(), TorchRunner(plant, name="torch_planted")]
    return run_parity(spec, graph, runners, **kw)[0]  # type: ignore[arg-type]


def test_identical_backends_pass_with_zero_error() -> None:
    report = parity("resnet18", (32, 32), ("", ""), per_op=True)
    assert report.passed and report.first_divergence is None  # type: ignore[attr-defined]
    assert report.probes and all(e.max_abs == 0 for e in report.probes.values())  # type: ignore[attr-defined]


def test_wrong_bn_epsilon_is_found_at_its_node() -> None:
    edit = (
        "self.bn2 = nn.BatchNorm2d(planes)",
        "self.bn2 = nn.BatchNorm2d(planes, eps=1e-3)",
    )
    report = parity("resnet18", (32, 32), edit, per_op=True)
    div = report.first_divergence  # type: ignore[attr-defined]
    assert not report.passed and div.node == "layer1.0.bn2" and div.op == "batch_norm"  # type: ignore[attr-defined]
    assert div.unobserved == ()
    assert div.where is not None and div.where.startswith("specs/lib/resnet.yaml:")
    # at block granularity, the first block holding it
    block_level = parity("resnet18", (32, 32), edit).first_divergence  # type: ignore[attr-defined]
    assert block_level.block == "layer1.0"


def test_shifted_same_padding_is_found_at_the_conv() -> None:
    edit = ("F.pad(x, pad)", "F.pad(x, pad[::-1])")  # bottom/right pad moved to top/left
    report = parity("preact_resnet22", (32, 32), edit, per_op=True)
    assert report.first_divergence.node == "conv"  # type: ignore[attr-defined]


def test_swapped_flatten_order_is_narrowed_to_the_flatten() -> None:
    edit = ("out = torch.flatten(out, 1)", "out = out.permute(0, 2, 3, 1).flatten(1)")
    report = parity("preact_resnet22", (64, 64), edit, per_op=True)  # 2x2 before the flatten
    div = report.first_divergence  # type: ignore[attr-defined]
    # torch's inline flatten has no module to hook: the harness names the first probed
    # node after it and lists the unprobed ops that may hold the bug
    assert div.node == "dense" and div.unobserved == ("flatten",)


def test_unconverted_momentum_shows_in_train_mode_state() -> None:
    edit = ("self.bn = nn.BatchNorm2d(16, eps=0.001, momentum=0.01)",
            "self.bn = nn.BatchNorm2d(16, eps=0.001, momentum=0.99)")  # fmt: skip
    inference = parity("preact_resnet22", (32, 32), edit)
    assert inference.passed  # type: ignore[attr-defined]
    train = parity("preact_resnet22", (32, 32), edit, mode="train")
    assert not train.passed and train.first_divergence.node == "bn"  # type: ignore[attr-defined]
    assert not Tolerance().check(train.outputs["state:bn.running_mean"])  # type: ignore[attr-defined]


def test_grad_mode_compares_input_and_weight_gradients() -> None:
    report = parity("rcnn", (16, 16), ("", ""), mode="grad")
    keys = set(report.outputs)  # type: ignore[attr-defined]
    assert "grad:input:image" in keys and "grad:rcl1.recurrent.weight" in keys
    assert report.passed  # type: ignore[attr-defined]


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_refuses_unknown_backends_and_single_backends() -> None:
    code, _, err = run_cli("parity", "resnet18", "--backends", "torch,tourch")
    assert code == 2 and "unknown parity backend 'tourch'; did you mean 'torch'?" in err
    code, _, err = run_cli("parity", "resnet18", "--backends", "torch")
    assert code == 2 and "at least two backends" in err


def test_cli_json_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archspec import parity as core

    monkeypatch.setattr(core, "get_runner", lambda name: TorchRunner(name=name))
    out = tmp_path / "report.json"
    code, stdout, _ = run_cli(
        "parity", "resnet18", "--backends", "torch,torch_again", "--input-size", "32", "32",
        "--json", str(out),
    )  # fmt: skip
    assert code == 0, stdout
    body = json.loads(out.read_text())
    assert body["pairs"][0]["passed"] and body["pairs"][0]["outputs"]["fc"]["max_abs"] == 0
    assert "PASS" in stdout


def onnx_plant(edit: Callable[[Any], None]) -> OnnxRunner:
    return OnnxRunner(name="onnx_planted", transform=edit)


def set_attribute(node_name: str, attr: str, value: float) -> Callable[[Any], None]:
    def edit(model: Any) -> None:
        (node,) = [n for n in model.graph.node if n.name == node_name]
        (found,) = [a for a in node.attribute if a.name == attr]
        found.f = value

    return edit


def test_onnx_matches_the_float64_reference_at_every_op() -> None:
    spec = load("preact_resnet22")
    graph = lower(spec, input_size=(35, 35))
    (report,) = run_parity(spec, graph, [TorchRunner(float64=True), OnnxRunner()], per_op=True)
    assert report.passed, report.first_divergence
    # ONNX names every op's value after its IR node: it observes all of them
    request = RunRequest(
        spec,
        graph,
        WeightSet.random(graph),
        canonical_inputs(graph),
        tuple(probe_nodes(graph, True)),
    )
    assert set(OnnxRunner().run(request).probes) == set(request.probes)


def test_onnx_planted_bugs_are_named_exactly() -> None:
    spec = load("preact_resnet22")
    graph = lower(spec, input_size=(64, 64))
    bn = next(n.name for n in graph.nodes if n.op.kind == "batch_norm" and "." in n.name)
    eps = set_attribute(bn, "epsilon", 1e-1)

    def swap_flatten(model: Any) -> None:
        (node,) = [n for n in model.graph.node if n.op_type == "Flatten"]
        node.input[0] = "flatten_nhwc"
        model.graph.node.insert(
            list(model.graph.node).index(node),
            helper.make_node("Transpose", [graph.node("flatten").inputs[0]], ["flatten_nhwc"],
                             perm=[0, 2, 3, 1]),
        )  # fmt: skip

    for edit, node in [(eps, bn), (swap_flatten, "flatten")]:
        (report,) = run_parity(spec, graph, [OnnxRunner(), onnx_plant(edit)], per_op=True)
        div = report.first_divergence
        assert div is not None and div.node == node and div.unobserved == ()


def test_cli_in_a_fresh_process_runs_every_framework(tmp_path: Path) -> None:
    """`archspec parity` and `archspec port` as a user runs them: one new process that
    imports TensorFlow (checking its runners) before torch builds a model. The test
    process cannot show an import-order crash (conftest loads triton first; torch loading
    triton after TensorFlow is a segfault, as building on torch's meta device did)."""
    import subprocess
    import sys

    import torch

    exe = str(Path(sys.executable).with_name("archspec"))
    backends = "torch64,torch,keras,keras_subclass,onnx"
    parity = [exe, "parity", "resnet18", "--backends", backends, "--input-size", "32", "32"]
    result = subprocess.run(parity, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("result: PASS") == 4, result.stdout

    graph = lower(load("rcnn"))
    state = {k: torch.from_numpy(np.array(v)) for k, v in WeightSet.random(graph, 3).items()}
    torch.save(state, tmp_path / "rcnn.pt")
    port = [exe, "port", str(tmp_path / "rcnn.pt"), "--spec", "rcnn", "--from", "torch",
            "--to", "keras", "-o", str(tmp_path / "out")]  # fmt: skip
    result = subprocess.run(port, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: PASS" in result.stdout


def test_torch_runner_restores_the_callers_tf32_settings() -> None:
    """TF32 is off while a CUDA run computes and the caller's flags come back after it,
    also when the run fails (plain attributes of torch.backends: checked on the CPU)."""
    import torch
    from archspec_torch.parity import no_tf32

    owners = (torch.backends.cuda.matmul, torch.backends.cudnn)
    saved = [owner.allow_tf32 for owner in owners]
    try:
        for first in (True, False):
            for owner in owners:
                owner.allow_tf32 = first
            with no_tf32(torch, "cuda"):
                assert [owner.allow_tf32 for owner in owners] == [False, False]
            assert [owner.allow_tf32 for owner in owners] == [first, first]
        for owner in owners:
            owner.allow_tf32 = True
        with pytest.raises(RuntimeError, match="planted"), no_tf32(torch, "cuda"):
            raise RuntimeError("planted")
        assert [owner.allow_tf32 for owner in owners] == [True, True]
        with no_tf32(torch, "cpu"):  # the CPU has no TF32: nothing is changed
            assert [owner.allow_tf32 for owner in owners] == [True, True]
    finally:
        for owner, value in zip(owners, saved, strict=True):
            owner.allow_tf32 = value


def test_torch_runner_run_on_the_cpu_leaves_tf32_settings_alone() -> None:
    import torch

    owners = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [owner.allow_tf32 for owner in owners]
    spec = load("rcnn")
    TorchRunner().run(parity_request(spec, lower(spec)))
    assert [owner.allow_tf32 for owner in owners] == before
