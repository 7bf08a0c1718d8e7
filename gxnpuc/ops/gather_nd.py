"""GatherND (ONNX, TF GatherNd, TFLite GATHER_ND), ONNX GatherElements, ScatterND and
ScatterElements with constant indices: the indices become flat positions into the data
reshaped to [positions, rest...], and the ONNX Gather lowering (ops/fold.py) turns a gather
with constant positions on a run-time tensor into slices and a concat. A scatter (PyTorch's
in-place `x[..., 0] = y` as the dynamo exporter writes it) is a gather from the flattened
[data, updates]. Indices computed at run time are a data-dependent lookup, which the NPU
cannot do.
"""
from __future__ import annotations


import numpy as np

from gxnpuc.ops.base import ONNX_LOWERINGS, SubNode, onnx_lowering, tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import emit_reshape, norm_axis

_EMITS = ("slice", "concat", "reshape")
MAX_RUNS = 256  # each run of consecutive positions is one slice op
_RUNTIME = "indices computed at run time (a data-dependent lookup) are not supported by the NPU"


def _gather_flat(ctx, fn, rows: list[int], flat: np.ndarray) -> None:
    """Gather positions `flat` (any shape) along axis 0 of the data reshaped to `rows`."""
    x = fn.inputs[0]
    runs = 1 + int(np.count_nonzero(np.diff(flat.ravel()) != 1)) if flat.size else 0
    if runs > MAX_RUNS:
        return ctx.reject(f"constant indices that pick {runs} separate runs of elements (at most "
                          f"{MAX_RUNS}: each run is one slice op)")
    idx = ctx.add_const(ctx.fresh(f"{fn.name}/positions"), flat.astype(np.int64))
    data = ctx.const(x)
    if data is not None:
        ctx.add_const(fn.outputs[0], np.take(np.reshape(data, rows), flat, axis=0))
        return None
    src = x if list(ctx.shape(x)) == rows else emit_reshape(ctx, x, rows)
    ONNX_LOWERINGS["Gather"](ctx, SubNode(fn.name, "Gather", [src, idx], fn.outputs[:1], {"axis": 0}))
    return None


def _indices(ctx, fn) -> np.ndarray | None:
    idx = ctx.const(fn.inputs[1])
    if idx is None:
        ctx.reject(_RUNTIME)
    return None if idx is None else np.asarray(idx, np.int64)


def _nd_rows(idx: np.ndarray, dims: list[int]) -> np.ndarray:
    """The flat row that each index tuple (last axis of idx, in range, negatives wrap) names
    in leading dimensions `dims` (GatherND, ScatterND)."""
    norm = np.where(idx < 0, idx + np.array(dims), idx)
    return np.asarray(np.ravel_multi_index(tuple(np.moveaxis(norm, -1, 0)), dims)) if norm.size else norm[..., 0]


def _element_positions(idx: np.ndarray, shape: list[int], axis: int) -> np.ndarray:
    """The flat positions in data of `shape` that GatherElements / ScatterElements address:
    idx (in range, negatives wrap) along `axis`, each element's own coordinates elsewhere."""
    grid: list[np.ndarray] = list(np.indices(idx.shape))
    grid[axis] = np.where(idx < 0, idx + shape[axis], idx)
    return np.asarray(np.ravel_multi_index(tuple(grid), shape))


def lower_gather_nd(ctx, fn) -> None:
    idx = _indices(ctx, fn)
    if idx is None:
        return None
    if int(fn.attrs.get("batch_dims", 0) or 0):
        return ctx.reject("batch_dims > 0 (gather_nd with batch dimensions)")
    shape = list(ctx.shape(fn.inputs[0]))
    r = idx.shape[-1] if idx.ndim else 0
    if idx.ndim < 1 or not 1 <= r <= len(shape):
        return ctx.reject(f"indices of shape {list(idx.shape)} for data of rank {len(shape)}")
    lead = shape[:r]
    if np.any(idx >= np.array(lead)) or np.any(idx < -np.array(lead)):
        return ctx.reject(f"indices out of range for the dimensions {lead}")
    return _gather_flat(ctx, fn, [int(np.prod(lead))] + shape[r:], _nd_rows(idx, lead))


