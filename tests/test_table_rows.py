"""Stage tables with nested rows (`numbering: nested`) and the running count of a table's
blocks (`block_index`, `block_count`), through lowering, the plan and every backend.

The zoo's efficientnet_b0 is the full use (tests/test_zoo_efficientnet.py compares it with
torchvision); the small net below has both placements of a nested table: anonymous in a
flat scope (its rows take the scope's numbers, `features.1` ... `features.3`) and named
(`stages.0`, `stages.1`), plus a table numbered across its rows (`blocks.0` ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from archspec_torch import emit_source as torch_source
from archspec_torch import generate_module

from archspec.lower import lower
from archspec.registry import load
from archspec.render import to_mermaid

ROWS = """\
params: {p: 0.5}
inputs:
  image: [4, 16, 16]
blocks:
  Unit:
    params: {out_channels: int, stride: 1, rate: 0.0}
    body:
      - conv: {op: conv, out: $out_channels, kernel: 3, stride: $stride, padding: 1}
      - bn: {op: batch_norm}
      - drop: {op: stochastic_depth, rate: $rate}
body:
  - features:
      numbering: flat
      body:
        - {op: conv, out: 8, kernel: 1}
        - block: Unit
          numbering: nested
          table:
            - {c: 8, n: 1, s: 1}
            - {c: 16, n: 2, s: 2}
            - {c: 24, n: 3, s: 1}
          repeat: $n
          args: {out_channels: $c, rate: "${p * block_index / block_count}"}
          first: {stride: $s}
        - {op: relu}
  - stages:
      block: Unit
      numbering: nested
      table:
        - {c: 24, n: 2}
        - {c: 32, n: 1}
      repeat: $n
      args: {out_channels: $c, rate: "${block_index / 10 + block_count / 100}"}
  - blocks:
      block: Unit
      table:
        - {c: 32, n: 2}
        - {c: 16, n: 1}
      repeat: $n
      args: {out_channels: $c, rate: "${block_index / 10 + block_count / 100}"}
  - pool: {op: global_avg_pool}
