"""Spec language v2 constructs: optional merges that generate (`when` + `otherwise`),
block `let:` values, stage tables and flat numbering.

The InvertedResidual block below is MobileNetV2's, written once: instances whose shape
allows it add their input (`use_res_connect`), the others return their main path; both
are one generated class in every source backend. `relu` stands in for ReLU6 in the small
net; the zoo's mobilenet_v2 (specs/mobilenet_v2.yaml) is the full one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from archspec_keras import emit_source as keras_source
from archspec_keras.parity import KerasRunner
from archspec_onnx.parity import OnnxRunner
from archspec_torch import emit_source as torch_source
from archspec_torch import generate_module
from archspec_torch.parity import TorchRunner

from archspec.ir import Add
from archspec.lower import lower
from archspec.parity import run_parity
from archspec.registry import load

INVERTED = """\
description: A small MobileNetV2-like net (relu stands in for relu6)
params: {num_classes: 10}
inputs:
  image: [3, 32, 32]
defaults:
  conv: {bias: false}
blocks:
  InvertedResidual:
    doc: 1x1 expand, 3x3 depthwise, 1x1 linear projection; the input added when shapes allow.
    params: {out_channels: int, stride: 1, expand_ratio: 6}
    let:
      hidden_dim: ${in_channels * expand_ratio}
      use_res_connect: ${stride == 1 and in_channels == out_channels}
    body:
      - expand: {op: conv, out: $hidden_dim, kernel: 1}
      - bn1: {op: batch_norm}
      - relu1: {op: relu}
      - dw: {op: conv, out: $hidden_dim, kernel: 3, stride: $stride, padding: 1,
            groups: $hidden_dim}
      - bn2: {op: batch_norm}
      - relu2: {op: relu}
      - project: {op: conv, out: $out_channels, kernel: 1}
      - bn3: {op: batch_norm}
      - add: {op: add, inputs: [bn3, input], when: $use_res_connect, otherwise: bn3}
body:
  - stem: {op: conv, out: 16, kernel: 3, stride: 2, padding: 1}
  - b1: {block: InvertedResidual, args: {out_channels: 16}}
  - b2: {block: InvertedResidual, args: {out_channels: 24, stride: 2}}
  - b3: {block: InvertedResidual, args: {out_channels: 24}}
  - pool: {op: global_avg_pool}
  - fc: {op: linear, out: $num_classes}
