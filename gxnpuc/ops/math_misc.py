"""Sign, CumSum and ReduceLogSumExp on the NPU's arithmetic, and the floor arithmetic of
TensorFlow / TFLite shape code (FloorDiv, FloorMod, Floor, Round, Range), which folds.

- Sign(x) = x / max(|x|, 2^-24): exactly -1, 0 or 1 for every fp16 value (2^-24 is the
  smallest fp16 magnitude); in the float IR a float32 |x| below 2^-24 gives x * 2^24.
- CumSum along a constant axis = an `fc` with a constant 0/1 triangular weight (exclusive and
  reverse pick the triangle), the axis moved last and back by transposes.
- ReduceLogSumExp = m + log(sum(exp(x - m))) with m the max over the same axes (no overflow).
- Floor / Round / FloorDiv / FloorMod have no NPU form (the NPU has no rounding, and its fp16
  arithmetic cannot emulate one exactly): they fold when their inputs are constant (the usual
  case: shape arithmetic) and are refused, with that reason, at run time.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import emit_checked, onnx_lowering, tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import FLOAT_DTYPES, NOT_CONST, arg_ints, emit_reshape, norm_axis

TINY_F16 = 2.0 ** -24
NO_ROUNDING = ("rounds at run time: the NPU has no floor/round and its fp16 arithmetic cannot emulate "
               "one exactly; only constant (shape) arithmetic folds")


def _float_input(ctx, x: str) -> bool:
    if ctx.const(x) is None and ctx.tensor(x).dtype not in FLOAT_DTYPES:
        ctx.reject(f"{ctx.tensor(x).dtype} arithmetic at run time (the NPU computes in fp16)")
        return False
    return True


# -- Sign --------------------------------------------------------------------------------------------
def lower_sign(ctx, fn) -> None:
    x = fn.inputs[0]
    c = ctx.const(x)
    if c is not None:
        ctx.add_const(fn.outputs[0], np.sign(c))
        return
    if not _float_input(ctx, x):
        return
    tiny = ctx.add_const(ctx.fresh(f"{fn.name}/tiny"), np.float32(TINY_F16))
    mag = ctx.emit("act", [x], None, {"fn": "abs"})[0]
    mag = ctx.emit("binary", [mag, tiny], None, {"fn": "max"})[0]
    ctx.emit("binary", [x, mag], fn.outputs[:1], {"fn": "div"})


# -- CumSum ------------------------------------------------------------------------------------------
def triangle(n: int, exclusive: bool, reverse: bool) -> np.ndarray:
    """W[i, j] = 1 when input i adds into output j."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = (i >= j if reverse else i <= j) & ((i != j) if exclusive else True)
    return keep.astype(np.float32)


def lower_cumsum(ctx, fn, axis, exclusive: bool, reverse: bool) -> None:
    x = fn.inputs[0]
    if axis is None or axis is NOT_CONST:
        return ctx.reject("CumSum axis must be constant")
    rank = len(ctx.shape(x))
    axis = norm_axis(ctx, axis[0], rank)
    c = ctx.const(x)
    if c is not None:
        y = np.flip(np.cumsum(np.flip(c, axis), axis=axis), axis) if reverse else np.cumsum(c, axis=axis)
        ctx.add_const(fn.outputs[0], (y - c if exclusive else y).astype(c.dtype))
        return None
    if not _float_input(ctx, x):
        return None
    n = int(ctx.shape(x)[axis])
    w = ctx.add_const(ctx.fresh(f"{fn.name}/triangle"), triangle(n, exclusive, reverse))
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    last = axis == rank - 1
    moved = x if last else ctx.emit("transpose", [x], None, {"perm": perm})[0]
    out = emit_checked(ctx, "fc", [moved, w], fn.outputs[:1] if last else None, {"transpose_w": False})
    if out is not None and not last:
        ctx.emit("transpose", out, fn.outputs[:1], {"perm": perm})
    return None


@onnx_lowering("Sign", emits=("act", "binary"))
def _onnx_sign(ctx, fn):
    lower_sign(ctx, fn)


tf_lowering("Sign", emits=("act", "binary"))(_onnx_sign)
tflite_lowering("SIGN", emits=("act", "binary"))(_onnx_sign)


@onnx_lowering("CumSum", emits=("fc", "transpose"))
def _onnx_cumsum(ctx, fn):
    lower_cumsum(ctx, fn, arg_ints(ctx, fn, "", 1), bool(fn.attrs.get("exclusive", 0)),
                 bool(fn.attrs.get("reverse", 0)))


