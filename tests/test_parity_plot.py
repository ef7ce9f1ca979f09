"""`--plot OUT.png` on `archspec parity` and `archspec port`: a PNG of the per-probe errors,
and a missing matplotlib as a clear message naming the extra, before any work is done."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from archspec_torch.parity import TorchRunner
from click.testing import CliRunner

from archspec.cli import main
from archspec.lower import lower
from archspec.parity import Tolerance, run_parity
from archspec.plot import render
from archspec.registry import load

PNG = b"\x89PNG\r\n\x1a\n"


def test_parity_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "errors.png"
    result = CliRunner().invoke(
        main,
        ["parity", "rcnn", "--backends", "torch64,torch", "--input-size", "16", "16",
         "--plot", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG)
    assert f"wrote {out}" in result.output


def test_plot_of_a_divergence_is_a_png() -> None:
    """A planted bug (the first BatchNorm's eps) diverges: the plot marks it and renders."""
    spec = load("rcnn")
    graph = lower(spec, input_size=(16, 16))
    old = "nn.BatchNorm2d(filters, eps=0.001, momentum=0.01)"
    bad = TorchRunner(lambda s: s.replace(old, "nn.BatchNorm2d(filters, eps=0.1)", 1))
    (report,) = run_parity(spec, graph, [TorchRunner(), bad])
    assert report.first_divergence is not None
    assert render(graph, [report], Tolerance(), "planted").startswith(PNG)


def test_missing_matplotlib_names_the_extra_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    out = tmp_path / "errors.png"
    result = CliRunner().invoke(
        main, ["parity", "rcnn", "--backends", "torch64,torch", "--plot", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "--plot needs matplotlib" in result.output
    assert "pip install 'archspec[plot]'" in result.output
    assert "running" not in result.output  # refused before the parity run
    assert "Traceback" not in result.output
    assert not out.exists()