"""


@pytest.fixture
def inverted(tmp_path: Path) -> Path:
    path = tmp_path / "inverted_net.yaml"
    path.write_text(INVERTED)
    return path


def test_optional_residual_exists_where_its_condition_holds(inverted: Path) -> None:
    graph = lower(load(inverted))
    adds = {n.name for n in graph.nodes if isinstance(n.op, Add)}
    assert adds == {"b1.add", "b3.add"}  # b2 changes stride and channels: no residual
    # where absent, `otherwise: bn3` flows on: the block returns its main path
    assert graph.node("b3.expand").inputs == ("b2.bn3",)


def test_optional_residual_is_one_torch_class_with_a_flag(inverted: Path) -> None:
    spec = load(inverted)
    source = torch_source(spec, lower(spec))
    assert source.count("class InvertedResidual(nn.Module):") == 1
    assert "        hidden_dim = in_channels * expand_ratio\n" in source
    assert "self.use_res_connect = stride == 1 and in_channels == out_channels\n" in source
    assert "        if self.use_res_connect:\n            out += x\n" in source


@pytest.mark.parametrize("style", ["functional", "subclass"])
def test_optional_residual_in_keras(inverted: Path, style: str) -> None:
    spec = load(inverted)
    source = keras_source(spec, lower(spec), style)
    assert "use_res_connect = stride == 1 and in_channels == out_channels" in source
    if style == "functional":
        assert "    if use_res_connect:\n        x = layers.Add(" in source
    else:
        assert 'layers.Add(name=f"{self.name}_add") if use_res_connect else None' in source


@pytest.mark.slow
def test_optional_residual_parity_in_every_backend(inverted: Path) -> None:
    spec = load(inverted)
    graph = lower(spec)
    runners = [
        TorchRunner(name="torch64", float64=True),
        TorchRunner(),
        KerasRunner(),
        KerasRunner("subclass"),
        OnnxRunner(),
    ]
    reports = run_parity(spec, graph, runners, batch=2)
    assert [r.other for r in reports] == ["torch", "keras", "keras_subclass", "onnx"]
    for report in reports:  # the design's fp32 tolerance, every block output probed
        assert report.passed, (report.other, report.first_divergence)
        assert {"b1.add", "b2.bn3", "b3.add"} <= set(report.probes)


MOBILENET = Path(__file__).resolve().parent.parent / "specs" / "mobilenet_v2.yaml"
# (torchvision equality of the zoo's mobilenet_v2, keys and outputs: tests/test_zoo_mnv.py)


def test_mobilenet_v2_source_is_one_block_class_and_a_flat_sequential() -> None:
    spec = load(MOBILENET)
    source = torch_source(spec, lower(spec))
    assert source.count("class InvertedResidual(nn.Module):") == 1
    assert "        if expand_ratio != 1:\n            layers.append(" in source
    assert "        self.conv = nn.Sequential(*layers)\n" in source
    assert "self.use_res_connect = stride == 1 and in_channels == out_channels" in source
    # features.1 ... features.17 sit in one flat nn.Sequential, like torchvision's
    assert "InvertedResidual(32, out_channels=16, stride=1, expand_ratio=1)," in source
    assert "OrderedDict" not in source


def test_flat_numbering_that_varies_is_a_label_in_keras() -> None:
    spec = load(MOBILENET)
    source = keras_source(spec, lower(spec))
    # features.1 (expand_ratio 1) has its depthwise conv at conv.0, the others at conv.1
    assert 'name=f"{name}_conv_{int(expand_ratio != 1)}_0"' in source
    assert 'name=f"{name}_conv_{1 + int(expand_ratio != 1)}"' in source
    assert 'name="features_17"' in source and 'name="features_18_0"' in source


@pytest.mark.slow
def test_mobilenet_v2_parity_in_every_backend() -> None:
    spec = load(MOBILENET)
    graph = lower(spec, input_size=(32, 32))
    runners = [
        TorchRunner(name="torch64", float64=True),
        TorchRunner(),
        KerasRunner(),
        KerasRunner("subclass"),
        OnnxRunner(),
    ]
    reports = run_parity(spec, graph, runners, batch=2)
    for report in reports:  # the design's fp32 tolerance at every block's output
        assert report.passed, (report.other, report.first_divergence)
        # block outputs: no residual in features.1 and .2 (shapes change), one in .3
        outs = {"features.1.conv.2", "features.2.conv.3", "features.3.add", "features.18.2"}
        assert outs <= set(report.probes)


NESTED = """\
inputs:
  image: [3, 16, 16]
blocks:
  Inner:
    params: {width: int}
    body:
      - conv: {op: conv, out: $width, kernel: 3, padding: 1}
      - bn: {op: batch_norm}
  Outer:
    params: {width: int}
    body:
      - a: {block: Inner, args: {width: $width}}
      - b: {block: Inner, args: {width: "${2 * width}"}}
      - c: {op: conv, out: $width, kernel: 1}
body:
  - o1: {block: Outer, args: {width: 8}}
  - o2: {block: Outer, args: {width: 16}}
