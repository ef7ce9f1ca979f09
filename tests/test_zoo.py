"""The built-in zoo: exact parameter counts (the reference libraries' counts, or an independent
formula written from the seed code) and output shapes at 224 and at an odd input size."""

from __future__ import annotations

import math

import pytest

from archspec import ir
from archspec.analysis import totals
from archspec.lower import lower
from archspec.registry import load, zoo_names

# Reference counts of torchvision / keras.applications (the README's zoo table).
REFERENCE_TRAINABLE = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "alexnet": 61_100_840,
    "resnet50_v1": 25_583_592,
    "efficientnet_b0": 5_288_548,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "convnext_tiny": 28_589_128,
}


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def dense(cin: int, cout: int) -> int:
    return cin * cout + cout


def bn(c: int) -> int:
    return 2 * c


def densenet_cifar_count(k: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16)) -> int:
    """Seed 003's DenseNet.__init__, counted layer by layer."""
    planes = 2 * k
    total = conv(3, planes, 3, bias=False)
    for i, n in enumerate(blocks):
        for _ in range(n):
            total += (
                bn(planes) + conv(planes, 4 * k, 1, False) + bn(4 * k) + conv(4 * k, k, 3, False)
            )
            planes += k
        if i < len(blocks) - 1:
            out = math.floor(planes * 0.5)
            total += bn(planes) + conv(planes, out, 1, False)
            planes = out
    return total + bn(planes) + dense(planes, 10)


def preact22_count() -> int:
    """Seed 004's resnet22(): stem, [res_conv(s=2), res_identity] x 4, flatten-dense head."""
    total = conv(3, 16, 3) + bn(16)
    c = 16
    size = 128
    for f in (16, 32, 64, 128):
        total += bn(c) + conv(c, f, 3) + bn(f) + conv(f, f, 3) + conv(c, f, 1)
        total += bn(f) + conv(f, f, 3) + bn(f) + conv(f, f, 3)
        c, size = f, size // 2
    return total + dense(c * size * size, 128) + dense(128, 4)


def rcnn_count(filters: tuple[int, ...] = (32, 64, 128), steps: int = 4) -> int:
    """Seed 000's RCNN_Block: feed conv + BN, ONE shared conv, one BN per step."""
    total, c = 0, 3
    for f in filters:
        total += conv(c, f, 3) + bn(f) + conv(f, f, 3) + steps * bn(f)
        c = f
    return total + dense(c, 10)


def dropout_head_count() -> int:
    """resnet50_v1 with seed 001's head: GAP -> Dense 200 -> Dense 10 instead of Dense 1000."""
    return (
        REFERENCE_TRAINABLE["resnet50_v1"] - dense(2048, 1000) + dense(2048, 200) + dense(200, 10)
    )


def alexnet_bn_count(num_classes: int = 1000) -> int:
    """Seed 002's AlexNet at 224x224: 3x3/4 'same' conv (56x56), three 3x3/2 pools -> 6x6x256."""
    convs = conv(3, 96, 3) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3)
    convs += conv(384, 256, 3)
    heads = dense(256 * 6 * 6, 4096) + dense(4096, 4096) + dense(4096, num_classes)
    return convs + bn(96) + bn(256) + heads


COMPUTED_TRAINABLE = {
    "alexnet_bn": alexnet_bn_count(),
    "densenet121_cifar": densenet_cifar_count(),
    "preact_resnet22": preact22_count(),
    "rcnn": rcnn_count(),
    "resnet50_dropout_head": dropout_head_count(),
    "resnet50_leaky": REFERENCE_TRAINABLE["resnet50_v1"],  # LeakyReLU has no parameters
}


def test_every_zoo_spec_has_an_expected_count() -> None:
    assert set(zoo_names()) == set(REFERENCE_TRAINABLE) | set(COMPUTED_TRAINABLE)


@pytest.mark.parametrize("name", zoo_names())
def test_trainable_parameter_count(name: str) -> None:
    expected = REFERENCE_TRAINABLE.get(name) or COMPUTED_TRAINABLE[name]
    assert totals(lower(load(name))).trainable == expected


def test_densenet_cifar_matches_the_published_count() -> None:
    # kuangliu/pytorch-cifar's DenseNet121 (the code seed 003 reproduces): 6,956,298.
    assert densenet_cifar_count() == 6_956_298


def test_bn_state_counts() -> None:
    assert totals(lower(load("resnet50_v1"))).non_trainable == 53_120
    assert totals(lower(load("resnet50_v1"))).total == 25_636_712
    assert totals(lower(load("resnet50"))).non_trainable == 53_120
    assert totals(lower(load("alexnet"))).non_trainable == 0


def test_shared_conv_counted_once() -> None:
    graph = lower(load("rcnn"))
    assert len(graph.shared_groups) == 3
    for param_name, users in graph.shared_groups:
        assert param_name.endswith(".recurrent")
        assert len(users) == 4


def out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def resnet_final_map(size: int) -> int:
    size = out_size(out_size(size, 7, 2, 3), 3, 2, 1)
    for _ in range(3):
        size = out_size(size, 3, 2, 1)
    return size


@pytest.mark.parametrize("size", [224, 97])
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152"])
def test_resnet_shapes(name: str, size: int) -> None:
    graph = lower(load(name), input_size=(size, size))
    channels = 512 if name == "resnet18" else 2048
    final = resnet_final_map(size)
    assert graph.node("layer4.1.relu").shape == (channels, final, final)
    assert graph.node(graph.outputs[0]).shape == (1000,)


