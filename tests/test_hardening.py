"""Hostile input, by class (issue 9): every limit counts the work it bounds before doing it,
no traceback, names checked as Python reads them, no injection into outputs or the
terminal, no nonsense accepted, byte-identical output whatever the hash seed.

Message wording for single bad specs lives in tests/bad_specs (golden files); these
tests cover what a golden file cannot: limits lowered for speed, the CLI, files that are
not files, the terminal, and determinism across processes.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import archspec.lower
import archspec.source
from archspec.cli import main
from archspec.errors import LimitError, SpecError
from archspec.expr import ExprError, parse
from archspec.limits import LIMITS
from archspec.lower import lower
from archspec.names import ReservedNames, installed_reserved_names, name_problem
from archspec.params import describe_value
from archspec.registry import load
from archspec.render import to_dot, to_mermaid

HEAD = "inputs:\n  image: [3, 8, 8]\n"


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- limits


@pytest.fixture
def few_expansions(monkeypatch: pytest.MonkeyPatch) -> int:
    cap = 5_000
    monkeypatch.setattr(archspec.lower, "LIMITS", dataclasses.replace(LIMITS, max_expansions=cap))
    return cap


def test_nested_repeats_of_absent_items_count_towards_the_expansion_limit(
    tmp_path: Path, few_expansions: int
) -> None:
    spec = write(
        tmp_path,
        "empty.yaml",
        HEAD + "body:\n"
        "  - a:\n      repeat: 10000\n      body:\n"
        "        - b:\n            repeat: 10000\n            body:\n"
        "              - {op: relu, when: false}\n",
    )
    with pytest.raises(LimitError, match=f"max_expansions={few_expansions:,}"):
        lower(load(spec))


def test_blocks_calling_blocks_twice_with_absent_leaves_count_every_call(
    tmp_path: Path, few_expansions: int
) -> None:
    blocks = "".join(
        f"  B{i}:\n    body:\n      - {{block: B{i + 1}}}\n      - {{block: B{i + 1}}}\n"
        for i in range(30)
    )
    text = (
        HEAD + "blocks:\n" + blocks + "  B30:\n    body:\n      - {op: relu, when: false}\n"
        "body:\n  - {block: B0}\n"
    )
    with pytest.raises(LimitError, match="max_expansions"):
        lower(load(write(tmp_path, "twice.yaml", text)))


def test_a_legitimate_graph_stays_well_within_the_expansion_budget() -> None:
    counter = archspec.lower.Lowerer(load("densenet201"))
    counter.lower(archspec.lower.resolve_params(counter.spec, {}), None)
    assert len(counter.nodes) < counter.expansions < 3 * len(counter.nodes)
    assert counter.expansions < LIMITS.max_expansions // 100


def test_an_error_deep_in_nested_scopes_is_located_in_linear_time(tmp_path: Path) -> None:
    """pydantic reports the path through every union; matching it back to the YAML must
    not try every combination (it took 2^depth steps: 20 scopes never finished)."""
    item = "{op: conv, out: 4, kernel: 1, bogus: 1}"
    for level in range(20):
        item = f"{{s{level}: {{body: [{item}]}}}}"
    path = write(tmp_path, "deep.yaml", HEAD + f"body:\n  - {item}\n")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("archspec")), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert ".s0.body[0].bogus: unknown field 'bogus'" in proc.stderr


@pytest.mark.parametrize("libyaml", [True, False])
@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "max_yaml_depth"),
        ("a: [" + ", ".join(["1"] * 300_000) + "]\n", "max_yaml_nodes"),
    ],
)
def test_yaml_caps_apply_while_parsing_with_and_without_libyaml(
    monkeypatch: pytest.MonkeyPatch, libyaml: bool, text: str, limit: str
) -> None:
    """Both parsers stop at the cap, before PyYAML's recursive composer overflows the
    stack (a RecursionError) or libyaml's overflows the C stack (a crash)."""
    import yaml

    if libyaml and not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("libyaml is not installed")
    monkeypatch.setattr(yaml, "__with_libyaml__", libyaml)
    monkeypatch.setattr(
        archspec.source, "LIMITS", dataclasses.replace(LIMITS, max_file_bytes=10**7)
    )
    with pytest.raises(LimitError, match=limit) as info:
        archspec.source.load_text(text, "deep.yaml")
    assert info.value.location is not None and info.value.location.line == 1


def test_invalid_yaml_is_reported_by_pyyaml_even_when_libyaml_parses_first() -> None:
    with pytest.raises(SpecError, match="found undefined alias 'nope'"):
        archspec.source.load_text("a: [1, *nope]\n", "alias.yaml")


def test_file_size_is_checked_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(2 * 10**9)  # sparse: no disk used
    monkeypatch.setattr(os, "read", lambda *a: pytest.fail("read a file over the size limit"))
    with pytest.raises(LimitError, match="max_file_bytes"):
        archspec.source.read_spec_bytes(big, "big.yaml")


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_a_spec_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    if kind == "fifo":
        target = tmp_path / "pipe.yaml"
        os.mkfifo(target)  # opening it for reading would block without O_NONBLOCK
    elif kind == "folder":
        target = tmp_path / "folder.yaml"
        target.mkdir()
    else:
        target = Path("/dev/null")
    code, _, err = cli("validate", str(target))
    assert code == 2
    assert err.strip().endswith("not a regular file; a spec is a YAML file")


