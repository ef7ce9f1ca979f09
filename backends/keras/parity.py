"""The Keras parity runners (`keras`: functional style, `keras_subclass`): generated source,
the canonical weights through the Keras weight adapter, values back in canonical layout.

Probes: every Keras layer is named after its IR node (`layer1.0.conv1` -> `layer1_0_conv1`)
in both styles, so a probe records what the layer of that name returns, by wrapping its
`call` for the run (eager). A shared layer (one layer, several IR nodes) and ops written
inline are not probed (nor `channels_last` / `channels_first`: no Keras layer). NHWC
results are transposed to NCHW, except values the IR holds channels-last (H, W, C) too.

Modes: `inference`; `train` (training=True with every Dropout's rate set to 0; the moving
statistics after the step are returned as canonical running stats); `grad` (TensorFlow
backend: `tf.GradientTape` over the input and every weight, gradients mapped to canonical
names and layouts through the adapter's own layout conversions).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from archspec import ir
from archspec.backend import Artifact
from archspec.codegen.printers import import_artifact
from archspec.parity import MODES, ParityError, RunRequest, RunResult

Transform = Callable[[str], str]

# TensorFlow's oneDNN custom ops (on by default on x86 CPUs) round differently from its own
# kernels: on an AVX-512 machine a torchvision-initialized ResNet-50 reached 1.03e-6
# relative L2 against float64 at a block output with them, 6.2e-7 without (torch fp32:
# 4.6e-7), so a correct model failed the fp32 tolerance on one machine and passed on
# another. Parity checks what the model computes, not a kernel library's rounding, as TF32
# is off on GPU. Read when TensorFlow is imported; a value the user set is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


class KerasRunner:
    extra = "keras"
    modes = MODES

    def __init__(
        self, style: str = "functional", name: str | None = None, transform: Transform | None = None
    ) -> None:
        """`transform` edits the generated source before import (tests plant bugs with it)."""
        self.style = style
        self.name = name or ("keras" if style == "functional" else f"keras_{style}")
        self.transform = transform

    @property
    def devices(self) -> tuple[str, ...]:
        import tensorflow as tf

        return ("cpu", "cuda") if tf.config.list_physical_devices("GPU") else ("cpu",)

    def available(self) -> str | None:
        for module in ("keras", "tensorflow"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def build(self, request: RunRequest) -> Any:
        from archspec_keras.emitter import emit_source, factory_shapes
        from archspec_keras.weights import load_into

        source = emit_source(request.spec, request.graph, self.style)
        if self.transform is not None:
            source = self.transform(source)
        artifact = Artifact(f"{request.graph.name}.py", source.encode())
        module = import_artifact(
            artifact, f"archspec_parity_keras_{request.graph.name}_{id(self)}", None
        )
        model = getattr(module, request.graph.name)(**factory_shapes(request.graph))
        return load_into(model, request.weights, request.graph)

    def run(self, request: RunRequest) -> RunResult:
        import keras

        with _floatx(keras, request.dtype), _device(request.device):
            return self._run(keras, request)

    def _run(self, keras: Any, request: RunRequest) -> RunResult:
        from archspec_keras.weights import walk_layers

        model = self.build(request)
        wanted = {p.replace(".", "_"): p for p in request.probes}
        captured: dict[str, np.ndarray] = {}
        layers = walk_layers(model, include_self=False)
        probed = [layer for layer in layers if layer.name in wanted]
        for layer in probed:
            node = request.graph.node(wanted[layer.name])
            names = request.graph.parts(node.name) or (node.name,)  # a split: its parts
            layer.call = _recording(layer.call, captured, names, node.layout)
        try:
            return self._forward(keras, request, model, layers, captured)
        finally:  # the model is the caller's again (`build` hands it out), unwrapped
            for layer in probed:
                del layer.call

    def _forward(
        self,
        keras: Any,
        request: RunRequest,
        model: Any,
        layers: list[Any],
        captured: dict[str, np.ndarray],
    ) -> RunResult:
        from archspec_keras.weights import _bind, from_keras

        graph = request.graph
        inputs = [
            np.ascontiguousarray(np.moveaxis(np.asarray(request.inputs[n]), 1, -1)).astype(
                request.dtype
            )
            for n in graph.inputs
        ]
        feed = inputs[0] if len(inputs) == 1 else inputs
        result = RunResult(outputs={})
        if request.mode == "grad":
            if keras.backend.backend() != "tensorflow":
                raise ParityError("grad mode needs KERAS_BACKEND=tensorflow")
            import tensorflow as tf

            bindings = _bind(model, graph, None)
            trainable = [b for b in bindings if b.variable.trainable]
            xs = [tf.constant(x) for x in inputs]
            with tf.GradientTape() as tape:
                for x in xs:
                    tape.watch(x)
                outs = _as_list(model(xs[0] if len(xs) == 1 else xs, training=False))
                loss = 0.0
                for name, out in zip(graph.outputs, outs, strict=True):
                    cot = np.asarray(request.cotangents[name])
                    cot = np.moveaxis(cot, 1, -1) if cot.ndim == 4 else cot
                    loss += tf.reduce_sum(out * tf.constant(cot.astype(request.dtype)))
            grads = tape.gradient(loss, [*xs, *(b.variable for b in trainable)])
            for name, g in zip(graph.inputs, grads[: len(xs)], strict=True):
                result.grads[f"input:{name}"] = _canonical(np.asarray(g))
            for b, g in zip(trainable, grads[len(xs) :], strict=True):
                result.grads[b.name] = b.from_keras(np.asarray(g))
            values = outs
        else:
            training = request.mode == "train"
            if training:
                for layer in layers:
                    if isinstance(layer, keras.layers.Dropout):
                        layer.rate = 0.0
            values = _as_list(model(feed, training=training))
            if training:
                state = from_keras(model, graph)
                result.state = {
                    k: np.array(v)
                    for k, v in state.items()
                    if k.endswith(("running_mean", "running_var"))
                }
        result.outputs = {
            n: _canonical(keras.ops.convert_to_numpy(v))
            for n, v in zip(graph.outputs, values, strict=True)
        }
        result.probes = captured
        return result


def _recording(
    call: Callable[..., Any],
    captured: dict[str, np.ndarray],
    nodes: tuple[str, ...],
    layout: ir.Layout,
) -> Any:
    """`call`, recording its result in the IR's layout: transposed to NCHW, except where
    the IR value is channels-last itself (ConvNeXt's MLP), as Keras's is already. A layer
    with several results (a split) records each under its node (`nodes`, in order)."""
    import keras

    def record(*args: Any, **kwargs: Any) -> Any:
        out = call(*args, **kwargs)
        for node, result in zip(nodes, _as_list(out) if len(nodes) > 1 else [out], strict=True):
            value = keras.ops.convert_to_numpy(result)
            captured[node] = _canonical(value) if layout == "channels_first" else np.array(value)
        return out

    return record


def _canonical(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return np.ascontiguousarray(np.moveaxis(array, -1, 1)) if array.ndim == 4 else array.copy()


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


@contextlib.contextmanager
def _floatx(keras: Any, dtype: str) -> Iterator[None]:
    """Build and run in `dtype`: Keras layers take their variable dtype from floatx."""
    old, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old)
        keras.config.set_dtype_policy(policy)


@contextlib.contextmanager
def _device(device: str) -> Iterator[None]:
    if device != "cuda":
        yield
        return
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)  # fp32 means fp32
    with tf.device("/GPU:0"):
        yield


functional = KerasRunner()
subclass = KerasRunner("subclass")
