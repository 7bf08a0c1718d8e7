"""Element-wise activations: one IR op `act` whose attr `fn` picks the function.

The NPU runs these in its activation unit; a few take parameters (alpha, beta, min, max).
"""
from __future__ import annotations

import math

import numpy as np

from gxnpuc import devmath as dm
from gxnpuc.ops.base import ALIAS, OpDef, batch_per_sample, is_f16, onnx_lowering, register, tflite_lowering

# fn name -> kernel(x, attrs). Each is exactly the framework's definition in float32.
FUNCS = {
    "relu": lambda x, a: _relu(x),
    "leaky_relu": lambda x, a: np.where(x >= 0, x, x * np.float32(a.get("alpha", 0.01))),
    "clip": lambda x, a: np.clip(x, np.float32(a.get("min", -np.inf)), np.float32(a.get("max", np.inf))),
    "sigmoid": lambda x, a: 1 / (1 + np.exp(-x)),
    "tanh": lambda x, a: np.tanh(x),
    "hard_sigmoid": lambda x, a: np.clip(x * np.float32(a.get("alpha", 0.2)) + np.float32(a.get("beta", 0.5)), 0, 1),
    "hard_swish": lambda x, a: x * np.clip(x / 6 + np.float32(0.5), 0, 1),
    "elu": lambda x, a: np.where(x > 0, x, np.float32(a.get("alpha", 1.0)) * np.expm1(np.minimum(x, 0))),
    "selu": lambda x, a: np.float32(a.get("gamma", 1.0507009873554804934193349852946)) * np.where(
        x > 0, x, np.float32(a.get("alpha", 1.6732632423543772848170429916717)) * np.expm1(np.minimum(x, 0))),
    "abs": lambda x, a: np.abs(x),
    "neg": lambda x, a: -x,
    "sqrt": lambda x, a: np.sqrt(x),
    "rsqrt": lambda x, a: 1 / np.sqrt(x),
    "reciprocal": lambda x, a: 1 / x,
    "exp": lambda x, a: np.exp(x),
    "log": lambda x, a: np.log(x),
    "square": lambda x, a: x * x,
    "pow": lambda x, a: np.power(x, np.float32(a["exponent"])),
    "erf": lambda x, a: _erf(x, math.erf),
    "erfc": lambda x, a: _erf(x, math.erfc),
    "gelu": lambda x, a: _gelu(x, a.get("approximate", "none")),
    "silu": lambda x, a: x / (1 + np.exp(-np.float32(a.get("alpha", 1.0)) * x)),
    "softplus": lambda x, a: np.logaddexp(np.zeros((), x.dtype), x),
    "softsign": lambda x, a: x / (1 + np.abs(x)),
    "mish": lambda x, a: x * np.tanh(np.logaddexp(np.zeros((), x.dtype), x)),
}

# npu mode (OpDef.run_npu): the device's fp32 algorithms of gxnpuc/devmath.py (= runtime/gx_math.h);
# every other fn is one float32 operation per element (or a comparison), so FUNCS is exact
NPU_FUNCS = {
    "sigmoid": lambda x, a: dm.sigmoid(x),
    "tanh": lambda x, a: dm.tanh(x),
    "hard_sigmoid": lambda x, a: dm.hard_sigmoid(x, a.get("alpha", 0.2), a.get("beta", 0.5)),
    "hard_swish": lambda x, a: dm.hard_swish(x),
    "elu": lambda x, a: dm.elu(x, a.get("alpha", 1.0)),
    "selu": lambda x, a: dm.selu(x, a.get("alpha", 1.6732632423543772848170429916717),
                                 a.get("gamma", 1.0507009873554804934193349852946)),
    "sqrt": lambda x, a: dm.sqrt(x),
    "rsqrt": lambda x, a: dm.rsqrt(x),
    "exp": lambda x, a: dm.exp(x),
    "log": lambda x, a: dm.log(x),
    "pow": lambda x, a: dm.power(x, a["exponent"]),
    "erf": lambda x, a: dm.erf(x),
    "erfc": lambda x, a: dm.erfc(x),
    "gelu": lambda x, a: dm.gelu_tanh(x) if a.get("approximate", "none") == "tanh" else dm.gelu(x),
    "silu": lambda x, a: dm.silu(x, a.get("alpha", 1.0)),
    "softplus": lambda x, a: dm.softplus(x),
    "softsign": lambda x, a: dm.softsign(x),
    "mish": lambda x, a: dm.mish(x),
}


_RELU_BLOCK = 2048


def _relu(x: np.ndarray) -> np.ndarray:
    """np.maximum(x, 0), bit for bit; on large tensors against a block of zeros, because numpy
    vectorises maximum of two arrays but not of an array and a scalar (3x faster)."""
    x = np.asarray(x)
    if x.size < 2 * _RELU_BLOCK or x.dtype != np.float32 or not x.flags.c_contiguous:
        return np.maximum(x, 0)
    zeros, out = np.zeros(_RELU_BLOCK, x.dtype), np.empty_like(x)
    flat, dst = x.reshape(-1), out.reshape(-1)
    cut = flat.size - flat.size % _RELU_BLOCK
    np.maximum(flat[:cut].reshape(-1, _RELU_BLOCK), zeros, out=dst[:cut].reshape(-1, _RELU_BLOCK))
    np.maximum(flat[cut:], zeros[:flat.size - cut], out=dst[cut:])
    return out


