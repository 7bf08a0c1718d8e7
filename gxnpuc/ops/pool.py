"""Max and average pooling (`pool`), 1-D and 2-D, local and global, channels-first or -last.

`pads` are the explicit pads; `ceil_mode` only changes the output length (a window may run
past the end padding; such pixels never count, as in PyTorch and onnxruntime).
`count_include_pad` makes the average divide by the window clipped to the padded input.
"""
from __future__ import annotations

import itertools

import numpy as np

from gxnpuc.ops import npu_kernels
from gxnpuc.ops.base import OpDef, batch_per_sample, emit_checked, onnx_lowering, register, tf_lowering, tflite_lowering
from gxnpuc.ops.conv import DATA_FORMATS, onnx_window, out_size, spatial_axes


def _geometry(a: dict, x_shape) -> tuple[list[int], list[int], list[int]]:
    """(spatial axes, output lengths, dilations) of a pool node on an input shape."""
    axes = spatial_axes(a["data_format"], len(x_shape))
    r, k, s, p = len(axes), a["kernel"], a["strides"], a["pads"]
    d = a.get("dilations") or [1] * r
    out = [out_size(x_shape[ax], k[i], s[i], d[i], p[i], p[r + i], bool(a.get("ceil_mode")))
           for i, ax in enumerate(axes)]
    return axes, out, d


def _divisor(a: dict, x_shape, axes, out, dil, ndim) -> np.ndarray:
    """How many pixels each average window counts, broadcastable against the output."""
    r, div = len(axes), np.ones([1] * ndim, np.float32)
    for i, ax in enumerate(axes):
        pb, pe, n = a["pads"][i], a["pads"][r + i], x_shape[ax]
        lo, hi = (-pb, n + pe) if a.get("count_include_pad") else (0, n)
        pos = np.arange(out[i])[:, None] * a["strides"][i] - pb + np.arange(a["kernel"][i]) * dil[i]
        shape = [1] * ndim
        shape[ax] = out[i]
        div = div * ((pos >= lo) & (pos < hi)).sum(1).reshape(shape).astype(np.float32)
    return div


def pool_kernel(x: np.ndarray, a: dict) -> np.ndarray:
    axes, out, dil = _geometry(a, x.shape)
    k, s, p = a["kernel"], a["strides"], a["pads"]
    is_max = a["kind"] == "max"
    if not any(p) and all(o == 1 for o in out) and all(ki == x.shape[ax] for ki, ax in zip(k, axes)):
        y = x.max(tuple(axes), keepdims=True) if is_max else x.mean(tuple(axes), keepdims=True)
        return y  # global pooling
    widths = [(0, 0)] * x.ndim
    for i, ax in enumerate(axes):  # pad so that every window fits (ceil_mode may run past pads)
        need = (out[i] - 1) * s[i] + (k[i] - 1) * dil[i] + 1
        widths[ax] = (p[i], max(need - x.shape[ax] - p[i], 0))
    xp = np.pad(x, widths, constant_values=-np.inf if is_max else 0) if any(map(any, widths)) else x
    acc = None
    for tap in itertools.product(*(range(ki) for ki in k)):
        sl = [slice(None)] * x.ndim
        for i, ax in enumerate(axes):
            start = tap[i] * dil[i]
            sl[ax] = slice(start, start + (out[i] - 1) * s[i] + 1, s[i])
        v = xp[tuple(sl)]
        if acc is None:
            acc = v.copy()
        elif is_max:
            np.maximum(acc, v, out=acc)
        else:
            acc += v
    return acc if is_max else acc / _divisor(a, x.shape, axes, out, dil, x.ndim)


