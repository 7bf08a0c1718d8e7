"""Convolution (`conv`), 1-D and 2-D, plain, grouped and depthwise, in every layout the front ends give.

ONNX brings NCHW/NCW activations with OIHW/OIW weights; TensorFlow brings NHWC/NWC with HWIO
(Conv2D) or HWIM (DepthwiseConv2dNative: out channel = i*M + m). The kernel brings every form
to channels-last activations and tap-major weights [*kernel, c_in/group, c_out] and runs the
kernels of conv_kernels.py (ONNX's plain convolutions stay channels-first). The padding
helpers here serve pool too.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops import npu_kernels
from gxnpuc.ops.base import (OpDef, batch_per_sample, emit_checked, onnx_lowering, register, tf_lowering,
                             tflite_lowering, unsupported)
from gxnpuc.ops.conv_kernels import conv_channels_first, conv_channels_last, depthwise_flat, out_size

# data_format -> number of spatial dims
DATA_FORMATS = {"NCHW": 2, "NHWC": 2, "NCW": 1, "NWC": 1}
W_FORMATS = {2: ("OIHW", "HWIO", "HWIM"), 1: ("OIW", "WIO", "WIM")}
PAD_MODES = ("SAME_UPPER", "SAME_LOWER", "SAME", "VALID")


# -- padding and sizes (shared with pool) -------------------------------------------------
def spatial_axes(data_format: str, ndim: int) -> list[int]:
    """Axes of the spatial dims of an activation of rank ndim in this layout."""
    return list(range(2, ndim)) if data_format.startswith("NC") else list(range(1, ndim - 1))


def auto_pads(mode: str, sizes, kernel, strides, dilations) -> list[int]:
    """pads [begin..., end...] for ONNX auto_pad / TF padding.

    SAME_UPPER (= TF "SAME") puts the odd extra pixel at the end, SAME_LOWER at the begin;
    the output length is ceil(size / stride). VALID pads nothing.
    """
    if mode == "VALID":
        return [0] * (2 * len(sizes))
    begin, end = [], []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        b = total // 2 if mode in ("SAME_UPPER", "SAME") else total - total // 2
        begin.append(b)
        end.append(total - b)
    return begin + end


def conv_attrs_from_same_padding(data_format: str, w_format: str, in_spatial, kernel, strides,
                                 dilations, padding, group: int = 1) -> dict:
    """The `conv` attrs for a framework conv; padding is "SAME"/"SAME_UPPER"/"SAME_LOWER"/
    "VALID" or explicit pads [begin..., end...]."""
    strides, dilations = [int(s) for s in strides], [int(d) for d in dilations]
    if isinstance(padding, str):
        pads = auto_pads(padding.upper(), in_spatial, kernel, strides, dilations)
    else:
        pads = [int(p) for p in padding]
    return {"data_format": data_format, "w_format": w_format, "strides": strides,
            "dilations": dilations, "pads": pads, "group": int(group)}


# -- weight layouts ------------------------------------------------------------------------
def kernel_of(w_shape, w_format: str) -> tuple[int, ...]:
    return tuple(w_shape[2:]) if w_format.startswith("OI") else tuple(w_shape[:-2])


def out_channels(w_shape, w_format: str) -> int:
    if w_format.startswith("OI"):
        return int(w_shape[0])
    if w_format.endswith("IM"):
        return int(w_shape[-2] * w_shape[-1])
    return int(w_shape[-1])


def in_channels_per_group(w_shape, w_format: str) -> int:
    if w_format.startswith("OI"):
        return int(w_shape[1])
    return 1 if w_format.endswith("IM") else int(w_shape[-2])


def taps_weight(w: np.ndarray, w_format: str) -> np.ndarray:
    """Weights as [*kernel, c_in/group, c_out]; out channel o belongs to group o // (c_out/group)."""
    if w_format.startswith("OI"):
        return np.moveaxis(w, (0, 1), (-1, -2))
    if w_format.endswith("IM"):  # depthwise: in channel i feeds outputs i*M .. i*M+M-1
        return w.reshape(*w.shape[:-2], 1, w.shape[-2] * w.shape[-1])
    return w


