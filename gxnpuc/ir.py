"""The NPU IR: tensors with static shapes, nodes naming a registered NPU op, and the graph.

Activations keep the layout of the framework they came from (ONNX NCHW, TensorFlow NHWC);
ops that care carry it in their attrs (`data_format`, `w_format`). Weights keep their
framework name and shape, because those are the names users paste into their configs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gxnpuc.errors import CompileError

# op name -> its OpDef. The IR names no op: gxnpuc.ops fills this table as it is imported
# (ops/base.register; gxnpuc.ops.REGISTRY is this dict), and gxnpuc.model imports gxnpuc.ops.
OPS: dict[str, Any] = {}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None  # set for constants (weights, folded values)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Node:
    name: str
    op: str  # key of OPS
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    source: str = ""  # framework op type(s) this node came from, e.g. "Conv" or "Conv2D+BiasAdd"


@dataclass
class Graph:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)  # topological order
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # framework, source path, notes for the summary

    def producer(self, tensor: str) -> Node | None:
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def const(self, tensor: str) -> np.ndarray | None:
        t = self.tensors.get(tensor)
        return None if t is None else t.data

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def record_alias(self, old: str, new: str) -> None:
        """Remember that framework/IR name `old` now lives on as `new` (tensor or node name), so
        the names users write still resolve (gxnpuc/config/names.py reads meta["aliases"])."""
        if old and new and old != new:
            targets = self.meta.setdefault("aliases", {}).setdefault(old, [])
            if new not in targets:
                targets.append(new)

    def weight_slots(self) -> list[tuple[Node, int, str]]:
        """(node, input index, family) for every constant input of every node, graph order.

        family is the op's declared role for that input ("conv", "fc", "bias", ...), or
        "param" for any other constant operand (stored as fp16, never compressed).
        """
        slots = []
        for node in self.nodes:
            roles = OPS[node.op].weights
            for i, name in enumerate(node.inputs):
                if name and self.tensors[name].is_const:
                    slots.append((node, i, roles.get(i, "param")))
        return slots

    def prune(self) -> None:
        """Drop nodes and tensors that no graph output depends on."""
        needed = set(self.outputs)
        kept = []
        for node in reversed(self.nodes):
            if needed.intersection(node.outputs):
                kept.append(node)
                needed.update(i for i in node.inputs if i)
        self.nodes = kept[::-1]
        # a kept node keeps all its outputs (an unused Split/Unpack part still has a tensor)
        live = needed | set(self.inputs) | {o for n in kept for o in n.outputs}
        self.tensors = {k: v for k, v in self.tensors.items() if k in live}

    def verify(self, stage: str) -> None:
        """Check the invariants every stage must keep; name the stage that broke them."""
        seen = {n for n, t in self.tensors.items() if t.is_const} | set(self.inputs)
        for node in self.nodes:
            where = f"after {stage}: node {node.name!r}"
            if node.op not in OPS:
                raise CompileError(where, f"unknown NPU op {node.op!r}", "internal error")
            for name in node.inputs:
                if name and name not in seen:
                    raise CompileError(where, f"input {name!r} used before it is produced",
                                       "internal error: graph not in topological order")
            for name in node.outputs:
                if name not in self.tensors:
                    raise CompileError(where, f"output {name!r} has no tensor", "internal error")
                seen.add(name)
        for name in self.outputs:
            if name not in seen:
                raise CompileError(f"after {stage}", f"graph output {name!r} is not produced",
                                   "internal error")
