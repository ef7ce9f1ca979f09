"""Layer names of keras.applications models for our zoo specs' parameter sets.

`from_keras(model, graph, map_names=...)` and `load_into(...)` take these mappings to move
weights between keras.applications models and the canonical WeightSet by name, never by
layer order. Each function maps every parameter set of the lowered spec (checked: a name
the rules do not know is an error, so a changed spec cannot silently map wrong).

- `resnet50_v1` <-> `keras.applications.ResNet50`: our items already follow its names
  (`conv2.block1.conv1` is `conv2_block1_1_conv`, the shortcut `conv2.block1.shortcut.
  conv0` is `conv2_block1_0_conv`); same eps (1.001e-5), momentum and conv biases.
- `densenet121` (torchvision's names) <-> `keras.applications.DenseNet121`:
  `features.denseblockB.denselayerL.{norm1, conv1, norm2, conv2}` is
  `conv{B+1}_block{L}_{0_bn, 1_conv, 1_bn, 2_conv}`, `features.transitionT.{norm, conv}`
  is `pool{T+1}_{bn, conv}`. Differences (docs/keras.md): keras.applications uses BN
  eps 1.001e-5 (ours 1e-5, torchvision's) and ends in a softmax; the weights line up.
- `convnext_tiny` (torchvision's names) <-> `keras.applications.ConvNeXtTiny`
  (`include_preprocessing=False`, `classifier_activation=None`): the stem
  `features.0.{0, 1}` is `convnext_tiny_stem_{conv, layernorm}`, the block
  `features.{2s+1}.{b}.{block.0, block.2, block.3, block.5, layer_scale}` is
  `convnext_tiny_stage_{s}_block_{b}_{depthwise_conv, layernorm, pointwise_conv_1,
  pointwise_conv_2, layer_scale}`, the downsampling `features.{2i+2}.{0, 1}` is
  `convnext_tiny_downsampling_{layernorm, conv}_{i}`, the head `classifier.{0, 2}` is
  `convnext_tiny_head_{layernorm, dense}`. Same eps (1e-6), exact GELU, and a depthwise
  conv written as a grouped `Conv2D`; its LayerScale's one variable is the scale.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from archspec.analysis import param_sets
from archspec.ir import Graph

_RESNET_BLOCK = re.compile(r"(conv\d+)\.(block\d+)\.(?:shortcut\.)?(conv|bn)(\d)")
_RESNET_TOP = {"conv1_conv": "conv1_conv", "conv1_bn": "conv1_bn", "predictions": "predictions"}

_DENSE_LAYER = re.compile(r"features\.denseblock(\d+)\.denselayer(\d+)\.(norm1|conv1|norm2|conv2)")
_DENSE_LAYER_PART = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}
_TRANSITION = re.compile(r"features\.transition(\d+)\.(norm|conv)")
_DENSENET_TOP = {
    "features.conv0": "conv1_conv",
    "features.norm0": "conv1_bn",
    "features.norm5": "bn",
    "classifier": "predictions",
}

_CN_BLOCK = re.compile(r"features\.(\d+)\.(\d+)\.(block\.0|block\.2|block\.3|block\.5|layer_scale)")
_CN_BLOCK_PART = {
    "block.0": "depthwise_conv",
    "block.2": "layernorm",
    "block.3": "pointwise_conv_1",
    "block.5": "pointwise_conv_2",
    "layer_scale": "layer_scale",
}
_CN_DOWNSAMPLING = re.compile(r"features\.([246])\.([01])")
_CONVNEXT_TOP = {
    "features.0.0": "stem_conv",
    "features.0.1": "stem_layernorm",
    "classifier.0": "head_layernorm",
    "classifier.2": "head_dense",
}


def resnet50_v1_names(graph: Graph) -> dict[str, str]:
    """Our `resnet50_v1` parameter sets -> keras.applications.ResNet50 layer names."""

    def name(p: str) -> str | None:
        if m := _RESNET_BLOCK.fullmatch(p):
            stage, block, kind, index = m.groups()
            return f"{stage}_{block}_{index}_{kind}"
        return _RESNET_TOP.get(p)

    return _map(graph, name)


def densenet121_names(graph: Graph) -> dict[str, str]:
    """Our `densenet121` (torchvision names) -> keras.applications.DenseNet121 layer names."""

    def name(p: str) -> str | None:
        if m := _DENSE_LAYER.fullmatch(p):
            block, layer, part = m.groups()
            return f"conv{int(block) + 1}_block{layer}_{_DENSE_LAYER_PART[part]}"
        if m := _TRANSITION.fullmatch(p):
            index, part = m.groups()
            return f"pool{int(index) + 1}_{'bn' if part == 'norm' else 'conv'}"
        return _DENSENET_TOP.get(p)

    return _map(graph, name)


def convnext_tiny_names(graph: Graph) -> dict[str, str]:
    """Our `convnext_tiny` (torchvision names) -> keras.applications.ConvNeXtTiny layer names."""

    def name(p: str) -> str | None:
        if m := _CN_BLOCK.fullmatch(p):
            stage, block, part = m.groups()
            if int(stage) % 2 == 1:
                return f"stage_{int(stage) // 2}_block_{block}_{_CN_BLOCK_PART[part]}"
        if m := _CN_DOWNSAMPLING.fullmatch(p):
            stage, part = m.groups()
            return f"downsampling_{('layernorm', 'conv')[int(part)]}_{int(stage) // 2 - 1}"
        return _CONVNEXT_TOP.get(p)

    return {p: f"convnext_tiny_{n}" for p, n in _map(graph, name).items()}


def _map(graph: Graph, rule: Callable[[str], str | None]) -> dict[str, str]:
    names: dict[str, str] = {}
    unknown: list[str] = []
    for p in param_sets(graph):
        name = rule(p)
        if name is None:
            unknown.append(p)
        else:
            names[p] = name
    if unknown:
        raise ValueError(
            f"graph '{graph.name}': no keras.applications name for parameter sets {unknown[:5]}"
        )
    return names