@register
class Conv(OpDef):
    name = "conv"
    ir_inputs = "x, w, b?"
    ir_attrs = ("`data_format` NCHW|NHWC (1-D: NCW|NWC), `w_format` OIHW (ONNX: O out, I in/group; 1-D "
                "OIW) | HWIO (TF Conv2D; TFLite CONV_2D) | HWIM (TF depthwise: out channel = i*M+m; TFLite "
                "DEPTHWISE_CONV_2D), `strides`, "
                "`dilations` (per spatial dim), `pads` [begin..., end...], `group`")
    category = "conv"
    summary = "convolution, 1-D and 2-D: plain, grouped, depthwise; bias optional"
    constraints = ("1-D or 2-D (NCW/NWC/NCHW/NHWC); weights OIHW/OIW (ONNX), HWIO or HWIM (TF, TFLite)",
                   "weights and bias constant; zero padding only",
                   "input channels = group x weight in-channels; output channels divisible by group",
                   "transposed convolution: zeros inserted between the input pixels, then a conv "
                   "(ops/conv_transpose.py)")
    weights = {1: "conv", 2: "bias"}

    def infer(self, node, in_shapes):
        a, x, w = node.attrs, in_shapes[0], in_shapes[1]
        axes = spatial_axes(a["data_format"], len(x))
        kernel, r = kernel_of(w, a["w_format"]), len(axes)
        out = [out_size(x[ax], kernel[i], a["strides"][i], a["dilations"][i], a["pads"][i],
                        a["pads"][r + i]) for i, ax in enumerate(axes)]
        c = out_channels(w, a["w_format"])
        return [(x[0], c, *out) if a["data_format"].startswith("NC") else (x[0], *out, c)]

    def run(self, node, xs):
        a, x = node.attrs, np.asarray(xs[0])
        ct = np.promote_types(x.dtype, np.float32)  # fp16 data still accumulates in fp32
        first = a["data_format"].startswith("NC")
        w = np.asarray(xs[1], ct)
        b = np.asarray(xs[2], ct).reshape(-1) if len(xs) > 2 and xs[2] is not None else None
        if first and a["group"] == 1 and a["w_format"].startswith("OI"):  # ONNX: stay channels-first
            y = conv_channels_first(x.astype(ct, copy=False), w, a["strides"], a["dilations"], a["pads"])
            if b is not None:
                y += b.reshape(-1, *[1] * (y.ndim - 2))
            return [np.ascontiguousarray(y, dtype=x.dtype)]
        w_taps = taps_weight(w, a["w_format"])
        y = None
        if first and a["group"] > 1 and w_taps.shape[-2] == 1:  # depthwise, channels-first if it can
            y = depthwise_flat(x.astype(ct, copy=False), w_taps, a["strides"], a["dilations"], a["pads"],
                               first=True)
        if y is not None:
            if b is not None:
                y += b.reshape(-1, *[1] * (y.ndim - 2))
            return [y.astype(x.dtype, copy=False)]
        x_cl = (np.moveaxis(x, 1, -1) if first else x).astype(ct, copy=False)
        y = conv_channels_last(x_cl, w_taps, a["strides"], a["dilations"], a["pads"], a["group"])
        if b is not None:
            y += b
        return [np.ascontiguousarray(np.moveaxis(y, -1, 1) if first else y, dtype=x.dtype)]

    def run_npu(self, node, xs):
        """Sequential fp32 dot products (npu_kernels.conv) in any layout."""
        a, x = node.attrs, np.asarray(xs[0], np.float32)
        first = a["data_format"].startswith("NC")
        w_taps = taps_weight(np.asarray(xs[1], np.float32), a["w_format"])
        b = xs[2] if len(xs) > 2 else None
        if a["group"] > 1 and w_taps.shape[-2] == 1:  # depthwise: shifts of flattened samples
            y = depthwise_flat(x, w_taps, a["strides"], a["dilations"], a["pads"], first, in_order=True)
            if y is not None:
                shape = [1] * y.ndim
                shape[1 if first else -1] = -1
                return [y if b is None else y + np.asarray(b, np.float32).reshape(shape)]
        w_oi = np.moveaxis(w_taps, (-1, -2), (0, 1))
        y = npu_kernels.conv(x if first else np.moveaxis(x, -1, 1), w_oi, b, a["strides"],
                             a["dilations"], a["pads"], a["group"])
        return [np.ascontiguousarray(y if first else np.moveaxis(y, 1, -1))]

    def check(self, node, in_shapes):
        a, x, w = node.attrs, in_shapes[0], in_shapes[1]
        r = DATA_FORMATS.get(a.get("data_format"))
        if r is None or len(x) != r + 2:
            return f"only 1-D and 2-D convolution (got a rank-{len(x)} input)"
        if a.get("w_format") not in W_FORMATS[r] or len(w) != r + 2:
            return f"weight layout {a.get('w_format')} {list(w)} for a {r}-D convolution"
        bad = _bad_geometry(a, r)
        if bad:
            return bad
        return _bad_channels(a, x, w, in_shapes[2] if len(in_shapes) > 2 else None) or _bad_out(self, node, in_shapes)

    def flops(self, node, in_shapes, out_shapes):
        w, fmt = in_shapes[1], node.attrs["w_format"]
        out = int(np.prod(out_shapes[0], dtype=np.int64))
        macs = out * in_channels_per_group(w, fmt) * int(np.prod(kernel_of(w, fmt)))
        return 2 * macs + (out if len(in_shapes) > 2 and in_shapes[2] else 0)

    def batch(self, node, shapes, flags):
        return batch_per_sample(node, shapes, flags)