"""

# Every block instance, in order, and the rate its running count gives it.
RATES = {
    "features.1.0": 0.0,
    "features.2.0": 0.5 * 1 / 6,
    "features.2.1": 0.5 * 2 / 6,
    "features.3.0": 0.5 * 3 / 6,
    "features.3.1": 0.5 * 4 / 6,
    "features.3.2": 0.5 * 5 / 6,
    "stages.0.0": 0 / 10 + 3 / 100,
    "stages.0.1": 1 / 10 + 3 / 100,
    "stages.1.0": 2 / 10 + 3 / 100,
    "blocks.0": 0 / 10 + 3 / 100,
    "blocks.1": 1 / 10 + 3 / 100,
    "blocks.2": 2 / 10 + 3 / 100,
}


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows_net.yaml"
    path.write_text(ROWS)
    return path


def test_nested_rows_are_stages_numbered_in_their_parent(rows: Path) -> None:
    graph = lower(load(rows))
    convs = [n.name for n in graph.nodes if n.op.kind == "conv2d"]
    assert convs == ["features.0", *(f"{b}.conv" for b in RATES)]
    assert graph.node("features.4").op.kind == "relu"  # the item after the table's rows
    scopes = {s.path: (s.kind, s.block_type) for s in graph.scopes}
    for stage in ("features.1", "features.2", "features.3", "stages.0", "stages.1"):
        assert scopes[stage] == ("repeat", "Unit")  # each row, with its block type
    assert scopes["stages"] == ("group", None)  # a named nested table: its rows inside
    assert scopes["blocks"] == ("repeat", "Unit")  # numbered across: one stage, as before
    assert [p for p, (kind, _) in scopes.items() if kind == "block"] == list(RATES)
    # the first block of each row takes `first`
    strides = {n.name: n.op.stride for n in graph.nodes if n.op.kind == "conv2d"}
    assert strides["features.2.0.conv"] == (2, 2) and strides["features.2.1.conv"] == (1, 1)


def test_running_count_spans_all_rows_in_both_numberings(rows: Path) -> None:
    graph = lower(load(rows))
    rates = {s.path: dict(s.args)["rate"] for s in graph.scopes if s.kind == "block"}
    assert rates == pytest.approx(RATES, abs=0)


def test_graph_groups_nodes_by_row_stage(rows: Path) -> None:
    text = to_mermaid(lower(load(rows)))
    assert '"features.2 (2 x Unit)"' in text and '"stages.0 (2 x Unit)"' in text
    assert '"features.3.1 (Unit)"' in text


def test_torch_builds_a_sequential_per_row_with_the_ir_keys(rows: Path, tmp_path: Path) -> None:
    import torch

    spec = load(rows)
    source = torch_source(spec, lower(spec))
    # features.1: one block; the running rate an expression of the factory's `p`
    assert "nn.Sequential(Unit(8, out_channels=8, rate=p * 0 / 6))," in source
    assert "Unit(16, out_channels=24, rate=p * 3 / 6)," in source
    assert "def rows_net(p: float = 0.5) -> RowsNet:" in source
    assert "self.stages = nn.Sequential(\n            nn.Sequential(\n" in source
    assert "            nn.Sequential(Unit(24, out_channels=32, rate=0.23)),\n        )" in source
    module, graph = generate_module(rows, directory=tmp_path)
    model = getattr(module, graph.name)().eval()
    keys = list(model.state_dict())
    assert [k for k in keys if k.endswith("conv.weight")] == [f"{b}.conv.weight" for b in RATES]
    assert model.get_submodule("features.2.1.drop").p == RATES["features.2.1"]
    out = model(torch.zeros(1, 4, 16, 16))
    assert tuple(out.shape) == (1, *graph.node(graph.outputs[0]).shape)


@pytest.mark.parametrize("style", ["functional", "subclass"])
def test_keras_layers_are_named_after_the_ir(rows: Path, tmp_path: Path, style: str) -> None:
    from archspec_keras import generate_module as keras_module
    from archspec_keras.weights import walk_layers

    module, graph = keras_module(rows, directory=tmp_path, style=style)
    model = getattr(module, graph.name)()
    names = {layer.name for layer in walk_layers(model)}
    for block in RATES:
        under = block.replace(".", "_")
        assert {f"{under}_conv", f"{under}_bn"} <= names, under


def test_onnx_node_names_follow_the_ir(rows: Path) -> None:
    from archspec_onnx.model import build_model

    graph = lower(load(rows))
    model = build_model(graph, None)
    nodes = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert nodes == ["features.0", *(f"{b}.conv" for b in RATES)]
    functions = build_model(graph, None, functions=True)
    calls = [n.name for n in functions.graph.node if n.domain]
    assert calls == list(RATES)


@pytest.mark.slow
def test_nested_rows_parity_in_every_backend(rows: Path) -> None:
    from archspec_keras.parity import KerasRunner
    from archspec_onnx.parity import OnnxRunner
    from archspec_torch.parity import TorchRunner

    from archspec.parity import run_parity

    spec = load(rows)
    graph = lower(spec)
    runners = [
        TorchRunner(name="torch64", float64=True),
        TorchRunner(),
        KerasRunner(),
        KerasRunner("subclass"),
        OnnxRunner(),
    ]
    for report in run_parity(spec, graph, runners, batch=2):
        assert report.passed, (report.other, report.first_divergence)
        # each row stage's output is probed (as its last block's)
        assert {"features.1.0.drop", "features.2.1.drop", "stages.1.0.drop"} <= set(report.probes)


def test_schema_offers_nested_numbering_for_block_items() -> None:
    from archspec.schema import spec_json_schema

    field = spec_json_schema()["$defs"]["BlockItem"]["properties"]["numbering"]
    assert field["enum"] == ["across", "nested"] and field["default"] == "across"
    assert json.dumps(field).count("nested") >= 2  # offered, and described


TOWER = """\
params: {deep: true}
inputs:
  image: [4, 16, 16]
