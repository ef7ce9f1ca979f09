"""The torch porter (`archspec port --from torch` / `--to torch`).

Reading: `archspec_torch.savefile.load`, numpy only (no torch imported in this process: the
parity reference, torch64, runs in a process of its own, `isolated_reference`); a file
outside its subset is read by `torch.load(path, map_location="cpu", weights_only=True)`,
which reads it or refuses it as before. No pickled code runs either way.
Accepted: a plain state_dict (every value a tensor), or a dict holding one under
`state_dict` or `model` (the two layouts training scripts save most); keys all prefixed
`module.` (saved from `nn.DataParallel`/DDP) lose the prefix. BatchNorm's
`num_batches_tracked` counters carry no canonical meaning and are ignored. The IR's layout
is PyTorch's, so a state_dict key is a WeightSet name: no array is converted.

Writing: `<spec>.py`, the module `archspec gen --backend torch` generates, and `<spec>.pt`,
its state_dict (`torch.save`, counters zero): `model.load_state_dict(torch.load(...))`.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from archspec_torch import savefile
from archspec_torch.emitter import TorchEmitter
from archspec_torch.parity import TorchRunner
from archspec_torch.savefile import COUNTER

from archspec.backend import Artifact
from archspec.ir import Graph
from archspec.parity import RunRequest
from archspec.port import Checkpoint, PortError, import_written
from archspec.registry import ResolvedSpec, display_path
from archspec.weights import WeightSet

WRAPPERS = ("state_dict", "model")
PREFIX = "module."


def _state_dict(loaded: Any, shown: str, tensor: type) -> tuple[dict[str, Any], list[str]]:
    """The state_dict in what was loaded (`tensor`: the type tensors were read as), and
    notes on what was unwrapped; PortError if there is none."""
    notes: list[str] = []
    if isinstance(loaded, dict) and not all(isinstance(v, tensor) for v in loaded.values()):
        for key in WRAPPERS:
            if isinstance(loaded.get(key), dict):
                notes.append(f"the state_dict under '{key}' (other entries ignored)")
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise PortError(
            f"{shown}: not a torch state_dict (a dict of tensors, or a dict holding one "
            f"under {' or '.join(repr(k) for k in WRAPPERS)}); found {type(loaded).__name__}"
        )
    odd = [str(k) for k, v in loaded.items() if not isinstance(v, tensor)]
    if odd:
        raise PortError(
            f"{shown}: not a torch state_dict: {len(odd)} entries are not tensors "
            f"({', '.join(odd[:5])})"
        )
    if all(str(k).startswith(PREFIX) for k in loaded):
        notes.append(f"keys prefixed '{PREFIX}' (DataParallel): prefix removed")
        loaded = {str(k)[len(PREFIX) :]: v for k, v in loaded.items()}
    return loaded, notes


class TorchPorter:
    name = "torch"
    extra = "torch"
    reads = (".pt", ".pth", ".bin", ".ckpt")
    reference = "torch64"
    isolated_reference = True  # reading needs no torch: the reference gets its own process

    def available(self) -> str | None:
        return None if importlib.util.find_spec("torch") else "PyTorch is not installed"

    def read(self, path: Path, spec: ResolvedSpec, graph: Graph) -> Checkpoint:
        shown = display_path(path)
        try:
            try:
                loaded, tensor = savefile.load(path), np.ndarray
            except savefile.Unsupported:  # torch reads it, or refuses it with its message
                import torch

                loaded = torch.load(path, map_location="cpu", weights_only=True)
                tensor = torch.Tensor
        except FileNotFoundError:
            raise PortError(f"{shown}: no such file") from None
        except IsADirectoryError:
            raise PortError(f"{shown}: is a folder, not a checkpoint file") from None
        except Exception as exc:  # torch raises many types for a bad file; all mean "unreadable"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise PortError(
                f"{shown}: cannot read as a torch checkpoint ({type(exc).__name__}: {first})"
            ) from None
        state, notes = _state_dict(loaded, shown, tensor)
        counters = [k for k in state if k.endswith(f".{COUNTER}")]
        if counters:
            notes.append(f"{len(counters)} {COUNTER} counters ignored")
        arrays = {k: _float32(v) for k, v in state.items() if not k.endswith(f".{COUNTER}")}
        return Checkpoint(arrays, tuple(notes))

    def write(self, weights: WeightSet, spec: ResolvedSpec, graph: Graph) -> list[Artifact]:
        from archspec_torch.weights import to_state_dict

        import torch

        module = TorchEmitter().emit(spec, graph)
        buffer = io.BytesIO()
        torch.save(to_state_dict(weights, graph), buffer)
        return [module, Artifact(f"{graph.name}.pt", buffer.getvalue())]

    def runner(self, folder: Path, artifacts: Sequence[Artifact]) -> WrittenTorch:
        return WrittenTorch(folder / artifacts[0].filename, folder / artifacts[1].filename)


def _float32(tensor: Any) -> np.ndarray:
    """A float32 copy of a tensor read either way (numpy's and torch's casts round alike)."""
    if isinstance(tensor, np.ndarray):
        return np.array(tensor, dtype=np.float32)
    import torch

    return tensor.detach().to(torch.float32).numpy()


class WrittenTorch(TorchRunner):
    """The parity runner of a port's output: the written module and state_dict, as a
    user would load them (nothing regenerated)."""

    def __init__(self, module: Path, state: Path) -> None:
        super().__init__(name=f"torch ({display_path(state)})")
        self.module, self.state = module, state

    def build(self, request: RunRequest) -> Any:
        import torch

        module = import_written(self.module, f"archspec_port_torch_{request.graph.name}_{id(self)}")
        model = getattr(module, request.graph.name)()
        model.load_state_dict(torch.load(self.state, map_location="cpu", weights_only=True))
        return model


porter = TorchPorter()