def _bad_geometry(a: dict, r: int) -> str | None:
    strides, dil, pads = a.get("strides", []), a.get("dilations", []), a.get("pads", [])
    if len(strides) != r or len(dil) != r or len(pads) != 2 * r:
        return f"strides/dilations need {r} values and pads {2 * r}"
    if min(strides) < 1 or min(dil) < 1 or min(pads) < 0:
        return f"strides {strides} and dilations {dil} must be >= 1, pads {pads} >= 0"
    return None


def _bad_channels(a: dict, x, w, b) -> str | None:
    fmt, group = a["w_format"], a.get("group", 1)
    c_in = x[1] if a["data_format"].startswith("NC") else x[-1]
    c_out = out_channels(w, fmt)
    if group < 1 or c_out % group or c_in != group * in_channels_per_group(w, fmt):
        return (f"{c_in} input channels do not match weight {list(w)} ({fmt}) with group={group}")
    if fmt.endswith("IM") and group != c_in:
        return f"depthwise weight {fmt} needs group = input channels ({c_in}), got {group}"
    if b is not None and int(np.prod(b)) != c_out:
        return f"bias of shape {list(b)} for {c_out} output channels"
    return None


def _bad_out(op: Conv, node, in_shapes) -> str | None:
    out = op.infer(node, in_shapes)[0]
    return f"empty output {list(out)} (kernel larger than the padded input)" if min(out) < 1 else None


# -- ONNX ----------------------------------------------------------------------------------
def onnx_pads(ctx, fn, sizes, kernel, strides, dilations) -> list[int] | None:
    """Explicit pads from an ONNX Conv/Pool node's auto_pad + pads; None after a rejection."""
    mode = fn.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if mode == "NOTSET":
        return [int(p) for p in fn.attrs.get("pads", [0] * (2 * len(sizes)))]
    if mode in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        return auto_pads(mode, sizes, kernel, strides, dilations)
    ctx.reject(f"auto_pad {mode!r} (NOTSET, SAME_UPPER, SAME_LOWER, VALID)")
    return None


