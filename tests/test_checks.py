"""Validation warnings (archspec/checks.py) and the refusal of optional multi-input items.

Warnings are located like errors, printed by validate/summary/gen with exit 0, and turn
into errors (exit 2, nothing written) with --strict.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.errors import SpecError
from archspec.lower import lower
from archspec.registry import load, zoo_names

HEAD = "inputs:\n  image: [3, 8, 8]\n"

UNUSED = """\
inputs:
  image: [3, 8, 8]
  meta: [4]
blocks:
  B:
    body:
      - conv: {op: conv, out: 4, kernel: 3, padding: 1}
      - side: {op: relu}
      - out: {op: relu, input: conv}
body:
  - stage: {block: B, repeat: 4}
  - head: {op: global_avg_pool}
  - dead: {op: relu, input: stage}
"""


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def warnings_of(path: Path, **sets: object) -> list[str]:
    return [w.render() for w in lower(load(str(path)), sets).warnings]


@pytest.mark.parametrize("name", zoo_names())
def test_the_zoo_has_no_warnings(name: str) -> None:
    assert lower(load(name)).warnings == ()


def test_unused_items_and_inputs_are_located_once_per_item(here: Path) -> None:
    (here / "u.yaml").write_text(UNUSED)
    assert warnings_of(here / "u.yaml") == [
        "u.yaml:3:9: inputs.meta: warning: input 'meta' is never read by any item",
        "u.yaml:8:15: blocks.B.body[1].side: warning: the output of this item (stage.0.side, "
        "stage.1.side, stage.2.side and 1 more) is never used: it is computed and discarded "
        "(read it with 'input'/'inputs', list it in 'outputs:', or remove it)",
        "u.yaml:12:11: body[1].head: warning: the output of 'head' is never used: it is "
        "computed and discarded (read it with 'input'/'inputs', list it in 'outputs:', "
        "or remove it)",
    ]


def test_outputs_make_items_used(here: Path) -> None:
    (here / "u.yaml").write_text(
        HEAD + "outputs: [a, b]\nbody:\n  - a: {op: relu}\n  - b: {op: sigmoid, input: image}\n"
    )
    assert warnings_of(here / "u.yaml") == []


def test_an_output_naming_an_input(here: Path) -> None:
    (here / "o.yaml").write_text(HEAD + "outputs: [a, image]\nbody:\n  - a: {op: relu}\n")
    assert warnings_of(here / "o.yaml") == [
        "o.yaml:3:14: outputs[1]: warning: output 'image' is the model input itself: "
        "the model returns it unchanged"
    ]


def test_an_output_that_is_an_input_through_an_absent_item(here: Path) -> None:
    text = HEAD + "outputs: [a]\nbody:\n  - a: {op: relu, when: false}\n"
    (here / "o.yaml").write_text(text)
    assert [w.split(": warning: ")[1] for w in warnings_of(here / "o.yaml")] == [
        "output 'a' is the model input itself: the model returns it unchanged"
    ]


LISTS = """\
params:
  widths: [4, 8, 16]
inputs:
  image: [3, 8, 8]
body:
  - a: {op: conv, out: "${widths[0]}", kernel: 1}
  - b: {op: conv, out: "${widths[1]}", kernel: 1}
