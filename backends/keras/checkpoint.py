"""The Keras porter (`archspec port --from keras` / `--to keras`).

Reading:
- `.keras` (a saved model): loaded with `keras.saving.load_model(compile=False)` after the
  spec's generated modules (both styles) are imported, so their registered classes and
  runtime layers resolve. Its layers carry names, so the checkpoint is read BY NAME
  through the naming contract (`layer1_0_conv1` holds `layer1.0.conv1.*`) and a misfit
  gets the per-name list of differences.
- `.weights.h5` (weights only): Keras matches these by model structure, not by name, so
  the spec's generated model is built (functional style, then subclass) and
  `load_weights` decides; a file that fits neither is refused with Keras's message.

Writing: `<spec>.py`, the functional module `archspec gen --backend keras` generates, and
`<spec>.weights.h5`: `model = <spec>(input_shape=...); model.load_weights(...)`.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from archspec_keras.emitter import STYLES, KerasEmitter
from archspec_keras.parity import KerasRunner

from archspec.analysis import param_sets
from archspec.backend import Artifact
from archspec.codegen.printers import import_artifact
from archspec.ir import Graph
from archspec.parity import RunRequest
from archspec.port import Checkpoint, PortError, import_written
from archspec.registry import ResolvedSpec, display_path
from archspec.weights import WeightSet

WEIGHTS_SUFFIX = ".weights.h5"


def _input_shape(graph: Graph) -> tuple[int, int, int]:
    c, h, w = graph.node(graph.inputs[0]).shape
    return (h, w, c)


def _module(spec: ResolvedSpec, graph: Graph, style: str) -> tuple[Artifact, Any]:
    artifact = KerasEmitter().emit(spec, graph, {"style": style})
    return artifact, import_artifact(artifact, f"archspec_port_keras_{style}_{graph.name}", None)


def build(spec: ResolvedSpec, graph: Graph, style: str = "functional") -> tuple[Artifact, Any]:
    """The spec's generated Keras module and its model (Keras's initializers)."""
    artifact, module = _module(spec, graph, style)
    return artifact, getattr(module, graph.name)(input_shape=_input_shape(graph))


def canonical_arrays(model: Any, graph: Graph) -> dict[str, np.ndarray]:
    """Every variable of `model` under its canonical name and layout, found by layer
    name (the naming contract); a variable no parameter set owns keeps its Keras name
    (`layer/variable`), so the fit lists it as unexpected."""
    from archspec_keras.weights import _convert, _leaf_layers, default_layer_name

    import keras

    owners = {default_layer_name(p): (p, node) for p, node in param_sets(graph).items()}
    out: dict[str, np.ndarray] = {}
    for layer in _leaf_layers(model):
        owner = owners.get(layer.name)
        for variable in layer.weights:
            value = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)
            if owner is None:
                out[f"{layer.name}/{variable.name}"] = value
                continue
            prefix, node = owner
            try:
                tensor, _, from_keras = _convert(node.op, layer, variable.name)
                out[f"{prefix}.{tensor}"] = from_keras(value)
            except (KeyError, ValueError):  # a variable the op has none of, or a bad rank
                out[f"{layer.name}/{variable.name}"] = value
    return out


class KerasPorter:
    name = "keras"
    extra = "keras"
    reads = (".keras", WEIGHTS_SUFFIX)
    reference = "keras"

    def available(self) -> str | None:
        for module in ("keras", "tensorflow"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def read(self, path: Path, spec: ResolvedSpec, graph: Graph) -> Checkpoint:
        shown = display_path(path)
        if not path.is_file():
            raise PortError(f"{shown}: no such file")
        if path.name.endswith(".keras"):
            return Checkpoint(canonical_arrays(self._load_model(path, spec, graph, shown), graph))
        if path.name.endswith(WEIGHTS_SUFFIX):
            model, style = self._load_weights(path, spec, graph, shown)
            return Checkpoint(canonical_arrays(model, graph), (f"matched the {style} model",))
        raise PortError(f"{shown}: a Keras checkpoint is a .keras or {WEIGHTS_SUFFIX} file")

    def _load_model(self, path: Path, spec: ResolvedSpec, graph: Graph, shown: str) -> Any:
        import keras

        for style in STYLES:  # registers the generated classes and runtime layers
            _module(spec, graph, style)
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as exc:  # zip, h5 and config errors all mean "unreadable"
            raise PortError(
                f"{shown}: cannot read as a .keras model ({type(exc).__name__}: {_first(exc)})"
            ) from None

    def _load_weights(
        self, path: Path, spec: ResolvedSpec, graph: Graph, shown: str
    ) -> tuple[Any, str]:
        failures: list[str] = []
        for style in STYLES:
            _, model = build(spec, graph, style)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.load_weights(path)
                return model, style
            except Exception as exc:
                failures.append(f"{style}: {type(exc).__name__}: {_first(exc)}")
        raise PortError(
            f"{shown} does not fit spec '{graph.name}' (Keras matches {WEIGHTS_SUFFIX} files "
            "by model structure, so there is no per-name list; a .keras file gets one); "
            "nothing was written:\n" + "\n".join(f"  {f}" for f in failures)
        )

    def write(self, weights: WeightSet, spec: ResolvedSpec, graph: Graph) -> list[Artifact]:
        from archspec_keras.weights import load_into

        module, model = build(spec, graph)
        load_into(model, weights, graph)
        with tempfile.TemporaryDirectory(prefix="archspec_port_") as tmp:
            file = Path(tmp) / f"{graph.name}{WEIGHTS_SUFFIX}"
            model.save_weights(file)
            content = file.read_bytes()
        return [module, Artifact(file.name, content)]

    def runner(self, folder: Path, artifacts: Sequence[Artifact]) -> WrittenKeras:
        return WrittenKeras(folder / artifacts[0].filename, folder / artifacts[1].filename)


class WrittenKeras(KerasRunner):
    """The parity runner of a port's output: the written module and weights file, loaded
    as a user would (nothing regenerated)."""

    def __init__(self, module: Path, weights: Path) -> None:
        super().__init__(name=f"keras ({display_path(weights)})")
        self.module, self.weights = module, weights

    def build(self, request: RunRequest) -> Any:
        module = import_written(self.module, f"archspec_port_keras_{request.graph.name}_{id(self)}")
        model = getattr(module, request.graph.name)(input_shape=_input_shape(request.graph))
        model.load_weights(self.weights)
        return model


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


porter = KerasPorter()