@tf_lowering("Cumsum", emits=("fc", "transpose"))
def _tf_cumsum(ctx, fn):
    lower_cumsum(ctx, fn, arg_ints(ctx, fn, "", 1), bool(fn.attrs.get("exclusive", False)),
                 bool(fn.attrs.get("reverse", False)))


tflite_lowering("CUMSUM", emits=("fc", "transpose"))(_tf_cumsum)


# -- ReduceLogSumExp ---------------------------------------------------------------------------------
@onnx_lowering("ReduceLogSumExp", emits=("reduce", "binary", "act", "reshape"))
def _onnx_reduce_log_sum_exp(ctx, fn):
    x = fn.inputs[0]
    shape = list(ctx.shape(x))
    axes = arg_ints(ctx, fn, "axes", 1)
    if axes is NOT_CONST:
        return ctx.reject("ReduceLogSumExp axes must be constant")
    if not axes and fn.attrs.get("noop_with_empty_axes", 0):
        return ctx.reject("noop_with_empty_axes=1 with no axes")
    axes = sorted({norm_axis(ctx, a, len(shape)) for a in axes} if axes else range(len(shape)))
    if not _float_input(ctx, x):
        return None
    keep = {"axes": axes, "keepdims": 1}
    m = ctx.emit("reduce", [x], None, dict(keep, fn="max"))[0]
    e = ctx.emit("act", [ctx.emit("binary", [x, m], None, {"fn": "sub"})[0]], None, {"fn": "exp"})[0]
    s = ctx.emit("act", [ctx.emit("reduce", [e], None, dict(keep, fn="sum"))[0]], None, {"fn": "log"})[0]
    keepdims = bool(int(fn.attrs.get("keepdims", 1)))
    y = ctx.emit("binary", [s, m], fn.outputs[:1] if keepdims else None, {"fn": "add"})[0]
    if not keepdims:
        emit_reshape(ctx, y, [d for k, d in enumerate(shape) if k not in axes], fn.outputs[:1])
    return None


# -- TF / TFLite floor arithmetic (folds) -------------------------------------------------------------
def _all_const(ctx, fn) -> bool:
    if all(ctx.const(i) is not None for i in fn.inputs if i):
        return True
    ctx.reject(f"{fn.op_type} {NO_ROUNDING}")
    return False


_ROUNDS = {"Floor": "floor", "Round": "round"}  # TFLite FLOOR / CEIL / ROUND: ops/tflite_logic.py


@tf_lowering("Floor", "Round", emits=("round",))
def _tf_round(ctx, fn):
    if _all_const(ctx, fn):
        ctx.emit("round", fn.inputs[:1], fn.outputs[:1], {"fn": _ROUNDS[fn.op_type]})




@tf_lowering("FloorMod", "FloorDiv", emits=("binary", "round"))
def _tf_floor_div_mod(ctx, fn):
    """FloorMod = Python's %; FloorDiv = a // b: (a - a % b) / b for integers (exact),
    floor(a / b) for floats."""
    if not _all_const(ctx, fn):
        return None
    a, b = fn.inputs[:2]
    if fn.op_type.lower().endswith("mod"):
        ctx.emit("binary", [a, b], fn.outputs[:1], {"fn": "mod"})
    elif np.asarray(ctx.const(a)).dtype.kind in "iu":
        rest = ctx.emit("binary", [a, ctx.emit("binary", [a, b], None, {"fn": "mod"})[0]], None, {"fn": "sub"})[0]
        ctx.emit("binary", [rest, b], fn.outputs[:1], {"fn": "div"})
    else:
        q = ctx.emit("binary", [a, b], None, {"fn": "div"})[0]
        ctx.emit("round", [q], fn.outputs[:1], {"fn": "floor"})
    return None


tflite_lowering("FLOOR_MOD", "FLOOR_DIV", emits=("binary", "round"))(_tf_floor_div_mod)


@tf_lowering("Range", emits=("range",))
def _tf_range(ctx, fn):
    """tf.range(start, limit, delta): constant inputs (shapes are static), as ONNX Range."""
    if _all_const(ctx, fn):
        ctx.emit("range", fn.inputs[:3], fn.outputs[:1])


tflite_lowering("RANGE", emits=("range",))(_tf_range)
