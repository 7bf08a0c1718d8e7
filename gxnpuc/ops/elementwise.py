"""Element-wise ops with numpy broadcasting: `binary` (add, sub, mul, div, max, min, pow, ...)
and `prelu`.

Integer kernels exist only to fold shape arithmetic and keep ONNX integer semantics
(Div truncates toward zero; Mod takes the divisor's sign unless fmod=1).
"""
from __future__ import annotations

import numpy as np

from gxnpuc import devmath
from gxnpuc.ops.base import OpDef, batch_broadcast, onnx_lowering, register, tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import FLOAT_DTYPES


def _div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q)
    return np.divide(a, b)


def _div_no_nan(a, b):
    """a / b, and 0 where b == 0 (TF DivNoNan; where(b == 0, 0, a / b))."""
    return np.where(b == 0, np.zeros((), np.result_type(a, b)), a / np.where(b == 0, 1, b))


def _pow(a, b):
    if np.issubdtype(a.dtype, np.integer):  # negative integer exponents are legal in ONNX
        return np.power(a.astype(np.float64), b)
    return np.power(a, b.astype(a.dtype))


# fn -> kernel(a, b); the result is cast to the ONNX result type afterwards
FUNCS = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": _div,
    "div_no_nan": _div_no_nan,
    "max": np.maximum,
    "min": np.minimum,
    "pow": _pow,
    "squared_difference": lambda a, b: np.square(a - b),
    "mod": np.mod,  # ONNX Mod fmod=0 (integers): sign of the divisor
    "fmod": np.fmod,  # ONNX Mod fmod=1: sign of the dividend
}
NPU_FNS = ("add", "sub", "mul", "div", "div_no_nan", "max", "min", "pow", "squared_difference")


@register
class Binary(OpDef):
    name = "binary"
    ir_inputs = "a, b"
    ir_attrs = ("`fn` add|sub|mul|div|div_no_nan (0 where b == 0)|max|min|pow|squared_difference "
                "(+ mod|fmod, fold only); numpy "
                "broadcasting")
    ir_roles = "constants: param"  # beside `weights`: how its constant inputs are stored
    sink, sink_inputs = "elementwise", (0, 1)
    category = "elementwise"
    summary = "element-wise " + ", ".join(NPU_FNS) + " of two tensors (numpy broadcasting)"
    constraints = ("both operands broadcast to the output shape (numpy rules)",
                   "`fn` one of " + ", ".join(NPU_FNS) + "; integer arithmetic only on constants")

    def infer(self, node, in_shapes):
        return [tuple(np.broadcast_shapes(*in_shapes))]

    def run(self, node, xs):
        fn = node.attrs["fn"]
        a, b = np.asarray(xs[0]), np.asarray(xs[1])
        dtype = a.dtype if fn == "pow" else np.result_type(a, b)
        with np.errstate(all="ignore"):
            y = FUNCS[fn](a, b)
        return [np.asarray(y).astype(dtype, copy=False)]

    def run_npu(self, node, xs):
        """One float32 operation per element (squared_difference: d = a - b, d * d);
        pow is devmath.power."""
        if node.attrs["fn"] == "pow" and np.issubdtype(np.asarray(xs[0]).dtype, np.floating):
            return [devmath.power(xs[0], xs[1])]
        return self.run(node, xs)

    def check(self, node, in_shapes):
        fn = node.attrs["fn"]
        return None if fn in NPU_FNS else f"{fn} only when its inputs are constant (shape arithmetic)"

    def batch(self, node, shapes, flags):
        return batch_broadcast(node, shapes, flags)

    def keeps_f16(self, node):
        return node.attrs.get("fn") in ("max", "min")


@register
class PRelu(OpDef):
    name = "prelu"
    ir_inputs = "x, slope"
    ir_attrs = "broadcasting slope"
    sink, sink_inputs = "elementwise", (0,)
    category = "activation"
    summary = "x where x >= 0, else slope * x (slope broadcast to x)"
    constraints = ("slope broadcasts to the shape of x (e.g. [C, 1, 1] for NCHW)",)
    weights = {1: "param"}

    def infer(self, node, in_shapes):
        return [in_shapes[0]]

    def run(self, node, xs):
        x, slope = np.asarray(xs[0]), np.asarray(xs[1])
        return [np.where(x >= 0, x, x * slope.astype(x.dtype)).astype(x.dtype, copy=False)]

    def check(self, node, in_shapes):
        if not _broadcasts_to(in_shapes[1], in_shapes[0]):
            return f"slope shape {list(in_shapes[1])} does not broadcast to {list(in_shapes[0])}"
        return None

    def flops(self, node, in_shapes, out_shapes):
        return 2 * int(np.prod(out_shapes[0], dtype=np.int64))

    def batch(self, node, shapes, flags):
        return batch_broadcast(node, shapes, flags)