"""


def test_a_list_parameter_longer_than_what_is_read(here: Path) -> None:
    (here / "l.yaml").write_text(LISTS)
    message = (
        "warning: parameter 'widths' has 3 entries but the spec reads only the first 2 "
        "(widths[0] .. widths[1]); the rest is ignored"
    )
    assert warnings_of(here / "l.yaml") == [f"l.yaml:2:11: params.widths: {message}"]
    assert warnings_of(here / "l.yaml", widths=[4, 8]) == []
    assert warnings_of(here / "l.yaml", widths=[4, 8, 1, 1]) == [
        f"--set: params.widths: {message.replace('has 3', 'has 4')}"
    ]


@pytest.mark.parametrize(
    "use",
    [
        "${widths[-1]}",  # the last entry: every entry up to it counts
        "${sum(widths)}",  # the whole list
        "${len(widths) * 4}",
        "${widths[len(widths) - 1]}",
    ],
)
def test_whole_list_reads_do_not_warn(here: Path, use: str) -> None:
    (here / "l.yaml").write_text(LISTS + f'  - c: {{op: conv, out: "{use}", kernel: 1}}\n')
    assert warnings_of(here / "l.yaml") == []


def test_a_block_parameter_of_the_same_name_is_not_the_model_parameter(here: Path) -> None:
    block = "    body: [{op: conv, out: '${widths[3]}', kernel: 1}]\n"
    text = LISTS.replace(
        "body:\n", "blocks:\n  B:\n    params: {widths: [1, 2, 3, 4]}\n" + block + "body:\n"
    )
    (here / "l.yaml").write_text(text + "  - c: {block: B}\n")
    assert len(warnings_of(here / "l.yaml")) == 1  # the block's widths[3] is not the model's


def test_passing_the_list_to_a_block_reads_all_of_it(here: Path) -> None:
    block = "    body: [{op: conv, out: '${ws[0]}', kernel: 1}]\n"
    text = LISTS.replace("body:\n", "blocks:\n  B:\n    params: {ws: ints}\n" + block + "body:\n")
    (here / "l.yaml").write_text(text + "  - c: {block: B, args: {ws: $widths}}\n")
    assert warnings_of(here / "l.yaml") == []


def test_cli_prints_warnings_and_exits_0_or_2_with_strict(here: Path) -> None:
    (here / "u.yaml").write_text(UNUSED)
    code, out, err = cli("validate", "u.yaml")
    assert code == 0 and out.startswith("ok  u.yaml")
    assert err.count(": warning: ") == 3 and err.startswith("u.yaml:3:9: inputs.meta: warning:")
    code, out, err = cli("validate", "--strict", "u.yaml", "rcnn")
    assert code == 2 and "u.yaml" not in out and out.count("ok  ") == 1
    assert err.count(": error (--strict): ") == 3 and ": warning: " not in err
    code, out, err = cli("summary", "u.yaml")
    assert code == 0 and "total params" in out and err.count(": warning: ") == 3
    code, out, err = cli("summary", "--strict", "u.yaml")
    assert code == 2 and out == "" and err.count(": error (--strict): ") == 3


def test_gen_prints_warnings_and_strict_writes_nothing(here: Path) -> None:
    (here / "u.yaml").write_text(UNUSED)
    code, _, err = cli("gen", "u.yaml", "--backend", "torch", "-o", "out", "--strict")
    assert code == 2 and err.count(": error (--strict): ") == 3
    assert not (here / "out").exists()
    code, _, err = cli("gen", "u.yaml", "--backend", "torch", "-o", "out")
    assert code == 0 and err.count(": warning: ") == 3 and (here / "out" / "u.py").exists()


def test_control_characters_in_warnings_are_escaped(here: Path) -> None:
    (here / "d\x1b[2J").mkdir()
    (here / "d\x1b[2J" / "u.yaml").write_text(UNUSED)
    code, _, err = cli("validate", "d\x1b[2J/u.yaml")
    assert code == 0 and err.count("d\\x1b[2J/u.yaml:") == 3 and "\x1b" not in err


@pytest.mark.parametrize("cond", ["true", "false", "$flag"])
def test_when_on_a_multi_input_item_is_refused_whatever_the_condition(
    here: Path, cond: str
) -> None:
    text = (
        "params: {flag: true}\n" + HEAD + "body:\n  - a: {op: relu}\n"
        f"  - s: {{op: add, inputs: [image, a], when: {cond}}}\n"
    )
    (here / "w.yaml").write_text(text)
    with pytest.raises(SpecError, match="'when' on an 'add' item with several inputs") as info:
        lower(load("w.yaml"))
    assert info.value.path == ("body", 1, "s", "when")


def test_when_on_a_single_input_merge_item_is_still_allowed(here: Path) -> None:
    text = HEAD + "body:\n  - a: {op: relu}\n  - s: {op: concat, inputs: [a], when: false}\n"
    (here / "w.yaml").write_text(text)
    graph = lower(load("w.yaml"))
    assert graph.outputs == ("a",)
