"""The ONNX parity runner: the model built from the IR, run in onnxruntime.

Every IR op's result is an ONNX value named after the IR node, so probing is exact and
complete: the probed values become extra graph outputs. A dropout is an alias at
inference (no ONNX node): its probe reads the value it passes on. Inference only:
onnxruntime has no training-mode BatchNorm or gradients for these graphs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from archspec.parity import ParityError, RunRequest, RunResult


class OnnxRunner:
    name = "onnx"
    extra = "onnx"
    modes = ("inference",)

    def __init__(
        self,
        fold_bn: bool = False,
        name: str = "onnx",
        transform: Callable[[Any], None] | None = None,
    ) -> None:
        """`transform` edits the ModelProto in place before it runs (tests plant bugs)."""
        self.fold_bn = fold_bn
        self.name = name
        self.transform = transform

    @property
    def devices(self) -> tuple[str, ...]:
        import onnxruntime as ort

        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
        return ("cpu", "cuda") if gpu else ("cpu",)

    def available(self) -> str | None:
        for module in ("onnx", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def model(self, request: RunRequest) -> Any:
        """The ModelProto to run: built from the IR and the request's weights."""
        from archspec_onnx.model import build_model

        return build_model(request.graph, request.weights, fold_bn=self.fold_bn, spec=request.spec)

    def run(self, request: RunRequest) -> RunResult:
        import onnxruntime as ort
        from archspec_onnx.model import serialize

        from onnx import TensorProto, helper

        if request.dtype != "float32":
            raise ParityError("the onnx backend builds float32 models: use --dtype float32")
        graph = request.graph
        model = self.model(request)
        if self.transform is not None:
            self.transform(model)
        produced = {out for node in model.graph.node for out in node.output}
        produced |= {i.name for i in model.graph.input}

        def value_of(name: str) -> str | None:
            node = graph.node(name)
            if name in produced:
                return name
            if node.op.kind in ("dropout", "stochastic_depth"):  # identity: no node of its own
                return value_of(node.inputs[0])
            return None

        source = {p: v for p in request.probes if (v := value_of(p)) is not None}
        extra = sorted({v for v in source.values() if v not in graph.outputs} - set(graph.inputs))
        for name in extra:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if request.device == "cuda"
            else ["CPUExecutionProvider"]
        )
        session = ort.InferenceSession(serialize(model), providers=providers)
        feeds = {name: np.asarray(request.inputs[name]) for name in graph.inputs}
        values = session.run([*graph.outputs, *extra], feeds)
        found = dict(zip([*graph.outputs, *extra], values, strict=True))
        found.update(feeds)
        return RunResult(
            outputs={name: found[name] for name in graph.outputs},
            probes={p: found[v] for p, v in source.items()},
        )


runner = OnnxRunner()
