"""Rewrites of TF graph idioms on FNodes, before lowering: node order, constant-predicate
Switch/Merge (TF1 Keras' learning phase), and dilated convolutions.

TensorFlow computes a dilated convolution (Keras `dilation_rate`) as
SpaceToBatchND -> [ExpandDims] -> Conv2D/DepthwiseConv2dNative (VALID) -> [Squeeze] ->
BatchToSpaceND. That is one dilated convolution with explicit pads
(paddings - crops), which is what the NPU runs; the two batch shuffles become identities.
"""
from __future__ import annotations

import heapq

import numpy as np

from gxnpuc.frontend.common import FNode

_CONVS = ("Conv2D", "DepthwiseConv2dNative")


def fuse_dilated_convs(fnodes: list[FNode]) -> list[FNode]:
    """The same nodes, with every SpaceToBatchND..BatchToSpaceND dilated conv made direct."""
    by_out = {o: fn for fn in fnodes for o in fn.outputs}
    readers: dict[str, int] = {}
    for fn in fnodes:
        for i in fn.inputs:
            readers[i] = readers.get(i, 0) + 1
    for b2s in [fn for fn in fnodes if fn.op_type == "BatchToSpaceND"]:
        chain = _chain(b2s, by_out, readers)
        if chain is not None:
            _rewrite(chain, by_out)
    return fnodes


def _const(by_out: dict, name: str):
    fn = by_out.get(name)
    return None if fn is None or fn.op_type != "Const" else np.asarray(fn.attrs.get("value"))


def _chain(b2s: FNode, by_out: dict, readers: dict):
    """[s2b, expand or None, conv, squeeze or None, b2s] when the pattern matches exactly."""
    nodes, tensor = [], b2s.inputs[0]
    for want in (("Squeeze",), _CONVS, ("ExpandDims",), ("SpaceToBatchND",)):
        fn = by_out.get(tensor)
        if fn is None or readers.get(tensor, 0) != 1:
            return None
        if fn.op_type not in want:
            if want in (("Squeeze",), ("ExpandDims",)):
                nodes.append(None)
                continue
            return None
        nodes.append(fn)
        tensor = fn.inputs[0]
    squeeze, conv, expand, s2b = nodes
    ok = (conv.attrs.get("padding") == "VALID" and conv.attrs.get("data_format", "NHWC") == "NHWC"
          and all(int(s) == 1 for s in conv.attrs.get("strides", [1])))
    return [s2b, expand, conv, squeeze, b2s] if ok else None


def _rewrite(chain: list, by_out: dict) -> None:
    s2b, expand, conv, squeeze, b2s = chain
    block, pads, crops = (_const(by_out, s2b.inputs[1]), _const(by_out, s2b.inputs[2]),
                          _const(by_out, b2s.inputs[2]))
    if block is None or pads is None or crops is None or \
            not np.array_equal(block, _const(by_out, b2s.inputs[1])):
        return
    begin = [int(p) - int(c) for p, c in zip(pads[:, 0], crops[:, 0])]
    end = [int(p) - int(c) for p, c in zip(pads[:, 1], crops[:, 1])]
    block = [int(b) for b in np.ravel(block)]
    if min(begin + end, default=0) < 0:
        return
    if expand is not None:  # Conv1D: a unit spatial axis is inserted before the conv
        axis = _const(by_out, expand.inputs[1])
        if axis is None or len(block) != 1:
            return
        at = int(np.ravel(axis)[0]) % 4  # position in the 4-D conv input
        if at not in (1, 2):
            return
        block, begin, end = ([1] + block, [0] + begin, [0] + end) if at == 1 else \
            (block + [1], begin + [0], end + [0])
    if len(block) != 2:
        return
    conv.attrs = {**conv.attrs, "dilations": [1, *block, 1], "padding": "EXPLICIT",
                  "explicit_paddings": [0, 0, begin[0], end[0], begin[1], end[1], 0, 0]}
    for fn in (s2b, b2s):  # the batch shuffles cancel out
        fn.op_type, fn.inputs, fn.attrs = "Identity", fn.inputs[:1], {}


