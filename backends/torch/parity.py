"""The torch parity runner: the generated module, the canonical weights, forward hooks.

Probes: an IR node whose name is a module path (`layer1.0.conv1`) is read by a forward
hook on that module; a block's output node by a hook on the block's module (`layer1.0`).
Ops written inline in `forward` (`F.relu(x)`, `out += identity`) have no module and are
not probed individually; the block around them still is. Hooks copy their tensor, since
a later in-place op (`nn.ReLU(inplace=True)`) would change it.

Modes: `inference` (eval, no grad); `train` (training-mode forward with dropout off, so
BatchNorm uses batch statistics and updates its running ones: returned as `state`);
`grad` (eval mode; gradients of sum(output * cotangent) w.r.t. inputs and every weight).
On CUDA, TF32 is disabled for the run so fp32 means fp32 (the caller's settings are restored
after it).

`torch64` is the same runner in float64: the default reference of `archspec parity`. Two
fp32 implementations legitimately differ by up to ~1e-6 relative L2 (AlexNet's 9216-wide
dense layers summed in another order), which is the whole fp32 tolerance; against the
float64 result every backend's own fp32 rounding is measured instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from archspec.backend import Artifact
from archspec.codegen.printers import import_artifact
from archspec.parity import MODES, RunRequest, RunResult, block_outputs

Transform = Callable[[str], str]


class TorchRunner:
    name = "torch"
    extra = "torch"
    modes = MODES

    def __init__(
        self, transform: Transform | None = None, name: str = "torch", float64: bool = False
    ) -> None:
        """`transform` edits the generated source before import (tests plant bugs with it)."""
        self.transform = transform
        self.name = name
        self.float64 = float64

    @property
    def devices(self) -> tuple[str, ...]:
        import torch

        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def available(self) -> str | None:
        return None if importlib.util.find_spec("torch") else "PyTorch is not installed"

    def prepare(self) -> None:
        """Import torch and the weight adapter ahead of a run (archspec/isolated.py)."""
        import archspec_torch.weights  # noqa: F401  (imports torch)

    def build(self, request: RunRequest) -> Any:
        from archspec_torch.emitter import emit_source
        from archspec_torch.weights import load_into

        source = emit_source(request.spec, request.graph)
        if self.transform is not None:
            source = self.transform(source)
        artifact = Artifact(f"{request.graph.name}.py", source.encode())
        module = import_artifact(artifact, f"archspec_parity_{request.graph.name}_{id(self)}", None)
        model = getattr(module, request.graph.name)()
        return load_into(model, request.weights, request.graph)

    def run(self, request: RunRequest) -> RunResult:
        import torch

        with no_tf32(torch, request.device):
            return self._run(torch, request)

    def _run(self, torch: Any, request: RunRequest) -> RunResult:
        from archspec_torch.weights import from_module

        device = torch.device(request.device)
        wide = self.float64 or request.dtype == "float64"
        dtype = torch.float64 if wide else torch.float32
        graph = request.graph
        model = self.build(request).to(device, dtype)
        captured: dict[str, np.ndarray] = {}
        hooks = [
            module.register_forward_hook(_recorder(captured, graph.parts(node) or (node,)))
            for node, module in _probe_modules(model, request).items()
        ]
        inputs = [
            torch.from_numpy(np.array(request.inputs[name])).to(device, dtype)
            for name in graph.inputs
        ]
        try:
            if request.mode == "inference":
                model.eval()
                with torch.no_grad():
                    outputs = _as_tuple(model(*inputs))
            elif request.mode == "train":
                model.train()
                for m in model.modules():
                    # dropout off; stochastic depth (the generated StochasticDepth) too
                    if isinstance(m, torch.nn.Dropout) or type(m).__name__ == "StochasticDepth":
                        m.eval()
                with torch.no_grad():
                    outputs = _as_tuple(model(*inputs))
            else:
                model.eval()
                for x in inputs:
                    x.requires_grad_(True)
                outputs = _as_tuple(model(*inputs))
        finally:
            for hook in hooks:
                hook.remove()
        result = RunResult(
            outputs={n: _numpy(t) for n, t in zip(graph.outputs, outputs, strict=True)},
            probes=captured,
        )
        if request.mode == "train":
            state = from_module(model.cpu(), graph)  # WeightSets are float32
            result.state = {
                k: np.array(v)
                for k, v in state.items()
                if k.endswith(("running_mean", "running_var"))
            }
        if request.mode == "grad":
            loss = sum(
                (t * torch.from_numpy(np.array(request.cotangents[n])).to(device, dtype)).sum()
                for n, t in zip(graph.outputs, outputs, strict=True)
            )
            params = dict(model.named_parameters())
            names = [n for n in request.weights if n in params]
            grads = torch.autograd.grad(loss, [*inputs, *(params[n] for n in names)])
            for name, g in zip([*(f"input:{n}" for n in graph.inputs), *names], grads, strict=True):
                result.grads[name] = _numpy(g)
        return result


@contextlib.contextmanager
def no_tf32(torch: Any, device: str) -> Iterator[None]:
    """On CUDA, TF32 off while inside (fp32 means fp32), the caller's settings back after."""
    if device != "cuda":
        yield
        return
    owners = (torch.backends.cuda.matmul, torch.backends.cudnn)
    saved = [owner.allow_tf32 for owner in owners]
    for owner in owners:
        owner.allow_tf32 = False
    try:
        yield
    finally:
        for owner, value in zip(owners, saved, strict=True):
            owner.allow_tf32 = value


def _probe_modules(model: Any, request: RunRequest) -> dict[str, Any]:
    """node name -> the module whose output is that node's output."""
    blocks = block_outputs(request.graph)
    out: dict[str, Any] = {}
    for name in request.probes:
        for path in (name, blocks.get(name)):
            if path is None:
                continue
            try:
                out[name] = model.get_submodule(path)
                break
            except AttributeError:
                continue
    return out


def _recorder(captured: dict[str, np.ndarray], nodes: tuple[str, ...]) -> Callable[..., None]:
    """A hook recording the module's output under `nodes`: a split's list, one per part."""

    def record(module: Any, args: Any, output: Any) -> None:
        for node, value in zip(nodes, output if len(nodes) > 1 else [output], strict=True):
            captured[node] = _numpy(value)

    return record


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def _numpy(tensor: Any) -> np.ndarray:
    """A host copy, float64 kept (the reference's precision is the point of torch64)."""
    return tensor.detach().to("cpu").numpy().copy()


runner = TorchRunner()
runner64 = TorchRunner(name="torch64", float64=True)
