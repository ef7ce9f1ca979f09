"""`archspec_torch.savefile`: torch.save files read with numpy only, compared with
`torch.load(weights_only=True)` on the same file, bit for bit; what it does not read
(another global, the legacy format, a view past its storage) it refuses with
`Unsupported`, and the torch porter then reads the file with torch as before."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from archspec_torch import savefile
from archspec_torch.checkpoint import porter

from archspec.lower import lower
from archspec.registry import load as load_spec


def bits(value: Any) -> tuple[str, tuple[int, ...], bytes]:
    """dtype, shape and bytes of a tensor or array (C order), for exact comparison."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype == torch.bfloat16:  # read as float32: torch's own widening
            value = value.float()
        value = value.contiguous().numpy()
    return str(value.dtype), value.shape, np.ascontiguousarray(value).tobytes()


def assert_same(ours: Any, theirs: Any) -> None:
    """Same structure, same types of containers and keys in order, tensors bitwise."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, np.ndarray)
        assert bits(ours) == bits(theirs)
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key])
    elif isinstance(theirs, list | tuple):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_same(a, b)
    else:
        assert type(ours) is type(theirs) and ours == theirs


def saved(tmp_path: Path, obj: Any, **kwargs: Any) -> tuple[Any, Any]:
    """`obj` through torch.save, read back by savefile.load and by torch.load."""
    path = tmp_path / "saved.pt"
    torch.save(obj, path, **kwargs)
    return savefile.load(path), torch.load(path, map_location="cpu", weights_only=True)


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
          torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_real_dtype_reads_bitwise(tmp_path: Path, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        tensor = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 300
        tensor[0, :3] = torch.tensor([float("nan"), float("inf"), -0.0], dtype=torch.float64)
        tensor = tensor.to(dtype)
    elif dtype == torch.bool:
        tensor = torch.randint(0, 2, (5, 7), generator=gen).bool()
    else:
        low, high = (0, 256) if dtype == torch.uint8 else (-128, 128)
        tensor = torch.randint(low, high, (5, 7), generator=gen).to(dtype)
    ours, theirs = saved(tmp_path, {"t": tensor, "scalar": tensor[1, 1].clone()})
    assert_same(ours, theirs)


def test_views_offsets_strides_and_shared_storages(tmp_path: Path) -> None:
    """Views keep their offsets and strides (transposed, sliced, stepped, expanded),
    tensors sharing a storage share it here too, empty and 0-d tensors read."""
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    obj = {
        "base": base,
        "t": base.t(),
        "slice": base[2:5, 3:9],
        "step": base[::2, 1::3],
        "expand": torch.arange(4.0).expand(3, 4),
        "row": base[4],
        "empty": base[:0],
        "zero_d": torch.tensor(7, dtype=torch.int64),
        "param": torch.nn.Parameter(torch.ones(3)),
    }
    ours, theirs = saved(tmp_path, obj)
    assert_same(ours, theirs)
    assert np.shares_memory(ours["base"], ours["step"])  # one storage, read once
    assert not ours["base"].flags.writeable  # views of the file's storage, as torch's are


def test_a_torchvision_state_dict_and_a_training_checkpoint(tmp_path: Path) -> None:
    """resnet18's state_dict (an OrderedDict with num_batches_tracked counters), wrapped
    the way training scripts save it: model, optimizer state, epoch, hyperparameters."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    obj = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
           "best": 0.75, "tag": "run-1", "sizes": (1, [2, 3]), "none": None}  # fmt: skip
    ours, theirs = saved(tmp_path, obj)
    assert_same(ours, theirs)
    assert isinstance(ours["model"], OrderedDict)


def fake_file(path: Path, payload: Any, storages: dict[str, bytes]) -> Path:
    """A torch.save-layout zip whose data.pkl pickles `payload` (built with real torch
    globals by `Rebuild` and `Storage` markers), for cases torch.save never writes."""
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(payload)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


class Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class Rebuild:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self) -> Any:
        return torch._utils._rebuild_tensor_v2, self.args


class Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def test_a_fake_file_reads_as_torch_reads_it(tmp_path: Path) -> None:
    """The hand-made format of the tests below is torch's (so their refusals are real)."""
    raw = np.arange(6, dtype="<f4").tobytes()
    path = fake_file(tmp_path / "ok.pt", {"w": Rebuild(Storage("0", 6), 1, (2, 2), (1, 2))},
                     {"0": raw})  # fmt: skip
    assert_same(savefile.load(path), torch.load(path, weights_only=True))


@pytest.mark.parametrize(
    ("offset", "size", "stride"),
    [(3, (2, 2), (1, 2)), (0, (7,), (1,)), (0, (2, 3), (4, 1)), (-1, (2,), (1,))],
    ids=["offset", "size", "stride", "negative"],
)
def test_a_view_past_its_storage_is_refused(
    tmp_path: Path, offset: int, size: tuple, stride: tuple
) -> None:
    raw = np.arange(6, dtype="<f4").tobytes()
    path = fake_file(tmp_path / "oob.pt", {"w": Rebuild(Storage("0", 6), offset, size, stride)},
                     {"0": raw})  # fmt: skip
    with pytest.raises(savefile.Unsupported):
        savefile.load(path)


def test_a_storage_shorter_than_declared_is_refused(tmp_path: Path) -> None:
    raw = np.arange(5, dtype="<f4").tobytes()
    path = fake_file(tmp_path / "short.pt", {"w": Rebuild(Storage("0", 6), 0, (6,), (1,))},
                     {"0": raw})  # fmt: skip
    with pytest.raises(savefile.Unsupported, match="20 bytes for 6 x FloatStorage"):
        savefile.load(path)


class Planted:
    """Unpickling this calls os.system: a reader that runs pickled code creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        import os

        return os.system, (f"touch {self.marker}",)


def test_other_globals_are_refused_and_never_called(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = fake_file(tmp_path / "evil.pt", {"w": Planted(marker)}, {})
    with pytest.raises(savefile.Unsupported, match=r"global (os|posix)\.system"):
        savefile.load(path)
    assert not marker.exists()
    path = tmp_path / "size.pt"
    torch.save({"w": torch.zeros(2), "size": torch.Size([2])}, path)  # torch reads it
    with pytest.raises(savefile.Unsupported, match=r"global torch\.Size"):
        savefile.load(path)


def test_the_legacy_format_is_unsupported_and_the_porter_reads_it_with_torch(
    tmp_path: Path,
) -> None:
    graph = lower(load_spec("rcnn"))
    from archspec.weights import WeightSet

    state = {k: torch.from_numpy(np.array(v)) for k, v in WeightSet.random(graph, 1).items()}
    path = tmp_path / "legacy.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with pytest.raises(savefile.Unsupported, match="BadZipFile"):
        savefile.load(path)
    found = porter.read(path, load_spec("rcnn"), graph)
    assert list(found.arrays) == list(state)
    for key, tensor in state.items():
        assert bits(found.arrays[key]) == bits(tensor)


def test_the_porter_converts_to_float32_as_torch_does(tmp_path: Path) -> None:
    """float64, float16, bfloat16 and int64 tensors: the porter's float32 arrays equal
    torch.load's tensors cast by torch (`.to(torch.float32)`), bit for bit."""
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(4, 9, generator=gen, dtype=torch.float64) * 1e3
    state = {
        "a.weight": values,
        "b.weight": values.half(),
        "c.weight": values.bfloat16(),
        "d.weight": (values * 1e9).long().t(),
        "bn.num_batches_tracked": torch.tensor(5),
    }
    path = tmp_path / "mixed.pt"
    torch.save(state, path)
    found = porter.read(path, load_spec("rcnn"), lower(load_spec("rcnn")))
    assert found.notes == ("1 num_batches_tracked counters ignored",)
    want = torch.load(path, weights_only=True)
    assert list(found.arrays) == [k for k in want if not k.endswith("num_batches_tracked")]
    for key, array in found.arrays.items():
        assert bits(array) == bits(want[key].to(torch.float32))
