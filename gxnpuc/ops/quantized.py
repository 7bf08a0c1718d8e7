"""ONNX quantised graphs as onnxruntime.quantization writes them, computed in float (fp16 on
the NPU), as the TFLite full-int8 path does (frontend/tflite.py):

- weights: a constant that DequantizeLinear reads (QDQ), or the integer weight of
  QLinearConv / QLinearMatMul (QOperator), is dequantised at compile time,
  real = scale * (q - zero_point) (per axis where the model says so), then compressed as usual;
  MatMulInteger / ConvInteger (quantize_dynamic) weights become (q - zero_point), and the
  scale the graph multiplies by afterwards is folded into them (passes/integer_scale.py);
- activations: a quantised activation tensor carries its real value. QuantizeLinear of a
  run-time tensor keeps only the saturation, a clip to the representable range
  [scale*(qmin - zp), scale*(qmax - zp)] (quantize_static drops the Relu it makes redundant),
  and DequantizeLinear of it is the identity; the rounding to the quantisation step is not
  done, so values differ from onnxruntime's by at most half a step per Q->DQ pair.
  DynamicQuantizeLinear passes x through with scale 1 and zero point 0, so the graph's own
  `int32 result * x_scale * w_scale` arithmetic gives the real product.
The summary notes each of these.
"""
from __future__ import annotations


import numpy as np

from gxnpuc.ops.base import ALIAS, ONNX_LOWERINGS, SubNode, onnx_lowering
from gxnpuc.ops.shape_ops import ONNX_DTYPES

_QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767)}
_NOTE_ACT = ("quantised activations computed in float (fp16 on the NPU): each QuantizeLinear "
             "keeps its saturation (a clip to the representable range) but not its rounding, so "
             "values may differ from onnxruntime's by up to half a quantisation step per tensor")
_NOTE_WEIGHTS = "quantised (int8) weights dequantised to float; the compiler compresses them from there"
INTEGER_WEIGHTS = "integer_weights"  # graph.meta: weights of MatMulInteger/ConvInteger, scale folded later




def _note(ctx, text: str) -> None:
    notes = ctx.graph.meta["notes"]
    if text not in notes:
        notes.append(text)


def _params(ctx, fn, si: int, zi: int):
    """(scale as float64, zero point or None when absent) from constant inputs si / zi, or
    None after a rejection."""
    scale = ctx.const(fn.inputs[si]) if len(fn.inputs) > si and fn.inputs[si] else None
    has_zp = len(fn.inputs) > zi and fn.inputs[zi]
    zp = ctx.const(fn.inputs[zi]) if has_zp else None
    if scale is None or (has_zp and zp is None):
        ctx.reject("quantisation scale and zero point must be constant")
        return None
    if int(fn.attrs.get("block_size", 0) or 0):
        ctx.reject("blocked quantisation (block_size) is not supported; per-tensor or per-axis only")
        return None
    return np.asarray(scale, np.float64), (np.asarray(zp) if zp is not None else None)


