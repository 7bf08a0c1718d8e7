"""Transposed convolution (ONNX ConvTranspose, TF Conv2DBackpropInput / Keras Conv2DTranspose)
lowered to existing NPU ops: zeros inserted between the input pixels (`reshape` + `pad` +
`reshape` per strided axis), then a stride-1 `conv` with the kernel flipped and its in/out
channels swapped, whose pads place the output window (a `slice` crops where pads would be
negative). No new NPU op; the conv weight is the framework's kernel rearranged, named
`<kernel>/conv`. The conv then runs over the zero-inserted input (stride^2 more MACs than a
native transposed convolution would need).
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import emit_checked, onnx_lowering, tf_lowering, tflite_lowering
from gxnpuc.ops.conv import auto_pads, tf_spatial
from gxnpuc.ops.shape_ops import emit_reshape

_EMITS = ("conv", "pad", "reshape", "slice")


def _zero_insert(ctx, x: str, axis: int, stride: int) -> str:
    """x with stride - 1 zeros after every element along axis (the trailing ones included)."""
    shape = list(ctx.shape(x))
    y = emit_reshape(ctx, x, shape[:axis + 1] + [1] + shape[axis + 1:])
    pads = [0] * (2 * (len(shape) + 1))
    pads[len(shape) + 1 + axis + 1] = stride - 1
    y = ctx.emit("pad", [y], None, {"pads": pads, "mode": "constant", "value": 0.0})[0]
    return emit_reshape(ctx, y, shape[:axis] + [shape[axis] * stride] + shape[axis + 1:])


def emit_conv_transpose(ctx, x: str, w_conv: str, bias: str | None, conv_attrs: dict,
                        strides, pads_begin, out_sizes, outputs) -> list[str] | None:
    """The transposed convolution of x by a stride-1 conv weight w_conv (already flipped and
    channel-swapped, in conv_attrs' w_format). pads_begin / out_sizes per spatial dim: the
    framework's output window on the full transposed output."""
    first = conv_attrs["data_format"].startswith("NC")
    rank = len(ctx.shape(x))
    axes = list(range(2, rank)) if first else list(range(1, rank - 1))
    kernel = ctx.shape(w_conv)[2:] if conv_attrs["w_format"].startswith("OI") else ctx.shape(w_conv)[:-2]
    y, begin, end, crop = x, [], [], False
    for i, ax in enumerate(axes):
        n = ctx.shape(x)[ax]
        if strides[i] > 1:
            y = _zero_insert(ctx, y, ax, strides[i])
        reach = conv_attrs["dilations"][i] * (int(kernel[i]) - 1)
        b, e = reach - int(pads_begin[i]), int(out_sizes[i]) - n * strides[i] + int(pads_begin[i])
        begin.append(b)
        end.append(e)
        crop = crop or b < 0 or e < 0
    attrs = {**conv_attrs, "strides": [1] * len(axes),
             "pads": [max(p, 0) for p in begin] + [max(p, 0) for p in end]}
    ins = [y, w_conv] + ([bias] if bias else [])
    if not crop:
        return emit_checked(ctx, "conv", ins, outputs, attrs)
    z = emit_checked(ctx, "conv", ins, None, attrs)
    if z is None:
        return None
    shape = list(ctx.shape(z[0]))
    cut = {"starts": [0] * rank, "ends": list(shape), "steps": [1] * rank}
    for i, ax in enumerate(axes):
        cut["starts"][ax] = max(-begin[i], 0)
        cut["ends"][ax] = shape[ax] - max(-end[i], 0)
    return ctx.emit("slice", z, outputs, cut)


def _derived(ctx, name: str, value: np.ndarray) -> str:
    return ctx.add_const(ctx.fresh(f"{ctx.resolve(name)}/conv"), np.ascontiguousarray(value))


# -- ONNX ----------------------------------------------------------------------------------
@onnx_lowering("ConvTranspose", emits=_EMITS)
def _onnx_conv_transpose(ctx, fn):
    x, w_name = fn.inputs[0], fn.inputs[1]
    b_name = fn.inputs[2] if len(fn.inputs) > 2 and fn.inputs[2] else ""
    w, shape, a = ctx.const(w_name), ctx.shape(x), fn.attrs
    if w is None or (b_name and ctx.const(b_name) is None):
        return ctx.reject("ConvTranspose weight and bias must be constant")
    r = len(shape) - 2
    if r not in (1, 2) or w.ndim != r + 2:
        return ctx.reject(f"only 1-D and 2-D transposed convolution (input {list(shape)})")
    group, kernel = int(a.get("group", 1)), [int(k) for k in w.shape[2:]]
    strides = [int(s) for s in a.get("strides", [1] * r)]
    dil = [int(d) for d in a.get("dilations", [1] * r)]
    extra = [int(p) for p in a.get("output_padding", [0] * r)]
    full = [(n - 1) * s + (k - 1) * d + 1 + o for n, s, k, d, o in zip(shape[2:], strides, kernel, dil, extra)]
    mode = a.get("auto_pad", "NOTSET") or "NOTSET"
    if "output_shape" in a or mode in ("SAME_UPPER", "SAME_LOWER"):
        out = [int(v) for v in a["output_shape"][-r:]] if "output_shape" in a else \
            [n * s for n, s in zip(shape[2:], strides)]
        total = [f - o for f, o in zip(full, out)]
        begin = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in total]  # as onnxruntime
    else:
        pads = [0] * (2 * r) if mode == "VALID" else [int(p) for p in a.get("pads", [0] * (2 * r))]
        begin, out = pads[:r], [f - p - q for f, p, q in zip(full, pads[:r], pads[r:])]
    c_in, per = w.shape[0], w.shape[1]  # [C_in, C_out/group, k...] -> OI..: [C_out, C_in/group, k...]
    wg = w.reshape(group, c_in // group, per, *kernel).swapaxes(1, 2)
    flip = tuple(range(3, 3 + r))
    w_conv = _derived(ctx, w_name, np.flip(wg, flip).reshape(group * per, c_in // group, *kernel))
    attrs = {"data_format": "NCHW" if r == 2 else "NCW", "w_format": "OIHW" if r == 2 else "OIW",
             "dilations": dil, "group": group}
    return emit_conv_transpose(ctx, x, w_conv, b_name or None, attrs, strides, begin, out, fn.outputs[:1])


# -- TensorFlow ----------------------------------------------------------------------------
@tf_lowering("Conv2DBackpropInput", emits=_EMITS)
def _tf_conv2d_backprop_input(ctx, fn):
    """Keras Conv2DTranspose: Conv2DBackpropInput(input_sizes, filter [kh, kw, out, in], dy)."""
    sizes, w_name, x = fn.inputs[:3]
    sizes_v, w, fmt = ctx.const(sizes), ctx.const(w_name), fn.attrs.get("data_format", "NHWC")
    if sizes_v is None or w is None:
        return ctx.reject("Conv2DBackpropInput output size and filter must be constant")
    first = fmt.startswith("NC")
    out = [int(v) for v in (sizes_v[2:] if first else sizes_v[1:3])]
    strides = tf_spatial(fn.attrs.get("strides", [1, 1, 1, 1]), fmt)
    dil = tf_spatial(fn.attrs.get("dilations", [1, 1, 1, 1]), fmt)
    kernel = [int(k) for k in w.shape[:2]]
    padding = fn.attrs.get("padding", "VALID")
    if padding == "EXPLICIT":
        flat = [int(p) for p in fn.attrs.get("explicit_paddings", [])] or [0] * 8
        begin = tf_spatial(flat[0::2], fmt)
    elif padding in ("SAME", "VALID"):
        begin = auto_pads(padding, out, kernel, strides, dil)[:2]  # the forward conv's pads
    else:
        return ctx.reject(f"padding {padding!r} (SAME, VALID, EXPLICIT)")
    w_conv = _derived(ctx, w_name, np.flip(w, (0, 1)).swapaxes(2, 3))  # HWIO of the stride-1 conv
    attrs = {"data_format": fmt, "w_format": "HWIO", "dilations": dil, "group": 1}
    return emit_conv_transpose(ctx, x, w_conv, None, attrs, strides, begin, out, fn.outputs[:1])


# -- TensorFlow Lite -------------------------------------------------------------------------
_PADDINGS = {1: "SAME", 2: "VALID"}  # TfLitePadding in MediaPipe's custom options


@tflite_lowering("TRANSPOSE_CONV", emits=_EMITS + ("act",))
def _tflite_transpose_conv(ctx, fn):
    """TRANSPOSE_CONV(output_shape, weights [O, H, W, I], input NHWC[, bias]): the output
    size is the converter's output_shape input; SAME/VALID pads as Conv2DBackpropInput's."""
    sizes, w_name, x = fn.inputs[:3]
    bias = fn.inputs[3] if len(fn.inputs) > 3 and fn.inputs[3] else ""
    out = ctx.const(sizes)
    if out is None:
        return ctx.reject("TRANSPOSE_CONV output_shape must be constant")
    strides = [int(fn.attrs.get("stride_h", 1)), int(fn.attrs.get("stride_w", 1))]
    return _tflite_deconv(ctx, fn, x, w_name, bias, [int(v) for v in np.ravel(out)[1:3]], strides,
                          str(fn.attrs.get("padding", "VALID")))


@tflite_lowering("Convolution2DTransposeBias", emits=_EMITS)
def _mediapipe_transpose_conv(ctx, fn):
    """MediaPipe's custom op (input, weights [O, H, W, I], bias); its custom options are the
    raw TfLiteTransposeConvParams (padding, stride_w, stride_h as int32). The output is
    input * stride (SAME) or (input - 1) * stride + kernel (VALID)."""
    raw = bytes(fn.attrs.get("custom_options") or b"")
    if len(raw) < 12 or len(fn.inputs) < 3:
        return ctx.reject("Convolution2DTransposeBias needs (input, weights, bias) and 12 bytes of "
                          "options (padding, stride_w, stride_h)")
    pad_code, stride_w, stride_h = (int(v) for v in np.frombuffer(raw[:12], "<i4"))
    if pad_code not in _PADDINGS or min(stride_w, stride_h) < 1:
        return ctx.reject(f"options padding {pad_code}, strides {stride_h}x{stride_w} (SAME or VALID, "
                          "strides >= 1)")
    x, w_name, bias = fn.inputs[:3]
    w = ctx.const(w_name)
    if w is None or w.ndim != 4 or len(ctx.shape(x)) != 4:
        return ctx.reject("Convolution2DTransposeBias needs a constant 4-D weight and a 4-D input")
    strides, padding = [stride_h, stride_w], _PADDINGS[pad_code]
    out = [n * s if padding == "SAME" else (n - 1) * s + int(k)
           for n, s, k in zip(ctx.shape(x)[1:3], strides, w.shape[1:3])]
    return _tflite_deconv(ctx, fn, x, w_name, bias, out, strides, padding)


def _tflite_deconv(ctx, fn, x, w_name, bias, out, strides, padding):
    from gxnpuc.ops.activation import FUSED

    w = ctx.const(w_name)
    if w is None or (bias and ctx.const(bias) is None):
        return ctx.reject(f"{fn.op_type} weights and bias must be constant")
    if w.ndim != 4 or len(ctx.shape(x)) != 4 or w.shape[3] != ctx.shape(x)[3]:
        return ctx.reject(f"weights {list(w.shape)} for input {list(ctx.shape(x))} (4-D, [O, H, W, I])")
    if padding not in ("SAME", "VALID"):
        return ctx.reject(f"padding {padding!r} (SAME, VALID)")
    act = str(fn.attrs.get("fused_activation_function", "NONE"))
    if act not in FUSED:
        return ctx.reject(f"fused activation {act} ({', '.join(FUSED)})")
    kernel = [int(k) for k in w.shape[1:3]]
    begin = auto_pads(padding, out, kernel, strides, [1, 1])[:2]  # the forward conv's pads
    # [O, H, W, I] -> the stride-1 conv's HWIO [H, W, I, O], flipped
    w_conv = _derived(ctx, w_name, np.flip(np.transpose(w, (1, 2, 3, 0)), (0, 1)))
    attrs = {"data_format": "NHWC", "w_format": "HWIO", "dilations": [1, 1], "group": 1}
    y = emit_conv_transpose(ctx, x, w_conv, bias or None, attrs, strides, begin, out,
                            fn.outputs[:1] if FUSED[act] is None else None)
    if y and FUSED[act] is not None:
        ctx.emit("act", y, fn.outputs[:1], FUSED[act])
    return None
