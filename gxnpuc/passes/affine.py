"""Folding per-channel affine ops (y*s + t) into the weight and bias of the conv/fc before them.

Shared by fuse_bn and fuse_biasadd. A chain starts at a `conv`/`fc` with a constant weight
and follows single-reader tensors through `batchnorm`, `binary` add/sub/mul/div with a
per-channel constant, and the shape ops that keep each element's channel (`reshape`,
`transpose`, as TF's Conv1D Squeeze and tf2onnx's layout transposes put there). With the
chain's total scale S and shift T: conv(x, W, b)*S + T == conv(x, W*S, b*S + T), where W is
scaled along its OUTPUT channel axis. Maths in float64, stored in the weight's dtype, so
the float result changes by float32 rounding only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gxnpuc.ir import Graph, Node
from gxnpuc.passes.rewrite import only_consumer, remove_node, rename_tensor, set_const


@dataclass
class Step:
    node: Node
    scale: np.ndarray | None  # float64 [C]; None for a reshape/transpose passed through
    shift: np.ndarray | None
    kind: str  # "scale" (bn, mul, div, c - y), "shift" (add, y - c), "move" (reshape/transpose)
    src: str  # the chain tensor this node reads


def fold_chains(graph: Graph, select) -> int:
    """Fold, after every conv/fc, the steps select(chain) picks (a prefix; [] for none).

    Returns how many chains were folded.
    """
    count = 0
    for node in list(graph.nodes):
        if any(n is node for n in graph.nodes) and _producer_ok(graph, node):
            steps = trim_moves(select(chain_after(graph, node)))
            if steps and fold(graph, node, steps):
                count += 1
    if count:
        graph.prune()
    return count


def _producer_ok(graph: Graph, node: Node) -> bool:
    return (node.op in ("conv", "fc") and len(node.inputs) > 1 and bool(node.inputs[1])
            and graph.tensors[node.inputs[1]].is_const and len(node.outputs) == 1)


def channel_axis(graph: Graph, node: Node) -> int:
    """The output channel axis of a conv/fc output: NC.. -> 1, channels-last and fc -> last."""
    ndim = len(graph.tensors[node.outputs[0]].shape)
    fmt = str(node.attrs.get("data_format", "")) if node.op == "conv" else ""
    return 1 if fmt.startswith("NC") else ndim - 1


def chain_after(graph: Graph, node: Node) -> list[Step]:
    """The longest foldable chain after node, ending at its last affine step."""
    axis, tensor = channel_axis(graph, node), node.outputs[0]
    channels = graph.tensors[tensor].shape[axis]
    steps: list[Step] = []
    while (nxt := only_consumer(graph, tensor)) is not None and len(nxt.outputs) == 1:
        step, new_axis = step_of(graph, nxt, tensor, axis, channels)
        if step is None:
            break
        steps.append(step)
        tensor, axis = nxt.outputs[0], new_axis
    return trim_moves(steps)


def trim_moves(steps: list[Step]) -> list[Step]:
    """Drop trailing reshape/transpose steps: there is nothing after them to fold."""
    steps = list(steps)
    while steps and steps[-1].kind == "move":
        steps.pop()
    return steps


def step_of(graph: Graph, node: Node, y: str, axis: int, channels: int):
    """(Step, channel axis of node's output) when node is foldable after tensor y, else (None, 0)."""
    shape = graph.tensors[y].shape
    if node.op in ("reshape", "transpose"):
        new_axis = _moved_axis(node, shape, graph.tensors[node.outputs[0]].shape, axis)
        return (None, 0) if new_axis is None else (Step(node, None, None, "move", y), new_axis)
    if node.op == "batchnorm":
        st = _bn_affine(graph, node, y, axis, channels)
    elif node.op == "binary":
        st = _binary_affine(graph, node, y, shape, axis)
    else:
        return None, 0
    if st is None or graph.tensors[node.outputs[0]].shape != shape:
        return None, 0
    scale, shift, kind = st
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(shift))):
        return None, 0
    return Step(node, scale, shift, kind, y), axis


def _moved_axis(node: Node, in_shape, out_shape, axis: int) -> int | None:
    """Where the channel axis is after a reshape/transpose, or None if channels get mixed."""
    if node.op == "transpose":
        return list(node.attrs["perm"]).index(axis)
    before = int(np.prod(in_shape[:axis], dtype=np.int64))
    for k, dim in enumerate(out_shape):
        if int(np.prod(out_shape[:k], dtype=np.int64)) == before and dim == in_shape[axis]:
            return k  # same count before and same size: every element keeps its channel
    return None


def per_channel(value, out_shape, axis: int) -> np.ndarray | None:
    """value as float64 [C] when it broadcasts against out_shape along `axis` only, else None."""
    v = np.asarray(value)
    if v.dtype.kind != "f" or v.ndim > len(out_shape):
        return None
    padded = (1,) * (len(out_shape) - v.ndim) + v.shape
    if any(d != 1 and (k != axis or d != out_shape[axis]) for k, d in enumerate(padded)):
        return None
    channels = out_shape[axis]
    flat = v.astype(np.float64).reshape(-1)
    return np.full(channels, flat[0]) if flat.size == 1 else flat


