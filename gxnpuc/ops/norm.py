"""Inference BatchNorm (`batchnorm`): y = (x - mean) / sqrt(var + eps) * scale + bias per channel.

With FUSE_BN a pass folds it into the preceding conv/fc; otherwise the NPU runs it as a
per-channel scale and shift whose parameters stay fp16 (never compressed).
LayerNormalization / InstanceNormalization / GroupNormalization (statistics computed at run
time) are decomposed into reduce/binary/act in ops/runtime_norm.py.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import OpDef, batch_not_axis_0, emit_checked, onnx_lowering, register


def bn_scale_shift(scale, bias, mean, var, epsilon: float, dtype=np.float32):
    """The per-channel (multiplier, offset) that BatchNorm applies, in `dtype`."""
    scale, bias, mean, var = (np.asarray(p, dtype).reshape(-1) for p in (scale, bias, mean, var))
    mul = scale / np.sqrt(var + dtype(epsilon))
    return mul, bias - mean * mul


@register
class BatchNorm(OpDef):
    name = "batchnorm"
    ir_inputs = "x, scale, bias, mean, var"
    ir_attrs = "`epsilon`, `axis` (channel axis, non-negative)"
    ir_roles = "all param"  # beside `weights`: how its constant inputs are stored
    sink, sink_inputs = "elementwise", (0,)
    category = "norm"
    summary = "inference batch normalisation along the channel axis"
    constraints = ("scale, bias, mean, var constant, one value per channel",
                   "inference form only (training_mode=0, no running-statistics outputs)")

    def infer(self, node, in_shapes):
        return [in_shapes[0]]

    def run(self, node, xs):
        x = np.asarray(xs[0])
        ct = np.promote_types(x.dtype, np.float32).type
        mul, add = bn_scale_shift(*xs[1:5], node.attrs.get("epsilon", 1e-5), ct)
        shape = [1] * x.ndim
        shape[node.attrs["axis"]] = -1
        y = x.astype(ct, copy=False) * mul.reshape(shape) + add.reshape(shape)
        return [y.astype(x.dtype, copy=False)]

    def check(self, node, in_shapes):
        x, axis = in_shapes[0], node.attrs.get("axis", 1)
        if len(x) < 2 or not 0 <= axis < len(x):
            return f"channel axis {axis} of a rank-{len(x)} input"
        for role, s in zip(("scale", "bias", "mean", "var"), in_shapes[1:5]):
            if s is None or int(np.prod(s)) != x[axis]:
                return f"{role} of shape {list(s or [])} for {x[axis]} channels (per-channel only)"
        return None

    def flops(self, node, in_shapes, out_shapes):
        return 2 * int(np.prod(out_shapes[0], dtype=np.int64))

    def batch(self, node, shapes, flags):
        return batch_not_axis_0(node, shapes, flags)


@onnx_lowering("BatchNormalization", emits=("batchnorm",))
def _onnx_batchnorm(ctx, fn):
    if fn.attrs.get("training_mode", 0):
        return ctx.reject("training_mode=1 (training-time statistics); export the model in eval mode")
    if any(fn.outputs[1:]):
        return ctx.reject("running mean/var outputs are a training-time form; export in eval mode")
    if not fn.attrs.get("spatial", 1):
        return ctx.reject("spatial=0 (per-activation statistics); only per-channel BatchNorm")
    params = fn.inputs[1:5]
    if len(params) != 4 or any(ctx.const(p) is None for p in params):
        return ctx.reject("BatchNormalization scale, bias, mean and var must be constant")
    attrs = {"epsilon": float(fn.attrs.get("epsilon", 1e-5)), "axis": 1}
    return emit_checked(ctx, "batchnorm", fn.inputs[:5], fn.outputs[:1], attrs)
