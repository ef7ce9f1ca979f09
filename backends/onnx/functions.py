"""`--functions`: the flat graph regrouped into one model-local function per block type.

ONNX's model-local functions are its "one class per block type": each block instance of
the IR (`layer1.0`, a `Bottleneck`) becomes one call node named after the instance, whose
inputs are the block's data inputs followed by the weights it reads (initializers stay in
the main graph under their WeightSet names, so a shared group is still one initializer).
Inside a function, values and nodes carry the names relative to the instance (`conv1`,
`downsample.0`), the block's input is `input` (`input0`, `input1`... for several).

Attributes that differ between instances (a stride, the pads of TF-`same` padding) become
function attributes (`conv2_strides`), passed by each call. Instances whose structure
differs (an optional `downsample` present or absent) cannot share a body: each structure
is its own function, named after the block type and the items only it has
(`Bottleneck_with_downsample`). Nested blocks become functions calling functions.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from archspec_onnx.builder import Builder, OnnxEmitError

import onnx
from archspec.ir import Graph
from onnx import helper

Signature = tuple[object, ...]


@dataclass
class Candidate:
    """One block instance's body in relative names, waiting to be grouped into a function."""

    path: str
    block_type: str
    inputs: list[str]  # full names passed by the call: data inputs, then weights
    outputs: list[str]  # full names the call produces
    formals: list[str]  # the function's input names
    results: list[str]  # the function's output names
    nodes: list[onnx.NodeProto]  # relative names, literal attributes
    calls_functions: bool

    def signature(self) -> Signature:
        shape = tuple(
            (
                n.op_type,
                n.domain,
                n.name,
                tuple(n.input),
                tuple(n.output),
                tuple((a.name, a.type) for a in n.attribute),
            )
            for n in self.nodes
        )
        return (self.block_type, tuple(self.formals), tuple(self.results), shape)


