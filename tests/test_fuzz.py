"""The mutation fuzzer (tests/fuzzing.py) over the zoo: exit 0 or 2, never a traceback,
never over the time or memory budget, and every spec that validates generates code that
runs (Keras: a seeded sample per chunk, run in one subprocess per chunk). 1,000 seeded
cases by default, in chunks so xdist spreads them; more with `ARCHSPEC_FUZZ_CASES=N` (and
another seed with `ARCHSPEC_FUZZ_SEED=S`).

A few cases also go through the installed `archspec` console script in a subprocess, to
prove the real exit codes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fuzzing
import pytest

CASES = int(os.environ.get("ARCHSPEC_FUZZ_CASES", "1000"))
SEED = int(os.environ.get("ARCHSPEC_FUZZ_SEED", "0"))
CHUNK = 50


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, CASES, CHUNK))
def test_fuzz_chunk(start: int, tmp_path: Path) -> None:
    report = fuzzing.run(min(CHUNK, CASES - start), SEED, tmp_path, start)
    assert len(report.outcomes) == min(CHUNK, CASES - start)
    assert not report.failures, "\n".join(fuzzing.summarize(report))


def test_fuzz_cases_exit_0_or_2_through_the_real_cli(tmp_path: Path) -> None:
    bases, libs = fuzzing.zoo_texts()
    exe = Path(sys.executable).with_name("archspec")
    codes = set()
    for index in range(64):  # until both codes are seen: the mutations decide which
        case = fuzzing.make_case(index, SEED, tmp_path, bases, libs)
        proc = subprocess.run(
            [str(exe), "validate", str(case.target)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode in (0, 2), proc.stderr
        assert "Traceback" not in proc.stderr
        codes.add(proc.returncode)
        if codes == {0, 2}:
            break
    assert codes == {0, 2}  # the seed's first cases include accepted and rejected specs


TINY = """
inputs: {image: [3, 9, 9], extra: [2, 9, 9]}
outputs: [logits, pooled]
body:
  - a: {op: conv, out: 4, kernel: 3, stride: 2, padding: 1, input: image}
  - b: {op: conv, out: 4, kernel: 3, stride: 2, padding: 1, input: extra}
  - cat: {op: concat, inputs: [a, b]}
  - bn: {op: batch_norm}
  - pooled: {op: max_pool, kernel: 3, stride: 2, padding: 1}
  - flat: {op: flatten}
  - logits: {op: linear, out: 3}
"""


def test_the_keras_batch_runs_accepted_cases_and_names_a_failing_one(tmp_path: Path) -> None:
    """One subprocess for the batch: a good case runs in both styles (shapes, weights and
    values against onnxruntime), a case whose spec vanished fails, named by the report."""
    outcomes = []
    for index, name in enumerate(["good", "gone"]):
        folder = tmp_path / name
        folder.mkdir()
        target = folder / "tiny.yaml"
        target.write_text(TINY)
        case = fuzzing.Case(index, "tiny", ["none"], folder, target)
        outcomes.append(fuzzing.Outcome(case, "passed", 0.0, checked=["keras"]))
    outcomes[1].case.target.unlink()
    fuzzing.run_keras_batch(outcomes, tmp_path)
    assert outcomes[0].status == "passed" and outcomes[0].keras == "ran"
    assert outcomes[1].status == "FAIL: keras run"
    report = "\n".join(fuzzing.summarize(fuzzing.Report(outcomes)))
    assert "--- case 1 (tiny, ['none']): FAIL: keras run" in report
    assert "keras batch" in report and "ran: 1" in report


def test_value_problems_are_relative_and_catch_nan() -> None:
    import numpy as np

    want = np.linspace(-3, 3, 50).reshape(2, 25)
    assert fuzzing.value_problem(want + 1e-9, want) is None
    assert fuzzing.value_problem(want * 1.01, want) is not None
    assert fuzzing.value_problem(np.full_like(want, np.nan), want) is not None
    assert fuzzing.value_problem(want, np.full_like(want, np.inf)) is None  # nothing finite
