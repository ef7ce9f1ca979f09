"""Every invalid spec gives ONE error `file:line:col: spec.path: message` and exit status 2.

Each tests/bad_specs/<case>.yaml has its full expected stderr in <case>.expected. The
messages were reviewed by hand when written; if a message changes on purpose, rerun with
`pytest tests/test_bad_specs.py --accept` and review the diff.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec.cli import main

CASES = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))
LOCATION = re.compile(r"^tests/bad_specs/[a-z_]+\.yaml:\d+:\d+: ")


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_spec_message(case: Path, in_repo: Path, accept: bool) -> None:
    rel = case.relative_to(in_repo)
    result = CliRunner().invoke(main, ["validate", str(rel)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = result.stderr
    assert "Traceback" not in message
    assert LOCATION.match(message), f"no file:line:col prefix in: {message}"
    expected_file = case.with_suffix(".expected")
    if accept:
        expected_file.write_text(message)
    assert expected_file.exists(), f"no {expected_file.name}; run with --accept and review it"
    assert message == expected_file.read_text(), (
        "error message changed; if intended, rerun `pytest tests/test_bad_specs.py --accept` "
        "and review the .expected diff"
    )


def test_real_cli_exit_code_and_no_traceback(in_repo: Path) -> None:
    """The installed console script, as a user runs it (not the in-process runner)."""
    exe = Path(sys.executable).with_name("archspec")
    proc = subprocess.run(
        [str(exe), "validate", "tests/bad_specs/add_shape_mismatch.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tests/bad_specs/add_shape_mismatch.yaml:6:10: body[2].sum: ")
    assert "'a' is (16, 32, 32)" in proc.stderr and "'b' is (32, 32, 32)" in proc.stderr


def test_validate_reports_every_file_and_fails_if_any_is_bad(in_repo: Path) -> None:
    result = CliRunner().invoke(
        main, ["validate", "resnet18", "tests/bad_specs/cycle.yaml", "alexnet"]
    )
    assert result.exit_code == 2
    assert result.stdout.count("ok  ") == 2
    assert "cycle" in result.stderr
