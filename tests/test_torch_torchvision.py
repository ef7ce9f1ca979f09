"""torchvision compatibility: same state_dict keys and shapes, strict loading, same outputs.

torchvision is installed in the test environment (it is the reference, never our output),
so these tests do not skip. Weights are torchvision's own random init with randomized
BatchNorm statistics (nothing is downloaded).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from archspec_torch import generate_module

from archspec.registry import zoo_names

MODELS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "densenet121",
    "densenet169",
    "densenet201",
    "alexnet",
]
SIZE = (67, 67)  # odd and small: every model's adaptive pooling must cope


def reference(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def generated(name: str) -> torch.nn.Module:
    module, graph = generate_module(name, input_size=SIZE)
    return getattr(module, graph.name)().eval()


def compare(name: str, device: str) -> None:
    ref = reference(name).to(device)
    ours = generated(name)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.to(device)
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        want, got = ref(x), ours(x)
    tolerance = 1e-5 * max(1.0, want.abs().max().item())
    assert (got - want).abs().max().item() <= tolerance


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_keys_and_shapes_equal_torchvision(name: str) -> None:
    assert name in zoo_names()
    ours = {k: tuple(v.shape) for k, v in generated(name).state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference(name).state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs


@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_torchvision(name: str) -> None:
    compare(name, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_outputs_equal_torchvision_cuda(name: str) -> None:
    compare(name, "cuda")
