"""The Keras weight adapter: a Keras 3 model <-> the canonical WeightSet, bit for bit.

Naming contract (generated code follows it in both styles): the Keras layer holding the
parameters of IR parameter set `p` (a WeightSet prefix such as `layer1.0.conv1`, see
`Node.param_name`) is named `p.replace(".", "_")`; a shared-weight group is ONE layer,
called at each use. Layers are found by walking the model recursively through public
API only (`walk_layers`: functional, Sequential and subclassed models, subclassed blocks)
and matched by name, never by order. `map_names` names the layer of some or all
parameter sets differently, so models built by other code (keras.applications, see
reference_names.py) load too.

Layouts (canonical -> Keras), chosen by the IR op and the layer's variable names:
- conv weight OIHW -> Conv2D kernel (kh, kw, in/groups, out), grouped convs included;
  DepthwiseConv2D kernel (kh, kw, in, multiplier) from OIHW (in * multiplier, 1, kh, kw);
- linear weight [out, in] -> Dense kernel [in, out]; generated code permutes NHWC to
  C, H, W before Flatten, so no Dense kernel rows are permuted here;
- batch norm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/
  moving_variance (affine=False: no gamma and beta).
Every problem (missing or unexpected layers and variables, wrong shapes) is reported at
once, in one WeightError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

import keras
from archspec import ir
from archspec.analysis import param_sets
from archspec.ir import Graph
from archspec.weights import (
    PARAMETER,
    WeightError,
    WeightSet,
    expected_shapes,
    tensor_names,
    weight_name,
)

Convert = Callable[[np.ndarray], np.ndarray]

_BN_TENSORS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def default_layer_name(param_set: str) -> str:
    """The naming contract: `layer1.0.conv1` -> `layer1_0_conv1`."""
    return param_set.replace(".", "_")


@dataclass(frozen=True)
class _Binding:
    """One Keras variable <-> one canonical tensor, with the layout conversions."""

    name: str  # the WeightSet name
    key: str  # "layer_name/variable_name"
    variable: keras.Variable
    to_keras: Convert
    from_keras: Convert


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _transpose(a: np.ndarray) -> np.ndarray:
    return a.T


def _oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)


def _hwio_to_oihw(k: np.ndarray) -> np.ndarray:
    return k.transpose(3, 2, 0, 1)


def _depthwise(channels: int) -> tuple[Convert, Convert]:
    """OIHW (channels * m, 1, kh, kw) <-> (kh, kw, channels, m): output c * m + j is the
    j-th filter of input channel c, in PyTorch and in Keras."""

    def to_keras(w: np.ndarray) -> np.ndarray:
        return w.reshape(channels, -1, *w.shape[2:]).transpose(2, 3, 0, 1)

    def from_keras(k: np.ndarray) -> np.ndarray:
        return k.transpose(2, 3, 0, 1).reshape(-1, 1, *k.shape[:2])

    return to_keras, from_keras


def variable_mapping(
    op: ir.Op, layer: keras.layers.Layer, variable: str
) -> tuple[str, Convert, Convert]:
    """(canonical tensor, to Keras, from Keras) for a variable of the layer holding `op`;
    raises KeyError for a variable the op has no tensor for."""
    if isinstance(op, ir.BatchNorm):
        return _BN_TENSORS[variable], _same, _same
    if isinstance(op, ir.LayerNorm):
        return {"gamma": "weight", "beta": "bias"}[variable], _same, _same
    # (C, 1, 1) or (C,) <-> (C,): our Scale's `scale`, or the one variable of another
    # layer holding a scale (keras.applications' LayerScale calls it `variable`)
    if isinstance(op, ir.Scale) and (variable == "scale" or len(layer.weights) == 1):
        shape = op.weight_shape
        return PARAMETER, lambda w: w.reshape(-1), lambda k: k.reshape(shape)
    if variable == "bias" and isinstance(op, ir.Conv2d | ir.Linear):
        return "bias", _same, _same
    if variable == "kernel" and isinstance(op, ir.Linear):
        return "weight", _transpose, _transpose
    if variable == "kernel" and isinstance(op, ir.Conv2d):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return "weight", *_depthwise(op.in_channels)
        return "weight", _oihw_to_hwio, _hwio_to_oihw
    raise KeyError(variable)


def sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers directly inside `layer`, by public API only: a model's `layers`
    (functional, Sequential and subclassed models), else the layers a Layer holds in its
    public attributes, directly or in the lists and dicts Keras tracks them in (what a
    subclass assigns: `self.conv1 = ...`, `self.layer1 = [...]`, `[{"bn": ...}, ...]`)."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    found: list[keras.layers.Layer] = []
    attrs = dict(vars(layer))
    if hasattr(layer, "named_children"):  # KERAS_BACKEND=torch: sublayers are nn.Modules too
        attrs.update(layer.named_children())  # and torch keeps those out of vars()
    stack = [v for k, v in reversed(attrs.items()) if not k.startswith("_")]
    while stack:
        value = stack.pop()
        if isinstance(value, keras.layers.Layer):
            found.append(value)
        elif isinstance(value, list | tuple):
            stack.extend(reversed(value))
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
    return found


def walk_layers(model: keras.layers.Layer, include_self: bool = True) -> list[keras.layers.Layer]:
    """Every layer in `model`, depth first (nested models and Sequentials included), each
    once: a layer called several times (shared weights) is one layer."""
    seen: set[int] = set()
    order: list[keras.layers.Layer] = []
    stack = [model] if include_self else list(reversed(sublayers(model)))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        order.append(layer)
        stack.extend(reversed(sublayers(layer)))
    return order


def leaf_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Layers without sublayers that own weights (a container's `weights` are its
    sublayers'), each once."""
    return [layer for layer in walk_layers(model) if layer.weights and not sublayers(layer)]


