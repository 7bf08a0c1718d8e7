"""Fold-only ops (`npu = False`): they exist so that constant subgraphs (shape arithmetic)
fold while lowering. Shape and Size become constants at once, since shapes are static.

Gather with constant indices on a run-time tensor (PyTorch's x[:, -1]) is lowered to
`slice`/`concat` + `reshape`, and Expand/Tile of a run-time tensor to `concat` of copies,
so only genuinely run-time uses (embedding lookups, masks) remain;
`gxnpuc.compiler.reject_leftovers` reports those, and anything else whose check() fails,
after the passes.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import CONSTANT, FOLD_ONLY, OpDef, onnx_lowering, register, tf_lowering, tflite_lowering
from gxnpuc.ops.elementwise import emit_select
from gxnpuc.ops.shape_ops import NOT_CONST, arg_ints, emit_reshape, norm_axis

class _Fold(OpDef):
    category = "fold"
    npu = False
    constraints = (FOLD_ONLY,)

    def check(self, node, in_shapes):
        return FOLD_ONLY

    def flops(self, node, in_shapes, out_shapes):
        return 0


class _Broadcast(_Fold):
    def infer(self, node, in_shapes):
        return [tuple(np.broadcast_shapes(*in_shapes))]


@register
class Shape(_Fold):
    name = "shape"
    summary = "the shape of a tensor as int64 (attrs start/end as ONNX Shape-15)"

    def infer(self, node, in_shapes):
        return [(len(in_shapes[0][node.attrs.get("start", 0):node.attrs.get("end")]),)]

    def run(self, node, xs):
        return [np.array(np.shape(xs[0])[node.attrs.get("start", 0):node.attrs.get("end")], np.int64)]


@register
class Gather(_Fold):
    name = "gather"
    summary = "take entries along `axis` (ONNX Gather)"

    def infer(self, node, in_shapes):
        data, idx, axis = in_shapes[0], in_shapes[1], node.attrs["axis"]
        return [tuple(data[:axis]) + tuple(idx) + tuple(data[axis + 1:])]

    def run(self, node, xs):
        return [np.take(np.asarray(xs[0]), np.asarray(xs[1]).astype(np.int64), axis=node.attrs["axis"])]


@register
class ConstOfShape(_Fold):
    name = "const_of_shape"
    summary = "a tensor of the given shape filled with `value` of `dtype`"

    def run(self, node, xs):
        shape = [int(d) for d in np.ravel(xs[0])]
        return [np.full(shape, node.attrs["value"], dtype=node.attrs["dtype"])]


@register
class Range(_Fold):
    name = "range"
    summary = "start, start + delta, ... below limit (ONNX Range)"

    def run(self, node, xs):
        start, limit, delta = (np.asarray(x).reshape(()) for x in xs)
        n = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
        return [(start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype)]


_COMPARE = {"equal": np.equal, "less": np.less, "greater": np.greater,
            "less_equal": np.less_equal, "greater_equal": np.greater_equal, "not_equal": np.not_equal}


@register
class Compare(_Broadcast):
    name = "compare"
    summary = "element-wise comparison to bool: " + ", ".join(_COMPARE)

    def run(self, node, xs):
        return [np.asarray(_COMPARE[node.attrs["fn"]](xs[0], xs[1]))]


_LOGIC = {"not": np.logical_not, "and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}


@register
class Logic(_Broadcast):
    name = "logic"
    summary = "element-wise boolean " + ", ".join(_LOGIC)

    def run(self, node, xs):
        return [np.asarray(_LOGIC[node.attrs["fn"]](*xs))]


@register
class Where(_Broadcast):
    name = "where"
    summary = "x where cond else y"

    def run(self, node, xs):
        c, x, y = (np.asarray(v) for v in xs)
        return [np.where(c.astype(bool), x, y).astype(np.result_type(x, y), copy=False)]


@register
class Expand(_Fold):
    name = "expand"
    summary = "broadcast to `shape` (ONNX Expand: both ways)"

    def infer(self, node, in_shapes):
        return [tuple(np.broadcast_shapes(in_shapes[0], tuple(node.attrs["shape"])))]

    def run(self, node, xs):
        x = np.asarray(xs[0])
        return [np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(node.attrs["shape"]))))]


@register
class Tile(_Fold):
    name = "tile"
    summary = "repeat the whole tensor `repeats` times per axis"

    def infer(self, node, in_shapes):
        return [tuple(d * r for d, r in zip(in_shapes[0], node.attrs["repeats"]))]

    def run(self, node, xs):
        return [np.tile(np.asarray(xs[0]), node.attrs["repeats"])]


@register
class NonZero(_Fold):
    name = "nonzero"
    summary = "indices of the non-zero entries, [rank, count] int64"

    def run(self, node, xs):
        return [np.array(np.nonzero(np.asarray(xs[0])), dtype=np.int64).reshape(np.ndim(xs[0]), -1)]


_ROUND = {"floor": np.floor, "ceil": np.ceil, "round": np.round}  # np.round: half to even, as ONNX


@register
class Round(_Fold):
    name = "round"
    summary = "floor, ceil or round (half to even)"

    def infer(self, node, in_shapes):
        return [in_shapes[0]]

    def run(self, node, xs):
        return [np.asarray(_ROUND[node.attrs["fn"]](xs[0]))]


# -- ONNX lowerings ----------------------------------------------------------------------------
@onnx_lowering("Shape", emits=CONSTANT)
def _onnx_shape(ctx, fn):
    shape = ctx.shape(fn.inputs[0])  # static even for a run-time tensor
    ctx.add_const(fn.outputs[0], np.array(shape[fn.attrs.get("start", 0):fn.attrs.get("end")], np.int64))


@onnx_lowering("Size", emits=CONSTANT)
def _onnx_size(ctx, fn):
    ctx.add_const(fn.outputs[0], np.asarray(np.prod(ctx.shape(fn.inputs[0]), dtype=np.int64)))


def _runs(idx: list[int]) -> list[tuple[int, int, int]]:
    """Split indices into arithmetic runs (start, count, step)."""
    runs: list[tuple[int, int, int]] = []
    for i in idx:
        if runs:
            s, n, st = runs[-1]
            if n == 1 and i != s:
                runs[-1] = (s, 2, i - s)
                continue
            if n > 1 and i == s + n * st:
                runs[-1] = (s, n + 1, st)
                continue
        runs.append((i, 1, 1))
    return runs


def _emit_run(ctx, x: str, axis: int, run: tuple[int, int, int], outputs=None) -> str:
    shape = ctx.shape(x)
    s, n, st = run
    attrs = {"starts": [0] * len(shape), "ends": list(shape), "steps": [1] * len(shape)}
    attrs["starts"][axis], attrs["ends"][axis], attrs["steps"][axis] = s, s + (n - 1) * st + (1 if st > 0 else -1), st
    return ctx.emit("slice", [x], outputs, attrs)[0]


def _gather_as_slices(ctx, fn, x: str, idx: np.ndarray, axis: int) -> None:
    """Gather with constant indices on a run-time tensor: slices (+ concat) + reshape."""
    shape = ctx.shape(x)
    dim = shape[axis]
    flat = [int(i) + dim if i < 0 else int(i) for i in idx.ravel()]
    if not flat or any(not 0 <= i < dim for i in flat):
        return ctx.reject(f"Gather indices {idx.ravel().tolist()} out of range for size {dim}")
    out_shape = tuple(shape[:axis]) + idx.shape + tuple(shape[axis + 1:])
    cut_shape = tuple(shape[:axis]) + (len(flat),) + tuple(shape[axis + 1:])
    last = fn.outputs if cut_shape == out_shape else None
    runs = _runs(flat)
    if len(runs) == 1:
        y = _emit_run(ctx, x, axis, runs[0], last)
    else:
        y = ctx.emit("concat", [_emit_run(ctx, x, axis, r) for r in runs], last, {"axis": axis})[0]
    if last is None:
        emit_reshape(ctx, y, out_shape, fn.outputs)


@onnx_lowering("Gather", emits=("gather", "slice", "concat", "reshape"))
def _onnx_gather(ctx, fn):
    x, i = fn.inputs[0], fn.inputs[1]
    axis = norm_axis(ctx, fn.attrs.get("axis", 0), len(ctx.shape(x)))
    idx = ctx.const(i)
    if ctx.const(x) is None and idx is not None:
        return _gather_as_slices(ctx, fn, x, np.asarray(idx), axis)
    ctx.emit("gather", [x, i], fn.outputs, {"axis": axis})


def _static_arg(ctx, fn, attr, idx, what):
    v = arg_ints(ctx, fn, attr, idx)
    if v is None or v is NOT_CONST:
        ctx.reject(f"{what} must be constant")
        return None
    return v


def _copies(ctx, fn, x: str, target: tuple) -> None:
    """Broadcast/tile a run-time tensor by concatenating copies along each grown axis."""
    ctx.check_size(None, fn.outputs[:1], [target])  # before a list of millions of copies
    shape = tuple(ctx.shape(x))
    if len(shape) < len(target):
        shape = (1,) * (len(target) - len(shape)) + shape
        x = emit_reshape(ctx, x, shape, None if shape != target else fn.outputs)
    grow = [a for a in range(len(target)) if shape[a] != target[a]]
    if not grow:
        return None if x in fn.outputs else ctx.set_alias(fn.outputs[0], x)
    for a in grow:
        reps = target[a] // ctx.shape(x)[a]
        x = ctx.emit("concat", [x] * reps, fn.outputs if a == grow[-1] else None, {"axis": a})[0]
    return None


@onnx_lowering("Expand", emits=("expand", "reshape", "concat"))
def _onnx_expand(ctx, fn):
    spec = _static_arg(ctx, fn, "shape", 1, "Expand shape")
    if spec is None:
        return
    x = fn.inputs[0]
    try:
        target = tuple(int(d) for d in np.broadcast_shapes(ctx.shape(x), tuple(spec)))
    except ValueError:
        return ctx.reject(f"cannot expand {list(ctx.shape(x))} to {spec}")
    if ctx.const(x) is not None:
        return ctx.emit("expand", [x], fn.outputs, {"shape": spec})
    _copies(ctx, fn, x, target)


@onnx_lowering("Tile", emits=("tile", "concat"))
def _onnx_tile(ctx, fn):
    reps = _static_arg(ctx, fn, "repeats", 1, "Tile repeats")
    if reps is None:
        return
    x = fn.inputs[0]
    if ctx.const(x) is not None:
        return ctx.emit("tile", [x], fn.outputs, {"repeats": reps})
    _copies(ctx, fn, x, tuple(d * r for d, r in zip(ctx.shape(x), reps)))


def _all_const(ctx, fn, why: str) -> bool:
    if all(ctx.const(i) is not None for i in fn.inputs if i):
        return True
    ctx.reject(why)
    return False


@onnx_lowering("ConstantOfShape", emits=("const_of_shape",))
def _onnx_const_of_shape(ctx, fn):
    if not _all_const(ctx, fn, "the shape input must be constant"):
        return
    value = np.asarray(fn.attrs.get("value", np.zeros(1, np.float32))).ravel()
    ctx.emit("const_of_shape", fn.inputs[:1], fn.outputs, {"value": value[0].item(), "dtype": value.dtype.name})


@onnx_lowering("Range", emits=("range",))
def _onnx_range(ctx, fn):
    if _all_const(ctx, fn, "its length would depend on run-time values"):
        ctx.emit("range", fn.inputs[:3], fn.outputs)


@onnx_lowering("NonZero", emits=("nonzero",))
def _onnx_nonzero(ctx, fn):
    if _all_const(ctx, fn, "its output shape would depend on run-time values"):
        ctx.emit("nonzero", fn.inputs[:1], fn.outputs)


_ONNX_COMPARE = {"Equal": "equal", "Less": "less", "Greater": "greater",
                 "LessOrEqual": "less_equal", "GreaterOrEqual": "greater_equal"}
_ONNX_LOGIC = {"Not": "not", "And": "and", "Or": "or", "Xor": "xor"}
_ONNX_ROUND = {"Floor": "floor", "Ceil": "ceil", "Round": "round"}


@onnx_lowering(*_ONNX_COMPARE, emits=("compare",))
@onnx_lowering(*_ONNX_LOGIC, emits=("logic",))
@onnx_lowering(*_ONNX_ROUND, emits=("round",))
def _onnx_fold_elementwise(ctx, fn):
    for table, op in ((_ONNX_COMPARE, "compare"), (_ONNX_LOGIC, "logic"), (_ONNX_ROUND, "round")):
        if fn.op_type in table:
            out = ctx.emit(op, [i for i in fn.inputs if i], fn.outputs, {"fn": table[fn.op_type]})[0]
            if op != "round" and not ctx.tensor(out).is_const:
                ctx.graph.tensors[out].dtype = "bool"


@onnx_lowering("Where", emits=("where", "binary"))
def _onnx_where(ctx, fn):
    if all(ctx.const(i) is not None for i in fn.inputs[:3]):
        return ctx.emit("where", fn.inputs[:3], fn.outputs)
    return emit_select(ctx, *fn.inputs[:3], fn.outputs[:1])  # a constant mask: NPU arithmetic



# -- TensorFlow lowerings ----------------------------------------------------------------------
@tf_lowering("GatherV2", emits=("gather", "slice", "concat", "reshape"))
def _tf_gather(ctx, fn):
    x, i, axis = fn.inputs[0], fn.inputs[1], ctx.const(fn.inputs[2])
    if axis is None or fn.attrs.get("batch_dims", 0):
        return ctx.reject("GatherV2 needs a constant axis and batch_dims=0")
    axis = norm_axis(ctx, int(np.ravel(axis)[0]), len(ctx.shape(x)))
    idx = ctx.const(i)
    if ctx.const(x) is None and idx is not None:
        return _gather_as_slices(ctx, fn, x, np.asarray(idx), axis)
    ctx.emit("gather", [x, i], fn.outputs[:1], {"axis": axis})


@tf_lowering("Tile", emits=("tile", "concat"))
def _tf_tile(ctx, fn):
    reps, x = ctx.const(fn.inputs[1]), fn.inputs[0]
    if reps is None:
        return ctx.reject("Tile multiples must be constant")
    reps = [int(r) for r in np.ravel(reps)]
    if ctx.const(x) is not None:
        return ctx.emit("tile", [x], fn.outputs[:1], {"repeats": reps})
    _copies(ctx, fn, x, tuple(d * r for d, r in zip(ctx.shape(x), reps)))


@tflite_lowering("GATHER", emits=("gather", "slice", "concat", "reshape"))
def _tflite_gather(ctx, fn):
    """GATHER(x, indices) with options axis, batch_dims (0 only)."""
    x, i = fn.inputs[0], fn.inputs[1]
    if fn.attrs.get("batch_dims", 0):
        return ctx.reject("GATHER with batch_dims != 0")
    axis = norm_axis(ctx, int(fn.attrs.get("axis", 0)), len(ctx.shape(x)))
    idx = ctx.const(i)
    if ctx.const(x) is None and idx is not None:
        return _gather_as_slices(ctx, fn, x, np.asarray(idx), axis)
    ctx.emit("gather", [x, i], fn.outputs[:1], {"axis": axis})


tflite_lowering("TILE", emits=("tile", "concat"))(_tf_tile)  # TILE(x, multiples), as TF