def onnx_window(ctx, fn, sizes, kernel) -> tuple[list[int], list[int], list[int]] | None:
    """(strides, dilations, pads) of an ONNX Conv/Pool node; None after a rejection."""
    r = len(sizes)
    strides = [int(s) for s in fn.attrs.get("strides", [1] * r)]
    dilations = [int(d) for d in fn.attrs.get("dilations", [1] * r)]
    pads = onnx_pads(ctx, fn, sizes, kernel, strides, dilations)
    return None if pads is None else (strides, dilations, pads)


@onnx_lowering("Conv", emits=("conv",))
def _onnx_conv(ctx, fn):
    x, w_name = fn.inputs[0], fn.inputs[1]
    b_name = fn.inputs[2] if len(fn.inputs) > 2 and fn.inputs[2] else ""
    w = ctx.const(w_name)
    if w is None:
        return ctx.reject("Conv weight must be constant (an initializer or a folded constant)")
    if b_name and ctx.const(b_name) is None:
        return ctx.reject("Conv bias must be constant")
    shape = ctx.shape(x)
    r = len(shape) - 2
    if r not in (1, 2) or w.ndim != r + 2:
        return ctx.reject(f"only 1-D and 2-D convolution (input {list(shape)}, weight {list(w.shape)})")
    kernel = [int(k) for k in w.shape[2:]]
    if list(fn.attrs.get("kernel_shape", kernel)) != kernel:
        return ctx.reject(f"kernel_shape {fn.attrs['kernel_shape']} differs from weight {list(w.shape)}")
    window = onnx_window(ctx, fn, shape[2:], kernel)
    if window is None:
        return None
    strides, dilations, pads = window
    attrs = conv_attrs_from_same_padding("NCHW" if r == 2 else "NCW", "OIHW" if r == 2 else "OIW",
                                         shape[2:], kernel, strides, dilations, pads,
                                         fn.attrs.get("group", 1))
    return emit_checked(ctx, "conv", [x, w_name] + ([b_name] if b_name else []), fn.outputs[:1], attrs)


# -- TensorFlow ----------------------------------------------------------------------------
def tf_spatial(values, data_format: str) -> list[int]:
    """The spatial entries of a TF per-dimension attr ([1, sh, sw, 1] in NHWC)."""
    values = [int(v) for v in values]
    return values[2:] if data_format.startswith("NC") else values[1:-1]


def tf_pads(ctx, fn, sizes, kernel, strides, dilations) -> list[int] | None:
    """Explicit pads from TF `padding` (SAME puts the odd extra pixel at the end)."""
    padding, fmt = fn.attrs.get("padding", "VALID"), fn.attrs.get("data_format", "NHWC")
    if padding in ("SAME", "VALID"):
        return auto_pads(padding, sizes, kernel, strides, dilations)
    if padding == "EXPLICIT":
        flat = [int(p) for p in fn.attrs.get("explicit_paddings", [])] or [0] * 8
        begin, end = tf_spatial(flat[0::2], fmt), tf_spatial(flat[1::2], fmt)
        return begin + end
    ctx.reject(f"padding {padding!r} (SAME, VALID, EXPLICIT)")
    return None


@tf_lowering("Conv2D", "DepthwiseConv2dNative", emits=("conv",))
def _tf_conv2d(ctx, fn):
    x, w_name = fn.inputs[0], fn.inputs[1]
    w, fmt = ctx.const(w_name), fn.attrs.get("data_format", "NHWC")
    if w is None:
        return ctx.reject(f"{fn.op_type} filter must be constant (a frozen graph)")
    shape = ctx.shape(x)
    if len(shape) != 4 or w.ndim != 4:
        return ctx.reject(f"input {list(shape)} / filter {list(w.shape)} are not 4-D")
    kernel = [int(k) for k in w.shape[:2]]
    strides = tf_spatial(fn.attrs.get("strides", [1, 1, 1, 1]), fmt)
    dilations = tf_spatial(fn.attrs.get("dilations", [1, 1, 1, 1]), fmt)
    sizes = shape[2:] if fmt.startswith("NC") else shape[1:3]
    pads = tf_pads(ctx, fn, sizes, kernel, strides, dilations)
    if pads is None:
        return None
    depthwise = fn.op_type == "DepthwiseConv2dNative"
    c_in = shape[1] if fmt.startswith("NC") else shape[3]
    attrs = conv_attrs_from_same_padding(fmt, "HWIM" if depthwise else "HWIO", sizes, kernel,
                                         strides, dilations, pads, c_in if depthwise else 1)
    return emit_checked(ctx, "conv", [x, w_name], fn.outputs[:1], attrs)