blocks:
  Unit:
    params: {out_channels: int, rate: 0.0}
    body:
      - conv: {op: conv, out: $out_channels, kernel: 3, padding: 1}
      - drop: {op: stochastic_depth, rate: $rate}
  Tower:
    params: {width: int, p: 0.1}
    body:
      - rows:
          block: Unit
          numbering: nested
          table:
            - {m: 1, n: 1}
            - {m: 2, n: 2}
          repeat: $n
          args: {out_channels: "${width * m}", rate: "${p * block_index / block_count}"}
      - head: {op: conv, out: $width, kernel: 1}
body:
  - t1: {block: Tower, args: {width: 8}}
  - t2: {block: Tower, args: {width: 16, p: 0.2}}
  - features:
      numbering: flat
      body:
        - {op: conv, out: 8, kernel: 1}
        - {block: Unit, when: $deep, numbering: nested, table: [{c: 8}, {c: 8}],
           args: {out_channels: $c}}
        - {op: relu}
"""


@pytest.mark.parametrize("deep", [True, False])
def test_nested_rows_in_a_block_class_and_an_absent_table(tmp_path: Path, deep: bool) -> None:
    """A table in a block's body: one class for both instances, whose calls print each
    row's values folded into the class's own parameters (`width * 2`, `p * 1 / 3`), never
    extra per-instance constructor arguments; an absent nested table in a flat scope takes
    no number (the relu is features.1 without it)."""
    path = tmp_path / "tower.yaml"
    path.write_text(TOWER)
    spec = load(path)
    source = torch_source(spec, lower(spec, {"deep": deep}))
    assert source.count("class Tower(nn.Module):") == 1
    assert "def __init__(self, in_channels: int, width: int, p: float = 0.1) -> None:" in source
    assert "Unit(width * 1, out_channels=width * 2, rate=p * 1 / 3)," in source
    assert "rows_1_rate" not in source
    module, graph = generate_module(path, {"deep": deep}, directory=tmp_path)
    keys = [k for k in getattr(module, graph.name)().state_dict() if k.endswith("conv.weight")]
    rows = ["rows.0.0", "rows.1.0", "rows.1.1"]
    features = ["features.1.0", "features.2.0"] if deep else []
    assert keys == [f"{t}.{r}.conv.weight" for t in ("t1", "t2") for r in rows] + [
        f"{f}.conv.weight" for f in features
    ]
    assert graph.node("features.3" if deep else "features.1").op.kind == "relu"
    rates = {s.path: dict(s.args) for s in graph.scopes if s.args}
    assert rates["t2.rows.1.1"]["rate"] == 0.2 * 2 / 3
    model = getattr(module, graph.name)()
    built = {
        n: m.p
        for n, m in model.named_modules()
        if type(m).__name__ == "StochasticDepth" and n.startswith(("t1.", "t2."))
    }
    assert built == {f"{s}.drop": rates[s]["rate"] for s in rates if ".rows." in s}


@pytest.mark.slow
def test_a_table_in_a_block_class_parity_in_every_backend(tmp_path: Path) -> None:
    """The folded per-call arguments build the same model in Keras (both styles) and ONNX;
    Keras prints the rates as torch does."""
    from archspec_keras.parity import KerasRunner
    from archspec_onnx.parity import OnnxRunner
    from archspec_torch.parity import TorchRunner

    from archspec.backend import get as get_backend
    from archspec.parity import run_parity

    path = tmp_path / "tower.yaml"
    path.write_text(TOWER)
    spec = load(path)
    graph = lower(spec)
    runners = [
        TorchRunner(name="torch64", float64=True),
        KerasRunner(),
        KerasRunner("subclass"),
        OnnxRunner(),
    ]
    for report in run_parity(spec, graph, runners, batch=2):
        assert report.passed, (report.other, report.first_divergence)
    for style in ("functional", "subclass"):
        keras = get_backend("keras").emit(spec, graph, {"style": style}).content.decode()
        assert "out_channels=width * 2, rate=p * 1 / 3," in keras, style
