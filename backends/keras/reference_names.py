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