def tf_same(size: int, stride: int) -> int:
    return -(-size // stride)


@pytest.mark.parametrize("size", [224, 113])
def test_keras_style_same_padding_shapes(size: int) -> None:
    graph = lower(load("resnet50_v1"), input_size=(size, size))
    s = out_size(size + 6, 7, 2, 0)
    s = out_size(s + 2, 3, 2, 0)
    assert graph.node("conv2.block3.out").shape == (256, s, s)
    for _stage in ("conv3", "conv4", "conv5"):
        s = out_size(s, 1, 2, 0)
    assert graph.node("conv5.block3.out").shape == (2048, s, s)


@pytest.mark.parametrize("size", [256, 255])
def test_preact_same_padding_is_tensorflow_rule(size: int) -> None:
    graph = lower(load("preact_resnet22"), input_size=(size, size))
    stem = graph.node("conv")
    assert isinstance(stem.op, ir.Conv2d)
    total = max((tf_same(size, 2) - 1) * 2 + 3 - size, 0)
    assert (stem.op.padding.top, stem.op.padding.bottom) == (total // 2, total - total // 2)
    assert stem.shape == (16, tf_same(size, 2), tf_same(size, 2))
    if size % 2 == 0:  # even size, stride 2: the extra pad goes bottom/right
        assert stem.op.padding.top == 0 and stem.op.padding.bottom == 1


@pytest.mark.parametrize("size", [224, 225])
def test_densenet_shapes(size: int) -> None:
    graph = lower(load("densenet121"), input_size=(size, size))
    s = out_size(out_size(size, 7, 2, 3), 3, 2, 1)
    for _ in range(3):
        s //= 2
    assert graph.node("features.norm5").shape == (1024, s, s)
    assert graph.node("classifier").shape == (1000,)


@pytest.mark.parametrize("size", [224, 227])
def test_alexnet_shapes(size: int) -> None:
    graph = lower(load("alexnet"), input_size=(size, size))
    s = out_size(size, 11, 4, 2)
    s = out_size(s, 3, 2, 0)
    s = out_size(s, 5, 1, 2)
    s = out_size(s, 3, 2, 0)
    s = out_size(s, 3, 2, 0)
    assert graph.node("features.12").shape == (256, s, s)
    assert graph.node("avgpool").shape == (256, 6, 6)
    assert graph.node("classifier.6").shape == (1000,)


@pytest.mark.parametrize("name", zoo_names())
def test_every_spec_lowers_at_an_odd_size(name: str) -> None:
    spec = load(name)
    default = lower(spec)
    height = default.node(default.inputs[0]).shape[1]
    odd = lower(spec, input_size=(height + 1 if height % 2 == 0 else height, height + 3))
    assert odd.node(odd.outputs[0]).shape == default.node(default.outputs[0]).shape
    assert odd.node(odd.inputs[0]).shape[1:] != default.node(default.inputs[0]).shape[1:]


def test_num_classes_override() -> None:
    graph = lower(load("resnet18"), {"num_classes": 10})
    assert graph.node("fc").shape == (10,)
    assert dict(graph.params)["num_classes"] == 10


def test_torchvision_parameter_names() -> None:
    """State-dict prefixes follow torchvision, for strict load_state_dict."""
    names = {n.param_name for n in lower(load("resnet50")).nodes if n.param_name}
    assert {
        "conv1",
        "bn1",
        "layer1.0.downsample.0",
        "layer1.0.downsample.1",
        "layer4.2.bn3",
        "fc",
    } <= names
    assert "layer1.1.downsample.0" not in names
    dense = {n.param_name for n in lower(load("densenet121")).nodes if n.param_name}
    assert {
        "features.conv0",
        "features.denseblock1.denselayer1.norm1",
        "features.transition3.conv",
        "features.norm5",
        "classifier",
    } <= dense
    alex = {n.param_name for n in lower(load("alexnet")).nodes if n.param_name}
    assert alex == {
        "features.0",
        "features.3",
        "features.6",
        "features.8",
        "features.10",
        "classifier.1",
        "classifier.4",
        "classifier.6",
    }


def test_docs_worked_example_is_torchvision_vgg11_bn() -> None:
    """docs/spec.md's worked example; torchvision's vgg11_bn has 132,868,840 parameters."""
    from pathlib import Path

    spec = load(Path(__file__).resolve().parent.parent / "docs" / "examples" / "vgg11_bn.yaml")
    assert totals(lower(spec)).trainable == 132_868_840
    assert totals(lower(spec, {"convs": [2, 2, 3, 3, 3]})).trainable == 138_365_992  # vgg16_bn


@pytest.mark.parametrize("size", [224, 227])
def test_alexnet_bn_shapes(size: int) -> None:
    """TF 'same' with stride 4 rounds up; the 3x3/2 'valid' pools round down."""
    graph = lower(load("alexnet_bn"), input_size=(size, size))
    s = math.ceil(size / 4)
    assert graph.node("bn1").shape == (96, s, s)
    for _ in range(3):
        s = out_size(s, 3, 2, 0)
    assert graph.node("pool3").shape == (256, s, s)
    assert graph.node("out_dense").shape == (1000,)