def _broadcasts_to(shape, target) -> bool:
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(target))) == tuple(target)
    except ValueError:
        return False


# -- ONNX lowerings ----------------------------------------------------------------------------
def _runtime_ok(ctx, names) -> bool:
    """Reject integer arithmetic on tensors computed at run time, and shapes that do not broadcast."""
    for n in names:
        dtype = ctx.tensor(n).dtype
        if ctx.const(n) is None and dtype not in FLOAT_DTYPES:
            ctx.reject(f"{dtype} arithmetic at run time (the NPU computes in fp16)")
            return False
    try:
        np.broadcast_shapes(*(ctx.shape(n) for n in names))
    except ValueError:
        ctx.reject(f"shapes {[list(ctx.shape(n)) for n in names]} do not broadcast")
        return False
    return True


def emit_binary(ctx, fn: str, a: str, b: str, outputs=None) -> str:
    """One `binary` node; returns its output name."""
    return ctx.emit("binary", [a, b], outputs, {"fn": fn})[0]


_ONNX_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


@onnx_lowering(*_ONNX_BINARY, emits=("binary",))
def _onnx_binary(ctx, fn):
    if _runtime_ok(ctx, fn.inputs[:2]):
        emit_binary(ctx, _ONNX_BINARY[fn.op_type], fn.inputs[0], fn.inputs[1], fn.outputs)


_ONNX_VARIADIC = {"Max": "max", "Min": "min", "Sum": "add", "Mean": "add"}


@onnx_lowering(*_ONNX_VARIADIC, emits=("binary",))
def _onnx_variadic(ctx, fn):
    """Max/Min/Sum/Mean of 1..n inputs: a chain of binary nodes (Mean: then * 1/n)."""
    ins = [i for i in fn.inputs if i]
    if not _runtime_ok(ctx, ins):
        return
    if len(ins) == 1:
        return ctx.set_alias(fn.outputs[0], ins[0])
    mean = fn.op_type == "Mean"
    acc = ins[0]
    for k, x in enumerate(ins[1:], 2):
        last = k == len(ins) and not mean
        acc = emit_binary(ctx, _ONNX_VARIADIC[fn.op_type], acc, x, fn.outputs if last else None)
    if mean:
        inv = ctx.add_const(ctx.fresh(fn.name + "/inv_n"), np.asarray(1 / len(ins), ctx.tensor(ins[0]).dtype))
        emit_binary(ctx, "mul", acc, inv, fn.outputs)


@onnx_lowering("Pow", emits=("act", "binary"))
def _onnx_pow(ctx, fn):
    """A constant scalar exponent becomes the activation unit's pow; anything else `binary` pow."""
    x, e = fn.inputs[0], fn.inputs[1]
    exp = ctx.const(e)
    scalar = exp is not None and exp.size == 1 and exp.ndim <= len(ctx.shape(x))
    if scalar and ctx.const(x) is None and ctx.tensor(x).dtype in FLOAT_DTYPES:
        ctx.emit("act", [x], fn.outputs, {"fn": "pow", "exponent": float(exp.reshape(()))})
    elif _runtime_ok(ctx, [x, e]):
        emit_binary(ctx, "pow", x, e, fn.outputs)


@onnx_lowering("Mod", emits=("binary",))
def _onnx_mod(ctx, fn):
    if _runtime_ok(ctx, fn.inputs[:2]):
        emit_binary(ctx, "fmod" if fn.attrs.get("fmod", 0) else "mod", fn.inputs[0], fn.inputs[1], fn.outputs)


@onnx_lowering("PRelu", emits=("prelu",))
def _onnx_prelu(ctx, fn):
    x, slope = fn.inputs[0], fn.inputs[1]
    if not _broadcasts_to(ctx.shape(slope), ctx.shape(x)):
        return ctx.reject(f"slope shape {list(ctx.shape(slope))} does not broadcast to {list(ctx.shape(x))}")
    ctx.emit("prelu", [x, slope], fn.outputs)