def test_set_alias_bomb_is_refused_and_the_message_stays_short() -> None:
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)
    ]
    code, _, err = cli("validate", "resnet18", "--set", f"layers=[{', '.join(levels)}]")
    assert code == 2
    assert "max_yaml_nodes" in err and len(err) < 400


def test_messages_show_bounded_values() -> None:
    huge = [[0] * 10**6] * 10**3  # a billion elements by reference
    text = describe_value(huge)
    assert text.startswith("list [[0, 0") and len(text) < 60


@pytest.mark.parametrize(
    "text",
    [
        "(" * 300 + "1" + ")" * 300,
        "[" * 200 + "1" + "]" * 200,
        "-" * 450 + "1",
        "not " * 120 + "true",
        " if 1 else ".join(["1"] * 45),
        "2 ** " * 90 + "1",
    ],
)
def test_deep_expressions_are_errors_not_recursion(text: str) -> None:
    with pytest.raises(ExprError, match="nested deeper than"):
        parse(text[: LIMITS.max_expr_chars])


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "kind", "phrase"),
    [
        ("conv\n", "item", "not a valid name"),
        ("\uff54\uff4f\uff52\uff43\uff48", "spec", "Python reads it as 'torch'"),
        ("\uff53\uff55\uff50\uff45\uff52", "item", "Python reads it as 'super'"),
        ("\uff4e\uff45\uff54", "spec", "write it as 'net'"),
        ("class", "spec", "Python keyword"),
        ("_", "spec", "module names: lowercase"),
        ("Net", "spec", "module names: lowercase"),
        ("Bottleneck", "spec", "module names: lowercase"),
        ("__dict__", "item", "special name"),
        ("__init__", "share", "special name"),
        ("_modules", "item", "private attributes"),
        ("forward", "share", "torch.nn.Module.forward"),
        ("PaddedConv2d", "block", "helper"),
        ("OrderedDict", "block", "import"),
        ("sum", "param", "builtin"),
        ("index", "param", "bound by archspec"),
        ("prev", "input", "references"),
        ("bottleneck", "block", "CapWords"),
        ("weights", "item", "keras.layers.Layer.weights"),
        ("layers", "share", "keras.Model.layers"),
        ("init_args", "item", "generated Keras layers"),
        ("GELU", "block", "a helper of the generated Keras module"),
        ("keras", "spec", "an import of the generated Keras module"),
        ("compile", "item", "keras.Model.compile (an attribute of every Keras model) and torch"),
    ],
)
def test_one_rule_for_every_kind_of_name(name: str, kind: str, phrase: str) -> None:
    problem = name_problem(name, kind, installed_reserved_names())
    assert problem is not None and phrase in problem


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("resnet50", "spec"),
        ("conv1", "item"),
        ("Bottleneck", "block"),
        ("growth_rate", "param"),
        ("sum", "item"),  # an attribute `self.sum` shadows nothing
        ("pair", "share"),
        ("layers", "param"),  # a parameter: the Keras emitter renames the argument
        ("weights", "input"),  # an input: a local and an argument, renamed where needed
    ],
)
def test_ordinary_names_pass(name: str, kind: str) -> None:
    assert name_problem(name, kind, installed_reserved_names()) is None


def test_reserved_tables_merge_and_apply_to_the_kinds_they_name() -> None:
    table = ReservedNames({"a": "one"}) | ReservedNames(
        {"b": "two"}, {"tmp_": "scratch"}, kinds=frozenset({"item"})
    )
    owners = (table.owner("a", "param"), table.owner("b", "item"), table.owner("tmp_x", "item"))
    assert owners == ("one", "two", "scratch")
    assert table.owner("c", "item") is None and table.owner("b", "param") is None


def test_every_nn_module_attribute_is_reserved_by_the_torch_backend() -> None:
    """Checked against the installed torch, so a new nn.Module attribute fails here."""
    from torch import nn

    owned = set(dir(nn.Module)) | set(vars(nn.Module()))
    reserved = installed_reserved_names()
    missing = sorted(n for n in owned if name_problem(n, "item", reserved) is None)
    assert missing == []