def avg_pool_npu(x: np.ndarray, a: dict) -> np.ndarray:
    """Average pooling as the device computes it: each window summed from +0 over the taps
    in C order (a global window: its pixels in C order), divided by the counted size."""
    axes, out, dil = _geometry(a, x.shape)
    k, s, p, r = a["kernel"], a["strides"], a["pads"], len(axes)
    div = _divisor(a, x.shape, axes, out, dil, x.ndim)
    if not any(p) and all(o == 1 for o in out) and all(ki == x.shape[ax] for ki, ax in zip(k, axes)):
        return npu_kernels.seq_sum(x, axes, keepdims=True) / div
    hi = [max((out[i] - 1) * s[i] + (k[i] - 1) * dil[i] + 1 - x.shape[ax] - p[i], 0)
          for i, ax in enumerate(axes)]
    return npu_kernels.avg_pool_sum(x, k, p[:r], hi, s, dil, out, axes) / div


@register
class Pool(OpDef):
    name = "pool"
    ir_inputs = "x"
    ir_attrs = ("`kind` max|avg, `data_format`, `kernel`, `strides`, `pads` [begin..., end...] (explicit "
                "pads only), `dilations` (optional, default 1s), `count_include_pad` (0/1: divide by the "
                "window clipped to the padded input), `ceil_mode` (0/1: only the output length; pixels "
                "past the end pads never count)")
    category = "pooling"
    summary = "max / average pooling, 1-D and 2-D, local or global"
    constraints = ("1-D or 2-D pooling (NCW/NWC/NCHW/NHWC)", "pads smaller than the kernel",
                   "MaxPool without the Indices output; LpPool not supported")

    def infer(self, node, in_shapes):
        x = in_shapes[0]
        axes, out, _ = _geometry(node.attrs, x)
        y = list(x)
        for ax, o in zip(axes, out):
            y[ax] = o
        return [tuple(y)]

    def run(self, node, xs):
        x = np.asarray(xs[0])
        ct = np.promote_types(x.dtype, np.float32)
        return [pool_kernel(x.astype(ct, copy=False), node.attrs).astype(x.dtype, copy=False)]

    def run_npu(self, node, xs):
        if node.attrs["kind"] == "max":
            return self.run(node, xs)
        return [avg_pool_npu(np.asarray(xs[0], np.float32), node.attrs)]

    def check(self, node, in_shapes):
        a, x = node.attrs, in_shapes[0]
        r = DATA_FORMATS.get(a.get("data_format"))
        if r is None or len(x) != r + 2:
            return f"only 1-D and 2-D pooling (got a rank-{len(x)} input)"
        if a.get("kind") not in ("max", "avg"):
            return f"pool kind {a.get('kind')!r} (max, avg)"
        k, s, p = a.get("kernel", []), a.get("strides", []), a.get("pads", [])
        d = a.get("dilations") or [1] * r
        if len(k) != r or len(s) != r or len(d) != r or len(p) != 2 * r:
            return f"kernel/strides/dilations need {r} values and pads {2 * r}"
        if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
            return f"kernel {k}, strides {s}, dilations {d} must be >= 1 and pads {p} >= 0"
        if any(p[i] >= (k[i] - 1) * d[i] + 1 or p[r + i] >= (k[i] - 1) * d[i] + 1 for i in range(r)):
            return f"pads {p} must be smaller than the kernel {k}"
        if min(self.infer(node, in_shapes)[0]) < 1:
            return "empty output (kernel larger than the padded input)"
        return None

    def flops(self, node, in_shapes, out_shapes):
        return int(np.prod(out_shapes[0], dtype=np.int64)) * int(np.prod(node.attrs["kernel"]))

    def batch(self, node, shapes, flags):
        return batch_per_sample(node, shapes, flags)

    def keeps_f16(self, node):
        return node.attrs.get("kind") == "max"


