"""The mutation fuzzer (tests/fuzzing.py) over the zoo: exit 0 or 2, never a traceback,
never over the time or memory budget, and every spec that validates generates code that
runs. 1,000 seeded cases by default, in chunks so xdist spreads them; more with
`ARCHSPEC_FUZZ_CASES=N` (and another seed with `ARCHSPEC_FUZZ_SEED=S`).

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
    for index in range(16):
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
    assert codes == {0, 2}  # the seed's first 16 cases include accepted and rejected specs
