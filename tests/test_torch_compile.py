"""`torch.compile(model, fullgraph=True)` on three generated models and TorchScript on all.

fullgraph=True fails on any graph break, so this proves the generated forward (dynamic
'same' padding, Optional submodules, loops over ModuleLists, shared modules) is traceable.
"""

from __future__ import annotations

import pytest
import torch
from archspec_torch import generate_module
from archspec_torch.weights import load_into

from archspec.lower import lower
from archspec.registry import load, zoo_names
from archspec.weights import WeightSet

CASES = {"resnet18": (64, 64), "densenet121_cifar": (32, 32), "rcnn": (33, 33)}


@pytest.mark.parametrize("name", list(CASES))
def test_torch_compile_fullgraph(name: str) -> None:
    size = CASES[name]
    module, graph = generate_module(name, input_size=size)
    model = getattr(module, graph.name)()
    load_into(model, WeightSet.random(graph, seed=0), graph)
    model.eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
        got = compiled(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("name", zoo_names())
def test_torchscript(name: str) -> None:
    """Every generated model scripts with TorchScript (the TF-'same' helpers included) and
    the scripted model computes exactly what the eager one does, at an odd input size."""
    default = lower(load(name))
    height = default.node(default.inputs[0]).shape[1]
    size = (height + 1, height + 1) if height % 2 == 0 else (height, height)
    module, graph = generate_module(name, input_size=size)  # flatten-dense heads need the size
    model = getattr(module, graph.name)()
    model.eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
        got = scripted(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def test_compile_leaves_no_freed_function_in_torchscripts_builtin_table() -> None:
    """torch.compile re-registers ops with TorchScript, which keys its builtin table by id();
    conftest keeps the replaced ones alive, so no id in the table can be reused by a new
    object and mistaken for a builtin by a later `torch.jit.script` (a CI flake it caused)."""
    import gc

    import torch.jit._builtins as builtins

    module, graph = generate_module("resnet18", input_size=(32, 32))
    model = getattr(module, graph.name)().eval()
    with torch.no_grad():
        torch.compile(model, fullgraph=True)(torch.randn(1, 3, 32, 32))
    live = {id(obj) for obj in gc.get_objects()} | {id(fn) for fn, _ in builtins._builtin_ops}
    freed = [op for key, op in builtins._get_builtin_table().items() if key not in live]
    assert freed == []