@onnx_lowering("GatherND", emits=_EMITS)
def _onnx_gather_nd(ctx, fn):
    lower_gather_nd(ctx, fn)


tf_lowering("GatherNd", emits=_EMITS)(_onnx_gather_nd)
tflite_lowering("GATHER_ND", emits=_EMITS)(_onnx_gather_nd)


@onnx_lowering("GatherElements", emits=_EMITS)
def _onnx_gather_elements(ctx, fn):
    idx = _indices(ctx, fn)
    if idx is None:
        return None
    shape = list(ctx.shape(fn.inputs[0]))
    axis = norm_axis(ctx, fn.attrs.get("axis", 0), len(shape))
    if idx.ndim != len(shape) or any(i > d for k, (i, d) in enumerate(zip(idx.shape, shape)) if k != axis):
        return ctx.reject(f"indices of shape {list(idx.shape)} for data of shape {shape}")
    if np.any(idx >= shape[axis]) or np.any(idx < -shape[axis]):
        return ctx.reject(f"indices out of range for size {shape[axis]}")
    return _gather_flat(ctx, fn, [int(np.prod(shape))], _element_positions(idx, shape, axis))


# -- scatter: a gather from [data, updates] ------------------------------------------------------------
def _scatter(ctx, fn, positions: np.ndarray) -> None:
    """Write updates (input 2) at the flat `positions` of data: each output element is picked
    from the concatenation [data, updates] (both flattened) by a constant map."""
    data, updates = fn.inputs[0], fn.inputs[2]
    shape = list(ctx.shape(data))
    size = int(np.prod(shape))
    if len(np.unique(positions)) != positions.size:
        return ctx.reject("indices that write one element twice (the result depends on the order)")
    source = np.arange(size)
    source[positions.ravel()] = size + np.arange(positions.size)
    flat = [emit_reshape(ctx, n, [int(np.prod(ctx.shape(n)))]) for n in (data, updates)]
    both = ctx.emit("concat", flat, None, {"axis": 0})[0]
    node = SubNode(fn.name, fn.op_type, [both], [ctx.fresh(f"{fn.outputs[0]}/flat")], fn.attrs)
    _gather_flat(ctx, node, [size + positions.size], source)
    if ctx.has(node.outputs[0]):
        emit_reshape(ctx, node.outputs[0], shape, fn.outputs[:1])
    return None


def _scatter_indices(ctx, fn) -> np.ndarray | None:
    """A scatter's constant indices, when it writes plainly (reduction none); None after a rejection."""
    if str(fn.attrs.get("reduction", "none") or "none") != "none":
        ctx.reject(f"reduction {fn.attrs['reduction']!r} (none only)")
        return None
    return _indices(ctx, fn)


@onnx_lowering("ScatterND", emits=_EMITS)
def _onnx_scatter_nd(ctx, fn):
    idx = _scatter_indices(ctx, fn)
    if idx is None:
        return None
    shape = list(ctx.shape(fn.inputs[0]))
    r = idx.shape[-1] if idx.ndim else 0
    if not 1 <= r <= len(shape) or np.any(idx >= np.array(shape[:r])) or np.any(idx < -np.array(shape[:r])):
        return ctx.reject(f"indices of shape {list(idx.shape)} out of range for data {shape}")
    rows = _nd_rows(idx, shape[:r])  # [..] rows of size `inner`
    inner = int(np.prod(shape[r:]))
    return _scatter(ctx, fn, (rows[..., None] * inner + np.arange(inner)).reshape(-1))


@onnx_lowering("ScatterElements", emits=_EMITS)
def _onnx_scatter_elements(ctx, fn):
    idx = _scatter_indices(ctx, fn)
    if idx is None:
        return None
    shape = list(ctx.shape(fn.inputs[0]))
    axis = norm_axis(ctx, fn.attrs.get("axis", 0), len(shape))
    if idx.ndim != len(shape) or np.any(idx >= shape[axis]) or np.any(idx < -shape[axis]):
        return ctx.reject(f"indices of shape {list(idx.shape)} out of range for data {shape}")
    return _scatter(ctx, fn, _element_positions(idx, shape, axis).reshape(-1))