# -- ordering and constant-predicate control flow ---------------------------------------------
def topological(fnodes: list[FNode]) -> list[FNode]:
    """Nodes in an order where producers come first (a GraphDef need not be ordered);
    stable, so an ordered graph keeps its order. Nodes on a cycle (while loops) go last."""
    producer = {o: k for k, fn in enumerate(fnodes) for o in fn.outputs}
    deps = [{producer[i] for i in fn.inputs if i in producer} - {k} for k, fn in enumerate(fnodes)]
    users: dict[int, list[int]] = {}
    for k, ds in enumerate(deps):
        for d in ds:
            users.setdefault(d, []).append(k)
    waiting = [len(ds) for ds in deps]
    ready = [k for k, w in enumerate(waiting) if w == 0]
    order, done = [], set()
    heapq.heapify(ready)
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        done.add(k)
        for u in users.get(k, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    return [fnodes[k] for k in order] + [fn for k, fn in enumerate(fnodes) if k not in done]


def resolve_switches(fnodes: list[FNode]) -> list[FNode]:
    """Switch on a constant predicate (TF1 Keras' `keras_learning_phase` = its default)
    passes its data to the taken branch; the other branch is dead, and Merge takes the
    live input. Other control flow is left alone (and reported as unsupported)."""
    by_out = {o: fn for fn in fnodes for o in fn.outputs}
    if not any(fn.op_type == "Switch" for fn in fnodes):
        return fnodes
    dead: set[str] = set()
    kept = []
    for fn in fnodes:
        live = [i for i in fn.inputs if i not in dead]
        if fn.op_type == "Merge" and live and len(live) < len(fn.inputs):
            fn.op_type, fn.inputs, fn.attrs = "Identity", live[:1], {}
            fn.outputs = fn.outputs[:1]
        elif len(live) < len(fn.inputs):
            dead.update(fn.outputs)
            continue
        elif fn.op_type == "Switch":
            pred = _const_pred(by_out, fn.inputs[1])
            if pred is not None:
                dead.add(fn.outputs[0] if pred else fn.outputs[1])
                taken = fn.outputs[1] if pred else fn.outputs[0]
                fn.op_type, fn.inputs, fn.outputs, fn.attrs = "Identity", fn.inputs[:1], [taken], {}
        kept.append(fn)
    return kept


def _const_pred(by_out: dict, name: str):
    fn = by_out.get(name)
    while fn is not None and fn.op_type in ("PlaceholderWithDefault", "Identity"):
        fn = by_out.get(fn.inputs[0]) if fn.inputs else None
    if fn is None or fn.op_type != "Const":
        return None
    return bool(np.asarray(fn.attrs.get("value")).reshape(-1)[0])


# -- while loops ------------------------------------------------------------------------------


def collapse_loops(fnodes: list[FNode]) -> list[FNode]:
    """Each TF1 while-loop frame (Enter ... Exit: what convert_variables_to_constants_v2 makes
    of a Keras LSTM/GRU/SimpleRNN) becomes one FNode of type "While", named after the frame,
    that reads the Enter inputs, writes the Exit outputs and carries the frame's nodes in
    attrs["frame_nodes"] (ops/recurrent_tf.py unrolls it). Nested loops are left alone (and
    refused by name)."""
    enters: dict[str, list[FNode]] = {}
    for fn in fnodes:
        if fn.op_type == "Enter":
            enters.setdefault(str(fn.attrs.get("frame_name", "")), []).append(fn)
    if not enters:
        return fnodes
    readers: dict[str, list[FNode]] = {}
    for fn in fnodes:
        for i in fn.inputs:
            readers.setdefault(i, []).append(fn)
    taken: set[int] = set()
    loops: dict[int, FNode] = {}  # id of the frame's first Enter -> the While FNode
    for frame, entry in enters.items():
        members = _frame_members(entry, readers)
        if any(fn.op_type == "Enter" and fn.attrs.get("frame_name") != frame for fn in members):
            continue  # a nested loop
        exits = [fn for fn in members if fn.op_type == "Exit"]
        inner = {o for m in members for o in m.outputs}
        reads = list(dict.fromkeys(i for m in members for i in m.inputs if i and i not in inner))
        name = entry[0].name
        cut = name.lower().rfind("/enter")
        loops[id(entry[0])] = FNode(name[:cut] if cut > 0 else frame, "While", reads,
                                    [e.outputs[0] for e in exits], {"frame_nodes": members})
        taken.update(id(m) for m in members)
    out = []
    for fn in fnodes:
        if id(fn) in loops:
            out.append(loops[id(fn)])
        elif id(fn) not in taken:
            out.append(fn)
    return topological(out)


def _frame_members(entry: list[FNode], readers: dict) -> list[FNode]:
    """The nodes reachable from a frame's Enter nodes without passing an Exit."""
    seen, todo = {id(e): e for e in entry}, list(entry)
    while todo:
        fn = todo.pop()
        if fn.op_type == "Exit":
            continue
        for out in fn.outputs:
            for r in readers.get(out, ()):
                if id(r) not in seen:
                    seen[id(r)] = r
                    todo.append(r)
    return list(seen.values())
