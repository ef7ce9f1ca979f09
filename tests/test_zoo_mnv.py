"""The MobileNets of the v2 zoo equal torchvision's: mobilenet_v2 and mobilenet_v3_large.

Same state_dict keys, order and shapes; torchvision's state (with non-trivial random
BatchNorm statistics) loads strictly into the generated model; outputs agree in eval mode
at scale-1 and scale-20 inputs (the larger drives activations past ReLU6's and
Hardswish's/Hardsigmoid's clipping points). Nothing is downloaded: torchvision builds
its models with random weights.
"""

from __future__ import annotations

from typing import Any

import pytest
from archspec_torch import generate_module

MODELS = {"mobilenet_v2": 3_504_872, "mobilenet_v3_large": 5_483_032}
SIZE = (64, 64)  # small; every stride-2 stage still sees at least a 2x2 map


def reference(name: str) -> Any:
    """torchvision's model, random init, with randomized BatchNorm statistics."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def generated(name: str, tmp_path: Any) -> Any:
    module, graph = generate_module(name, input_size=SIZE, directory=tmp_path)
    return getattr(module, graph.name)().eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_dict_keys_order_and_shapes_equal_torchvisions(name: str, tmp_path: Any) -> None:
    ours, ref = generated(name, tmp_path), reference(name)
    want = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    assert got == want
    assert sum(p.numel() for p in ours.parameters()) == MODELS[name]


@pytest.mark.parametrize("scale", [1.0, 20.0])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_outputs_equal_torchvisions(name: str, scale: float, tmp_path: Any) -> None:
    import torch

    ours, ref = generated(name, tmp_path), reference(name)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = scale * torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape == (2, 1000)
    tolerance = 1e-5 * max(1.0, want.abs().max().item())
    assert (got - want).abs().max().item() <= tolerance


def test_mobilenet_v3_squeeze_widths_are_torchvisions_make_divisible(tmp_path: Any) -> None:
    """expanded 72 -> 24 (18 rounds to 16, under 90%: one step up), 120 -> 32, 480 -> 120."""
    ours = generated("mobilenet_v3_large", tmp_path)
    widths = [m.fc1.out_channels for m in ours.modules() if hasattr(m, "fc1")]
    ref = reference("mobilenet_v3_large")
    assert widths == [m.fc1.out_channels for m in ref.modules() if hasattr(m, "fc1")]
    assert widths[:3] == [24, 32, 32] and 120 in widths
