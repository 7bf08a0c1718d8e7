"""Pass: constant folding. Any node whose inputs are all constant is run once, now.

Front ends already fold while lowering; this pass re-folds what earlier passes exposed. The
kernel is the op's own (REGISTRY[op].run), so folding computes exactly what the simulator
would, and each folded tensor keeps its name.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ir import Graph, Node
from gxnpuc.passes.rewrite import remove_node


def fold_constants(graph: Graph, cfg) -> None:
    """Replace every all-constant node by its output constants; drop what is then dead."""
    folded = False
    for node in list(graph.nodes):  # topological order: a folded output feeds later nodes
        if _foldable(graph, node):
            _fold(graph, node)
            folded = True
    if folded:
        graph.prune()


def _foldable(graph: Graph, node: Node) -> bool:
    present = [i for i in node.inputs if i]
    if not present or not all(graph.tensors[i].is_const for i in present):
        return False
    # A graph output must stay computed: the backend writes outputs, never constants.
    return not any(o in graph.outputs for o in node.outputs)


def _fold(graph: Graph, node: Node) -> None:
    from gxnpuc.ops import REGISTRY

    with np.errstate(all="ignore"):
        values = REGISTRY[node.op].run(node, [graph.const(i) if i else None for i in node.inputs])
    for name, value in zip(node.outputs, values):
        arr = np.asarray(value)
        t = graph.tensors[name]
        t.data, t.shape, t.dtype = arr, tuple(arr.shape), arr.dtype.name
    remove_node(graph, node)
