"""TensorFlow Lite comparisons, boolean logic, rounding and tensor fills: the ops that
`tf.math.divide_no_nan`, masks and other guarded patterns become in TFLite.

They lower onto the IR ops the ONNX and TensorFlow front ends already use: `compare`,
`logic` and `round` fold when their inputs are constant; with a run-time input they stay
fold-only nodes that a pattern may still remove (EQUAL + SELECT_V2 of a guarded division
becomes one `div_no_nan` binary, ops/elementwise.py), else `gxnpuc` reports them after the
passes. ZEROS_LIKE / ONES_LIKE / FILL become constants (shapes are static); BROADCAST_TO of
a run-time tensor is an add of zeros of the target shape (the NPU's broadcasting binary).
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import CONSTANT, tflite_lowering

_COMPARE = {"EQUAL": "equal", "NOT_EQUAL": "not_equal", "LESS": "less", "LESS_EQUAL": "less_equal",
            "GREATER": "greater", "GREATER_EQUAL": "greater_equal"}
_LOGIC = {"LOGICAL_AND": "and", "LOGICAL_OR": "or", "LOGICAL_NOT": "not"}
_ROUND = {"FLOOR": "floor", "CEIL": "ceil", "ROUND": "round"}


@tflite_lowering(*_COMPARE, emits=("compare",))
@tflite_lowering(*_LOGIC, emits=("logic",))
def _tflite_compare_logic(ctx, fn):
    op, table = ("compare", _COMPARE) if fn.op_type in _COMPARE else ("logic", _LOGIC)
    ins = fn.inputs[:1] if fn.op_type == "LOGICAL_NOT" else fn.inputs[:2]
    out = ctx.emit(op, ins, fn.outputs[:1], {"fn": table[fn.op_type]})[0]
    if not ctx.tensor(out).is_const:
        ctx.graph.tensors[out].dtype = "bool"


@tflite_lowering(*_ROUND, emits=("round",))
def _tflite_round(ctx, fn):
    """FLOOR, CEIL, ROUND (half to even, as TFLite's kernel)."""
    ctx.emit("round", fn.inputs[:1], fn.outputs[:1], {"fn": _ROUND[fn.op_type]})


@tflite_lowering("ZEROS_LIKE", "ONES_LIKE", emits=CONSTANT)
def _tflite_zeros_like(ctx, fn):
    """A constant even when the input is computed at run time: its shape is static."""
    t = ctx.tensor(fn.inputs[0])
    ctx.add_const(fn.outputs[0], np.full(t.shape, 0 if fn.op_type == "ZEROS_LIKE" else 1, t.dtype))


@tflite_lowering("FILL", emits=CONSTANT)
def _tflite_fill(ctx, fn):
    dims, value = ctx.const(fn.inputs[0]), ctx.const(fn.inputs[1])
    if dims is None or value is None:
        return ctx.reject("FILL dims and value must be constant")
    ctx.add_const(fn.outputs[0], np.full([int(d) for d in np.ravel(dims)], np.reshape(value, ()), value.dtype))
    return None


@tflite_lowering("BROADCAST_TO", emits=("binary",))
def _tflite_broadcast_to(ctx, fn):
    x, shape = fn.inputs[0], ctx.const(fn.inputs[1])
    if shape is None:
        return ctx.reject("BROADCAST_TO needs a constant shape")
    target = tuple(np.broadcast_shapes(ctx.shape(x), tuple(int(d) for d in np.ravel(shape))))
    v = ctx.const(x)
    if v is not None:
        ctx.add_const(fn.outputs[0], np.array(np.broadcast_to(v, target)))
        return None
    if target == tuple(ctx.shape(x)):
        ctx.set_alias(fn.outputs[0], x)
        return None
    zeros = ctx.add_const(ctx.fresh(f"{fn.outputs[0]}/zeros"), np.zeros(target, ctx.tensor(x).dtype))
    ctx.emit("binary", [x, zeros], fn.outputs[:1], {"fn": "add"})
    return None