def _binary_affine(graph: Graph, node: Node, y: str, shape, axis: int):
    fn, (a, b) = node.attrs.get("fn"), node.inputs[:2]
    first = a == y
    other = b if first else a
    if other == y or not other or not graph.tensors[other].is_const:
        return None
    c = per_channel(graph.tensors[other].data, shape, axis)
    if c is None:
        return None
    one, zero = np.ones_like(c), np.zeros_like(c)
    if fn == "mul":
        return c, zero, "scale"
    if fn == "add":
        return one, c, "shift"
    if fn == "sub":
        return (one, -c, "shift") if first else (-one, c, "scale")
    if fn == "div" and first and np.all(c != 0):
        return 1.0 / c, zero, "scale"
    return None


def _bn_affine(graph: Graph, node: Node, y: str, axis: int, channels: int):
    if len(node.inputs) < 5 or node.inputs[0] != y or int(node.attrs.get("axis", 1)) != axis:
        return None
    params = [graph.const(i) if i else None for i in node.inputs[1:5]]
    if any(p is None or np.asarray(p).size not in (1, channels) for p in params):
        return None
    scale, bias, mean, var = (np.broadcast_to(np.asarray(p, np.float64).reshape(-1), (channels,))
                              for p in params)
    k = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    return k, bias - mean * k, "scale"


def fold(graph: Graph, node: Node, steps: list[Step]) -> bool:
    """Fold the affine steps into node's weight/bias and drop them; False if it cannot."""
    channels = graph.tensors[node.outputs[0]].shape[channel_axis(graph, node)]
    total_s, total_t = np.ones(channels), np.zeros(channels)
    for st in steps:
        if st.kind != "move":
            total_s, total_t = total_s * st.scale, total_t * st.scale + st.shift
    new_w = None if np.all(total_s == 1) else scale_weight(graph, node, total_s)
    new_b = _new_bias(graph, node, total_s, total_t)
    if (new_w is None and not np.all(total_s == 1)) or new_b is False:
        return False
    if new_w is not None:
        name = set_const(graph, node, 1, new_w, node.inputs[1] + "/folded")
        record_folded(graph, name, [st.node.name for st in steps if st.kind != "move"], "after")
    if new_b is not None:
        set_const(graph, node, 2, new_b, node.name + "/bias")
    for st in steps:
        if st.kind != "move":
            remove_node(graph, st.node)  # its input tensor takes over its output name
            rename_tensor(graph, st.src, st.node.outputs[0])
            node.source = f"{node.source}+{st.node.source}" if node.source else st.node.source
    return True


def scale_weight(graph: Graph, node: Node, scale: np.ndarray) -> np.ndarray | None:
    """The weight scaled along its output channel axis, or None for an unknown layout."""
    w = graph.tensors[node.inputs[1]].data
    fmt = str(node.attrs.get("w_format", "OIHW"))
    if w.ndim < 2:
        return None
    if node.op == "fc":  # [N, K] when transpose_w, else [K, N]
        axes = (0,) if node.attrs.get("transpose_w") else (w.ndim - 1,)
    elif fmt.startswith("O"):  # ONNX OIHW / OIW (groups included): O is the output channel
        axes = (0,)
    elif fmt.endswith("IO"):  # TF HWIO (Conv1D weights are [1, k, c_in, c_out])
        axes = (w.ndim - 1,)
    elif fmt.endswith("IM"):  # TF depthwise [H, W, I, M]: out channel c = i*M + m
        axes = (w.ndim - 2, w.ndim - 1)
    else:
        return None
    if int(np.prod([w.shape[a] for a in axes])) != scale.size:
        return None
    shape = [w.shape[a] if a in axes else 1 for a in range(w.ndim)]
    return (w.astype(np.float64) * scale.reshape(shape)).astype(w.dtype)


def _new_bias(graph: Graph, node: Node, scale: np.ndarray, shift: np.ndarray):
    """b*S + T as the bias (None: no bias needed; False: the existing bias cannot be folded)."""
    name = node.inputs[2] if len(node.inputs) > 2 else ""
    if not name:
        return None if not np.any(shift) else shift.astype(graph.tensors[node.inputs[1]].dtype)
    old = graph.tensors[name].data
    if old is None or old.size not in (1, scale.size):
        return False
    new = np.asarray(old, np.float64).reshape(-1) * scale + shift
    return new.reshape(old.shape if old.size == scale.size else (-1,)).astype(old.dtype)




def record_folded(graph: Graph, weight: str, bn_nodes: list[str], where: str) -> None:
    """graph.meta["folded"][weight] = "<BatchNorm> (before|after it)", which -w and -s show."""
    graph.meta.setdefault("folded", {})[weight] = f"{bn_label(bn_nodes)} ({where} it)"


def bn_label(names: list[str]) -> str:
    """`tdnn2.batchnorm` for [`tdnn2.batchnorm/mul_1`, `tdnn2.batchnorm/add_1`]: their shared scope."""
    common = names[0].split("/")
    for n in names[1:]:
        parts = n.split("/")
        k = 0
        while k < min(len(common), len(parts)) and common[k] == parts[k]:
            k += 1
        common = common[:k]
    return "/".join(common) if common else " + ".join(names)
