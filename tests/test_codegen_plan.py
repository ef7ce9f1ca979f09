"""The module plan (archspec.codegen): structure recovered once per spec, framework-neutral.

What the torch output looks like is tested in test_torch_emitter.py; here: the plan's own
facts (classes, symbolic arguments, optional members, stages, loops, shared members), the
factory rule, and the single source of truth for spec op <-> IR op fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from archspec_torch import generate_module

from archspec import ir
from archspec.analysis import totals
from archspec.codegen.build import build_plan
from archspec.codegen.plan import BlockStep, GroupStep, OpStep, RepeatStep, walk_steps
from archspec.lower import lower
from archspec.registry import load, zoo_names
from archspec.spec import OP_MODELS


def plan_of(name: str | Path, **overrides: Any):
    spec = load(name)
    return build_plan(spec, lower(spec, overrides))


def test_every_spec_op_names_its_ir_op_and_real_fields() -> None:
    kinds = set()
    for op, model in OP_MODELS.items():
        assert model.ir_kind in ir.OP_KINDS, op
        ir_model = next(
            m for m in ir.Op.__args__[0].__args__ if m.model_fields["kind"].default == model.ir_kind
        )
        for ifield, sfield in model.ir_fields.items():
            assert ifield in ir_model.model_fields, (op, ifield)
            assert sfield in model.model_fields, (op, sfield)
        kinds.add(model.ir_kind)
    # every IR op but the input and a split's parts (made with it) comes from a spec op
    assert kinds == set(ir.OP_KINDS) - {"input", "part"}


def test_lowering_produces_the_declared_ir_kind() -> None:
    seen = {}
    for name in zoo_names():
        spec = load(name)
        graph = lower(spec)
        for step in walk_steps(build_plan(spec, graph).model.body):
            if isinstance(step, OpStep):
                seen[step.op.kind] = step
        for cls in build_plan(spec, graph).blocks.values():
            for step in walk_steps(cls.body):
                if isinstance(step, OpStep):
                    seen[step.op.kind] = step
    by_ir = {m.ir_kind for m in OP_MODELS.values()}
    assert set(seen) <= by_ir


def test_resnet50_plan_is_torchvisions_structure() -> None:
    plan = plan_of("resnet50")
    assert list(plan.blocks) == ["Bottleneck"]
    block = plan.blocks["Bottleneck"]
    assert [p.name for p in block.params] == [
        "planes",
        "stride",
        "groups",
        "base_width",
    ]
    assert block.extra == []  # every difference between instances is an expression
    steps = {s.key: s for s in block.body}
    conv2 = steps["conv2"]
    assert isinstance(conv2, OpStep)
    assert conv2.args["stride"] == "stride" and conv2.args.fields["stride"].symbolic
    assert conv2.args["in_channels"] == "width"  # the block's `let:` value, by name
    assert [(let.py, let.src, let.const) for let in block.lets] == [
        ("expansion", "4", True),
        ("width", "planes * base_width // 64 * groups", False),
    ]
    down = steps["downsample"]
    assert isinstance(down, GroupStep) and down.chain
    assert down.cond == "stride != 1 or in_channels != planes * expansion"
    stage = next(s for s in plan.model.body if s.key == "layer2")
    assert isinstance(stage, BlockStep) and stage.stage is not None
    assert [k for k, _ in stage.stage] == ["0", "1", "2", "3"]
    first = dict(stage.stage[0][1].args)
    assert first[None].src == "256" and first["stride"].src == "2"
    assert plan.exposed == {"num_classes": "num_classes"}


def test_rcnn_shares_one_member_and_loops() -> None:
    plan = plan_of("rcnn")
    block = next(iter(plan.blocks.values()))
    loops = [s for s in walk_steps(block.body) if isinstance(s, RepeatStep)]
    assert len(loops) == 1 and loops[0].loop is not None and loops[0].unrolled is None
    shared = [s for s in walk_steps(block.body) if isinstance(s, OpStep) and s.share]
    assert shared and {s.share for s in shared} == {"recurrent"}


def test_densenet_stage_arguments_follow_the_graph() -> None:
    plan = plan_of("densenet121")
    stage = next(s for s in walk_steps(plan.model.body) if s.key == "denseblock1")
    assert isinstance(stage, BlockStep) and stage.stage is not None
    channels = [dict(call.args)[None].value for _, call in stage.stage]
    assert channels == [64 + 32 * i for i in range(6)]


@pytest.mark.parametrize(
    ("name", "exposed"),
    [
        ("resnet50", ["num_classes"]),
        ("alexnet", ["dropout", "num_classes"]),
        ("preact_resnet22", ["hidden_units", "num_classes"]),
        ("densenet121", ["num_classes"]),  # num_init_features sizes literal stage inputs
        ("densenet121_cifar", ["num_classes"]),  # growth_rate is also a block argument
        ("resnet50_v1", ["num_classes"]),  # hidden_head/softmax are conditions; the head is absent
        ("resnet50_dropout_head", ["head_dropout", "hidden_units", "num_classes"]),
        # steps and filters are block arguments that shape the block; dropout is only
        # the blocks' dropout rate
        ("rcnn", ["dropout", "num_classes"]),
        ("efficientnet_b0", ["dropout", "num_classes", "stochastic_depth_prob"]),
    ],
)
def test_factory_parameters_follow_the_rule(name: str, exposed: list[str]) -> None:
    assert list(plan_of(name).exposed) == exposed


def test_a_parameter_sizing_a_flatten_is_not_exposed(tmp_path: Path) -> None:
    """`width` changes a conv's channels, then a flatten of a 4x4 map sizes the linear:
    width * 16 stays symbolic, so width is exposed; `stride` changes the spatial size
    under the flatten (a literal), so it is not."""
    spec_file = tmp_path / "flat.yaml"
    spec_file.write_text(
        json.dumps(
            {
                "params": {"width": 8, "stride": 1, "classes": 3},
                "inputs": {"image": [3, 4, 4]},
                "body": [
                    {"conv": {"op": "conv", "out": "$width", "kernel": 1, "stride": "$stride"}},
                    {"flat": {"op": "flatten"}},
                    {"fc": {"op": "linear", "out": "$classes"}},
                ],
            }
        )
    )
    plan = plan_of(spec_file)
    assert list(plan.exposed) == ["classes", "width"]
    fc = next(s for s in plan.model.body if s.key == "fc")
    assert isinstance(fc, OpStep) and fc.args["in_features"] == "width * 16"


FREE = {
    "params": {"width": 8, "p": 0.1, "q": 0.2, "r": 0.3, "s": 0.4, "classes": 3},
    "inputs": {"image": [3, 8, 8]},
    "blocks": {
        "Unit": {
            "params": {"out_channels": "int", "rate": "float", "gate": 0.0, "scaled": 0.0},
            "let": {"half": "${scaled / 2}"},
            "body": [
                {"conv": {"op": "conv", "out": "$out_channels", "kernel": 1}},
                {"drop": {"op": "dropout", "rate": "$rate"}},
                {"gated": {"op": "dropout", "rate": "$gate", "when": "${gate > 0}"}},
                {"halved": {"op": "dropout", "rate": "$half"}},
            ],
        },
        "Outer": {
            "params": {"rate": "float"},
            "body": [{"block": "Unit", "args": {"out_channels": 4, "rate": "$rate"}}],
        },
    },
    "body": [
        {
            "a": {
                "block": "Unit",
                "args": {"out_channels": "$width", "rate": "$p", "gate": "$q", "scaled": "$r"},
            }
        },
        {"b": {"block": "Outer", "args": {"rate": "${s * 2}"}}},
        {"pool": {"op": "global_avg_pool"}},
        {"fc": {"op": "linear", "out": "$classes"}},
    ],
}


def test_a_parameter_read_only_as_a_rate_of_a_block_is_exposed(tmp_path: Path) -> None:
    """`p` is only Unit's dropout rate and `s` only Outer's, passed on to Unit's: both are
    exposed and passed as expressions. `width` is Unit's channel count, `q` is read by a
    condition and `r` by a `let:` value: none is exposed, each stays a literal."""
    spec_file = tmp_path / "free.yaml"
    spec_file.write_text(json.dumps(FREE))
    plan = plan_of(spec_file)
    assert list(plan.exposed) == ["classes", "p", "s"]
    calls = {s.key: dict(s.call.args) for s in plan.model.body if isinstance(s, BlockStep)}
    assert {k: a.src for k, a in calls["a"].items() if k} == {
        "out_channels": "8",
        "rate": "p",
        "gate": "0.2",
        "scaled": "0.3",
    }
    assert calls["b"]["rate"].src == "s * 2"
    module, graph = generate_module(spec_file, directory=tmp_path)
    model = getattr(module, graph.name)(p=0.25, s=0.125)
    rates = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert rates["a.drop"] == 0.25 and rates["b.0.drop"] == 0.25
    assert rates["a.gated"] == 0.2 and rates["a.halved"] == 0.15


def test_a_rate_from_a_table_column_folds_and_a_half_literal_parameter_is_not_exposed(
    tmp_path: Path,
) -> None:
    """A table's list column indexed per call folds to a number (`p * 3.0 / 8`); `q`, read
    by an op field that stays literal (an unrolled repeat's `index` is no symbol) as well
    as by a symbolic one, is not exposed: every read must follow the factory's value."""
    spec_file = tmp_path / "folded.yaml"
    spec_file.write_text(
        json.dumps(
            {
                "params": {"p": 0.5, "q": 0.25},
                "inputs": {"image": [3, 8, 8]},
                "blocks": {
                    "Unit": {
                        "params": {"out_channels": "int", "rate": "float"},
                        "body": [
                            {"conv": {"op": "conv", "out": "$out_channels", "kernel": 1}},
                            {"drop": {"op": "dropout", "rate": "$rate"}},
                        ],
                    }
                },
                "body": [
                    {
                        "stages": {
                            "block": "Unit",
                            "table": [{"c": 4, "w": [1.0, 2.0]}, {"c": 8, "w": [3.0, 4.0]}],
                            "repeat": 2,
                            "args": {"out_channels": "$c", "rate": "${p * w[index] / 8}"},
                        }
                    },
                    {"drop": {"op": "dropout", "rate": "$q"}},
                    {"drops": {"repeat": 2, "body": [{"op": "dropout", "rate": "${q * index}"}]}},
                ],
            }
        )
    )
    plan = plan_of(spec_file)
    assert list(plan.exposed) == ["p"]
    stage = next(s for s in plan.model.body if s.key == "stages")
    assert isinstance(stage, BlockStep) and stage.stage is not None
    assert [dict(call.args)["rate"].src for _, call in stage.stage] == [
        "p * 1.0 / 8",
        "p * 2.0 / 8",
        "p * 3.0 / 8",
        "p * 4.0 / 8",
    ]
    drop = next(s for s in plan.model.body if s.key == "drop")
    assert isinstance(drop, OpStep) and drop.args["rate"] == "0.25"


@pytest.mark.parametrize("name", zoo_names())
def test_factory_parameters_take_effect(name: str) -> None:
    """Each exposed parameter, passed another value, gives the model the IR lowered with
    that value would have: the same parameter and buffer counts."""
    module, graph = generate_module(name)
    factory = getattr(module, graph.name)
    spec = load(name)
    plan = build_plan(spec, graph)
    params = dict(graph.params)
    for pname in plan.exposed:
        value = params[pname]
        other = (
            (not value)
            if isinstance(value, bool)
            else value + 1
            if isinstance(value, int)
            else value / 2
        )
        expected = totals(lower(spec, {pname: other}))
        with torch.device("meta"):
            model = factory(**{pname: other})
        count = sum(p.numel() for p in model.parameters())
        state = sum(b.numel() for n, b in model.named_buffers() if "num_batches" not in n)
        assert (count, state) == (expected.trainable, expected.non_trainable), pname
