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


def _keep_registered_builtins_alive() -> None:
    """TorchScript maps functions to builtin ops by `id()` without keeping them alive, and
    torch.compile re-registers some ops, freeing the old ones. A tuple later allocated at a
    freed address (Conv2d's `_reversed_padding_repeated_twice`) is then taken for a builtin:
    `torch.jit.script` fails with "builtin cannot be used as a value", depending on which
    tests ran before in the worker. Keeping every registered function alive keeps its id
    unique."""
    try:
        import torch.jit._builtins as builtins
    except ImportError:
        return
    register = builtins._register_builtin
    kept: list[object] = []

    def register_and_keep(fn: object, op: str) -> None:
        kept.append(fn)
        register(fn, op)

    builtins._register_builtin = register_and_keep


_keep_registered_builtins_alive()

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
