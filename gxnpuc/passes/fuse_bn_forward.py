"""FUSE_BN, forwards: a BatchNorm with no conv/fc before it (Kaldi order affine -> ReLU -> BN)
folds into the conv/fc AFTER it, where that is exact; every BatchNorm left separate is named in
the summary with the reason.

With the chain's per-channel scale s and shift t on the next layer's input channels:
conv(x*s + t, W, b) == conv(x, W*s, b + sum_{k, c_in} W[k, c_in, :] * t[c_in]) when the conv
pads nothing (a padded border would see 0 where it should see t) and has one group; the same
for fc with t @ W. Maths in float64, stored in the weight's dtype. The folded weight keeps its
name (as backwards folding does) and is recorded in graph.meta["folded"] for `-w` and `-s`.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ir import Graph, Node
from gxnpuc.passes.affine import Step, record_folded, step_of
from gxnpuc.passes.rewrite import only_consumer, remove_node, set_const


def fold_forward(graph: Graph) -> int:
    """Fold every BatchNorm-like chain that feeds a conv/fc exactly; returns how many."""
    count = 0
    for node in list(graph.nodes):
        if any(n is node for n in graph.nodes) and _affine_after(node):
            steps = _chain_before(graph, node)
            if any(st.kind == "scale" for st in steps) and _fold_into(graph, node, steps):
                count += 1
    if count:
        graph.prune()
    return count


def _affine_after(node: Node) -> bool:
    return node.op in ("conv", "fc") and len(node.inputs) > 1 and bool(node.inputs[1])


def _in_axis(graph: Graph, node: Node) -> int:
    ndim = len(graph.tensors[node.inputs[0]].shape)
    fmt = str(node.attrs.get("data_format", "")) if node.op == "conv" else ""
    return 1 if fmt.startswith("NC") else ndim - 1


def _chain_before(graph: Graph, node: Node) -> list[Step]:
    """The per-channel affine steps that produce node's input, in forward order."""
    axis = _in_axis(graph, node)
    channels = graph.tensors[node.inputs[0]].shape[axis]
    steps: list[Step] = []
    tensor, reader = node.inputs[0], node
    while (p := graph.producer(tensor)) is not None and only_consumer(graph, tensor) is reader:
        src = _source(graph, p)
        if src is None:
            break
        step = step_of(graph, p, src, axis, channels)[0]
        if step is None or step.kind == "move":
            break
        steps.insert(0, step)
        tensor, reader = src, p
    return steps


def _source(graph: Graph, node: Node) -> str | None:
    """The one non-constant input of a batchnorm / binary step."""
    if node.op == "batchnorm":
        return node.inputs[0]
    if node.op != "binary":
        return None
    live = [i for i in node.inputs[:2] if i and not graph.tensors[i].is_const]
    return live[0] if len(live) == 1 else None


def why_not(graph: Graph, node: Node) -> str | None:
    """Why a BatchNorm cannot fold into this next node (None: it can)."""
    if not _affine_after(node) or not graph.tensors[node.inputs[1]].is_const:
        return f"the next op {node.name} ({node.op}) is not a conv/fc layer with a constant weight"
    if node.op == "conv" and any(int(p) for p in node.attrs.get("pads", ())):
        return (f"the next layer {node.name} pads its input (a padded border would see 0, "
                f"not the BatchNorm's shift)")
    if node.op == "conv" and int(node.attrs.get("group", 1)) != 1:
        return f"the next layer {node.name} is a grouped/depthwise convolution"
    return None


def _fold_into(graph: Graph, node: Node, steps: list[Step]) -> bool:
    w = graph.tensors[node.inputs[1]].data
    if why_not(graph, node) or w is None:
        return False
    channels = graph.tensors[node.inputs[0]].shape[_in_axis(graph, node)]
    s, t = np.ones(channels), np.zeros(channels)
    for st in steps:
        if st.scale is None or st.shift is None:
            return False
        s, t = s * st.scale, t * st.scale + st.shift
    in_axis = _weight_in_axis(node, w.ndim)
    if in_axis is None or w.shape[in_axis] != s.size:
        return False
    shape = [s.size if a == in_axis else 1 for a in range(w.ndim)]
    w64 = w.astype(np.float64)
    out_axis = _weight_out_axis(node, w.ndim)
    shift = np.sum(w64 * t.reshape(shape), axis=tuple(a for a in range(w.ndim) if a != out_axis))
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    old_b = graph.tensors[bias].data if bias else None
    if bias and (old_b is None or old_b.size != shift.size):
        return False
    new_b = shift if old_b is None else np.asarray(old_b, np.float64).reshape(-1) + shift
    name = set_const(graph, node, 1, (w64 * s.reshape(shape)).astype(w.dtype), node.inputs[1] + "/folded")
    set_const(graph, node, 2, new_b.reshape(old_b.shape if old_b is not None else (-1,)).astype(w.dtype),
              node.name + "/bias")
    node.inputs[0] = steps[0].src
    for st in steps:
        remove_node(graph, st.node)
    record_folded(graph, name, [st.node.name for st in steps], "before")
    return True


def _weight_in_axis(node: Node, ndim: int) -> int | None:
    if node.op == "fc":
        return ndim - 1 if node.attrs.get("transpose_w") else 0
    fmt = str(node.attrs.get("w_format", ""))
    return 1 if fmt.startswith("OI") else (ndim - 2 if fmt.endswith("IO") else None)


def _weight_out_axis(node: Node, ndim: int) -> int:
    if node.op == "fc":
        return 0 if node.attrs.get("transpose_w") else ndim - 1
    return 0 if str(node.attrs.get("w_format", "")).startswith("OI") else ndim - 1


def _is_bn(node: Node) -> bool:
    return node.op == "batchnorm" or (node.op == "binary" and (
        "batchnorm" in node.name.lower() or "BatchNorm" in node.source))


def _bn_scope(name: str) -> str:
    """`tdnn2.batchnorm/mul_1` -> `tdnn2.batchnorm`: the name up to its BatchNorm scope."""
    parts = name.split("/")
    for k, part in enumerate(parts[:-1]):
        if "batchnorm" in part.lower():
            return "/".join(parts[:k + 1])
    return name


def note_unfolded(graph: Graph, folded: int) -> None:
    """Summary notes: how many BatchNorms FUSE_BN folded, and each one left separate, and why."""
    groups: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if _is_bn(node):
            groups.setdefault(_bn_scope(node.name), []).append(node)
    notes = graph.meta.setdefault("notes", [])
    if folded:
        notes.append(f"FUSE_BN folded {folded} BatchNorm(s) into a conv/fc weight (`-w` marks them)")
    for label, nodes in groups.items():
        nxt = only_consumer(graph, nodes[-1].outputs[0])
        reason = ("its output is a model output or read by several ops" if nxt is None else
                  why_not(graph, nxt) or "no conv/fc before or after it can absorb it exactly")
        notes.append(f"FUSE_BN: BatchNorm {label} stays a separate op: {reason}")
