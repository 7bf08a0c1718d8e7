"""L2 normalisation along one axis (TFLite L2_NORMALIZATION, the converter's form of
tf.math.l2_normalize; ONNX LpNormalization with p = 1 or 2) on the NPU's arithmetic:
y = x / max(norm(x), eps), the norm a `reduce` sum of squares (or of |x|) and a sqrt.

TFLite's kernel divides by max(sqrt(sum(x^2)), 1e-6) over the last axis; ONNX LpNormalization
by the norm, an all-zero row giving 0 (ONNX's own test): max(norm, 2^-24), the smallest fp16
magnitude, so every norm the NPU can hold is used as it is.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import onnx_lowering, tflite_lowering
from gxnpuc.ops.math_misc import TINY_F16
from gxnpuc.ops.shape_ops import norm_axis

_EMITS = ("act", "reduce", "binary")
TFLITE_EPS = 1e-6


def lower_l2(ctx, fn, axis: int, p: int, eps: float) -> None:
    x = fn.inputs[0]
    axis = norm_axis(ctx, axis, len(ctx.shape(x)))
    if ctx.const(x) is None and ctx.tensor(x).dtype not in ("float32", "float16", "float64"):
        return ctx.reject(f"{ctx.tensor(x).dtype} arithmetic at run time (the NPU computes in fp16)")
    sq = ctx.emit("act", [x], None, {"fn": "square" if p == 2 else "abs"})[0]
    norm = ctx.emit("reduce", [sq], None, {"fn": "sum", "axes": [axis], "keepdims": 1})[0]
    if p == 2:
        norm = ctx.emit("act", [norm], None, {"fn": "sqrt"})[0]
    if eps:
        floor = ctx.add_const(ctx.fresh(f"{fn.name}/eps"), np.float32(eps))
        norm = ctx.emit("binary", [norm, floor], None, {"fn": "max"})[0]
    ctx.emit("binary", [x, norm], fn.outputs[:1], {"fn": "div"})
    return None


@tflite_lowering("L2_NORMALIZATION", emits=_EMITS)
def _tflite_l2_norm(ctx, fn):
    if str(fn.attrs.get("fused_activation_function", "NONE")) != "NONE":
        return ctx.reject("L2_NORMALIZATION with a fused activation")
    return lower_l2(ctx, fn, -1, 2, TFLITE_EPS)


@onnx_lowering("LpNormalization", emits=_EMITS)
def _onnx_lp_norm(ctx, fn):
    p = int(fn.attrs.get("p", 2))
    if p not in (1, 2):
        return ctx.reject(f"p = {p} (1 or 2)")
    return lower_l2(ctx, fn, int(fn.attrs.get("axis", -1)), p, TINY_F16)
