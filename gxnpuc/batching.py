"""Batched simulation: many samples in one pass of the simulator, bit-identical to one at a time.

The IR has static shapes with batch 1 baked in (reshape targets, slice ends, ...). `plan(graph)`
checks once whether every node that reads sample data is *batch-transparent*: with the
leading dim of every graph input raised from 1 to n, it computes each sample exactly as a
batch-1 run would (no mixing along axis 0, the same float operations per sample). If so,
`Plan.graph_for(n)` is a private copy of the graph with the leading dim n and the few
batch-dependent attrs rewritten; otherwise `Plan.reason` says which node stops it and the
simulator falls back to one run per sample.

Kernels must compute each sample by the same float operations at any batch size. BLAS sums
in a different order for one row (gemv) than for many (gemm), so conv makes one GEMM per
sample, and fc / matmul, whose input rows cannot tell samples from rows, get the attr
`sim_batch` = n on the copy and then make the BLAS call of a batch-1 run once per sample.
Each op's rule is its OpDef.batch (gxnpuc/ops/); an op without one runs one sample at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gxnpuc.ir import Graph, Node, Tensor
from gxnpuc.ops import REGISTRY

CHUNK = 64  # samples per batched pass: bounds the memory of the intermediate tensors


@dataclass
class Plan:
    """Whether and how `graph` runs many samples at once."""
    graph: Graph
    batched: frozenset = frozenset()  # tensors whose axis 0 carries the samples
    rewrites: dict = field(default_factory=dict)  # node index -> fn(n) -> attr updates
    reason: str = ""  # why the graph must run one sample at a time ("" when it need not)
    _copies: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.reason

    def graph_for(self, n: int) -> Graph:
        """The graph with leading dim n on every batched tensor (the original for n == 1)."""
        if n == 1:
            return self.graph
        if n not in self._copies:
            self._copies[n] = _copy(self, n)
        return self._copies[n]

    def per_sample(self, name: str, value, n: int) -> np.ndarray:
        """A batched-run value as [n, *shape in the graph] (what stacking n batch-1 runs gives)."""
        if name in self.batched:
            return np.asarray(value)[:, None]
        return np.repeat(np.asarray(value)[None], n, axis=0)

    def split(self, name: str, value, n: int) -> list:
        """A batched-run value cut into the n values batch-1 runs give (views, no copies)."""
        if name in self.batched:
            return [value[i:i + 1] for i in range(n)]
        return [value] * n


def _copy(p: Plan, n: int) -> Graph:
    g = p.graph
    tensors = dict(g.tensors)
    for name in p.batched:
        t = g.tensors[name]
        tensors[name] = Tensor(t.name, (n, *t.shape[1:]), t.dtype, None)
    nodes = list(g.nodes)
    for k, fn in p.rewrites.items():
        node = nodes[k]
        nodes[k] = Node(node.name, node.op, node.inputs, node.outputs, {**node.attrs, **fn(n)}, node.source)
    return Graph(tensors, nodes, list(g.inputs), list(g.outputs), g.meta)


# -- the analysis ---------------------------------------------------------------------------
def plan(graph: Graph) -> Plan:
    """Analyse the graph once: which tensors carry samples, and whether every node is transparent."""
    batched: set[str] = set()
    for name in graph.inputs:
        shape = graph.tensors[name].shape
        if len(shape) < 1 or shape[0] != 1:
            return Plan(graph, reason=f"input {name!r} has shape {list(shape)}, not [1, ...]")
        batched.add(name)
    rewrites = {}
    for k, node in enumerate(graph.nodes):
        flags = [bool(i) and i in batched for i in node.inputs]
        if not any(flags):
            continue  # reads constants only: one value shared by every sample
        why = _node_rule(graph, node, flags)
        if isinstance(why, str):
            return Plan(graph, reason=f"node {node.name!r} ({node.op}): {why}")
        if why is not None:
            rewrites[k] = why
        batched.update(node.outputs)
    return Plan(graph, frozenset(batched), rewrites)


def _node_rule(graph: Graph, node: Node, flags: list[bool]):
    shapes = [tuple(graph.tensors[i].shape) if i else None for i in node.inputs]
    for name in node.outputs:
        shape = graph.tensors[name].shape
        if len(shape) < 1 or shape[0] != 1:
            return f"output {name!r} has shape {list(shape)}: the batch axis does not stay in front"
    return REGISTRY[node.op].batch(node, shapes, flags)  # each op's rule (OpDef.batch)


def chunks(count: int, size: int = CHUNK) -> list[range]:
    """Sample index ranges of at most `size` samples each."""
    return [range(i, min(i + size, count)) for i in range(0, count, size)]
