"""`archspec port`: real checkpoint files in, another framework's files out, parity proven.

Checkpoints are written here from seeded weights (torchvision models with random init
and non-trivial BatchNorm statistics, Keras models holding `WeightSet.random`); the
written files are then loaded the way a user would and run against the source model.
Tolerance: the design's fp32 one (relative L2 <= 1e-6, max abs <= 1e-4 x max(1, max|ref|)).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from archspec.cli import main
from archspec.lower import lower
from archspec.parity import Tolerance, compare
from archspec.port import fit
from archspec.registry import load
from archspec.weights import WeightSet, expected_shapes

TOL = Tolerance()


def port(*args: str) -> Result:
    return CliRunner().invoke(main, ["port", *map(str, args)])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def import_file(path: Path) -> ModuleType:
    name = f"ported_{path.stem}_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def assert_close(reference: np.ndarray, got: np.ndarray) -> None:
    errors = compare(reference, got)
    assert TOL.check(errors), errors


def random_bn(model: Any, seed: int) -> Any:
    """Non-trivial BatchNorm state and affine parameters (BN would hide bugs otherwise)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model


def torchvision_checkpoint(tmp_path: Path, name: str, seed: int = 0) -> tuple[Path, Any]:
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = random_bn(getattr(torchvision.models, name)(weights=None), seed).eval()
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return path, model


def image(batch: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


# ---------------------------------------------------------------------------- the fit


def test_fit_lists_every_difference_with_nearest_names() -> None:
    graph = lower(load("rcnn"))
    arrays = dict(WeightSet.random(graph))
    arrays["rcl1.feed.wieght"] = arrays.pop("rcl1.feed.weight")  # renamed: missing + unexpected
    arrays["extra.bias"] = np.zeros(3, np.float32)
    arrays["fc.weight"] = np.zeros((7, 3), np.float32)
    found = fit(arrays, graph)
    assert not found.ok
    assert [(m.name, m.detail) for m in found.missing] == [
        ("rcl1.feed.weight", "expected (32, 3, 3, 3); nearest in the checkpoint: rcl1.feed.wieght")
    ]
    assert [m.name for m in found.unexpected] == ["rcl1.feed.wieght", "extra.bias"]
    assert "nearest expected: rcl1.feed.weight" in found.unexpected[0].detail
    assert [(m.name, m.detail) for m in found.wrong_shape] == [
        ("fc.weight", f"expected {expected_shapes(graph)['fc.weight']}, got (7, 3)")
    ]


def test_a_fitting_checkpoint_fits() -> None:
    graph = lower(load("rcnn"))
    assert fit(dict(WeightSet.random(graph)), graph).ok


# ---------------------------------------------------------------------------- refusals


def test_misfit_checkpoint_is_refused_listing_all_three_and_writes_nothing(
    tmp_path: Path,
) -> None:
    import torch
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["fc.wieght"] = state.pop("fc.weight")  # a missing key (with its nearest)
    state["layer5.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)  # an unexpected key
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)  # a wrong shape
    checkpoint = tmp_path / "bad.pt"
    torch.save(state, checkpoint)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file\n")
    before = snapshot(out)
    result = port(checkpoint, "--spec", "resnet18", "--from", "torch", "--to", "keras", "-o", out)
    assert result.exit_code == 2, result.output
    text = result.output
    assert "does not fit spec 'resnet18'; nothing was written" in text
    assert (
        "missing (1):\n    fc.weight: expected (1000, 512); nearest in the checkpoint: fc.wieght"
        in text
    )
    assert "unexpected (2):" in text
    assert "fc.wieght: (1000, 512); nearest expected: fc.weight" in text
    assert "layer5.0.conv1.weight: (3, 3, 1, 1); nearest expected: layer" in text
    assert "wrong shape (1):\n    conv1.weight: expected (64, 3, 7, 7), got (64, 3, 5, 5)" in text
    assert "Traceback" not in text
    assert snapshot(out) == before


def test_corrupt_checkpoint_is_a_clean_error(tmp_path: Path) -> None:
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"PK\x03\x04 this is not a torch file")
    out = tmp_path / "out"
    result = port(checkpoint, "--spec", "rcnn", "--from", "torch", "--to", "onnx", "-o", out)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "broken.pt: cannot read as a torch checkpoint" in last
    assert "Traceback" not in result.output
    assert not out.exists()


