"""convnext_tiny equals torchvision's: state_dict keys, order (layer_scale first in each
block) and shapes, strict loading, parameter count, stochastic depth rates, and outputs
(eval, float64, with the layer scales and LayerNorm affines randomized so the blocks count)
at inputs of scale 1 and 20, and in training mode under the same seed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from archspec_torch import generate_module

SIZE = (32, 32)  # torchvision's min_size: 32x downsampling leaves 1x1


def reference() -> Any:
    """torchvision's convnext_tiny; layer scales and LayerNorm affines made non-trivial (at
    torchvision's 1e-6 layer scale every block would be close to the identity)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny(weights=None)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("layer_scale"):
                param.uniform_(0.5, 1.5)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def generated() -> Any:
    module, graph = generate_module("convnext_tiny", input_size=SIZE)
    return getattr(module, graph.name)().eval()


@pytest.fixture(scope="module")
def models() -> tuple[Any, Any]:
    ref = reference()
    ours = generated()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


@pytest.fixture(scope="module")
def models64(models: tuple[Any, Any]) -> tuple[Any, Any]:
    return tuple(copy.deepcopy(m).double() for m in models)  # type: ignore[return-value]


def test_state_dict_keys_order_and_shapes_equal_torchvision() -> None:
    ours = [(k, tuple(v.shape)) for k, v in generated().state_dict().items()]
    theirs = [(k, tuple(v.shape)) for k, v in reference().state_dict().items()]
    assert ours == theirs
    keys = [k for k, _ in ours]
    first = keys.index("features.1.0.layer_scale")
    assert keys[first : first + 3] == [  # the block's own parameter, then its Sequential
        "features.1.0.layer_scale",
        "features.1.0.block.0.weight",
        "features.1.0.block.0.bias",
    ]
    assert "features.5.8.block.5.bias" in keys and "features.6.1.weight" in keys
    assert dict(ours)["features.7.2.layer_scale"] == (768, 1, 1)
    assert keys[-4:] == [
        "classifier.0.weight",
        "classifier.0.bias",
        "classifier.2.weight",
        "classifier.2.bias",
    ]


def test_trainable_parameter_count_is_torchvisions() -> None:
    assert sum(p.numel() for p in generated().parameters()) == 28_589_128


def test_stochastic_depth_rates_grow_linearly_as_torchvisions(models: tuple[Any, Any]) -> None:
    from torchvision.models.convnext import CNBlock as TorchvisionCNBlock

    ref, ours = models
    theirs = {n: m for n, m in ref.named_modules() if isinstance(m, TorchvisionCNBlock)}
    assert len(theirs) == 18
    for name, block in theirs.items():
        mine = ours.get_submodule(name)
        assert mine.stochastic_depth.p == block.stochastic_depth.p, name
        assert mine.stochastic_depth.mode == block.stochastic_depth.mode == "row"
    assert ours.get_submodule("features.7.2").stochastic_depth.p == 0.1


@pytest.mark.parametrize(("scale", "size"), [(1.0, SIZE), (20.0, SIZE), (1.0, (35, 33))])
def test_outputs_equal_torchvision(
    models64: tuple[Any, Any], scale: float, size: tuple[int, int]
) -> None:
    import torch

    ref, ours = models64
    x = scale * torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x.double()), ours(x.double())
    assert want.abs().max().item() > 1e-3  # the blocks and head do not vanish
    assert (got - want).abs().max().item() <= 1e-12 * max(1.0, want.abs().max().item())


def test_training_outputs_equal_torchvision_under_the_same_seed(models: tuple[Any, Any]) -> None:
    """Stochastic depth draws the same random numbers in the same order."""
    import torch

    ref, ours = (copy.deepcopy(m).train() for m in models)
    x = torch.randn(4, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.manual_seed(3)
        want = ref(x)
        torch.manual_seed(3)
        got = ours(x)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
