"""Every zoo spec, generated for torch, imported and run (CPU, small inputs, seeded weights).

Parametrized over `zoo_names()`, so a new spec is covered as soon as it lands. Sizes are
small to keep this file fast on 2 cores; one of the two is odd.
"""

from __future__ import annotations

import io
import math
from functools import cache

import pytest
import torch
from archspec_torch import generate_module
from archspec_torch.weights import from_module, load_into, to_state_dict
from torch import nn

from archspec.analysis import totals
from archspec.ir import Graph
from archspec.lower import lower
from archspec.registry import load, zoo_names
from archspec.weights import WeightSet

ZOO = zoo_names()


# ImageNet specs that take 32x32 (ConvNeXt: torchvision's min_size, 1x1 after the 32x
# downsampling), run at the CIFAR sizes to keep CI within budget
SMALL_INPUTS = {"convnext_tiny"}


def sizes(name: str) -> list[tuple[int, int]]:
    """An even and an odd input size, small: 64/67, or 32/35 for CIFAR-size specs and the
    ImageNet specs that allow it (SMALL_INPUTS). The ONNX and parity matrices use it too."""
    default = lower(load(name)).node(lower(load(name)).inputs[0]).shape
    small = default[1] <= 32 or name in SMALL_INPUTS
    return [(32, 32), (35, 35)] if small else [(64, 64), (67, 67)]


@cache
def built(name: str, size: tuple[int, int]) -> tuple[nn.Module, Graph]:
    module, graph = generate_module(name, input_size=size)
    torch.manual_seed(0)
    model = getattr(module, graph.name)()
    load_into(model, WeightSet.random(graph, seed=0), graph)
    return model.eval(), graph


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", ZOO)
def test_parameter_counts_equal_the_ir(name: str) -> None:
    model, graph = built(name, sizes(name)[0])
    counts = totals(graph)
    assert sum(p.numel() for p in model.parameters()) == counts.trainable
    # buffers: running mean/var (the IR's non-trainable state) + one counter per BatchNorm
    assert sum(b.numel() for b in model.buffers()) == counts.non_trainable + batch_norms(model)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("which", [0, 1], ids=["even", "odd"])
def test_output_shape_equals_the_ir_and_is_finite(name: str, which: int) -> None:
    size = sizes(name)[which]
    model, graph = built(name, size)
    x = torch.randn(
        2, *graph.node(graph.inputs[0]).shape, generator=torch.Generator().manual_seed(1)
    )
    assert x.shape[2:] == size
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == (2, *graph.node(graph.outputs[0]).shape)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ZOO)
def test_state_dict_keys_are_the_ir_parameter_names(name: str) -> None:
    model, graph = built(name, sizes(name)[0])
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == set(WeightSet.random(graph, 0))


@pytest.mark.parametrize("name", ZOO)
def test_weight_adapter_round_trip_is_bitwise(name: str) -> None:
    model, graph = built(name, sizes(name)[0])
    weights = WeightSet.random(graph, seed=0)
    assert from_module(model, graph).equal(weights)  # WeightSet -> model -> WeightSet
    state = to_state_dict(weights, graph)
    for key, value in model.state_dict().items():  # and model -> WeightSet -> model
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize("name", ZOO)
def test_state_dict_save_load_round_trip(name: str) -> None:
    model, graph = built(name, sizes(name)[0])
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    module, _ = generate_module(name, input_size=sizes(name)[0])
    fresh = getattr(module, graph.name)().eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = torch.randn(1, *graph.node(graph.inputs[0]).shape)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_factory_parameters_take_effect() -> None:
    module, _ = generate_module("resnet18", input_size=(64, 64))
    model = module.resnet18(num_classes=10).eval()
    assert model.fc.out_features == 10
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    alex, _ = generate_module("alexnet", input_size=(64, 64))
    assert alex.alexnet(dropout=0.25).classifier[0].p == 0.25


def test_rcnn_shared_conv_is_one_parameter() -> None:
    model, graph = built("rcnn", (32, 32))
    names = [
        n
        for n, _ in model.named_parameters()
        if "recurrent" in n or (".steps." in n and "conv" in n)
    ]
    assert names == [
        "rcl1.recurrent.weight",
        "rcl1.recurrent.bias",
        "rcl2.recurrent.weight",
        "rcl2.recurrent.bias",
        "rcl3.recurrent.weight",
        "rcl3.recurrent.bias",
    ]
    assert len(dict(graph.shared_groups)["rcl2.recurrent"]) == 4  # four uses in the IR ...
    calls: list[torch.Tensor] = []
    hook = model.rcl2.recurrent.register_forward_hook(lambda m, i, o: calls.append(o) and None)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    hook.remove()
    assert len(calls) == 4  # ... one module called four times
    ids = [id(p) for p in model.parameters()]
    assert len(ids) == len(set(ids))


def test_rcnn_shared_gradient_is_the_sum_over_uses() -> None:
    """d loss / d W_shared equals the sum of the per-use weight gradients (fp64)."""
    module, _ = generate_module("rcnn", input_size=(32, 32))
    block = module.rcnn().rcl3.double().train()
    for m in block.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    def record(m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        inputs.append(args[0])
        outputs.append(out)

    hook = block.recurrent.register_forward_hook(record)
    loss = block(torch.randn(2, 64, 16, 16, dtype=torch.float64)).square().sum()
    hook.remove()
    grad_w, *grad_outs = torch.autograd.grad(loss, [block.recurrent.weight, *outputs])
    per_use = [
        torch.nn.grad.conv2d_weight(i, block.recurrent.weight.shape, g, padding=1)
        for i, g in zip(inputs, grad_outs, strict=True)
    ]
    assert len(per_use) == 4
    assert torch.allclose(grad_w, sum(per_use), rtol=1e-9, atol=1e-12)


def test_init_weights_follow_the_ir() -> None:
    module, _ = generate_module("resnet18", input_size=(64, 64))
    torch.manual_seed(0)
    model = module.resnet18()
    weight = model.layer3[0].conv2.weight  # kaiming_normal fan_out: std sqrt(2 / (256 * 9))
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.03)
    bound = 1 / math.sqrt(512)  # fc keeps torch's default: uniform in +-1/sqrt(fan_in)
    assert model.fc.weight.abs().max().item() <= bound
    assert model.fc.weight.abs().max().item() > 0.95 * bound
    rcnn, _ = generate_module("rcnn", input_size=(32, 32))
    net = rcnn.rcnn()
    fan = 64 * 9 + 64 * 9  # glorot_uniform: limit sqrt(6 / (fan_in + fan_out))
    assert net.rcl2.recurrent.weight.abs().max().item() <= math.sqrt(6 / fan)
    assert net.rcl2.recurrent.weight.abs().max().item() > 0.95 * math.sqrt(6 / fan)
    assert torch.count_nonzero(net.rcl2.recurrent.bias) == 0  # bias_init: zeros