def _erf(x: np.ndarray, fn) -> np.ndarray:
    """erf/erfc element-wise in float64 (numpy has no erf), returned in x's dtype."""
    return np.vectorize(fn, otypes=[np.float64])(x).astype(x.dtype, copy=False)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    """GELU as ONNX Gelu / torch: exact x*Phi(x), or the tanh approximation."""
    if approximate == "tanh":
        c = np.asarray(np.sqrt(2 / np.pi), x.dtype)
        return 0.5 * x * (1 + np.tanh(c * (x + np.asarray(0.044715, x.dtype) * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.asarray(np.sqrt(2), x.dtype), math.erf))


@register
class Act(OpDef):
    name = "act"
    ir_inputs = "x"
    ir_attrs = ("`fn` (see ops/activation.py; incl. erf, erfc, gelu with `approximate` none|tanh, silu, "
                "softplus, softsign, mish) + its params")
    sink, sink_inputs = "elementwise", (0,)
    category = "activation"
    summary = "element-wise activation: " + ", ".join(FUNCS)
    constraints = ("`fn` one of the listed functions", "Pow only with a constant scalar exponent")

    def infer(self, node, in_shapes):
        return [in_shapes[0]]

    def run(self, node, xs):
        x = np.asarray(xs[0])
        with np.errstate(all="ignore"):
            return [FUNCS[node.attrs["fn"]](x, node.attrs).astype(x.dtype, copy=False)]

    def run_npu(self, node, xs):
        fn = NPU_FUNCS.get(node.attrs["fn"])
        if fn is None:
            return self.run(node, xs)
        return [fn(np.asarray(xs[0], np.float32), node.attrs)]

    def batch(self, node, shapes, flags):
        return batch_per_sample(node, shapes, flags)

    def keeps_f16(self, node):
        a = node.attrs
        if a.get("fn") == "clip":  # ReLU6 & co: x or a bound
            return is_f16(a.get("min", -np.inf)) and is_f16(a.get("max", np.inf))
        return a.get("fn") == "relu"


@register
class Identity(OpDef):
    name = "identity"
    ir_inputs = "x"
    ir_attrs = "— (only where an output would alias an input)"
    category = "data"
    summary = "copy (kept only where a graph output would otherwise alias an input)"

    def infer(self, node, in_shapes):
        return [in_shapes[0]]

    def run(self, node, xs):
        return [np.array(xs[0], copy=True)]

    def flops(self, node, in_shapes, out_shapes):
        return 0

    def batch(self, node, shapes, flags):
        return batch_per_sample(node, shapes, flags)

    def keeps_f16(self, node):
        return True  # only moves input values


_ONNX_SIMPLE = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Abs": "abs", "Neg": "neg",
                "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Exp": "exp", "Log": "log",
                "HardSwish": "hard_swish", "Elu": "elu", "Selu": "selu", "Erf": "erf",
                "Softplus": "softplus", "Softsign": "softsign", "Mish": "mish"}


@onnx_lowering(*_ONNX_SIMPLE, emits=("act",))
def _onnx_simple(ctx, fn):
    attrs = {"fn": _ONNX_SIMPLE[fn.op_type]}
    if fn.op_type == "Elu":
        attrs["alpha"] = fn.attrs.get("alpha", 1.0)
    if fn.op_type == "Selu":  # ONNX lets a model override both constants
        attrs.update({k: float(fn.attrs[k]) for k in ("alpha", "gamma") if k in fn.attrs})
    ctx.emit("act", fn.inputs[:1], fn.outputs, attrs)


@onnx_lowering("Gelu", emits=("act",))
def _onnx_gelu(ctx, fn):
    """ONNX Gelu (opset 20): exact, or approximate="tanh"."""
    approx = str(fn.attrs.get("approximate", "none"))
    if approx not in ("none", "tanh"):
        return ctx.reject(f"Gelu approximate={approx!r} (none, tanh)")
    ctx.emit("act", fn.inputs[:1], fn.outputs, {"fn": "gelu", "approximate": approx})


@onnx_lowering("Swish", emits=("act",))
def _onnx_swish(ctx, fn):
    """ONNX Swish (opset 24): x * sigmoid(alpha * x), SiLU when alpha = 1."""
    ctx.emit("act", fn.inputs[:1], fn.outputs, {"fn": "silu", "alpha": float(fn.attrs.get("alpha", 1.0))})


@onnx_lowering("LeakyRelu", emits=("act",))
def _onnx_leaky(ctx, fn):
    ctx.emit("act", fn.inputs[:1], fn.outputs, {"fn": "leaky_relu", "alpha": fn.attrs.get("alpha", 0.01)})


@onnx_lowering("HardSigmoid", emits=("act",))
def _onnx_hard_sigmoid(ctx, fn):
    ctx.emit("act", fn.inputs[:1], fn.outputs,
             {"fn": "hard_sigmoid", "alpha": fn.attrs.get("alpha", 0.2), "beta": fn.attrs.get("beta", 0.5)})