class Regrouper:
    """Builds the functions bottom-up: the deepest block instances first, so a parent's
    body already holds its children's final call nodes when it is grouped."""

    def __init__(self, graph: Graph, b: Builder, opset: int, domain: str) -> None:
        self.graph = graph
        self.b = b
        self.opset = opset
        self.domain = domain
        self.blocks = {s.path: s.block_type or s.path for s in graph.scopes if s.kind == "block"}
        self.home = [self.enclosing(owner) for owner in b.owners]
        # ordering key of each instance: the flat index of its subtree's last node
        self.last: dict[str, int] = {}
        for index, home in enumerate(self.home):
            path = home
            while path:
                self.last[path] = index
                path = self.enclosing(path)
        self.readers: dict[str, set[str]] = defaultdict(set)  # value -> homes of its readers
        for node, home in zip(b.nodes, self.home, strict=True):
            for value in node.input:
                self.readers[value].add(home)
        self.graph_outputs = set(graph.outputs)
        self.calls: dict[str, onnx.NodeProto] = {}  # instance path -> its call node
        self.functions: list[onnx.FunctionProto] = []
        self.names: set[str] = set()

    def enclosing(self, name: str) -> str:
        """The innermost block instance strictly containing `name` ('' for the model)."""
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in self.blocks:
                return prefix
        return ""

    def depth(self, path: str) -> int:
        return 0 if not path else 1 + self.depth(self.enclosing(path))

    def body(self, path: str) -> list[onnx.NodeProto]:
        """The instance's own nodes and its child instances' calls, in graph order."""
        items = [(i, n) for i, n in enumerate(self.b.nodes) if self.home[i] == path]
        items += [(self.last[c], self.calls[c]) for c in self.calls if self.enclosing(c) == path]
        return [n for _, n in sorted(items, key=lambda item: item[0])]

    def inside(self, home: str, path: str) -> bool:
        return home == path or home.startswith(path + ".")

    def candidate(self, path: str) -> Candidate:
        nodes = self.body(path)
        produced = [v for n in nodes for v in n.output]
        made = set(produced)
        external: list[str] = []
        for n in nodes:
            external += [v for v in n.input if v and v not in made and v not in external]
        data = [v for v in external if v not in self.b.initializers]
        weights = [v for v in external if v in self.b.initializers]
        outputs = [
            v
            for v in produced
            if v in self.graph_outputs or any(not self.inside(h, path) for h in self.readers[v])
        ]
        prefix = path + "."

        def rel(name: str) -> str:
            return name[len(prefix) :] if name.startswith(prefix) else name

        formal_data = ["input"] if len(data) == 1 else [f"input{i}" for i in range(len(data))]
        rename = dict(zip(data, formal_data, strict=True))
        rename.update({v: rel(v) for v in weights})
        rename.update({v: rel(v) for v in produced})
        if len(set(rename.values())) != len(rename):
            raise OnnxEmitError(f"block instance '{path}': two values share a relative name")
        relative = []
        for n in nodes:
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            copy.name = rel(n.name)
            copy.input[:] = [rename.get(v, v) for v in n.input]
            copy.output[:] = [rename[v] for v in n.output]
            relative.append(copy)
        return Candidate(
            path=path,
            block_type=self.blocks[path],
            inputs=data + weights,
            outputs=outputs,
            formals=[rename[v] for v in data + weights],
            results=[rename[v] for v in outputs],
            nodes=relative,
            calls_functions=any(n.domain for n in nodes),
        )

    def function_names(self, groups: list[list[Candidate]]) -> list[str]:
        """The block type's name; with several structures, the items only each one has."""
        if len(groups) == 1:
            names = [groups[0][0].block_type]
        else:
            tops = [{n.name.split(".")[0].split("/")[0] for n in g[0].nodes} for g in groups]
            common = set.intersection(*tops)
            names = []
            for group, top in zip(groups, tops, strict=True):
                extra = sorted(top - common)
                names.append(group[0].block_type + ("_with_" + "_".join(extra) if extra else ""))
        out = []
        for name in names:
            unique, i = name, 1
            while unique in self.names:
                unique, i = f"{name}_{i}", i + 1
            self.names.add(unique)
            out.append(unique)
        return out

    def make_function(self, name: str, group: list[Candidate]) -> None:
        first = group[0]
        varying: dict[tuple[int, int], str] = {}
        for i, node in enumerate(first.nodes):
            for j, attr in enumerate(node.attribute):
                values = {c.nodes[i].attribute[j].SerializeToString() for c in group}
                if len(values) > 1:
                    varying[(i, j)] = re.sub(r"\W", "_", f"{node.name}_{attr.name}")
        if len(set(varying.values())) != len(varying):
            raise OnnxEmitError(f"function {name}: two attributes share a name")
        body = []
        for i, node in enumerate(first.nodes):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            for j, attr in enumerate(node.attribute):
                if (i, j) in varying:
                    copy.attribute[j].CopyFrom(
                        onnx.AttributeProto(
                            name=attr.name, type=attr.type, ref_attr_name=varying[(i, j)]
                        )
                    )
            body.append(copy)
        opsets = [helper.make_opsetid("", self.opset)]
        if first.calls_functions:
            opsets.append(helper.make_opsetid(self.domain, 1))
        self.functions.append(
            helper.make_function(
                self.domain,
                name,
                first.formals,
                first.results,
                body,
                opsets,
                attributes=list(varying.values()),
            )
        )
        for c in group:
            call = helper.make_node(name, c.inputs, c.outputs, name=c.path, domain=self.domain)
            for (i, j), formal in varying.items():
                attr = onnx.AttributeProto()
                attr.CopyFrom(c.nodes[i].attribute[j])
                attr.name = formal
                call.attribute.append(attr)
            self.calls[c.path] = call

    def run(self) -> tuple[list[onnx.NodeProto], list[onnx.FunctionProto]]:
        paths = sorted(self.last, key=lambda p: self.last[p])
        for depth in sorted({self.depth(p) for p in paths}, reverse=True):
            groups: dict[tuple[str, Signature], list[Candidate]] = {}
            for path in paths:
                if self.depth(path) == depth:
                    c = self.candidate(path)
                    groups.setdefault((c.block_type, c.signature()), []).append(c)
            by_type: dict[str, list[list[Candidate]]] = defaultdict(list)
            for (btype, _), group in groups.items():
                by_type[btype].append(group)
            for type_groups in by_type.values():
                for name, group in zip(self.function_names(type_groups), type_groups, strict=True):
                    self.make_function(name, group)
        return self.body(""), self.functions


def extract(
    graph: Graph, b: Builder, opset: int, domain: str
) -> tuple[list[onnx.NodeProto], list[onnx.FunctionProto]]:
    """The main graph's nodes (block instances as calls) and the functions they call."""
    return Regrouper(graph, b, opset, domain).run()