# -- TensorFlow lowerings ----------------------------------------------------------------------
_TF_BINARY = {"Add": "add", "AddV2": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div",
              "Div": "div", "Maximum": "max", "Minimum": "min",
              "SquaredDifference": "squared_difference"}


@tf_lowering(*_TF_BINARY, emits=("binary",))
def _tf_binary(ctx, fn):
    if _runtime_ok(ctx, fn.inputs[:2]):
        emit_binary(ctx, _TF_BINARY[fn.op_type], fn.inputs[0], fn.inputs[1], fn.outputs[:1])


@tf_lowering("DivNoNan", emits=("binary",))
def _tf_div_no_nan(ctx, fn):
    """tf.math.divide_no_nan: a / b, 0 where b == 0 (element-wise on the NPU)."""
    if _runtime_ok(ctx, fn.inputs[:2]):
        emit_binary(ctx, "div_no_nan", fn.inputs[0], fn.inputs[1], fn.outputs[:1])


@tf_lowering("AddN", emits=("binary",))
def _tf_add_n(ctx, fn):
    if not _runtime_ok(ctx, fn.inputs):
        return
    acc = fn.inputs[0]
    for k, x in enumerate(fn.inputs[1:], 2):
        acc = emit_binary(ctx, "add", acc, x, fn.outputs[:1] if k == len(fn.inputs) else None)
    if len(fn.inputs) == 1:
        ctx.set_alias(fn.outputs[0], acc)


@tf_lowering("Pow", emits=("act", "binary"))
def _tf_pow(ctx, fn):
    _onnx_pow(ctx, fn)  # same semantics: a constant scalar exponent goes to the activation unit


# -- Where / Select with a constant condition -------------------------------------------------
def _select_term(ctx, branch: str, keep: np.ndarray, dtype, base: str) -> str | None:
    """One branch of where(): the constant where(keep, v, 0) (None when all zero), the branch
    itself where it is always kept, else branch * keep."""
    v = ctx.const(branch)
    if v is not None:
        folded = np.where(keep, v, 0).astype(dtype)
        return ctx.add_const(ctx.fresh(f"{base}/fill"), folded) if np.any(folded) else None
    if not keep.any():
        return None
    if keep.all():
        return branch
    mask = ctx.add_const(ctx.fresh(f"{base}/mask"), keep.astype(dtype))
    return emit_binary(ctx, "mul", branch, mask)


def _softplus_guard(ctx, cond: str, x: str, y: str) -> bool:
    """True for torch's exported softplus threshold, where(x > t, x, softplus(x)), when t is
    so large that softplus(v) rounds to v in float32 for every v > t: the where is a no-op."""
    g = ctx.graph
    test, soft = g.producer(ctx.resolve(cond)), g.producer(ctx.resolve(y))
    if not (test and soft and test.op == "compare" and test.attrs.get("fn") == "greater"
            and soft.op == "act" and soft.attrs.get("fn") == "softplus"):
        return False
    t = ctx.const(test.inputs[1])
    if t is None or t.size != 1 or test.inputs[0] != ctx.resolve(x) or soft.inputs[0] != ctx.resolve(x):
        return False
    t = float(np.ravel(t)[0])
    return t > 0 and np.float32(np.logaddexp(0.0, t)) == np.float32(t)


def _guarded_division(ctx, cond: str, x: str, y: str) -> tuple[str, str] | None:
    """(a, b) when where(cond, x, y) is a guarded division: where(b == 0, 0, a / b) or
    where(b != 0, a / b, 0), the result shaped as a / b; else None."""
    g = ctx.graph
    test, negated = g.producer(ctx.resolve(cond)), False
    while test is not None and test.op == "logic" and test.attrs.get("fn") == "not":  # b != 0
        test, negated = g.producer(test.inputs[0]), not negated
    if test is None or test.op != "compare" or test.attrs.get("fn") not in ("equal", "not_equal"):
        return None
    zero_first = (test.attrs["fn"] == "equal") != negated
    fill, quotient = (x, y) if zero_first else (y, x)
    div = g.producer(ctx.resolve(quotient))
    fill_v = ctx.const(fill)
    if div is None or div.op != "binary" or div.attrs.get("fn") != "div" or fill_v is None or np.any(fill_v):
        return None
    a, b = div.inputs
    tested = [i for i in test.inputs if ctx.const(i) is None]
    zeros = [ctx.const(i) for i in test.inputs if ctx.const(i) is not None]
    if tested != [b] or len(zeros) != 1 or np.any(zeros[0]):
        return None
    shape = tuple(np.broadcast_shapes(ctx.shape(cond), ctx.shape(x), ctx.shape(y)))
    return (a, b) if shape == tuple(ctx.shape(quotient)) else None


