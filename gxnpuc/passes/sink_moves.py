"""Pass: layout normalisation. Move `reshape` / `transpose` across element-wise ops so that
inverse pairs meet and cancel (TF Conv1D's Squeeze .. ExpandDims around a ReLU, tf2onnx's
NHWC/NCHW transposes, Keras TimeDistributed's reshapes). Each one is a device command and
a buffer copy.

A *region* is a connected set of element-wise nodes (`act`, `binary`, `prelu`, `batchnorm`)
whose data all comes from moves of one kind with one mapping S_x -> S_y (the *roots*), and
whose tensors are read only by region nodes and by *exits*: moves of the same kind, or a
`reduce` (keepdims 0) that can take a squeeze into its axes. A reshape that keeps the last
axis only regroups rows, so its region may also hold `fc` nodes (x[..., K] -> [..., N],
one row at a time: Keras Dense on a sequence, TimeDistributed). The region is rewritten to
compute in the S_x layout: roots dropped, constant operands re-expressed in S_x (the same
value at every element, so the float result is bit-identical), exits composed with the
roots' mapping. remove_identity then drops exits that became no-ops and merges the rest.
Every rewrite removes at least one node and adds none. A region is left alone when any
tensor in it is a graph output, a constant would grow (a per-channel add after a reshape
that splits the channel axis), or any reader is something else.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gxnpuc.ir import Graph, Node
from gxnpuc.ops import REGISTRY
from gxnpuc.passes.remove_identity import remove_identity
from gxnpuc.passes.rewrite import replace_uses, set_const



@dataclass
class Region:
    kind: str  # "reshape" | "transpose": the roots' op
    s_x: tuple  # the roots' input shape: the layout the region computes in afterwards
    s_y: tuple  # the roots' output shape: the layout of every region tensor now
    perm: list  # the roots' perm (transpose), [] for reshape
    rows: bool  # a reshape that keeps the last axis: tensors may differ in it (fc allowed)
    roots: list = field(default_factory=list)
    nodes: list = field(default_factory=list)  # element-wise nodes, any order
    exits: list = field(default_factory=list)
    tensors: set = field(default_factory=set)  # every tensor in S_y layout, roots' outputs too

    def has(self, node: Node, group: list) -> bool:
        return any(n is node for n in group)

    def x_shape(self, y_shape: tuple) -> tuple | None:
        """What a region tensor of shape y_shape becomes in the S_x layout (None: not mapped)."""
        y_shape = tuple(y_shape)
        if y_shape == self.s_y:
            return self.s_x
        if self.rows and y_shape[:-1] == self.s_y[:-1]:
            return self.s_x[:-1] + y_shape[-1:]
        return None


def sink_moves(graph: Graph, cfg) -> None:
    """Rewrite regions until none is left, then let remove_identity cancel the pairs."""
    for node in graph.nodes:
        _transpose_as_reshape(graph, node)
    changed = True
    while changed:
        changed = any(_try(graph, node) for node in list(graph.nodes)
                      if any(n is node for n in graph.nodes))
    remove_identity(graph, cfg)


def _transpose_as_reshape(graph: Graph, node: Node) -> None:
    """A transpose that only moves size-1 axes ([T, 1, C] -> [1, T, C]) keeps the element
    order: it is a reshape, and as one it can merge with the reshapes around it."""
    if node.op != "transpose" or _is_noop(graph, node):
        return
    shape = graph.tensors[node.inputs[0]].shape
    big = [int(p) for p in node.attrs["perm"] if shape[int(p)] != 1]
    if big == sorted(big):
        node.op, node.attrs = "reshape", {"shape": list(graph.tensors[node.outputs[0]].shape)}


def _try(graph: Graph, root: Node) -> bool:
    """Grow the region rooted at this move and rewrite it; True when the graph changed."""
    if REGISTRY[root.op].sink != "move" or _is_noop(graph, root):
        return False
    region = _grow(graph, root)
    edits = None if region is None else _plan(graph, region)
    if edits is None:
        return False
    _apply(graph, region, edits)
    return True


def _is_noop(graph: Graph, node: Node) -> bool:
    if len(node.outputs) != 1 or not node.inputs or not node.inputs[0]:
        return True  # nothing to move
    if node.op == "transpose":
        return list(node.attrs["perm"]) == sorted(node.attrs["perm"])
    return graph.tensors[node.inputs[0]].shape == graph.tensors[node.outputs[0]].shape


# -- growing a region ------------------------------------------------------------------------
def _grow(graph: Graph, root: Node) -> Region | None:
    """The region around root, or None when some reader or producer cannot be handled."""
    shape = lambda name: tuple(graph.tensors[name].shape)  # noqa: E731
    s_x, s_y = shape(root.inputs[0]), shape(root.outputs[0])
    rows = root.op == "reshape" and bool(s_x) and bool(s_y) and s_x[-1] == s_y[-1]
    region = Region(root.op, s_x, s_y, [int(p) for p in root.attrs.get("perm", [])], rows)
    work: list[str] = []
    _add_root(region, root, work)
    while work:
        t = work.pop()
        if t in graph.outputs or region.x_shape(shape(t)) is None:
            return None
        for reader in graph.consumers(t):
            if not _take_reader(graph, region, reader, t, work):
                return None
    roots_in = {r.inputs[0] for r in region.roots}
    if roots_in & region.tensors or any(region.has(e, region.roots) for e in region.exits):
        return None  # a move that is both root and exit (square shapes): leave it alone
    return region


def _add_root(region: Region, node: Node, work: list) -> bool:
    region.roots.append(node)
    region.tensors.add(node.outputs[0])
    work.append(node.outputs[0])
    return True


def _take_reader(graph: Graph, region: Region, reader: Node, t: str, work: list) -> bool:
    """Put a reader of region tensor t into the region (node or exit); False if it cannot be."""
    if any(region.has(reader, g) for g in (region.nodes, region.exits, region.roots)):
        return True
    if reader.op == region.kind or (reader.op == "reduce"
                                    and _reduce_axes(region, reader, graph.tensors[t].shape) is not None):
        region.exits.append(reader)
        return True
    return _add_node(graph, region, reader, work)


def _add_node(graph: Graph, region: Region, node: Node, work: list) -> bool:
    """Add an element-wise node; its non-constant inputs must come from the region too."""
    sink = REGISTRY[node.op].sink
    if not (sink == "elementwise" or (sink == "rows" and region.rows)) or len(node.outputs) != 1:
        return False
    region.nodes.append(node)
    region.tensors.add(node.outputs[0])
    work.append(node.outputs[0])
    for k, name in enumerate(node.inputs):
        if not name or name in region.tensors or graph.tensors[name].is_const:
            continue
        if k not in REGISTRY[node.op].sink_inputs or not _add_producer(graph, region, name, work):
            return False
    return True


def _add_producer(graph: Graph, region: Region, name: str, work: list) -> bool:
    """Bring the producer of a data operand into the region: a same-mapping move or an op."""
    producer = graph.producer(name)
    if producer is None:
        return False  # a graph input
    if _same_mapping(graph, region, producer):
        return _add_root(region, producer, work)
    return _add_node(graph, region, producer, work)


def _same_mapping(graph: Graph, region: Region, node: Node) -> bool:
    if node.op != region.kind or _is_noop(graph, node):
        return False
    x, y = graph.tensors[node.inputs[0]].shape, graph.tensors[node.outputs[0]].shape
    same = region.x_shape(y) == tuple(x)
    return same and [int(p) for p in node.attrs.get("perm", [])] == region.perm


# -- planning the rewrite --------------------------------------------------------------------
def _plan(graph: Graph, region: Region) -> dict | None:
    """{id(node): (new constants {input index: array}, new attrs)} or None when not possible."""
    edits = {}
    for node in region.nodes + region.exits:
        exit_ = region.has(node, region.exits)
        edit = _exit_edit(graph, region, node) if exit_ else _node_edit(graph, region, node)
        if edit is None:
            return None
        edits[id(node)] = edit
    return edits


def _node_edit(graph: Graph, region: Region, node: Node):
    """The element-wise node in S_x: constants re-expressed, batchnorm's channel axis moved."""
    attrs, y_shape = dict(node.attrs), tuple(graph.tensors[node.outputs[0]].shape)
    if node.op == "fc":
        return {}, attrs  # row by row: weight and bias stay as they are
    if node.op == "batchnorm":
        axis = _axis_in_x(region, int(node.attrs.get("axis", 1)), y_shape)
        if axis is None:
            return None
        attrs["axis"] = axis
        return {}, attrs  # per-channel parameters stay as they are
    consts = {}
    for k, name in enumerate(node.inputs):
        if name and name not in region.tensors and graph.tensors[name].is_const:
            value = _const_in_x(region, graph.tensors[name].data, y_shape)
            if value is None:
                return None
            if value is not graph.tensors[name].data:
                consts[k] = value
    return consts, attrs


