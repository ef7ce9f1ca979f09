"""Lowering semantics: wiring, scopes, conditions, repeats, sharing, defaults, extends."""

from __future__ import annotations

from pathlib import Path

import pytest

from archspec import ir
from archspec.analysis import totals
from archspec.errors import SpecError
from archspec.lower import lower
from archspec.registry import load

HEAD = "inputs:\n  image: [3, 16, 16]\n"


def build(tmp_path: Path, text: str, name: str = "net", **overrides: object) -> ir.Graph:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return lower(load(path), overrides)


def test_sequential_default_wiring_and_prev(tmp_path: Path) -> None:
    g = build(tmp_path, HEAD + "body:\n  - a: {op: conv, out: 4, kernel: 3, padding: 1}\n"
              "  - b: {op: relu}\n  - c: {op: add, inputs: [a, prev]}\n")  # fmt: skip
    assert g.node("b").inputs == ("a",)
    assert g.node("c").inputs == ("a", "b")
    assert g.outputs == ("c",)


def test_absent_item_passes_its_input_through(tmp_path: Path) -> None:
    text = HEAD + (
        "params: {project: false}\n"
        "body:\n"
        "  - a: {op: conv, out: 3, kernel: 3, padding: 1}\n"
        "  - skip:\n      when: $project\n      input: input\n"
        "      body: [{op: conv, out: 3, kernel: 1}]\n"
        "  - sum: {op: add, inputs: [a, skip]}\n"
    )
    g = build(tmp_path, text)
    assert g.node("sum").inputs == ("a", "image")
    g = build(tmp_path, text, project=True)
    assert g.node("sum").inputs == ("a", "skip.0")


def test_repeat_names_first_override_and_index(tmp_path: Path) -> None:
    text = HEAD + (
        "blocks:\n  Unit:\n    params: {width: int, stride: 1}\n    body:\n"
        "      - conv: {op: conv, out: $width, kernel: 3, stride: $stride, padding: 1}\n"
        "body:\n"
        "  - stage: {block: Unit, repeat: 3, prefix: unit, start: 1,"
        " args: {width: '${4 * (index + 1)}'}, first: {stride: 2}}\n"
    )
    g = build(tmp_path, text)
    assert [n.name for n in g.nodes[1:]] == [
        "stage.unit1.conv",
        "stage.unit2.conv",
        "stage.unit3.conv",
    ]
    assert g.node("stage.unit1.conv").shape == (4, 8, 8)
    assert g.node("stage.unit3.conv").shape == (12, 8, 8)
    assert g.node("stage.unit2.conv").block_type == "Unit"
    assert g.node("stage.unit2.conv").scope == ("stage", "unit2")


def test_inline_repeat_reads_enclosing_names(tmp_path: Path) -> None:
    text = HEAD + (
        "body:\n"
        "  - feed: {op: conv, out: 3, kernel: 1}\n"
        "  - loop:\n      repeat: 2\n      body:\n"
        "        - step: {op: add, inputs: [feed, prev]}\n"
    )
    g = build(tmp_path, text)
    assert g.node("loop.0.step").inputs == ("feed", "feed")
    assert g.node("loop.1.step").inputs == ("feed", "loop.0.step")


def test_shared_group_is_per_block_instance(tmp_path: Path) -> None:
    text = HEAD + (
        "blocks:\n  Rec:\n    params: {}\n    body:\n"
        "      - steps:\n          repeat: 3\n          body:\n"
        "            - conv: {op: conv, out: 3, kernel: 3, padding: 1, share: w}\n"
        "            - bn: {op: batch_norm}\n"
        "body:\n  - r1: {block: Rec}\n  - r2: {block: Rec}\n"
    )
    g = build(tmp_path, text)
    groups = dict(g.shared_groups)
    assert groups == {
        "r1.w": ("r1.steps.0.conv", "r1.steps.1.conv", "r1.steps.2.conv"),
        "r2.w": ("r2.steps.0.conv", "r2.steps.1.conv", "r2.steps.2.conv"),
    }
    conv, bn = 3 * 3 * 9 + 3, 2 * 3
    assert totals(g).trainable == 2 * (conv + 3 * bn)  # one conv per instance, a BN per step
    assert len({n.param_name for n in g.nodes if isinstance(n.op, ir.BatchNorm)}) == 6


