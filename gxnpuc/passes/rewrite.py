"""Small graph-editing helpers the passes share: fresh names, uses, renames, node removal.

Passes edit the IR in place; these helpers keep the edits consistent (every tensor a node
names exists, each tensor has one producer, graph outputs keep their framework names).
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ir import Graph, Node, Tensor


def fresh_name(graph: Graph, base: str) -> str:
    """A tensor/node name not used in the graph yet, derived from base."""
    used = set(graph.tensors) | {n.name for n in graph.nodes}
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    return name


def use_count(graph: Graph, tensor: str) -> int:
    """How many node inputs and graph outputs read this tensor (an input read twice counts twice)."""
    return sum(n.inputs.count(tensor) for n in graph.nodes) + graph.outputs.count(tensor)


def only_consumer(graph: Graph, tensor: str) -> Node | None:
    """The single node reading tensor, when it is read exactly once and is not a graph output."""
    if tensor in graph.outputs:
        return None
    users = graph.consumers(tensor)
    if len(users) != 1 or users[0].inputs.count(tensor) != 1:
        return None
    return users[0]


def replace_uses(graph: Graph, old: str, new: str, skip: Node | None = None) -> None:
    """Make every node input that reads `old` read `new` instead."""
    for node in graph.nodes:
        if node is not skip:
            node.inputs = [new if i == old else i for i in node.inputs]


def rename_tensor(graph: Graph, old: str, new: str) -> None:
    """Give computed tensor `old` the name `new` (whose own tensor, if any, is dropped)."""
    t = graph.tensors.pop(old)
    graph.tensors.pop(new, None)
    t.name = new
    graph.tensors[new] = t
    for node in graph.nodes:
        node.inputs = [new if i == old else i for i in node.inputs]
        node.outputs = [new if o == old else o for o in node.outputs]
    graph.outputs = [new if o == old else o for o in graph.outputs]


def remove_node(graph: Graph, node: Node) -> None:
    graph.nodes = [n for n in graph.nodes if n is not node]


def set_const(graph: Graph, node: Node, index: int, value: np.ndarray, new_name: str) -> str:
    """Give input `index` of node the constant value.

    The tensor it reads keeps its name and gets the new data when this node is its only
    reader (users exclude weights by that name); a shared or missing tensor is not touched:
    a new constant named `new_name` (made unique) is created for this node alone.
    """
    arr = np.asarray(value)
    while len(node.inputs) <= index:
        node.inputs.append("")
    name = node.inputs[index]
    t = graph.tensors.get(name) if name else None
    if t is not None and t.is_const and use_count(graph, name) == 1 and name not in graph.inputs:
        t.data, t.shape, t.dtype = arr, tuple(arr.shape), arr.dtype.name
        return name
    old, name = name, fresh_name(graph, new_name)
    graph.tensors[name] = Tensor(name, tuple(arr.shape), arr.dtype.name, arr)
    node.inputs[index] = name
    if t is not None and t.is_const:  # config names of the shared weight reach the copy too
        graph.record_alias(old, name)
    return name