# -- ONNX ----------------------------------------------------------------------------------
@onnx_lowering("MaxPool", "AveragePool", emits=("pool",))
def _onnx_pool(ctx, fn):
    is_max = fn.op_type == "MaxPool"
    if is_max and any(fn.outputs[1:]):
        return ctx.reject("the MaxPool Indices output is not supported")
    shape = ctx.shape(fn.inputs[0])
    r = len(shape) - 2
    if r not in (1, 2):
        return ctx.reject(f"only 1-D and 2-D pooling (input {list(shape)})")
    kernel = [int(k) for k in fn.attrs.get("kernel_shape", [])]
    window = onnx_window(ctx, fn, shape[2:], kernel)
    if window is None:
        return None
    strides, dilations, pads = window
    attrs = {"kind": "max" if is_max else "avg", "data_format": "NCHW" if r == 2 else "NCW",
             "kernel": kernel, "strides": strides, "pads": pads,
             "count_include_pad": int(fn.attrs.get("count_include_pad", 0)),
             "ceil_mode": int(fn.attrs.get("ceil_mode", 0))}
    if any(d != 1 for d in dilations):
        attrs["dilations"] = dilations
    return emit_checked(ctx, "pool", fn.inputs[:1], fn.outputs[:1], attrs)


@onnx_lowering("GlobalMaxPool", "GlobalAveragePool", emits=("pool",))
def _onnx_global_pool(ctx, fn):
    shape = ctx.shape(fn.inputs[0])
    r = len(shape) - 2
    if r not in (1, 2):
        return ctx.reject(f"only 1-D and 2-D pooling (input {list(shape)})")
    attrs = {"kind": "max" if fn.op_type == "GlobalMaxPool" else "avg",
             "data_format": "NCHW" if r == 2 else "NCW", "kernel": list(shape[2:]),
             "strides": [1] * r, "pads": [0] * (2 * r), "count_include_pad": 0, "ceil_mode": 0}
    return emit_checked(ctx, "pool", fn.inputs[:1], fn.outputs[:1], attrs)


# -- TensorFlow ----------------------------------------------------------------------------
@tf_lowering("MaxPool", "AvgPool", emits=("pool",))
def _tf_pool(ctx, fn):
    """TF pooling: NHWC, SAME pads at the end; AvgPool never counts the padding."""
    from gxnpuc.ops.conv import tf_pads, tf_spatial

    shape, fmt = ctx.shape(fn.inputs[0]), fn.attrs.get("data_format", "NHWC")
    if len(shape) != 4:
        return ctx.reject(f"only 2-D pooling (input {list(shape)})")
    kernel = tf_spatial(fn.attrs.get("ksize", [1, 1, 1, 1]), fmt)
    strides = tf_spatial(fn.attrs.get("strides", [1, 1, 1, 1]), fmt)
    sizes = shape[2:] if fmt.startswith("NC") else shape[1:3]
    pads = tf_pads(ctx, fn, sizes, kernel, strides, [1, 1])
    if pads is None:
        return None
    attrs = {"kind": "max" if fn.op_type == "MaxPool" else "avg", "data_format": fmt,
             "kernel": kernel, "strides": strides, "pads": pads, "count_include_pad": 0,
             "ceil_mode": 0}
    return emit_checked(ctx, "pool", fn.inputs[:1], fn.outputs[:1], attrs)


# -- TensorFlow Lite -----------------------------------------------------------------------
@tflite_lowering("MAX_POOL_2D", "AVERAGE_POOL_2D", emits=("pool", "act"))
def _tflite_pool(ctx, fn):
    """NHWC; SAME pads at the end, and the average never counts the padding (as TF)."""
    from gxnpuc.ops.activation import emit_fused
    from gxnpuc.ops.conv import auto_pads

    shape = ctx.shape(fn.inputs[0])
    if len(shape) != 4:
        return ctx.reject(f"only 2-D pooling (input {list(shape)})")
    kernel = [int(fn.attrs.get("filter_height", 1)), int(fn.attrs.get("filter_width", 1))]
    strides = [int(fn.attrs.get("stride_h", 1)), int(fn.attrs.get("stride_w", 1))]
    pads = auto_pads(str(fn.attrs.get("padding", "VALID")), shape[1:3], kernel, strides, [1, 1])
    attrs = {"kind": "max" if fn.op_type == "MAX_POOL_2D" else "avg", "data_format": "NHWC",
             "kernel": kernel, "strides": strides, "pads": pads, "count_include_pad": 0, "ceil_mode": 0}
    return emit_fused(ctx, fn, "pool", fn.inputs[:1], attrs)