"""


def test_a_sub_blocks_input_channels_are_computed_inside_the_block(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "nested_net.yaml"
    path.write_text(NESTED)
    spec = load(path)
    source = torch_source(spec, lower(spec))
    # b reads a's output (width channels), c reads b's (2 * width): no extra arguments
    assert "def __init__(self, in_channels: int, width: int) -> None:" in source
    assert "self.b = Inner(width, width=2 * width)" in source
    assert "self.c = nn.Conv2d(2 * width, width, kernel_size=1)" in source
    assert "_in_channels" not in source
    module, graph = generate_module(path, directory=tmp_path)
    out = getattr(module, graph.name)().eval()(torch.zeros(1, 3, 16, 16))
    assert tuple(out.shape) == (1, *graph.node(graph.outputs[0]).shape)


FLAG_FIRST = """\
inputs:
  image: [8, 8, 8]
blocks:
  Res:
    params: {out_channels: int, stride: 1, se: false}
    let:
      use_res_connect: ${stride == 1 and in_channels == out_channels}
      squeeze: ${in_channels // 4}
    body:
      - name: block
        numbering: flat
        body:
          - {op: conv, out: $out_channels, kernel: 3, stride: $stride, padding: 1}
          - {block: Gate, when: $se, args: {squeeze: $squeeze}}
          - {op: batch_norm}
      - add: {op: add, inputs: [input, block], when: $use_res_connect, otherwise: block}
  Gate:
    params: {squeeze: int}
    body:
      - pool: {op: global_avg_pool, keepdims: true}
      - fc1: {op: conv, out: $squeeze, kernel: 1}
      - fc2: {op: conv, out: $in_channels, kernel: 1}
      - gate: {op: hardsigmoid}
      - scale: {op: mul, inputs: [gate, input]}
body:
  - a: {block: Res, args: {out_channels: 8, se: true}}
  - b: {block: Res, args: {out_channels: 16, stride: 2}}
"""


def test_optional_block_call_in_a_flat_scope_is_a_built_list(tmp_path: Path) -> None:
    """MobileNetV3's optional squeeze-and-excitation: absent, it takes no number (the
    BatchNorm is block.1 in b, block.2 in a); a flag let declared before other lets is
    still written out (`self.use_res_connect = ...`, not a read of an unset name)."""
    import torch

    path = tmp_path / "flag_first.yaml"
    path.write_text(FLAG_FIRST)
    spec = load(path)
    source = torch_source(spec, lower(spec))
    assert "        if se:\n            layers.append(Gate(" in source
    assert "self.use_res_connect = stride == 1 and in_channels == out_channels\n" in source
    module, graph = generate_module(path, directory=tmp_path)
    keys = list(getattr(module, graph.name)().state_dict())
    assert "a.block.1.fc1.weight" in keys and "a.block.2.running_var" in keys
    assert "b.block.1.running_var" in keys and not any(k.startswith("b.block.2") for k in keys)
    out = getattr(module, graph.name)().eval()(torch.zeros(1, 8, 8, 8))
    assert tuple(out.shape) == (1, *graph.node(graph.outputs[0]).shape)


NESTED_CONDITION = """\
inputs:
  image: [3, 8, 8]
blocks:
  B:
    params: {use_hs: bool, expand: bool}
    body:
      - when: $expand
        numbering: flat
        body:
          - {op: conv, out: 4, kernel: 1}
          - {op: relu, when: "${not use_hs}"}
          - {op: hardswish, when: $use_hs}
      - {op: conv, out: 4, kernel: 1}
body:
  - a: {block: B, args: {use_hs: true, expand: true}}
  - b: {block: B, args: {use_hs: false, expand: false}}
"""


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_condition_inside_an_optional_chain_is_refused(tmp_path: Path, backend: str) -> None:
    """One optional member cannot hold members of its own that may be absent: refused at
    the group's line, never generated with the inner conditions (or the outer) dropped."""
    from click.testing import CliRunner

    from archspec.cli import main

    path = tmp_path / "nested_cond.yaml"
    path.write_text(NESTED_CONDITION)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["gen", str(path), "--backend", backend, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "nested_cond.yaml:7:9: blocks.B.body[0]: " in result.output
    assert "'1' is conditional inside the optional group '0' in B" in result.output
    assert not out.exists() or not any(out.iterdir())
