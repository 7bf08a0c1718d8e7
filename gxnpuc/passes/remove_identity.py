"""Pass: remove nodes that compute nothing, then dead nodes.

Dropped: `identity`, `reshape` to the input's own shape, `transpose` with the identity perm,
`cast` to the input's own dtype. Merged first: reshape-of-reshape (one reshape) and
transpose-of-transpose (one transpose with the composed perm; exporters' NCHW<->NHWC pairs
then cancel). A graph output keeps its framework name: the producer of the removed node's
input is renamed to it. A copy (`identity`) stays only where a graph output would otherwise
be a graph input, a constant, or another graph output.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ir import Graph, Node
from gxnpuc.passes.rewrite import remove_node, rename_tensor, replace_uses


def remove_identity(graph: Graph, cfg) -> None:
    """Bypass no-op nodes and merge reshape/transpose pairs until nothing changes; prune."""
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if any(n is node for n in graph.nodes):
                changed |= _merge_with_producer(graph, node) or (_is_noop(graph, node)
                                                                 and _bypass(graph, node))
    graph.prune()


def _merge_with_producer(graph: Graph, node: Node) -> bool:
    """reshape(reshape(x)) -> reshape(x); transpose(transpose(x, p1), p2) -> transpose(x, p1[p2])."""
    if node.op not in ("reshape", "transpose") or not node.inputs[0]:
        return False
    prev = graph.producer(node.inputs[0])
    if prev is None or prev.op != node.op:
        return False
    if node.op == "transpose":
        inner, outer = list(prev.attrs["perm"]), list(node.attrs["perm"])
        node.attrs = {**node.attrs, "perm": [int(inner[p]) for p in outer]}
    node.inputs = [prev.inputs[0]] + node.inputs[1:]
    node.source = _join(prev.source, node.source)
    return True


def _join(a: str, b: str) -> str:
    return b if not a or a == b else f"{a}+{b}"


def _is_noop(graph: Graph, node: Node) -> bool:
    if node.op == "identity":
        return True
    if len(node.outputs) != 1 or not node.inputs or not node.inputs[0]:
        return False
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    if node.op == "reshape":
        return x.shape == y.shape
    if node.op == "transpose":
        return list(node.attrs.get("perm", [])) == list(range(len(x.shape)))
    if node.op == "cast":
        return _same_dtype(str(node.attrs.get("to", "")), x.dtype)
    return False


def _same_dtype(a: str, b: str) -> bool:
    try:
        return np.dtype(a) == np.dtype(b)
    except TypeError:  # names numpy does not know (bfloat16) compare as written
        return a == b


def _bypass(graph: Graph, node: Node) -> bool:
    """Remove node (x -> y) so that readers of y read x; True when the graph changed."""
    x, y = node.inputs[0], node.outputs[0]
    if y not in graph.outputs:
        replace_uses(graph, y, x)
        remove_node(graph, node)
        graph.tensors.pop(y, None)
        return True
    if x in graph.inputs or graph.tensors[x].is_const or x in graph.outputs:
        if node.op == "identity":
            return False  # this copy is needed: the output must be a buffer of its own
        node.op, node.attrs = "identity", {}  # a no-op reshape/cast becomes the needed copy
        return True
    remove_node(graph, node)
    rename_tensor(graph, x, y)  # the output keeps the name the user knows
    return True
