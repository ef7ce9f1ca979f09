"""Shared test fixtures and the golden-file accept flag."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

# Keras numerics as the parity harness runs them (backends/keras/parity.py says why); set
# before any test imports TensorFlow, which reads it once.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# triton (imported by torchvision and torch.compile) segfaults when its LLVM is loaded after
# TensorFlow's. Loading it first, before any test imports TensorFlow or Keras, avoids that.
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
