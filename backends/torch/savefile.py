"""Reading a `torch.save` file with numpy only, without importing torch.

Why: `archspec port --from torch` needs torch for its parity reference only, which runs in a
process of its own; reading here keeps the parent free of torch (importing it takes 1.7 s,
and torch loaded after TensorFlow in one process can crash).

The format (torch >= 1.6): a zip archive with one top folder holding `data.pkl`, the pickled
object, in which each tensor is a call of `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)` on a storage given by persistent id `("storage", torch.<X>Storage, key,
location, numel)`; the storage's raw bytes are the entry `data/<key>`, in the byte order
named by `byteorder`.

`load` reads a subset of what `torch.load(weights_only=True)` reads, with a narrower
allow-list: tensors and parameters of real dtypes (views included: offsets, strides,
storages shared between tensors), `collections.OrderedDict`, and pickle's own primitives
(dicts, lists, tuples, numbers, strings). Anything else (another global, a legacy non-zip
file, a big-endian one, a broken archive) raises `Unsupported`, and the caller reads the
file with torch instead, which either reads it or refuses it with torch's own message: the
behaviour on any file is torch's, only faster where this reader suffices.

Tensors come back as read-only numpy arrays, views of their storage as torch's tensors
are; bfloat16 (which numpy lacks) is widened to float32, exactly.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

COUNTER = "num_batches_tracked"  # BatchNorm's step counter: a state_dict key, no weight

BFLOAT16 = "bfloat16"
STORAGES: dict[str, str] = {  # torch's storage class -> numpy dtype (little-endian)
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": BFLOAT16,
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class Unsupported(Exception):
    """Not in this reader's subset: read the file with torch (which may refuse it)."""


@dataclass(frozen=True)
class StorageType:
    """What `torch.<X>Storage` unpickles to here: the storage's element type."""

    name: str


class Tensor(np.ndarray):
    """A tensor read from the file: an ndarray that pickle's BUILD cannot alter."""

    def __setstate__(self, state: Any) -> None:
        raise Unsupported("state set on a tensor")


def load(path: Path) -> Any:
    """The object a torch.save file holds, tensors as numpy arrays; `Unsupported` when the
    file is outside this reader's subset; OSError (FileNotFoundError...) as `open` raises."""
    with path.open("rb") as stream:
        try:
            with zipfile.ZipFile(stream) as archive:
                names = archive.namelist()
                prefix = names[0].split("/", 1)[0] if names and "/" in names[0] else ""
                if not {f"{prefix}/data.pkl", f"{prefix}/version"} <= set(names):
                    raise Unsupported("no data.pkl or version: not a torch.save archive")
                order = f"{prefix}/byteorder"
                if order in names and archive.read(order) != b"little":
                    raise Unsupported("not a little-endian file")
                with archive.open(f"{prefix}/data.pkl") as data:
                    return _Unpickler(data, archive, prefix).load()
        except Unsupported:
            raise
        except Exception as exc:  # legacy or broken: torch reads it or says what is wrong
            raise Unsupported(f"{type(exc).__name__}: {exc}") from None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: IO[bytes], archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(data)
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in GLOBALS:
            return GLOBALS[module, name]
        if module == "torch" and name in STORAGES:
            return StorageType(name)
        raise Unsupported(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> np.ndarray:
        match pid:
            case ("storage", StorageType(name=kind), str(key), _, int(numel)):
                pass
            case _:
                raise Unsupported(f"persistent id {pid!r}")
        if key not in self.storages:
            dtype = STORAGES[kind]
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            wide = np.dtype("<u2") if dtype == BFLOAT16 else np.dtype(dtype)
            if len(raw) != numel * wide.itemsize:
                raise Unsupported(f"storage {key}: {len(raw)} bytes for {numel} x {kind}")
            data = np.frombuffer(raw, wide)
            if dtype == BFLOAT16:  # bfloat16 is float32's upper half: widening is exact
                data = (data.astype(np.uint32) << 16).view(np.float32)
            data.flags.writeable = False
            self.storages[key] = data
        return self.storages[key]


def _ints(value: Any) -> bool:
    return isinstance(value, tuple) and all(type(v) is int and v >= 0 for v in value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """torch's `_rebuild_tensor_v2`: a strided view of the storage, bounds checked (a file
    is untrusted: a view reaching past its storage is refused, never read)."""
    if not (isinstance(storage, np.ndarray) and type(offset) is int and offset >= 0):
        raise Unsupported("a tensor without a storage")
    if not (_ints(size) and _ints(stride) and len(size) == len(stride)):
        raise Unsupported(f"tensor size {size!r} / stride {stride!r}")
    if 0 in size:
        return np.empty(size, storage.dtype).view(Tensor)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise Unsupported(f"a tensor view past its storage ({last} >= {storage.size})")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], size, tuple(s * item for s in stride), writeable=False
    )
    return view.view(Tensor)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> np.ndarray:
    """torch's `_rebuild_parameter` (an `nn.Parameter` saved as such): its data."""
    if not isinstance(data, np.ndarray):
        raise Unsupported("a parameter without a tensor")
    return data


GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {  # besides torch's storage classes
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
