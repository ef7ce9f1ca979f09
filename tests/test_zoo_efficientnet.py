"""efficientnet_b0 equals torchvision's: state_dict keys, order and shapes, strict loading,
stochastic depth rates, and outputs (eval, with random BatchNorm statistics) at inputs of
scale 1 and 20, and in training mode under the same seed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from archspec_torch import generate_module

SIZE = (64, 64)  # the smallest convenient size: 32x downsampling leaves 2x2


def reference() -> Any:
    """torchvision's efficientnet_b0 with non-trivial BatchNorm parameters and statistics."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0(weights=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def generated() -> Any:
    module, graph = generate_module("efficientnet_b0", input_size=SIZE)
    return getattr(module, graph.name)().eval()


@pytest.fixture(scope="module")
def models() -> tuple[Any, Any]:
    ref = reference()
    ours = generated()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def test_state_dict_keys_order_and_shapes_equal_torchvision() -> None:
    ours = [(k, tuple(v.shape)) for k, v in generated().state_dict().items()]
    theirs = [(k, tuple(v.shape)) for k, v in reference().state_dict().items()]
    assert ours == theirs
    keys = [k for k, _ in ours]
    # expand_ratio 1: no expansion, the depthwise conv is block.0 and SE block.1
    assert "features.1.0.block.0.0.weight" in keys and "features.1.0.block.1.fc1.weight" in keys
    assert "features.2.0.block.3.1.running_var" in keys and "features.8.0.weight" in keys
    assert "classifier.1.weight" in keys


def test_trainable_parameter_count_is_torchvisions() -> None:
    assert sum(p.numel() for p in generated().parameters()) == 5_288_548


def test_stochastic_depth_rates_grow_linearly_as_torchvisions(models: tuple[Any, Any]) -> None:
    from torchvision.models.efficientnet import MBConv as TorchvisionMBConv

    ref, ours = models
    theirs = {n: m for n, m in ref.named_modules() if isinstance(m, TorchvisionMBConv)}
    assert len(theirs) == 16
    for name, block in theirs.items():
        mine = ours.get_submodule(name)
        assert mine.use_res_connect == block.use_res_connect, name
        if block.use_res_connect:  # torchvision applies it only there
            assert mine.stochastic_depth.p == block.stochastic_depth.p, name
            assert mine.stochastic_depth.mode == block.stochastic_depth.mode == "row"


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_outputs_equal_torchvision(models: tuple[Any, Any], scale: float) -> None:
    import torch

    ref, ours = models
    x = scale * torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def test_training_outputs_equal_torchvision_under_the_same_seed(models: tuple[Any, Any]) -> None:
    """Stochastic depth and dropout draw the same random numbers in the same order."""
    import torch

    ref, ours = (copy.deepcopy(m).train() for m in models)  # training updates BN statistics
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.manual_seed(3)
        want = ref(x)
        torch.manual_seed(3)
        got = ours(x)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def torchvision_rates(**kwargs: Any) -> dict[str, float]:
    """torchvision's stochastic depth rate per block (stochastic_depth_prob * block_id /
    total_blocks), where its block adds the input (elsewhere it has no effect)."""
    import torchvision
    from torchvision.models.efficientnet import MBConv as TorchvisionMBConv

    model = torchvision.models.efficientnet_b0(weights=None, **kwargs)
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, TorchvisionMBConv)}
    assert len(blocks) == 16
    return {n: b.stochastic_depth.p for n, b in blocks.items() if b.use_res_connect}


@pytest.mark.parametrize("prob", [None, 0.4])
def test_factory_takes_stochastic_depth_prob_as_torchvision(prob: float | None) -> None:
    """The factory takes stochastic_depth_prob (default 0.2): the same keys as torchvision's
    and, by default or with another value, exactly its rate on every block."""
    import inspect

    import torchvision

    module, _ = generate_module("efficientnet_b0", input_size=SIZE)
    factory = module.efficientnet_b0
    assert inspect.signature(factory).parameters["stochastic_depth_prob"].default == 0.2
    kwargs = {} if prob is None else {"stochastic_depth_prob": prob}
    ours = factory(**kwargs)
    theirs = torchvision.models.efficientnet_b0(weights=None, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    want = torchvision_rates(**kwargs)
    got = {
        n.removesuffix(".stochastic_depth"): m.p
        for n, m in ours.named_modules()
        if type(m).__name__ == "StochasticDepth"
    }
    assert len(got) == 9 and got == want  # exactly equal floats
    assert got["features.6.3"] == (prob or 0.2) * 14 / 16


@pytest.mark.parametrize("style", ["functional", "subclass"])
def test_keras_factory_takes_stochastic_depth_prob(style: str, tmp_path: Any) -> None:
    """Both Keras styles take stochastic_depth_prob: each stochastic-depth layer's rate is
    torchvision's, by default and with 0.4; the subclass model's config carries it through
    a `.keras` round trip."""
    import keras
    from archspec_keras import generate_module as keras_module
    from archspec_keras.weights import walk_layers

    module, _ = keras_module("efficientnet_b0", input_size=SIZE, style=style, directory=tmp_path)

    def rates(model: Any) -> dict[str, float]:
        return {
            layer.name.removesuffix("_stochastic_depth"): layer.rate
            for layer in walk_layers(model)
            if layer.name.endswith("_stochastic_depth")
        }

    def renamed(torch_rates: dict[str, float]) -> dict[str, float]:
        return {n.replace(".", "_"): p for n, p in torch_rates.items()}

    shape = (*SIZE, 3)
    assert rates(module.efficientnet_b0(input_shape=shape)) == renamed(torchvision_rates())
    model = module.efficientnet_b0(stochastic_depth_prob=0.4, input_shape=shape)
    want = renamed(torchvision_rates(stochastic_depth_prob=0.4))
    assert len(want) == 9 and rates(model) == want
    if style == "subclass":
        assert model.get_config()["stochastic_depth_prob"] == 0.4
        model.save(tmp_path / "eff.keras")
        again = keras.saving.load_model(tmp_path / "eff.keras")
        assert again.get_config() == model.get_config() and rates(again) == want