def test_defaults_precedence(tmp_path: Path) -> None:
    text = HEAD + (
        "defaults:\n  conv: {bias: false}\n  batch_norm: {eps: 0.001}\n"
        "body:\n  - a: {op: conv, out: 4, kernel: 1}\n"
        "  - b: {op: conv, out: 4, kernel: 1, bias: true}\n"
        "  - n: {op: batch_norm}\n  - m: {op: batch_norm, momentum: 0.01}\n"
    )
    g = build(tmp_path, text)
    assert g.node("a").op.bias is False and g.node("b").op.bias is True  # type: ignore[union-attr]
    n, m = g.node("n").op, g.node("m").op
    assert isinstance(n, ir.BatchNorm) and isinstance(m, ir.BatchNorm)
    assert (n.eps, n.momentum) == (0.001, 0.1)  # momentum: built-in default (PyTorch's)
    assert (m.eps, m.momentum) == (0.001, 0.01)


def test_padding_forms(tmp_path: Path) -> None:
    text = (
        "inputs:\n  image: [3, 10, 10]\nbody:\n"
        "  - a: {op: conv, out: 2, kernel: 3, padding: [0, 1, 2, 3], input: image}\n"
        "  - b: {op: conv, out: 2, kernel: 3, padding: [1, 0], input: image}\n"
        "  - c: {op: conv, out: 2, kernel: 4, stride: 2, padding: same, input: image}\n"
        "  - d: {op: max_pool, kernel: 3, stride: 2, ceil_mode: true, input: image}\n"
    )
    g = build(tmp_path, text)
    a, b, c = (g.node(k).op for k in "abc")
    assert isinstance(a, ir.Conv2d) and (
        a.padding.top,
        a.padding.bottom,
        a.padding.left,
        a.padding.right,
    ) == (0, 1, 2, 3)
    assert g.node("a").shape == (2, 9, 13)
    assert isinstance(b, ir.Conv2d) and (b.padding.top, b.padding.left) == (1, 0)
    # TF same, k=4, s=2, size 10: out 5, total pad (5-1)*2+4-10 = 2 -> (1, 1)
    assert (
        isinstance(c, ir.Conv2d) and c.padding.same and (c.padding.top, c.padding.bottom) == (1, 1)
    )
    assert g.node("d").shape == (3, 5, 5)  # ceil((10-3)/2)+1 = 5


def test_extends_refines_params_and_overrides_blocks(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "family.yaml").write_text(HEAD + (
        "abstract: true\nparams: {width: 8}\n"
        "blocks:\n  Unit:\n    params: {w: int}\n    body: [{op: conv, out: $w, kernel: 1}]\n"
        "body:\n  - u: {block: Unit, args: {w: $width}}\n"
    ))  # fmt: skip
    (tmp_path / "child.yaml").write_text(
        "extends: family\nparams: {width: 5}\n"
        "blocks:\n  Unit:\n    params: {w: int}\n"
        "    body: [{op: conv, out: '${2 * w}', kernel: 1}]\n"
    )
    g = lower(load(tmp_path / "child.yaml"))
    assert g.node("u.0").shape == (10, 16, 16)
    assert g.name == "child"