def _exit_edit(graph: Graph, region: Region, node: Node):
    """The exit reading S_x instead of S_y (a reshape needs nothing: its target stays)."""
    attrs = dict(node.attrs)
    if node.op == "transpose":  # transpose(transpose(x, p1), p2) == transpose(x, p1[p2])
        attrs["perm"] = [region.perm[int(p)] for p in node.attrs["perm"]]
    elif node.op == "reduce":
        attrs["axes"] = _reduce_axes(region, node, graph.tensors[node.inputs[0]].shape)
    return {}, attrs


def _to_x(region: Region, value_y: np.ndarray) -> np.ndarray:
    """A full region-tensor-shaped array as it is in the S_x layout (undo the move)."""
    if region.kind == "transpose":
        return np.transpose(value_y, np.argsort(region.perm))
    return np.reshape(value_y, region.x_shape(value_y.shape))


def _const_in_x(region: Region, value, y_shape: tuple) -> np.ndarray | None:
    """The constant operand of a node with output y_shape, in S_x: broadcast as far as its
    values allow; the same array when the original already means the same there; None
    when it would need more elements."""
    v = np.asarray(value)
    if v.ndim > len(y_shape) or tuple(np.broadcast_shapes(v.shape, y_shape)) != y_shape:
        return None
    small = _shrink(_to_x(region, np.broadcast_to(v, y_shape)), v.ndim)
    if small.size > v.size:
        return None  # e.g. a per-channel constant after a reshape that splits the channels
    if small.shape == v.shape and _same_bits(small, v):
        return value
    return small