def _along(v: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """A per-axis parameter [C] shaped to broadcast along `axis` of a rank-`rank` tensor."""
    if v.ndim != 1 or v.size == 1 or rank == 0:
        return v.reshape(()) if v.size == 1 else v
    shape = [1] * rank
    shape[axis % rank] = v.size
    return v.reshape(shape)


def dequantize(q: np.ndarray, scale, zp, axis: int = 1) -> np.ndarray:
    """scale * (q - zero_point) in float64 -> float32, per axis when scale is a vector."""
    q = np.asarray(q)
    z = np.zeros(1) if zp is None else np.asarray(zp, np.float64)
    s = _along(np.asarray(scale, np.float64).reshape(-1), axis, q.ndim)
    return (s * (q.astype(np.float64) - _along(z.reshape(-1), axis, q.ndim))).astype(np.float32)


def _qtype(fn, zp) -> str:
    """The quantised type: the zero point's, else QuantizeLinear-21's output_dtype, else uint8."""
    if zp is not None:
        return zp.dtype.name
    return ONNX_DTYPES.get(int(fn.attrs.get("output_dtype", 0) or 0), "uint8") if fn is not None else "uint8"


def _clip_to(ctx, x: str, scale, zp, outputs, fn=None) -> str | None:
    """The saturation of a quantisation to (scale, zp): a clip to its real range."""
    dtype = _qtype(fn, zp)
    if dtype not in _QRANGE or np.size(scale) != 1:
        ctx.reject(f"activation quantisation to {dtype} with {np.size(scale)} scales "
                   "(per-tensor int8/uint8/int16/uint16 only)")
        return None
    z = float(np.ravel(zp)[0]) if zp is not None else 0.0
    s = float(np.ravel(scale)[0])
    lo, hi = ((q - z) * s for q in _QRANGE[dtype])
    _note(ctx, _NOTE_ACT)
    return ctx.emit("act", [x], outputs, {"fn": "clip", "min": float(lo), "max": float(hi)})[0]


# -- QDQ -------------------------------------------------------------------------------------------
@onnx_lowering("QuantizeLinear", emits=("act",))
def _onnx_quantize(ctx, fn):
    p = _params(ctx, fn, 1, 2)
    if p is None:
        return None
    scale, zp = p
    x = ctx.const(fn.inputs[0])
    if x is None:
        _clip_to(ctx, fn.inputs[0], scale, zp, fn.outputs[:1], fn)
        return None
    dtype = _qtype(fn, zp)
    if dtype not in _QRANGE:
        return ctx.reject(f"quantisation to {dtype} (int8, uint8, int16, uint16)")
    axis = int(fn.attrs.get("axis", 1))
    s = _along(scale.reshape(-1), axis, np.ndim(x))
    z = _along(np.zeros(1) if zp is None else zp.astype(np.float64).reshape(-1), axis, np.ndim(x))
    q = np.clip(np.rint(np.asarray(x, np.float64) / s) + z, *_QRANGE[dtype]).astype(dtype)
    ctx.add_const(fn.outputs[0], q)
    return None


@onnx_lowering("DequantizeLinear", emits=ALIAS)
def _onnx_dequantize(ctx, fn):
    p = _params(ctx, fn, 1, 2)
    if p is None:
        return None
    q = ctx.const(fn.inputs[0])
    if q is None:
        if ctx.tensor(fn.inputs[0]).dtype not in ("float32", "float16"):
            return ctx.reject(f"a {ctx.tensor(fn.inputs[0]).dtype} model input dequantised at run time; "
                              "give the model a float input (the compiled model takes fp16)")
        return ctx.set_alias(fn.outputs[0], fn.inputs[0])  # the activation already holds its real value
    ctx.add_const(fn.outputs[0], dequantize(q, *p, int(fn.attrs.get("axis", 1))))
    if np.size(q) > 1 and np.asarray(q).dtype.kind in "iu":
        _note(ctx, _NOTE_WEIGHTS)
    return None


# -- dynamic quantisation (quantize_dynamic) ------------------------------------------------------
@onnx_lowering("DynamicQuantizeLinear", emits=ALIAS)
def _onnx_dynamic_quantize(ctx, fn):
    ctx.set_alias(fn.outputs[0], fn.inputs[0])
    if len(fn.outputs) > 1 and fn.outputs[1]:
        ctx.add_const(fn.outputs[1], np.float32(1.0))
    if len(fn.outputs) > 2 and fn.outputs[2]:
        ctx.add_const(fn.outputs[2], np.uint8(0))
    ctx.__dict__.setdefault("dynamic_quantized", set()).add(ctx.resolve(fn.inputs[0]))
    _note(ctx, "dynamically quantised activations (DynamicQuantizeLinear) computed in float")


def _integer_weight(ctx, fn, wi: int, zi: int, axis: int) -> str | None:
    """(q - zero_point) of the constant integer weight input wi, as a float constant."""
    x, q = fn.inputs[0], ctx.const(fn.inputs[wi])
    if ctx.resolve(x) not in ctx.__dict__.get("dynamic_quantized", set()) or ctx.const(x) is not None:
        ctx.reject(f"{fn.op_type} whose input is not a DynamicQuantizeLinear output (the pattern "
                   "quantize_dynamic writes)")
        return None
    zp = ctx.const(fn.inputs[zi]) if len(fn.inputs) > zi and fn.inputs[zi] else None
    if q is None or (len(fn.inputs) > zi and fn.inputs[zi] and zp is None):
        ctx.reject(f"{fn.op_type} weight and its zero point must be constant")
        return None
    name = ctx.add_const(ctx.fresh(f"{fn.inputs[wi]}_dequantized"), dequantize(q, np.float64(1.0), zp, axis))
    ctx.graph.meta.setdefault(INTEGER_WEIGHTS, []).append(name)
    _note(ctx, _NOTE_WEIGHTS)
    return name


@onnx_lowering("MatMulInteger", emits=("fc", "matmul"))
def _onnx_matmul_integer(ctx, fn):
    w = _integer_weight(ctx, fn, 1, 3, -1)
    if w is not None:
        ONNX_LOWERINGS["MatMul"](ctx, SubNode(fn.name, "MatMul", [fn.inputs[0], w], fn.outputs[:1]))


@onnx_lowering("ConvInteger", emits=("conv",))
def _onnx_conv_integer(ctx, fn):
    w = _integer_weight(ctx, fn, 1, 3, 0)
    if w is not None:
        ONNX_LOWERINGS["Conv"](ctx, SubNode(fn.name, "Conv", [fn.inputs[0], w], fn.outputs[:1], dict(fn.attrs)))


# -- QOperator (quantize_static with QuantFormat.QOperator) ---------------------------------------
def _real_weight(ctx, fn, wi: int, axis: int) -> str | None:
    q, p = ctx.const(fn.inputs[wi]), _params(ctx, fn, wi + 1, wi + 2)
    if p is None:
        return None
    if q is None:
        ctx.reject(f"{fn.op_type} weight must be constant")
        return None
    _note(ctx, _NOTE_WEIGHTS)
    scale, zp = p
    return ctx.add_const(ctx.fresh(f"{fn.inputs[wi]}_dequantized"), dequantize(q, scale, zp, axis))


@onnx_lowering("QLinearConv", emits=("conv", "act"))
def _onnx_qlinear_conv(ctx, fn):
    w, x_p, y_p = _real_weight(ctx, fn, 3, 0), _params(ctx, fn, 1, 2), _params(ctx, fn, 6, 7)
    if w is None or x_p is None or y_p is None:
        return None
    ins = [fn.inputs[0], w]
    if len(fn.inputs) > 8 and fn.inputs[8]:
        b = ctx.const(fn.inputs[8])
        if b is None:
            return ctx.reject("QLinearConv bias must be constant")
        w_scale = np.asarray(ctx.const(fn.inputs[4]), np.float64).reshape(-1)
        real_b = (np.asarray(b, np.float64) * float(np.ravel(x_p[0])[0]) * w_scale).astype(np.float32)
        ins.append(ctx.add_const(ctx.fresh(f"{fn.inputs[8]}_dequantized"), real_b))
    y = ctx.fresh(fn.outputs[0] + "/float")
    ONNX_LOWERINGS["Conv"](ctx, SubNode(fn.name, "Conv", ins, [y], dict(fn.attrs)))
    if ctx.has(y):
        _clip_to(ctx, y, *y_p, fn.outputs[:1])
    return None


@onnx_lowering("QLinearMatMul", emits=("fc", "matmul", "act"))
def _onnx_qlinear_matmul(ctx, fn):
    w, y_p = _real_weight(ctx, fn, 3, -1), _params(ctx, fn, 6, 7)
    if w is None or y_p is None:
        return None
    y = ctx.fresh(fn.outputs[0] + "/float")
    ONNX_LOWERINGS["MatMul"](ctx, SubNode(fn.name, "MatMul", [fn.inputs[0], w], [y]))
    if ctx.has(y):
        _clip_to(ctx, y, *y_p, fn.outputs[:1])
    return None


@onnx_lowering("com.microsoft.QLinearAdd", "com.microsoft.QLinearMul", emits=("binary", "act"))
def _onnx_qlinear_binary(ctx, fn):
    """(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp): B may be a quantised constant."""
    b, y_p = fn.inputs[3], _params(ctx, fn, 6, 7)
    b_p = _params(ctx, fn, 4, 5)
    if y_p is None or b_p is None:
        return None
    if ctx.const(b) is not None:
        b = ctx.add_const(ctx.fresh(f"{b}_dequantized"), dequantize(ctx.const(b), *b_p, -1))
    y = ctx.fresh(fn.outputs[0] + "/float")
    op = "Add" if fn.op_type.endswith("Add") else "Mul"
    ONNX_LOWERINGS[op](ctx, SubNode(fn.name, op, [fn.inputs[0], b], [y]))
    if ctx.has(y):
        _clip_to(ctx, y, *y_p, fn.outputs[:1])
    return None


_UNARY = {"com.microsoft.QLinearSigmoid": "Sigmoid", "com.microsoft.QLinearLeakyRelu": "LeakyRelu",
          "com.microsoft.QLinearAveragePool": "AveragePool",
          "com.microsoft.QLinearGlobalAveragePool": "GlobalAveragePool"}


@onnx_lowering(*_UNARY, emits=("act", "pool"))
def _onnx_qlinear_unary(ctx, fn):
    """(X, X_scale, X_zp, Y_scale, Y_zp): the float op on the real value, clipped to Y's range."""
    y_p = _params(ctx, fn, 3, 4)
    if y_p is None:
        return None
    if int(fn.attrs.get("channels_last", 0) or 0):
        return ctx.reject("channels_last=1 (NHWC) quantised pooling")
    attrs = {k: v for k, v in fn.attrs.items() if k != "channels_last"}
    y = ctx.fresh(fn.outputs[0] + "/float")
    ONNX_LOWERINGS[_UNARY[fn.op_type]](ctx, SubNode(fn.name, _UNARY[fn.op_type], fn.inputs[:1], [y], attrs))
    if ctx.has(y):
        _clip_to(ctx, y, *y_p, fn.outputs[:1])
    return None


@onnx_lowering("com.microsoft.QLinearConcat", emits=("concat", "act"))
def _onnx_qlinear_concat(ctx, fn):
    """(Y_scale, Y_zp, then (X, X_scale, X_zp) per input), attr axis."""
    y_p = _params(ctx, fn, 0, 1)
    if y_p is None:
        return None
    y = ctx.fresh(fn.outputs[0] + "/float")
    ONNX_LOWERINGS["Concat"](ctx, SubNode(fn.name, "Concat", fn.inputs[2::3], [y], dict(fn.attrs)))
    if ctx.has(y):
        _clip_to(ctx, y, *y_p, fn.outputs[:1])
    return None