def _bind(
    model: keras.layers.Layer, graph: Graph, map_names: Mapping[str, str] | None
) -> list[_Binding]:
    """Match every canonical tensor to its Keras variable, or raise one WeightError
    listing every problem."""
    owners = param_sets(graph)
    expected = expected_shapes(graph)
    map_names = dict(map_names or {})
    problems: dict[str, list[str]] = {
        "unknown parameter sets in map_names": sorted(set(map_names) - set(owners)),
        "layers named twice": [],
        "layers bound to several parameter sets": [],
        "missing": [],
        "unexpected": [],
        "wrong shape": [],
    }
    layers: dict[str, keras.layers.Layer] = {}
    for layer in leaf_layers(model):
        if layer.name in layers:
            problems["layers named twice"].append(layer.name)
        layers[layer.name] = layer
    claimed: dict[str, str] = {}
    bindings: list[_Binding] = []
    for prefix, node in owners.items():
        layer_name = map_names.get(prefix, default_layer_name(prefix))
        if layer_name in claimed:
            problems["layers bound to several parameter sets"].append(
                f"{layer_name} ({claimed[layer_name]}, {prefix})"
            )
            continue
        claimed[layer_name] = prefix
        layer = layers.get(layer_name)
        if layer is None:
            problems["missing"].append(f"layer '{layer_name}' (for {prefix})")
            continue
        bound: set[str] = set()
        for variable in layer.weights:
            key = f"{layer_name}/{variable.name}"
            try:
                tensor, to_keras, from_keras = variable_mapping(node.op, layer, variable.name)
            except KeyError:
                tensor = to_keras = from_keras = None
            name = weight_name(prefix, tensor)
            if tensor is None or name not in expected:
                problems["unexpected"].append(f"variable {key}")
                continue
            bound.add(name)
            want = to_keras(np.empty(expected[name], np.float32)).shape
            if tuple(variable.shape) != want:
                problems["wrong shape"].append(f"{key}: expected {want}, got {variable.shape}")
                continue
            bindings.append(_Binding(name, key, variable, to_keras, from_keras))
        problems["missing"] += [
            f"{name} (in layer '{layer_name}')"
            for name in tensor_names(prefix, node, graph)
            if name not in bound
        ]
    problems["unexpected"] += [f"layer '{n}'" for n in layers if n not in claimed]
    found = [f"{what} {len(items)}: {_preview(items)}" for what, items in problems.items() if items]
    if found:
        raise WeightError(
            f"Keras model '{model.name}' does not fit graph '{graph.name}': " + "; ".join(found)
        )
    return bindings


def _preview(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def to_keras(
    model: keras.layers.Layer,
    weights: WeightSet,
    graph: Graph,
    *,
    map_names: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """The Keras-layout arrays for `model`, by "layer_name/variable_name" (no assignment)."""
    weights.check(graph)
    return {b.key: b.to_keras(weights[b.name]) for b in _bind(model, graph, map_names)}


def load_into(
    model: keras.layers.Layer,
    weights: WeightSet,
    graph: Graph,
    *,
    map_names: Mapping[str, str] | None = None,
) -> keras.layers.Layer:
    """Copy `weights` into the built `model` (every variable, checked first); returns it."""
    weights.check(graph)
    bindings = _bind(model, graph, map_names)
    for b in bindings:
        b.variable.assign(np.ascontiguousarray(b.to_keras(weights[b.name])))
    return model


def from_keras(
    model: keras.layers.Layer, graph: Graph, *, map_names: Mapping[str, str] | None = None
) -> WeightSet:
    """The canonical WeightSet held by a built `model`, in the graph's order."""
    arrays = {
        b.name: b.from_keras(keras.ops.convert_to_numpy(b.variable))
        for b in _bind(model, graph, map_names)
    }
    return WeightSet.for_graph(arrays, graph)