def _shrink(a: np.ndarray, rank: int) -> np.ndarray:
    """a with every axis along which it is constant cut to size 1, leading 1s dropped down
    to `rank` (the original constant's rank, so [C] stays [C] and [1, C, 1, 1] keeps 4 axes)."""
    for axis in range(a.ndim):
        first = np.take(a, [0], axis=axis)
        if a.shape[axis] > 1 and _same_bits(a, np.broadcast_to(first, a.shape)):
            a = first
    while a.ndim > rank and a.shape[0] == 1:
        a = a[0]
    return np.ascontiguousarray(a)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (so -0.0 != 0.0 and a NaN equals the same NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    raw = lambda x: np.ascontiguousarray(x).view(np.uint8)  # noqa: E731
    return bool(np.array_equal(raw(a), raw(b)))


def _axis_in_x(region: Region, axis: int, s_y: tuple) -> int | None:
    """Where channel axis `axis` of S_y is in S_x, or None when the move mixes channels."""
    if region.kind == "transpose":
        return region.perm[axis]
    s_x = region.x_shape(s_y)
    before = int(np.prod(s_y[:axis], dtype=np.int64))
    for k, dim in enumerate(s_x):
        if dim == s_y[axis] and int(np.prod(s_x[:k], dtype=np.int64)) == before:
            return k  # same count before and same size: every element keeps its channel
    return None


def _reduce_axes(region: Region, node: Node, s_y: tuple) -> list[int] | None:
    """Axes of S_x for a keepdims-0 reduce of S_y, when the roots only insert/remove size-1
    axes: the same non-1 axes, plus every size-1 axis the output does not keep."""
    if region.kind != "reshape" or node.attrs.get("keepdims") or len(node.inputs) != 1:
        return None
    s_x, s_y, axes = region.x_shape(s_y), tuple(s_y), set(node.attrs["axes"])
    big_x = [k for k, d in enumerate(s_x) if d != 1]
    big_y = [k for k, d in enumerate(s_y) if d != 1]
    if [s_x[k] for k in big_x] != [s_y[k] for k in big_y]:
        return None  # the reshape regroups elements
    match, kept, pos = dict(zip(big_y, big_x)), [], 0
    for k in (k for k in range(len(s_y)) if k not in axes):
        xk = match[k] if s_y[k] != 1 else next((j for j in range(pos, len(s_x)) if s_x[j] == 1), None)
        if xk is None or xk < pos:
            return None
        kept.append(xk)
        pos = xk + 1
    return [j for j in range(len(s_x)) if j not in kept]


# -- applying it -----------------------------------------------------------------------------
def _apply(graph: Graph, region: Region, edits: dict) -> None:
    """Drop the roots, put every region tensor in S_x, set constants and attrs."""
    for root in region.roots:
        x, y = root.inputs[0], root.outputs[0]
        replace_uses(graph, y, x)
        region.tensors.discard(y)
        graph.tensors.pop(y, None)
    graph.nodes = [n for n in graph.nodes if not region.has(n, region.roots)]
    for name in region.tensors:
        t = graph.tensors[name]
        t.shape = region.x_shape(t.shape)
    for node in region.nodes + region.exits:
        consts, attrs = edits[id(node)]
        node.attrs = attrs
        for k, value in consts.items():
            set_const(graph, node, k, value, node.inputs[k])  # keeps the name if not shared
