"""A small scoped builder over `onnx.helper`: every ONNX name is made here, once.

ONNX wires nodes by strings. The builder is the one place that makes those strings, so:
- a value is produced once (a second producer of a name is an error, not a silent rewire);
- an initializer is stored once however many nodes read it (a shared-weight group);
- helper nodes and values an IR op needs beyond its main node live under that op's name
  after a `/` (`avgpool/rows`), which IR names (dotted identifiers) never contain;
- each node records the IR node it comes from (`owners`), so local functions can regroup
  the flat graph by block instance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

import onnx
from archspec.backend import BackendError
from onnx import TensorProto, helper, numpy_helper

Shape = tuple[int, ...]
BATCH = "batch"  # the symbolic batch dimension of every graph input and output


class OnnxEmitError(BackendError):
    """The spec uses something the ONNX builder cannot express (the message says what)."""


class Builder:
    """Collects nodes, initializers, inputs and outputs of one flat ONNX graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.owners: list[str] = []  # the IR node each ONNX node comes from
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.defined: set[str] = set()
        self.owner = ""

    @contextmanager
    def scope(self, owner: str) -> Iterator[None]:
        """Nodes added inside are named after, and owned by, the IR node `owner`."""
        outer, self.owner = self.owner, owner
        try:
            yield
        finally:
            self.owner = outer

    def define(self, name: str) -> str:
        if name in self.defined:
            raise OnnxEmitError(f"two ONNX values would be named '{name}'")
        self.defined.add(name)
        return name

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        output: str | None = None,
        *,
        suffix: str | None = None,
        domain: str = "",
        **attrs: Any,
    ) -> str:
        """Add `op_type(inputs)`; returns its output's name (the node's name unless given).

        The main node of an IR op is named after the op; helpers pass `suffix`.
        """
        name = self.owner if suffix is None else f"{self.owner}/{suffix}"
        out = self.define(output if output is not None else name)
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [out], name=name, domain=domain, **attrs)
        )
        self.owners.append(self.owner)
        return out

    def multi(
        self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attrs: Any
    ) -> None:
        """Add a node with several outputs (a Split), each named by the caller."""
        outs = [self.define(name) for name in outputs]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.owner, **attrs))
        self.owners.append(self.owner)

    def constant(self, suffix: str, value: np.ndarray) -> str:
        """A small constant the op needs (pads, pooling matrices): a Constant node, never an
        initializer, so the initializers are exactly the WeightSet."""
        tensor = numpy_helper.from_array(value, suffix)  # same in every block instance
        return self.node("Constant", [], suffix=suffix, value=tensor)

    def initializer(self, name: str, value: np.ndarray | Shape) -> str:
        """Register a weight (or, for a weightless model, only its shape); one per name."""
        if name in self.initializers:
            return name
        self.define(name)
        if isinstance(value, np.ndarray):
            tensor = numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name)
        else:
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(value))
        self.initializers[name] = tensor
        return name

    def graph_input(self, name: str, shape: Shape) -> str:
        self.inputs.append(
            helper.make_tensor_value_info(self.define(name), TensorProto.FLOAT, [BATCH, *shape])
        )
        return name

    def graph_output(self, name: str, shape: Shape) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape]))