@onnx_lowering("Clip", emits=("act", "binary"))
def _onnx_clip(ctx, fn):
    """Constant bounds: the activation unit's clip. A bound computed at run time (a log-mel
    front end's max(x) - 80 dB) becomes an element-wise max / min with that tensor."""
    lo = fn.attrs.get("min", -np.inf)  # opset < 11 keeps bounds as attrs
    hi = fn.attrs.get("max", np.inf)
    computed = {}
    for idx in (1, 2):
        if len(fn.inputs) > idx and fn.inputs[idx]:
            v = ctx.const(fn.inputs[idx])
            if v is None:
                computed[idx] = fn.inputs[idx]
            else:
                lo, hi = (float(v), hi) if idx == 1 else (lo, float(v))
    emit_clip(ctx, fn.inputs[0], lo, hi, computed.get(1), computed.get(2), fn.outputs[:1])


def emit_clip(ctx, x: str, lo: float, hi: float, lo_t: str | None, hi_t: str | None, outputs) -> None:
    """clip(x) to constant bounds lo/hi and/or run-time bound tensors lo_t/hi_t."""
    if lo_t is None and hi_t is None:
        ctx.emit("act", [x], outputs, {"fn": "clip", "min": float(lo), "max": float(hi)})
        return
    if np.isfinite(lo) or np.isfinite(hi):
        x = ctx.emit("act", [x], None, {"fn": "clip", "min": float(lo), "max": float(hi)})[0]
    if lo_t is not None:
        x = ctx.emit("binary", [x, lo_t], outputs if hi_t is None else None, {"fn": "max"})[0]
    if hi_t is not None:
        ctx.emit("binary", [x, hi_t], outputs, {"fn": "min"})


@onnx_lowering("Identity", "Dropout", emits=ALIAS)
def _onnx_identity(ctx, fn):
    ctx.set_alias(fn.outputs[0], fn.inputs[0])


# -- TensorFlow Lite ---------------------------------------------------------------------------
# fused_activation_function of TFLite ops -> the `act` that follows the op (None: nothing)
FUSED = {"NONE": None, "RELU": {"fn": "relu"}, "RELU6": {"fn": "clip", "min": 0.0, "max": 6.0},
         "RELU_N1_TO_1": {"fn": "clip", "min": -1.0, "max": 1.0}, "TANH": {"fn": "tanh"}}


def emit_fused(ctx, fn, op: str, inputs: list[str], attrs: dict) -> None:
    """A TFLite op (checked like emit_checked) and then its fused activation, if any."""
    from gxnpuc.ops.base import emit_checked

    act = str(fn.attrs.get("fused_activation_function", "NONE"))
    if act not in FUSED:
        return ctx.reject(f"fused activation {act} ({', '.join(FUSED)})")
    y = emit_checked(ctx, op, inputs, fn.outputs[:1] if FUSED[act] is None else None, attrs)
    if y and FUSED[act] is not None:
        ctx.emit("act", y, fn.outputs[:1], FUSED[act])
    return None


_TFLITE_ACT = {"RELU": {"fn": "relu"}, "RELU6": FUSED["RELU6"], "RELU_N1_TO_1": FUSED["RELU_N1_TO_1"],
               "RELU_0_TO_1": {"fn": "clip", "min": 0.0, "max": 1.0}, "LOGISTIC": {"fn": "sigmoid"},
               "TANH": {"fn": "tanh"}, "HARD_SWISH": {"fn": "hard_swish"}, "ELU": {"fn": "elu"},
               "EXP": {"fn": "exp"}, "LOG": {"fn": "log"}, "SQRT": {"fn": "sqrt"},
               "RSQRT": {"fn": "rsqrt"}, "ABS": {"fn": "abs"}, "NEG": {"fn": "neg"},
               "SQUARE": {"fn": "square"}}


@tflite_lowering(*_TFLITE_ACT, emits=("act",))
def _tflite_act(ctx, fn):
    ctx.emit("act", fn.inputs[:1], fn.outputs[:1], dict(_TFLITE_ACT[fn.op_type]))


@tflite_lowering("LEAKY_RELU", emits=("act",))
def _tflite_leaky(ctx, fn):
    ctx.emit("act", fn.inputs[:1], fn.outputs[:1], {"fn": "leaky_relu", "alpha": float(fn.attrs.get("alpha", 0.2))})


@tflite_lowering("GELU", emits=("act",))
def _tflite_gelu(ctx, fn):
    approx = "tanh" if fn.attrs.get("approximate") else "none"
    ctx.emit("act", fn.inputs[:1], fn.outputs[:1], {"fn": "gelu", "approximate": approx})


@tflite_lowering("QUANTIZE", "DEQUANTIZE", "DENSIFY", emits=ALIAS)
def _tflite_quantize(ctx, fn):
    """The front end dequantises (and densifies) constants when it reads them and computes
    activations in float, so (de)quantising and densifying pass the real value on."""
    ctx.set_alias(fn.outputs[0], fn.inputs[0])
