"""`softmax` over one axis (`log` for LogSoftmax).

ONNX before opset 13 normalises over all axes from `axis` on (the input flattened to 2-D);
that is lowered to reshape -> one-axis softmax -> reshape unless one axis already suffices.
"""
from __future__ import annotations

import numpy as np

from gxnpuc import devmath
from gxnpuc.ops import npu_kernels
from gxnpuc.ops.base import OpDef, batch_not_axis_0, onnx_lowering, register, tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import emit_reshape, norm_axis, onnx_opset


@register
class Softmax(OpDef):
    name = "softmax"
    ir_inputs = "x"
    ir_attrs = "`axis`, `log` (bool: LogSoftmax)"
    category = "activation"
    summary = "softmax (or log-softmax) over one axis"
    constraints = ("one axis (several trailing axes are flattened into one first)",)

    def infer(self, node, in_shapes):
        return [in_shapes[0]]

    def run(self, node, xs):
        x = np.asarray(xs[0])
        axis = node.attrs["axis"]
        z = x - np.max(x, axis=axis, keepdims=True)
        with np.errstate(all="ignore"):
            if node.attrs.get("log"):
                y = z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
            else:
                e = np.exp(z)
                y = e / np.sum(e, axis=axis, keepdims=True)
        return [y.astype(x.dtype, copy=False)]

    def run_npu(self, node, xs):
        """z = x - max; e = exp(z) (devmath); s = sequential sum of e along the axis;
        e / s, or z - log(s) for log-softmax."""
        x, axis = np.asarray(xs[0], np.float32), node.attrs["axis"]
        with np.errstate(all="ignore"):
            z = x - np.max(x, axis=axis, keepdims=True)
            e = devmath.exp(z)
            s = npu_kernels.seq_sum(e, [axis], keepdims=True)
            return [z - devmath.log(s) if node.attrs.get("log") else e / s]

    def flops(self, node, in_shapes, out_shapes):
        return 5 * int(np.prod(out_shapes[0], dtype=np.int64))  # max, sub, exp, sum, div

    def batch(self, node, shapes, flags):
        return batch_not_axis_0(node, shapes, flags)


@onnx_lowering("Softmax", "LogSoftmax", emits=("softmax", "reshape"))
def _onnx_softmax(ctx, fn):
    x = fn.inputs[0]
    shape = ctx.shape(x)
    log = fn.op_type == "LogSoftmax"
    old = onnx_opset(ctx) < 13
    axis = norm_axis(ctx, fn.attrs.get("axis", 1 if old else -1), len(shape))
    big = [a for a in range(axis, len(shape)) if shape[a] != 1]
    if not old or len(big) <= 1:  # one axis carries every element that is normalised together
        axis = big[0] if (old and big) else axis
        ctx.emit("softmax", [x], fn.outputs, {"axis": axis, "log": log})
        return
    rows = int(np.prod(shape[:axis], dtype=np.int64))
    flat = emit_reshape(ctx, x, [rows, int(np.prod(shape[axis:], dtype=np.int64))])
    y = ctx.emit("softmax", [flat], None, {"axis": 1, "log": log})[0]
    emit_reshape(ctx, y, shape, fn.outputs)


@tf_lowering("Softmax", "LogSoftmax", emits=("softmax",))
def _tf_softmax(ctx, fn):
    rank = len(ctx.shape(fn.inputs[0]))  # TF normalises over the last axis
    ctx.emit("softmax", fn.inputs[:1], fn.outputs[:1], {"axis": rank - 1, "log": fn.op_type == "LogSoftmax"})


@tflite_lowering("SOFTMAX", "LOG_SOFTMAX", emits=("softmax", "binary"))
def _tflite_softmax(ctx, fn):
    """Over the last axis; SOFTMAX's beta scales the logits first."""
    x = fn.inputs[0]
    beta = float(fn.attrs.get("beta", 1.0))
    if beta != 1.0:
        b = ctx.add_const(ctx.fresh(fn.name + "/beta"), np.asarray(beta, np.float32))
        x = ctx.emit("binary", [x, b], None, {"fn": "mul"})[0]
    rank = len(ctx.shape(x))
    ctx.emit("softmax", [x], fn.outputs[:1], {"axis": rank - 1, "log": fn.op_type == "LOG_SOFTMAX"})