def emit_select(ctx, cond: str, x: str, y: str, outputs) -> None:
    """where(cond, x, y) with a constant cond as x * m + y * (1 - m) on the NPU. A constant
    branch is folded to where(m, c, 0) at compile time, so a -inf fill never meets a zero.
    A run-time cond stays a fold-only `where` (compiler.reject_leftovers reports it)."""
    m = ctx.const(cond)
    if m is None and _softplus_guard(ctx, cond, x, y):
        return ctx.set_alias(outputs[0], y)
    guarded = _guarded_division(ctx, cond, x, y) if m is None else None
    if guarded is not None:
        emit_binary(ctx, "div_no_nan", *guarded, outputs)
        return None
    if m is None:  # a run-time condition: kept as the fold-only `where`, reported after the passes
        return ctx.emit("where", [cond, x, y], outputs)
    if not _runtime_ok(ctx, [x, y]):
        return None
    shape = tuple(np.broadcast_shapes(ctx.shape(cond), ctx.shape(x), ctx.shape(y)))
    dtype = np.result_type(*(np.dtype(ctx.tensor(b).dtype) for b in (x, y)))
    m = np.broadcast_to(np.asarray(m).astype(bool), shape)
    base = ctx.fnode.name
    terms = [t for t in (_select_term(ctx, x, m, dtype, base), _select_term(ctx, y, ~m, dtype, base)) if t]
    if len(terms) == 1 and tuple(ctx.shape(terms[0])) == shape and ctx.const(terms[0]) is None:
        return ctx.set_alias(outputs[0], terms[0])
    if len(terms) < 2:  # one term of a smaller shape, or none: add zeros of the output shape
        terms.append(ctx.add_const(ctx.fresh(f"{base}/zeros"), np.zeros(shape, dtype)))
    emit_binary(ctx, "add", terms[0], terms[1], outputs)
    return None


@tf_lowering("Select", "SelectV2", emits=("where", "binary"))
def _tf_select(ctx, fn):
    """tf.where(c, x, y): SelectV2 broadcasts; Select takes a vector c along the first axis."""
    cond, x, y = fn.inputs[:3]
    c = ctx.const(cond)
    rank = len(np.broadcast_shapes(ctx.shape(x), ctx.shape(y)))
    if fn.op_type == "Select" and c is not None and c.ndim == 1 and rank > 1:
        cond = ctx.add_const(ctx.fresh(f"{cond}/rows"), c.reshape((-1,) + (1,) * (rank - 1)))
    if all(ctx.const(i) is not None for i in (cond, x, y)):
        return ctx.emit("where", [cond, x, y], fn.outputs[:1])
    return emit_select(ctx, cond, x, y, fn.outputs[:1])


# -- TensorFlow Lite ---------------------------------------------------------------------------
_TFLITE_BINARY = {"ADD": "add", "SUB": "sub", "MUL": "mul", "DIV": "div", "MAXIMUM": "max",
                  "MINIMUM": "min", "SQUARED_DIFFERENCE": "squared_difference"}


@tflite_lowering(*_TFLITE_BINARY, emits=("binary", "act"))
def _tflite_binary(ctx, fn):
    """Element-wise with broadcasting; ADD/SUB/MUL/DIV may carry a fused activation."""
    from gxnpuc.ops.activation import emit_fused

    if _runtime_ok(ctx, fn.inputs[:2]):
        emit_fused(ctx, fn, "binary", fn.inputs[:2], {"fn": _TFLITE_BINARY[fn.op_type]})


@tflite_lowering("POW", emits=("act", "binary"))
def _tflite_pow(ctx, fn):
    _onnx_pow(ctx, fn)


@tflite_lowering("PRELU", emits=("prelu",))
def _tflite_prelu(ctx, fn):
    _onnx_prelu(ctx, fn)  # alpha broadcasts against x (Keras PReLU: [1, 1, C] for NHWC)


@tflite_lowering("ADD_N", emits=("binary",))
def _tflite_add_n(ctx, fn):
    _tf_add_n(ctx, fn)


@tflite_lowering("SELECT", "SELECT_V2", emits=("where", "binary"))
def _tflite_select(ctx, fn):
    from dataclasses import replace

    _tf_select(ctx, replace(fn, op_type="SelectV2" if fn.op_type == "SELECT_V2" else "Select"))