def test_extends_cannot_change_a_param_type(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(HEAD + "params: {width: 8}\nbody: [{op: relu}]\n")
    (tmp_path / "child.yaml").write_text(
        "extends: base\nparams: {width: {type: str, default: x}}\n"
    )
    with pytest.raises(SpecError, match="cannot change it to str"):
        load(tmp_path / "child.yaml")


def test_circular_extends(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(SpecError, match="circular extends/use: a -> b -> a"):
        load(tmp_path / "a.yaml")


def test_use_clash_is_an_error(tmp_path: Path) -> None:
    block = "blocks:\n  Unit:\n    params: {}\n    body: [{op: relu}]\n"
    (tmp_path / "one.yaml").write_text(block)
    (tmp_path / "two.yaml").write_text(block)
    (tmp_path / "net.yaml").write_text(HEAD + "use: [one, two]\nbody: [{block: Unit}]\n")
    with pytest.raises(SpecError, match="block 'Unit' is defined in both"):
        load(tmp_path / "net.yaml")


def test_block_library_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "blocks.yaml").write_text(
        "blocks:\n  Unit:\n    params: {}\n    body: [{op: relu}]\n"
    )
    with pytest.raises(SpecError, match="has no body: it is a library"):
        lower(load(tmp_path / "blocks.yaml"))


def test_param_limits_and_choices() -> None:
    with pytest.raises(SpecError, match="expected one of"):
        lower(load("resnet18"), {"block": "Basic"})
    with pytest.raises(SpecError, match="must be >= 1"):
        lower(load("resnet18"), {"num_classes": 0})


def test_flops_match_published_figures() -> None:
    """torchvision's model cards: 4.09 / 2.83 / 0.71 GFLOPS (multiply-adds) at 224."""
    assert round(totals(lower(load("resnet50"))).macs / 1e9, 2) == 4.09
    assert round(totals(lower(load("densenet121"))).macs / 1e9, 2) == 2.83
    assert round(totals(lower(load("alexnet"))).macs / 1e9, 2) == 0.71


def test_multi_branch_concat_and_several_outputs(tmp_path: Path) -> None:
    """An Inception-style block: parallel branches from the block input, concatenated."""
    text = HEAD + (
        "blocks:\n  Inception:\n    params: {a: int, b: int}\n    body:\n"
        "      - b1: {op: conv, input: input, out: $a, kernel: 1}\n"
        "      - b2:\n          input: input\n          body:\n"
        "            - {op: conv, out: $b, kernel: 1}\n"
        "            - {op: conv, out: $b, kernel: 3, padding: 1}\n"
        "      - b3:\n          input: input\n          body:\n"
        "            - {op: max_pool, kernel: 3, stride: 1, padding: 1}\n"
        "            - {op: conv, out: 2, kernel: 1}\n"
        "      - out: {op: concat, inputs: [b1, b2, b3]}\n"
        "outputs: [mixed, aux]\n"
        "body:\n  - mixed: {block: Inception, args: {a: 4, b: 6}}\n"
        "  - aux: {op: global_avg_pool, input: mixed}\n"
    )
    g = build(tmp_path, text)
    assert g.node("mixed.out").inputs == ("mixed.b1", "mixed.b2.1", "mixed.b3.1")
    assert g.node("mixed.out").shape == (12, 16, 16)
    assert g.outputs == ("mixed.out", "aux")
    assert g.node("aux").shape == (12,)


def test_float_fields_take_yaml_1_1_exponent_text(tmp_path: Path) -> None:
    """PyYAML reads `1e-3` as a string; a float field takes it as the number it spells."""
    graph = build(
        tmp_path,
        "inputs: {image: [3, 8, 8]}\nbody:\n  - bn: {op: batch_norm, eps: 1e-3, momentum: 5E-2}\n",
    )
    op = graph.node("bn").op
    assert isinstance(op, ir.BatchNorm) and (op.eps, op.momentum) == (1e-3, 5e-2)
    with pytest.raises(SpecError, match="got str '1e-3x'"):
        build(tmp_path, "inputs: {image: [3, 8, 8]}\nbody:\n  - bn: {op: batch_norm, eps: 1e-3x}\n")
