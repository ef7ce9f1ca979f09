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

Writing: `<spec>.py`, the module `archspec gen --backend keras` generates (`--to keras`:
the functional style; `--to keras_subclass`: the subclass style), and `<spec>.weights.h5`:
`model = <spec>(input_shape=...); model.load_weights(...)`.

The parity check loads the written weights file into the model `write` built from the very
bytes of the written module, after setting every variable to NaN: a variable the file does
not restore poisons the outputs, so the check proves the file as strictly as a rebuilt model
would, without building resnet50 twice (1.5 s).
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from archspec_keras.emitter import STYLES, KerasEmitter, factory_shapes
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


def _module(spec: ResolvedSpec, graph: Graph, style: str) -> tuple[Artifact, Any]:
    artifact = KerasEmitter().emit(spec, graph, {"style": style})
    return artifact, import_artifact(artifact, f"archspec_port_keras_{style}_{graph.name}", None)


def build(spec: ResolvedSpec, graph: Graph, style: str = "functional") -> tuple[Artifact, Any]:
    """The spec's generated Keras module and its model (Keras's initializers)."""
    artifact, module = _module(spec, graph, style)
    return artifact, getattr(module, graph.name)(**factory_shapes(graph))


def canonical_arrays(model: Any, graph: Graph) -> dict[str, np.ndarray]:
    """Every variable of `model` under its canonical name and layout, found by layer
    name (the naming contract); a variable no parameter set owns keeps its Keras name
    (`layer/variable`), so the fit lists it as unexpected."""
    from archspec_keras.weights import default_layer_name, leaf_layers, variable_mapping

    import keras

    owners = {default_layer_name(p): (p, node) for p, node in param_sets(graph).items()}
    out: dict[str, np.ndarray] = {}
    for layer in leaf_layers(model):
        owner = owners.get(layer.name)
        for variable in layer.weights:
            value = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)
            if owner is None:
                out[f"{layer.name}/{variable.name}"] = value
                continue
            prefix, node = owner
            try:
                tensor, _, from_keras = variable_mapping(node.op, layer, variable.name)
                out[f"{prefix}.{tensor}"] = from_keras(value)
            except (KeyError, ValueError):  # a variable the op has none of, or a bad rank
                out[f"{layer.name}/{variable.name}"] = value
    return out


class KerasPorter:
    extra = "keras"
    reads = (".keras", WEIGHTS_SUFFIX)
    isolated_reference = False  # reading imports Keras here anyway

    def __init__(self, style: str = "functional") -> None:
        self.style = style  # what `write` generates; reading accepts either style
        self.name = self.reference = "keras" if style == "functional" else f"keras_{style}"
        self._built: tuple[bytes, Any] | None = None  # the model `write` built, for `runner`

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

        module, model = build(spec, graph, self.style)
        load_into(model, weights, graph)
        with tempfile.TemporaryDirectory(prefix="archspec_port_") as tmp:
            file = Path(tmp) / f"{graph.name}{WEIGHTS_SUFFIX}"
            model.save_weights(file)
            content = file.read_bytes()
        self._built = (module.content, model)
        return [module, Artifact(file.name, content)]

    def runner(self, folder: Path, artifacts: Sequence[Artifact]) -> WrittenKeras:
        module, weights = (folder / a.filename for a in artifacts)
        built, self._built = self._built, None
        return WrittenKeras(self.name, module, weights, built)


class WrittenKeras(KerasRunner):
    """The parity runner of a port's output: the written weights file loaded into a model
    of the written module, as a user would load them (nothing regenerated)."""

    def __init__(
        self, name: str, module: Path, weights: Path, built: tuple[bytes, Any] | None = None
    ) -> None:
        super().__init__(name=f"{name} ({display_path(weights)})")
        self.module, self.weights, self.built = module, weights, built

    def build(self, request: RunRequest) -> Any:
        if self.built is not None and self.built[0] == self.module.read_bytes():
            model = self.built[1]  # built from these very bytes: reuse it, emptied first
            for variable in model.weights:
                blank = np.nan if "float" in str(variable.dtype) else -1
                variable.assign(np.full(variable.shape, blank, variable.dtype))
        else:
            name = f"archspec_port_keras_{request.graph.name}_{id(self)}"
            module = import_written(self.module, name)
            model = getattr(module, request.graph.name)(**factory_shapes(request.graph))
        model.load_weights(self.weights)
        return model


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


porter = KerasPorter()
subclass_porter = KerasPorter("subclass")