def test_every_keras_layer_and_model_attribute_is_reserved_by_the_keras_backend() -> None:
    """Checked against the installed Keras (public and private attributes of
    keras.layers.Layer and keras.Model, classes and instances: a called layer, a compiled
    and trained subclassed model, a functional model), so a new attribute fails here; the
    table itself is a literal, and generating never imports Keras."""
    import keras
    import numpy as np
    from archspec_keras.names import RESERVED_NAMES

    class Block(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.mine = keras.layers.Dense(2)

        def call(self, x):
            return self.mine(x)

    class Probe(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.mine = keras.layers.Dense(2)

        def call(self, x):
            return self.mine(x)

    layer = Block()
    layer(np.zeros((1, 3)))
    model = Probe()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((2, 3)), np.zeros((2, 2)), verbose=0)
    x = keras.Input((3,))
    functional = keras.Model(x, keras.layers.Dense(2)(x))
    owned = set(dir(keras.layers.Layer)) | set(dir(keras.Model)) | set(dir(functional))
    owned |= set(vars(keras.layers.Layer())) | set(vars(functional))
    owned |= (set(vars(layer)) | set(vars(model))) - {"mine"}
    owned = {n for n in owned if not (n.startswith("__") and n.endswith("__"))}
    assert len(owned) > 150 and "_layers" in owned and "weights" in owned
    for kind in ("item", "share"):
        missing = sorted(n for n in owned if RESERVED_NAMES.owner(n, kind) is None)
        assert missing == []
        shown = {RESERVED_NAMES.owner(n, kind) for n in owned}
        assert all("Keras" in owner for owner in shown if owner)  # names the backend


@pytest.mark.parametrize(
    "stem", ["Net", "Bottleneck", "class", "_", "\uff54\uff4f\uff52\uff43\uff48", "nn"]
)
def test_file_stems_that_would_break_generated_code_are_refused(tmp_path: Path, stem: str) -> None:
    path = write(
        tmp_path,
        f"{stem}.yaml",
        HEAD + "blocks:\n  Bottleneck:\n    body: [{op: relu}]\nbody:\n  - {block: Bottleneck}\n",
    )
    code, _, err = cli("validate", str(path))
    assert code == 2 and "spec name (the file name)" in err


# ---------------------------------------------------------------------------- output injection


def test_control_sequences_never_reach_the_terminal(tmp_path: Path) -> None:
    described = write(
        tmp_path,
        "shown.yaml",
        'description: "clear \\e[2J bell \\a markup [/x] [bold]b"\n'
        + HEAD
        + "body: [{op: relu}]\n",
    )
    code, out, _ = cli("summary", str(described))
    assert code == 0
    assert "\x1b[2J" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and "[/x]" in out  # shown, escaped, not parsed as markup
    bad_op = write(tmp_path, "bad.yaml", HEAD + 'body:\n  - {op: "\\e]0;owned\\a"}\n')
    code, _, err = cli("validate", str(bad_op))
    assert code == 2 and "\x1b" not in err and "\\x1b]0;owned\\x07" in err


def test_graph_text_escapes_names(tmp_path: Path) -> None:
    graph = lower(load(write(tmp_path, "g.yaml", HEAD + "body: [{op: relu}]\n")))
    node = dataclasses.replace(graph.nodes[1], name='evil"\n] --> x["')
    hostile = dataclasses.replace(graph, name='a" { x -> y } "', nodes=(graph.nodes[0], node))
    dot = to_dot(hostile)
    assert dot.splitlines()[0] == 'digraph "a\\" { x -> y } \\"" {'
    assert '[label="evil\\" ] --> x[\\"\\nrelu 3x8x8"]' in dot
    mermaid = to_mermaid(hostile)
    assert 'n1["evil#quot; ] --#gt; x[#quot;<br/>relu 3x8x8"]' in mermaid
    assert len(mermaid.splitlines()) == 4  # header, two nodes, one edge: no line injected


# ---------------------------------------------------------------------------- nonsense


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999"])
def test_non_finite_set_values_are_refused(value: str) -> None:
    code, _, err = cli("validate", "densenet121", "--set", f"theta={value}")
    assert code == 2 and "finite" in err


def test_inputs_and_outputs_lists_may_not_be_empty(tmp_path: Path) -> None:
    for text in ("inputs: {}\nbody: [{op: relu}]\n", HEAD + "outputs: []\nbody: [{op: relu}]\n"):
        with pytest.raises(SpecError, match="at least 1 item"):
            load(write(tmp_path, "empty.yaml", text))


# ---------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_output_is_byte_identical_across_hash_seeds(tmp_path: Path) -> None:
    """The whole zoo, graph text and an error, generated in processes with different
    PYTHONHASHSEED values (set iteration order changes with it)."""
    exe = str(Path(sys.executable).with_name("archspec"))
    root = Path(__file__).parent.parent
    outputs: list[dict[str, bytes]] = []
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}

        def run(*args: str, env: dict[str, str] = env) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([exe, *args], env=env, capture_output=True, cwd=root, check=False)

        folder = tmp_path / seed
        assert run("gen", "--all", "--backend", "torch", "-o", str(folder)).returncode == 0
        got = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.py"))}
        for fmt in ("dot", "mermaid"):
            got[f"graph.{fmt}"] = run("graph", "densenet121_cifar", "--format", fmt).stdout
        got["error"] = run("validate", "tests/bad_specs/shared_channels_mismatch.yaml").stderr
        outputs.append(got)
    assert len(outputs[0]) > 10
    assert outputs[0] == outputs[1] == outputs[2]
