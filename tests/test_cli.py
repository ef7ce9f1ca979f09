"""The command line: list, validate, summary, schema, graph, and its import discipline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.registry import zoo_names

HEAVY = ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "jax")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_commands() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in (
        "list",
        "validate",
        "summary",
        "schema",
        "graph",
        "gen",
        "ops",
        "parity",
        "port",
    ):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["list"],
        ["validate", "resnet50", "densenet121"],
        ["summary", "rcnn"],
        ["ops"],
        ["graph", "resnet50"],
        ["port", "--help"],
    ],
    ids=lambda a: "_".join(a[:2]) if a[0] == "port" else a[0],
)
def test_light_commands_import_no_framework(argv: list[str]) -> None:
    script = (
        "import sys\n"
        "from archspec.cli import main\n"
        f"try:\n    main({argv!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_list_shows_every_spec_with_params() -> None:
    code, out, _ = run("list")
    assert code == 0
    for name in zoo_names():
        assert name in out
    assert "25,557,032" in out and "61,100,840" in out


def test_summary_totals() -> None:
    code, out, _ = run("summary", "resnet50")
    assert code == 0
    assert "trainable params:     25,557,032" in out
    assert "non-trainable params: 53,120" in out
    assert "layer1.0.downsample.0" in out
    code, out, _ = run("summary", "resnet50_v1")
    assert "trainable params:     25,583,592" in out
    assert "total params:         25,636,712" in out


def test_summary_overrides_and_input_size() -> None:
    code, out, _ = run("summary", "resnet18", "--set", "num_classes=10", "--input-size", "97", "97")
    assert code == 0
    assert "(N, 10)" in out
    assert "(N, 512, 4, 4)" in out  # 97 -> 49 -> 25 -> 13 -> 7 -> 4


def test_summary_of_a_file(in_repo: Path) -> None:
    code, out, _ = run("summary", "specs/alexnet.yaml")
    assert code == 0 and "61,100,840" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "resnet50", "--set", "num_clases=10"], "did you mean 'num_classes'?"),
        (["summary", "resnet50", "--set", "num_classes=ten"], "expected an int, got str 'ten'"),
        (["summary", "resnet5"], "unknown spec 'resnet5'; did you mean 'resnet50'?"),
        (["summary", "missing/file.yaml"], "no such spec file: missing/file.yaml"),
        (["summary", "alexnet", "--input-size", "32", "32"], "larger than the padded input"),
    ],
)
def test_summary_errors_exit_2_without_traceback(args: list[str], message: str) -> None:
    code, _, err = run(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_schema_is_json_schema_of_the_format() -> None:
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "archspec spec"
    assert {"params", "blocks", "body", "inputs", "defaults", "extends"} <= set(
        schema["properties"]
    )
    assert "ConvOp" in schema["$defs"]
    body = schema["properties"]["body"]
    text = json.dumps(body)
    assert '"maxProperties": 1' in text  # `name: {item}` entries are allowed


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_formats(fmt: str) -> None:
    code, out, _ = run("graph", "rcnn", "--format", fmt)
    assert code == 0
    arrow = "-->" if fmt == "mermaid" else "->"
    assert out.count(arrow) >= 76  # every node has at least one producer except the input
    assert "rcl1.steps.3.conv" in out


def test_validate_library_and_model(in_repo: Path) -> None:
    code, out, _ = run("validate", "specs/lib/resnet.yaml", "rcnn")
    assert code == 0
    assert "library with 2 block(s)" in out
    assert "290,538 trainable" in out


def test_schema_accepts_every_shipped_spec(in_repo: Path) -> None:
    """Editors using the exported schema must not flag the zoo, its libraries or the docs."""
    import jsonschema
    import yaml

    _, out, _ = run("schema")
    validator = jsonschema.Draft202012Validator(json.loads(out))
    files = [*sorted(Path("specs").rglob("*.yaml")), *sorted(Path("docs").rglob("*.yaml"))]
    assert len(files) > 15
    for path in files:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_schema_rejects_unknown_fields() -> None:
    import jsonschema

    _, out, _ = run("schema")
    validator = jsonschema.Draft202012Validator(json.loads(out))
    bad = {"inputs": {"image": [3, 8, 8]}, "body": [{"c": {"op": "conv", "out": 4, "kernal": 3}}]}
    assert list(validator.iter_errors(bad))


def test_the_console_script_keeps_the_exit_code_and_freezes_the_heap() -> None:
    """`archspec` (cli.run) exits with main's code, its heap frozen so the interpreter's
    exit skips collecting it (1 s after TensorFlow); `main` itself freezes nothing."""
    code = (
        "import gc, sys\n"
        "from archspec import cli\n"
        "sys.argv = ['archspec', 'validate', 'resnet81']\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit as exc:\n"
        "    print('main', exc.code, gc.get_freeze_count() > 0)\n"
        "try:\n"
        "    cli.run()\n"
        "except SystemExit as exc:\n"
        "    print('run', exc.code, gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["main 2 False", "run 2 True"], done.stdout + done.stderr


def _import_cut_by_ctrl_c(*args: object, **kwargs: object) -> None:
    """What TensorFlow's import raises when Ctrl-C lands inside its C initialization."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        raise ImportError("initialization failed") from exc


def test_ctrl_c_inside_an_import_aborts_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import archspec.cli as cli

    monkeypatch.setattr(cli, "build", _import_cut_by_ctrl_c)
    result = CliRunner().invoke(cli.main, ["summary", "resnet18"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Aborted!"
    assert isinstance(result.exception, SystemExit)


def test_an_import_error_of_our_own_is_not_taken_for_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import archspec.cli as cli

    def broken(*args: object, **kwargs: object) -> None:
        raise ImportError("no module named 'x'")

    monkeypatch.setattr(cli, "build", broken)
    result = CliRunner().invoke(cli.main, ["summary", "resnet18"])
    assert isinstance(result.exception, ImportError)
