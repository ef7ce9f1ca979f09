"""Shared test fixtures and the golden-file accept flag."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

# TensorFlow (Keras's default backend) imported before triton (torch.compile's compiler)
# makes triton's import segfault the process; the Keras tests share processes with the
# torch.compile tests, so triton, when installed, is imported first (0.3 s).
with contextlib.suppress(ImportError):
    import triton  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--accept",
        action="store_true",
        default=False,
        help="rewrite golden files (tests/bad_specs/*.expected) from the current output",
    )


@pytest.fixture
def accept(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--accept"))


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repo root so file names in messages are stable relative paths."""
    monkeypatch.chdir(ROOT)
    return ROOT
