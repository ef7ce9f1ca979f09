"""Op docs and other frameworks' op names (archspec/catalog.py), and `archspec ops`.

The unknown-op error must never steer a user to an op that computes something else:
`relu6` is not `relu`, `hard_sigmoid` is not `sigmoid`, `hardtanh` is not `tanh`.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archspec.catalog import _ALIASES, OP_DOCS, _key, alias, unknown_op_message
from archspec.cli import main
from archspec.spec import OP_MODELS

# Names from the issue that have no archspec op computing the same thing today.
MISSING = [
    "mish", "elu", "selu", "prelu", "group_norm", "instance_norm",
    "conv_transpose", "upsample", "interpolate",
]  # fmt: skip
# Names from the issue that do have one.
SAME = {
    "depthwise_conv": "conv", "separable_conv": "conv", "linear": "linear", "dense": "linear",
    "fc": "linear", "Dense": "linear", "batchnorm": "batch_norm", "bn": "batch_norm",
    "BatchNorm2d": "batch_norm", "maxpool": "max_pool", "MaxPool2d": "max_pool",
    "avgpool": "avg_pool", "concatenate": "concat", "cat": "concat", "sum": "add",
    "plus": "add", "Conv2D": "conv", "ReLU6": "relu6", "hard_swish": "hardswish",
    "Hardswish": "hardswish", "hard_sigmoid": "hardsigmoid", "hardtanh": "clip",
    "clamp": "clip", "SiLU": "silu", "swish": "silu", "LayerNorm": "layer_norm",
    "multiply": "mul", "drop_path": "stochastic_depth", "ChannelShuffle": "channel_shuffle",
}  # fmt: skip


def test_every_op_has_a_one_line_doc() -> None:
    assert set(OP_DOCS) == set(OP_MODELS)
    assert all(doc and "\n" not in doc for doc in OP_DOCS.values())


def test_alias_table_points_only_at_real_ops_and_has_no_dead_entries() -> None:
    op_keys = {_key(op) for op in OP_MODELS}
    for key, entry in _ALIASES.items():
        assert entry.op is None or entry.op in OP_MODELS, key
        assert key not in op_keys, f"{key} is an op's own name: the alias is never read"
        assert entry.op is not None or entry.note, key


@pytest.mark.parametrize("name", MISSING)
def test_missing_ops_are_named_as_missing_never_as_a_lookalike(name: str) -> None:
    message = unknown_op_message(name, OP_MODELS)
    head = message.split(" (ops: ")[0]
    assert "not available yet" in head
    assert "did you mean" not in head and "use op" not in head


@pytest.mark.parametrize(("name", "op"), SAME.items())
def test_equivalent_names_point_at_the_op(name: str, op: str) -> None:
    if name in OP_MODELS:
        return  # an op already (linear)
    message = unknown_op_message(name, OP_MODELS)
    assert message.startswith(f"unknown op '{name}'; use op '{op}'")


def test_depthwise_says_how() -> None:
    assert "groups: ${in_channels}" in unknown_op_message("depthwise_conv", OP_MODELS)


def test_a_typo_still_gets_the_nearest_spelling_and_every_op_is_listed() -> None:
    message = unknown_op_message("batch_nrom", OP_MODELS)
    assert message.startswith("unknown op 'batch_nrom'; did you mean 'batch_norm'?")
    assert all(op in message for op in OP_MODELS)
    assert "`archspec ops`" in message


def test_an_op_added_later_wins_over_its_missing_alias() -> None:
    """When the mish op lands, `Mish` points at it instead of saying 'not available'."""
    found = alias("Mish", [*OP_MODELS, "mish"])
    assert found is not None and found.op == "mish"
    found = alias("Mish", list(OP_MODELS))
    assert found is not None and found.op is None


def test_ops_command_lists_every_op_with_its_doc_and_required_fields() -> None:
    result = CliRunner().invoke(main, ["ops"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for op, doc in OP_DOCS.items():
        assert any(line.startswith(op + " ") and line.endswith(doc) for line in lines), op
    conv = lines.index(next(line for line in lines if line.startswith("conv ")))
    assert lines[conv + 1].split() == [
        "fields:", "out*,", "kernel*,", "stride,", "padding,", "dilation,", "groups,", "bias,",
        "init,", "bias_init",
    ]  # fmt: skip
