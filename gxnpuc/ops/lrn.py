"""Local response normalisation across channels (ONNX LRN, TF LRN, TFLite
LOCAL_RESPONSE_NORMALIZATION: AlexNet / GoogLeNet-era CNNs) on the NPU's arithmetic:

    y = x * (bias + k * sum over a channel window of x^2) ^ -beta

The window sum is a 1x1 convolution of x^2 with a constant banded 0/1 weight scaled by k
(k = alpha / size in ONNX, alpha in TF), whose bias is `bias`; then a `pow` and a multiply.
ONNX's window is [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]; TF's [c - r, c + r].
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import emit_checked, onnx_lowering, tf_lowering, tflite_lowering

_EMITS = ("act", "conv", "binary")


def band(channels: int, before: int, after: int, k: float) -> np.ndarray:
    """W[out, in] = k where in lies in [out - before, out + after]."""
    o, i = np.meshgrid(np.arange(channels), np.arange(channels), indexing="ij")
    return np.where((i >= o - before) & (i <= o + after), k, 0.0).astype(np.float32)


def lower_lrn(ctx, fn, channels_last: bool, before: int, after: int, k: float, bias: float, beta: float) -> None:
    x = fn.inputs[0]
    shape = list(ctx.shape(x))
    if len(shape) != 4:
        return ctx.reject(f"a 4-D input (got {shape})")
    c = shape[3] if channels_last else shape[1]
    w_oi = band(c, before, after, k)
    w = w_oi.T.reshape(1, 1, c, c) if channels_last else w_oi.reshape(c, c, 1, 1)
    w_name = ctx.add_const(ctx.fresh(f"{fn.name}/window"), w)
    b_name = ctx.add_const(ctx.fresh(f"{fn.name}/bias"), np.full(c, bias, np.float32))
    sq = ctx.emit("act", [x], None, {"fn": "square"})[0]
    attrs = {"data_format": "NHWC" if channels_last else "NCHW", "w_format": "HWIO" if channels_last else "OIHW",
             "strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0], "group": 1}
    s = emit_checked(ctx, "conv", [sq, w_name, b_name], None, attrs)
    if s is not None:
        d = ctx.emit("act", s, None, {"fn": "pow", "exponent": -float(beta)})[0]
        ctx.emit("binary", [x, d], fn.outputs[:1], {"fn": "mul"})
    return None


@onnx_lowering("LRN", emits=_EMITS)
def _onnx_lrn(ctx, fn):
    size = int(fn.attrs["size"])
    lower_lrn(ctx, fn, False, (size - 1) // 2, size - 1 - (size - 1) // 2, float(fn.attrs.get("alpha", 1e-4)) / size,
              float(fn.attrs.get("bias", 1.0)), float(fn.attrs.get("beta", 0.75)))


@tf_lowering("LRN", emits=_EMITS)
def _tf_lrn(ctx, fn):
    r = int(fn.attrs.get("depth_radius", 5))
    lower_lrn(ctx, fn, True, r, r, float(fn.attrs.get("alpha", 1.0)), float(fn.attrs.get("bias", 1.0)),
              float(fn.attrs.get("beta", 0.5)))


@tflite_lowering("LOCAL_RESPONSE_NORMALIZATION", emits=_EMITS)
def _tflite_lrn(ctx, fn):
    r = int(fn.attrs.get("radius", 5))
    lower_lrn(ctx, fn, True, r, r, float(fn.attrs.get("alpha", 1.0)), float(fn.attrs.get("bias", 1.0)),
              float(fn.attrs.get("beta", 0.5)))