_TF_CONV_ONLY = "only 1-D and 2-D convolution (Conv2D, DepthwiseConv2dNative, Conv2DBackpropInput)"


@tf_lowering("Conv3D", "Conv3DBackpropInputV2", emits=unsupported(_TF_CONV_ONLY))
def _tf_conv_other(ctx, fn):
    ctx.reject(_TF_CONV_ONLY)


# -- TensorFlow Lite -------------------------------------------------------------------------
@tflite_lowering("CONV_2D", "DEPTHWISE_CONV_2D", emits=("conv", "act"))
def _tflite_conv(ctx, fn):
    """NHWC. The weight keeps its TFLite name but takes TF's layout, the one the runtime reads:
    CONV_2D's [O, H, W, I] becomes HWIO (grouped when I < input channels), the depthwise
    [1, H, W, I*M] becomes HWIM [H, W, I, M] (the same bytes)."""
    from gxnpuc.ops.activation import emit_fused

    x, w_name = fn.inputs[0], fn.inputs[1]
    b_name = fn.inputs[2] if len(fn.inputs) > 2 else ""
    w, shape = ctx.const(w_name), ctx.shape(x)
    if w is None or (b_name and ctx.const(b_name) is None):
        return ctx.reject(f"{fn.op_type} filter and bias must be constant")
    if len(shape) != 4 or w.ndim != 4:
        return ctx.reject(f"input {list(shape)} / filter {list(w.shape)} are not 4-D")
    depthwise, c_in = fn.op_type == "DEPTHWISE_CONV_2D", int(shape[3])
    if depthwise and (w.shape[0] != 1 or w.shape[3] % c_in):
        return ctx.reject(f"depthwise filter {list(w.shape)} for {c_in} input channels")
    w_name = tflite_weight_layout(ctx, w_name, "HWIM" if depthwise else "HWIO", c_in)
    kernel = [int(k) for k in ctx.shape(w_name)[:2]]
    strides = [int(fn.attrs.get("stride_h", 1)), int(fn.attrs.get("stride_w", 1))]
    dilations = [int(fn.attrs.get("dilation_hfactor", 1)), int(fn.attrs.get("dilation_wfactor", 1))]
    group = c_in if depthwise else max(c_in // max(int(w.shape[3]), 1), 1)
    attrs = conv_attrs_from_same_padding("NHWC", "HWIM" if depthwise else "HWIO", shape[1:3], kernel,
                                         strides, dilations, str(fn.attrs.get("padding", "VALID")), group)
    return emit_fused(ctx, fn, "conv", [x, w_name] + ([b_name] if b_name else []), attrs)


def tflite_weight_layout(ctx, name: str, fmt: str, c_in: int) -> str:
    """The TFLite conv weight `name` rearranged in place into `fmt` (HWIO from [O, H, W, I],
    HWIM from [1, H, W, I*M]), once: a weight two convs share is converted for the first."""
    from gxnpuc.ir import Tensor

    real = ctx.resolve(name)
    done = ctx.graph.meta.setdefault("tflite_layouts", {})
    if done.get(real) == fmt:
        return real
    w = ctx.const(real)
    value = np.ascontiguousarray(np.transpose(w, (1, 2, 3, 0)) if fmt == "HWIO" else
                                 w.reshape(*w.shape[1:3], c_in, w.shape[3] // c_in))
    ctx.graph.tensors[real] = Tensor(real, tuple(value.shape), value.dtype.name, value)
    done[real] = fmt
    return real
