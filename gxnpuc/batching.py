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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from gxnpuc.ir import Graph, Node, Tensor

CHUNK = 64  # samples per batched pass: bounds the memory of the intermediate tensors
BATCH_ATTR = "sim_batch"  # set on the simulator's private copy only, read by fc/matmul

# a rule returns None (transparent, attrs unchanged), a str (why not), or fn(n) -> attr updates
Rule = Callable[[Node, list, list], "str | Callable[[int], dict] | None"]


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
    rule = RULES.get(node.op)
    if rule is None:
        return "no batching rule for this op"
    return rule(node, shapes, flags)


def _only_first(node, shapes, flags):
    if any(flags[1:]):
        return "a parameter input depends on the sample"
    return None


def _axis_not_0(node, shapes, flags):
    return _only_first(node, shapes, flags) or ("works along axis 0" if node.attrs.get("axis") == 0 else None)


def _broadcast(node, shapes, flags):
    rank = len(np.broadcast_shapes(*[s for s in shapes if s is not None]))
    if any(f and len(s) != rank for s, f in zip(shapes, flags)):
        return "broadcasting moves the batch axis away from axis 0"
    return None


def _hint(n: int) -> dict:
    return {BATCH_ATTR: n}


def _fc(node, shapes, flags):
    return _only_first(node, shapes, flags) or (None if len(shapes[0]) >= 2 else "input of rank 1") or _hint


def _matmul(node, shapes, flags):
    a, b = shapes
    if flags == [True, False] and len(a) == 2 and len(b) == 2:
        return _hint  # [1, K] @ [K, N]: one gemv per sample, as in a batch-1 run
    rank = max(len(a), len(b))
    if all(len(s) == rank >= 3 for s, f in zip(shapes, flags) if f):
        return None  # numpy loops over the leading dims: the same product per sample
    return "the batch axis is not a leading (broadcast) dim of both operands"


def _reduce(node, shapes, flags):
    axes = node.attrs["axes"]
    if 0 not in axes:
        return None
    if node.attrs.get("keepdims"):  # over the size-1 axis 0 of one sample: nothing to reduce
        return lambda n: {"axes": [a for a in axes if a != 0]}
    return "reduces over axis 0 and drops it"


def _reshape(node, shapes, flags):
    shape = list(node.attrs["shape"])
    return lambda n: {"shape": [n] + shape[1:]}


def _transpose(node, shapes, flags):
    return None if node.attrs["perm"][0] == 0 else "moves axis 0"


def _concat(node, shapes, flags):
    if not all(flags):
        return "joins sample data with a constant (that would need broadcasting)"
    return _axis_not_0(node, shapes, [False] * len(flags))


def _slice(node, shapes, flags):
    a = node.attrs
    return lambda n: {"starts": [0] + list(a["starts"][1:]), "ends": [n] + list(a["ends"][1:]),
                      "steps": [1] + list(a["steps"][1:])}


def _pad(node, shapes, flags):
    p, r = node.attrs["pads"], len(shapes[0])
    return _only_first(node, shapes, flags) or (None if p[0] == 0 == p[r] else "pads axis 0")


def _upsample(node, shapes, flags):
    return None if node.attrs["scales"][0] == 1 else "repeats along axis 0"


def _elementwise(node, shapes, flags):
    return _only_first(node, shapes, flags)


# op -> rule. An op not listed here (a new op, a fold-only op reading sample data) makes the
# simulator run one sample at a time: safe, only slower. Add its rule here when it is added.
RULES: dict[str, Rule] = {
    "act": _elementwise, "identity": _elementwise, "cast": _elementwise,
    "binary": _broadcast, "prelu": _broadcast,
    "batchnorm": _axis_not_0, "softmax": _axis_not_0, "split": _axis_not_0,
    "conv": _only_first, "pool": _only_first,
    "fc": _fc, "matmul": _matmul, "reduce": _reduce,
    "reshape": _reshape, "transpose": _transpose, "concat": _concat, "slice": _slice,
    "pad": _pad, "upsample": _upsample,
}


def chunks(count: int, size: int = CHUNK) -> list[range]:
    """Sample index ranges of at most `size` samples each."""
    return [range(i, min(i + size, count)) for i in range(0, count, size)]