def test_not_a_state_dict_is_a_clean_error(tmp_path: Path) -> None:
    import torch

    checkpoint = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], checkpoint)
    result = port(checkpoint, "--spec", "rcnn", "--from", "torch", "--to", "onnx", "-o", tmp_path)
    assert result.exit_code == 2
    assert "list.pt: not a torch state_dict" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spec", "resnet81", "--from", "torch", "--to", "keras"], "unknown spec 'resnet81'"),
        (["--spec", "rcnn", "--from", "torch", "--to", "torch"], "nothing to port"),
        (["--spec", "rcnn", "--from", "onnx", "--to", "torch"], "onnx is a target only"),
        (["--spec", "rcnn", "--from", "torhc", "--to", "keras"], "did you mean 'torch'?"),
        (["--spec", "rcnn", "--from", "keras", "--to", "torch"], "no such file"),
    ],
)
def test_bad_options_are_clean_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = port(tmp_path / "missing.keras", *args, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_file_archspec_did_not_write_is_not_overwritten(tmp_path: Path) -> None:
    import torch

    graph = lower(load("rcnn"))
    checkpoint = tmp_path / "rcnn.pt"
    torch.save(
        {k: torch.from_numpy(np.array(v)) for k, v in WeightSet.random(graph).items()}, checkpoint
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "rcnn.weights.h5").write_bytes(b"the user's own weights")
    before = snapshot(out)
    result = port(checkpoint, "--spec", "rcnn", "--from", "torch", "--to", "keras", "-o", out)
    assert result.exit_code == 2, result.output
    assert "refusing to overwrite" in result.output and "nothing was written" in result.output
    assert snapshot(out) == before


# ---------------------------------------------------------------------------- ports


def test_wrapped_and_prefixed_state_dicts_port_to_onnx(tmp_path: Path) -> None:
    """torch -> onnx: `{"model": state_dict}` with DataParallel's `module.` prefix; the
    written .onnx runs in onnxruntime and gives torchvision's outputs."""
    import onnxruntime as ort
    import torch

    path, model = torchvision_checkpoint(tmp_path, "resnet18")
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model": state, "epoch": 7}, path)
    out = tmp_path / "out"
    result = port(path, "--spec", "resnet18", "--from", "torch", "--to", "onnx", "-o", out,
                  "--input-size", 64, 64)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "the state_dict under 'model'" in result.output
    assert "prefix removed" in result.output
    assert "result: PASS" in result.output
    x = image(2, 64)
    session = ort.InferenceSession(str(out / "resnet18.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x})
    with torch.no_grad():
        want = model.double()(torch.from_numpy(x).double()).numpy()
    assert_close(want, got)


@pytest.mark.parametrize("style", ["functional", "subclass"])
@pytest.mark.parametrize("kind", [".keras", ".weights.h5"])
def test_keras_checkpoint_ports_to_torch(tmp_path: Path, kind: str, style: str) -> None:
    """keras -> torch on rcnn (a shared conv used by four steps), from either generated
    style: the written module and state_dict, loaded in torch, give the Keras model's
    outputs."""
    import torch
    from archspec_keras import generate_module
    from archspec_keras.weights import load_into

    module, graph = generate_module("rcnn", directory=tmp_path, style=style)
    model = load_into(module.rcnn(), WeightSet.random(graph, seed=3), graph)
    checkpoint = tmp_path / f"rcnn{kind}"
    if kind == ".keras":
        model.save(checkpoint)
    else:
        model.save_weights(checkpoint)
    out = tmp_path / "out"
    result = port(checkpoint, "--spec", "rcnn", "--from", "keras", "--to", "torch", "-o", out)
    assert result.exit_code == 0, result.output
    assert "result: PASS" in result.output
    ported = import_file(out / "rcnn.py").rcnn().eval()
    ported.load_state_dict(torch.load(out / "rcnn.pt", weights_only=True))
    x = image(2, 32)
    want = np.asarray(model(np.moveaxis(x, 1, -1), training=False))
    with torch.no_grad():
        got = ported(torch.from_numpy(x)).numpy()
    assert_close(want, got)
    assert sorted(p.name for p in out.iterdir()) == [
        ".archspec-manifest.json",
        "rcnn.pt",
        "rcnn.py",
    ]


def test_torch_checkpoint_ports_to_the_keras_subclass_style(tmp_path: Path) -> None:
    """`--to keras_subclass` writes the subclass module (a keras.Model subclass, loaded as
    a user would) whose weights file gives torchvision's outputs."""
    import keras
    import torch

    path, model = torchvision_checkpoint(tmp_path, "resnet18", seed=2)
    out = tmp_path / "out"
    result = port(path, "--spec", "resnet18", "--from", "torch", "--to", "keras_subclass",
                  "-o", out, "--input-size", 32, 32)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "running keras_subclass (out/resnet18.weights.h5)" in result.output.replace(
        str(tmp_path) + "/", ""
    )
    assert "running torch64 (inference, float64, cpu)" in result.output
    module = import_file(out / "resnet18.py")
    assert issubclass(module.Resnet18, keras.Model)
    ported = module.resnet18(input_shape=(32, 32, 3))
    ported.load_weights(out / "resnet18.weights.h5")
    x = image(2, 32)
    got = keras.ops.convert_to_numpy(ported(np.moveaxis(x, 1, -1), training=False))
    with torch.no_grad():
        want = model.double()(torch.from_numpy(x).double()).numpy()
    assert_close(want, got)


def test_the_keras_check_reads_the_written_weights_file_not_the_built_model(
    tmp_path: Path,
) -> None:
    """The check reuses the model `write` built, so it must take every value from the
    file: with the file replaced by other weights, the checked model holds those."""
    from archspec_keras.checkpoint import KerasPorter
    from archspec_keras.weights import from_keras

    from archspec.parity import RunRequest, canonical_inputs

    spec = load("rcnn")
    graph = lower(spec)
    porter = KerasPorter()
    _, other = porter.write(WeightSet.random(graph, seed=2), spec, graph)
    module, _ = porter.write(WeightSet.random(graph, seed=1), spec, graph)  # built: seed 1
    for artifact in (module, other):  # the module, and the weights file of seed 2
        (tmp_path / artifact.filename).write_bytes(artifact.content)
    runner = porter.runner(tmp_path, [module, other])
    request = RunRequest(spec, graph, WeightSet.random(graph, seed=1),
                         canonical_inputs(graph, 1, 0), ())  # fmt: skip
    model = runner.build(request)
    assert from_keras(model, graph).equal(WeightSet.random(graph, seed=2))


def test_porting_again_replaces_archspec_own_files(tmp_path: Path) -> None:
    import torch

    graph = lower(load("rcnn"))
    checkpoint = tmp_path / "rcnn.pt"
    out = tmp_path / "out"
    for seed in (0, 1):
        state = {k: torch.from_numpy(np.array(v)) for k, v in WeightSet.random(graph, seed).items()}
        torch.save(state, checkpoint)
        result = port(checkpoint, "--spec", "rcnn", "--from", "torch", "--to", "onnx", "-o", out)
        assert result.exit_code == 0, result.output
    import onnx
    from archspec_onnx.weights import from_model

    assert from_model(onnx.load(out / "rcnn.onnx"), graph).equal(WeightSet.random(graph, 1))


@pytest.mark.slow
def test_torchvision_resnet50_ports_to_keras(tmp_path: Path) -> None:
    """The issue's case: torchvision resnet50's state_dict -> `archspec port` -> the
    written Keras module and weights give torchvision's outputs (64x64, batch 2)."""
    import keras
    import torch

    path, model = torchvision_checkpoint(tmp_path, "resnet50", seed=5)
    out = tmp_path / "out"
    result = port(path, "--spec", "resnet50", "--from", "torch", "--to", "keras", "-o", out,
                  "--input-size", 64, 64)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "result: PASS" in result.output
    ported = import_file(out / "resnet50.py").resnet50(input_shape=(64, 64, 3))
    ported.load_weights(out / "resnet50.weights.h5")
    x = image(2, 64)
    got = keras.ops.convert_to_numpy(ported(np.moveaxis(x, 1, -1), training=False))
    with torch.no_grad():
        want = model.double()(torch.from_numpy(x).double()).numpy()
    assert_close(want, got)


def test_a_port_that_does_not_agree_exits_1_naming_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planted conversion bug (one conv weight scaled on the way out) is caught by the
    parity check against the written file: exit 1, the first divergent probe named."""
    import torch
    from archspec_onnx.checkpoint import OnnxPorter

    write = OnnxPorter.write

    def planted(self: Any, weights: WeightSet, spec: Any, graph: Any) -> Any:
        arrays = dict(weights)
        arrays["rcl2.feed.weight"] = arrays["rcl2.feed.weight"] * 1.01
        return write(self, WeightSet(arrays), spec, graph)

    monkeypatch.setattr(OnnxPorter, "write", planted)
    graph = lower(load("rcnn"))
    checkpoint = tmp_path / "rcnn.pt"
    torch.save(
        {k: torch.from_numpy(np.array(v)) for k, v in WeightSet.random(graph).items()}, checkpoint
    )
    result = port(
        checkpoint, "--spec", "rcnn", "--from", "torch", "--to", "onnx", "-o", tmp_path / "out"
    )
    assert result.exit_code == 1, result.output
    # rcl2.feed is a conv inside the block: the first probe after it is its step 0
    assert "FAIL: first divergence at rcl2.steps.0.drop" in result.output


def test_keras_model_misfit_is_listed_by_name_and_corrupt_keras_is_clean(tmp_path: Path) -> None:
    """A .keras file is read by layer name: a head of another size is two wrong shapes
    (nothing written); a file that is no .keras model is one clean error."""
    from archspec_keras import generate_module

    module, _ = generate_module("rcnn", directory=tmp_path)
    checkpoint = tmp_path / "rcnn.keras"
    module.rcnn().save(checkpoint)
    out = tmp_path / "out"
    args = ["--spec", "rcnn", "--from", "keras", "--to", "onnx", "-o", out]
    result = port(checkpoint, *args, "--set", "num_classes=7")
    assert result.exit_code == 2, result.output
    assert "does not fit spec 'rcnn'; nothing was written" in result.output
    assert "wrong shape (2):\n    fc.weight: expected (7, 128), got (10, 128)\n" in result.output
    assert "    fc.bias: expected (7,), got (10,)" in result.output
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    result = port(broken, *args)
    assert result.exit_code == 2, result.output
    assert "broken.keras: cannot read as a .keras model" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_missing_framework_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archspec_keras.checkpoint import KerasPorter

    monkeypatch.setattr(KerasPorter, "available", lambda self: "keras is not installed")
    checkpoint = tmp_path / "rcnn.pt"
    checkpoint.write_bytes(b"")
    result = port(
        checkpoint, "--spec", "rcnn", "--from", "torch", "--to", "keras", "-o", tmp_path / "out"
    )
    assert result.exit_code == 2, result.output
    assert "framework 'keras' cannot run: keras is not installed" in result.output
    assert "(pip install 'archspec[keras]')" in result.output
    assert not (tmp_path / "out").exists()


def test_keras_to_torch_to_keras_round_trip_is_bitwise(tmp_path: Path) -> None:
    """rcnn: .keras -> torch -> keras gives back exactly the weights it started from."""
    from archspec_keras import generate_module
    from archspec_keras.weights import from_keras, load_into

    module, graph = generate_module("rcnn", directory=tmp_path)
    start = WeightSet.random(graph, seed=4)
    checkpoint = tmp_path / "rcnn.keras"
    load_into(module.rcnn(), start, graph).save(checkpoint)
    there = port(
        checkpoint, "--spec", "rcnn", "--from", "keras", "--to", "torch", "-o", tmp_path / "t"
    )
    assert there.exit_code == 0, there.output
    back = port(tmp_path / "t" / "rcnn.pt", "--spec", "rcnn", "--from", "torch", "--to", "keras",
                "-o", tmp_path / "k")  # fmt: skip
    assert back.exit_code == 0, back.output
    model = import_file(tmp_path / "k" / "rcnn.py").rcnn()
    model.load_weights(tmp_path / "k" / "rcnn.weights.h5")
    assert from_keras(model, graph).equal(start)
