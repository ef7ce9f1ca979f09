"""The wheel ships the zoo and the backends, and an installed copy finds its specs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from archspec import backend
from archspec.registry import zoo_names

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes archspec.egg-info next to the sources, and a stale
    # one in the checkout would shadow the installed metadata (its entry points) afterwards.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("archspec", "backends", "specs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (found,) = out.glob("archspec-*.whl")
    return found


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for spec in zoo_names():
        assert f"archspec_specs/{spec}.yaml" in names
    assert "archspec_specs/lib/resnet.yaml" in names
    assert "archspec_torch/__init__.py" in names
    assert "archspec/codegen/plan.py" in names
    assert {"archspec_keras/runtime.py", "archspec_keras/templates/module.py.j2"} <= names
    assert "archspec_onnx/model.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[archspec.backends]" in text and "torch = archspec_torch:backend" in text
    assert "keras = archspec_keras:backend" in text
    assert "[archspec.parity]" in text and "torch = archspec_torch.parity:runner" in text
    assert "[archspec.port]" in text and "keras = archspec_keras.checkpoint:porter" in text
    assert "onnx = archspec_onnx:backend" in text
    assert "archspec = archspec.cli:run" in text


def test_installed_wheel_finds_its_specs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    script = (
        "import archspec_specs, archspec.registry as r\n"
        "print(archspec_specs.__file__)\n"
        "print(len(r.zoo_names()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    location, count = proc.stdout.split()
    assert location.startswith(str(target))
    assert int(count) == len(zoo_names())


def test_backends_come_from_entry_points() -> None:
    assert "torch" in backend.available()
    assert "onnx" in backend.available()
    core = ROOT / "archspec"
    for source in core.rglob("*.py"):
        text = source.read_text()
        assert "archspec_torch" not in text and "import torch" not in text, source
        assert "archspec_onnx" not in text and "import onnx" not in text, source
