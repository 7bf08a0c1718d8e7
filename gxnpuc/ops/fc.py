"""Fully connected (`fc`: x @ constant weight + bias) and run-time `matmul` (both operands computed).

ONNX Gemm and MatMul with a constant second operand become `fc` (its weight is what COMPRESS
compresses); Gemm's alpha/beta are folded into the constant weight/bias. MatMul whose
constant operand cannot be an fc weight (first operand, 1-D or batched) stays a `matmul`
that reads the constant as an fp16 parameter.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops import npu_kernels
from gxnpuc.ops.base import (REGISTRY, OpDef, batch_hint, batch_per_sample, emit_checked, onnx_lowering,
                             register, tf_lowering, tflite_lowering)


@register
class FC(OpDef):
    name = "fc"
    ir_inputs = "x, w, b?"
    ir_attrs = "`transpose_w` (w is [N, K] when true, else [K, N]); x [..., K] -> [..., N]"
    sink, sink_inputs = "rows", (0,)
    category = "fc"
    summary = "fully connected: x[..., K] @ w -> [..., N], plus bias; w is [K, N] or [N, K] (transpose_w)"
    constraints = ("weight constant and 2-D; bias constant with N values",
                   "Gemm: alpha, beta, transB folded; transA only via a transpose op")
    weights = {1: "fc", 2: "bias"}

    def infer(self, node, in_shapes):
        w = in_shapes[1]
        return [(*in_shapes[0][:-1], w[0] if node.attrs.get("transpose_w") else w[1])]

    def run(self, node, xs):
        x = np.asarray(xs[0])
        ct = np.promote_types(x.dtype, np.float32)
        w = np.asarray(xs[1], ct)
        w_kn = w.T if node.attrs.get("transpose_w") else w
        # sim_batch (the simulator's batched copy, gxnpuc/batching.py): one product per sample,
        # the same BLAS call as a batch-1 run (gemv for one row), so results stay bit-identical
        rows = (node.attrs["sim_batch"], -1) if node.attrs.get("sim_batch") else (-1,)
        y = x.reshape(*rows, w_kn.shape[0]).astype(ct, copy=False) @ w_kn
        if len(xs) > 2 and xs[2] is not None:
            y += np.asarray(xs[2], ct).reshape(-1)
        return [y.reshape(*x.shape[:-1], w_kn.shape[1]).astype(x.dtype, copy=False)]

    def run_npu(self, node, xs):
        w = np.asarray(xs[1], np.float32)
        return [npu_kernels.fc(xs[0], w.T if node.attrs.get("transpose_w") else w,
                               xs[2] if len(xs) > 2 else None)]

    def check(self, node, in_shapes):
        x, w = in_shapes[0], in_shapes[1]
        if len(w) != 2 or len(x) < 1:
            return f"fc needs a 2-D weight and an input of rank >= 1 (got {list(x)}, {list(w)})"
        k, n = (w[1], w[0]) if node.attrs.get("transpose_w") else w
        if x[-1] != k:
            return f"input {list(x)} does not match weight {list(w)}"
        b = in_shapes[2] if len(in_shapes) > 2 else None
        if b is not None and int(np.prod(b)) != n:
            return f"bias of shape {list(b)} for {n} outputs"
        return None

    def flops(self, node, in_shapes, out_shapes):
        x = in_shapes[0]
        out = int(np.prod(out_shapes[0], dtype=np.int64))
        return 2 * out * int(x[-1]) + (out if len(in_shapes) > 2 and in_shapes[2] else 0)

    def batch(self, node, shapes, flags):
        rank_ok = None if len(shapes[0]) >= 2 else "input of rank 1"
        return batch_per_sample(node, shapes, flags) or rank_ok or batch_hint


def matmul_shape(a, b) -> tuple[int, ...]:
    """numpy matmul's output shape; ValueError when the operands do not fit."""
    if not a or not b:
        raise ValueError("matmul of a scalar")
    a2, b2 = ((1, *a) if len(a) == 1 else tuple(a)), ((*b, 1) if len(b) == 1 else tuple(b))
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dims differ: {list(a)} @ {list(b)}")
    out = (*np.broadcast_shapes(a2[:-2], b2[:-2]), a2[-2], b2[-1])
    if len(b) == 1:
        out = out[:-1]
    if len(a) == 1:
        out = out[:-2] + out[-1:] if len(b) > 1 else out[:-1]
    return tuple(int(d) for d in out)


@register
class MatMul(OpDef):
    name = "matmul"
    ir_inputs = "a, b"
    ir_attrs = ("numpy matmul semantics; operands computed at run time, or a constant that cannot be an "
                "fc weight (first operand, 1-D, batched), read as fp16 param")
    ir_roles = "constants: param"  # beside `weights`: how its constant inputs are stored
    category = "fc"
    summary = "matrix product of two operands, numpy matmul semantics (batch dims broadcast)"
    constraints = ("operands computed at run time; a constant operand is read as an fp16 parameter",)

    def infer(self, node, in_shapes):
        return [matmul_shape(in_shapes[0], in_shapes[1])]

    def run(self, node, xs):
        a, b = np.asarray(xs[0]), np.asarray(xs[1])
        ct = np.promote_types(np.result_type(a, b), np.float32)
        if node.attrs.get("sim_batch"):  # batched [1, K] @ [K, N]: one gemv per sample (see FC.run)
            y = np.matmul(a[:, None].astype(ct, copy=False), b.astype(ct, copy=False))[:, 0]
            return [y.astype(a.dtype, copy=False)]
        return [np.matmul(a.astype(ct, copy=False), b.astype(ct, copy=False)).astype(a.dtype, copy=False)]

    def run_npu(self, node, xs):
        return [npu_kernels.matmul(xs[0], xs[1])]

    def check(self, node, in_shapes):
        try:
            matmul_shape(in_shapes[0], in_shapes[1])
        except ValueError as exc:
            return str(exc)
        return None

    def flops(self, node, in_shapes, out_shapes):
        return 2 * int(np.prod(out_shapes[0], dtype=np.int64)) * int(in_shapes[0][-1])

    def batch(self, node, shapes, flags):
        a, b = shapes
        if flags == [True, False] and len(a) == 2 and len(b) == 2:
            return batch_hint  # [1, K] @ [K, N]: one gemv per sample, as in a batch-1 run
        rank = max(len(a), len(b))
        if all(len(s) == rank >= 3 for s, f in zip(shapes, flags) if f):
            return None  # numpy loops over the leading dims: the same product per sample
        return "the batch axis is not a leading (broadcast) dim of both operands"


# -- ONNX ----------------------------------------------------------------------------------
def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN equal to NaN (a NaN bias keeps its name, so its error names it)."""
    return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact)))


def _derived_const(ctx, name: str, value: np.ndarray, suffix: str) -> str:
    """`name` itself when value is exactly its constant, else a new constant `name/suffix`."""
    old = ctx.const(name)
    if old is not None and old.shape == value.shape and old.dtype == value.dtype and _same(old, value):
        return ctx.resolve(name)
    return ctx.add_const(ctx.fresh(f"{ctx.resolve(name)}/{suffix}"), value)


def _transposed(ctx, name: str) -> str | None:
    """A 2-D tensor transposed: folded when constant, else a `transpose` op (if registered)."""
    v = ctx.const(name)
    if v is not None:
        return _derived_const(ctx, name, np.ascontiguousarray(v.T), "T")
    if "transpose" not in REGISTRY:
        ctx.reject("transposing a computed Gemm operand needs the transpose op")
        return None
    return ctx.emit("transpose", [name], None, {"perm": [1, 0]})[0]


def _add(ctx, y: str, c: str, outputs: list[str]) -> None:
    """y + c as a broadcasting `binary` add (Gemm C that is not a per-output bias)."""
    if "binary" not in REGISTRY:
        return ctx.reject("Gemm C must be a constant per-output bias")
    emit_checked(ctx, "binary", [y, c], outputs, {"fn": "add"})


def _gemm_bias(ctx, fn, out_shape) -> tuple[str, str]:
    """(per-output bias name, other addend name): beta folded into a constant C."""
    c = fn.inputs[2] if len(fn.inputs) > 2 else ""
    if not c:
        return "", ""
    beta, cv = float(fn.attrs.get("beta", 1.0)), ctx.const(c)
    if cv is None:
        if beta != 1.0:
            ctx.reject("Gemm with beta != 1 and a computed C")
        return "", c
    cv = (cv * np.float32(beta)).astype(cv.dtype) if beta != 1.0 else cv
    full = np.broadcast_to(cv, out_shape)
    if not _same(full, np.broadcast_to(full[:1], full.shape)):  # C varies per row: not a bias
        return "", _derived_const(ctx, c, np.ascontiguousarray(cv), "beta")
    return _derived_const(ctx, c, np.ascontiguousarray(full[0]), "bias"), ""


@onnx_lowering("Gemm", emits=("fc", "matmul", "transpose", "binary"))
def _onnx_gemm(ctx, fn):
    a, b = fn.inputs[0], fn.inputs[1]
    alpha, trans_b = float(fn.attrs.get("alpha", 1.0)), bool(fn.attrs.get("transB", 0))
    if fn.attrs.get("transA", 0):
        a = _transposed(ctx, a)
        if a is None:
            return None
    bv = ctx.const(b)
    m, n = ctx.shape(a)[0], ctx.shape(b)[0 if trans_b else 1]
    bias, addend = _gemm_bias(ctx, fn, (m, n))
    if bv is None:
        if alpha != 1.0:
            return ctx.reject("Gemm with alpha != 1 and a computed B")
        b = _transposed(ctx, b) if trans_b else b
        if b is None:
            return None
        inputs, op, attrs = [a, b], "matmul", {}
        addend = addend or bias
    else:
        if alpha != 1.0:
            b = _derived_const(ctx, b, (bv * np.float32(alpha)).astype(bv.dtype), "alpha")
        inputs, op, attrs = [a, b] + ([bias] if bias else []), "fc", {"transpose_w": trans_b}
    if addend:
        y = emit_checked(ctx, op, inputs, None, attrs)
        return _add(ctx, y[0], addend, fn.outputs[:1]) if y else None
    return emit_checked(ctx, op, inputs, fn.outputs[:1], attrs)


@onnx_lowering("MatMul", emits=("fc", "matmul"))
def _onnx_matmul(ctx, fn):
    a, b = fn.inputs[0], fn.inputs[1]
    av, bv = ctx.const(a), ctx.const(b)
    fits = bv is not None and (bv.ndim == 2 or 2 < bv.ndim <= len(ctx.shape(a))
                               and bv.size == bv.shape[-2] * bv.shape[-1])
    if av is None and fits:
        if bv.ndim > 2:  # [1, .., K, N] against an x of at least that rank: an fc weight
            b = _derived_const(ctx, b, bv.reshape(bv.shape[-2:]), "2d")
        return emit_checked(ctx, "fc", [a, b], fn.outputs[:1], {"transpose_w": False})
    return emit_checked(ctx, "matmul", [a, b], fn.outputs[:1], {})


# -- TensorFlow ----------------------------------------------------------------------------
def _swap_last(ctx, name: str) -> str:
    """The last two axes swapped: folded when constant, else a `transpose` op."""
    v = ctx.const(name)
    if v is not None:
        return _derived_const(ctx, name, np.ascontiguousarray(np.swapaxes(v, -1, -2)), "T")
    perm = list(range(len(ctx.shape(name))))
    perm[-2:] = perm[-1], perm[-2]
    return ctx.emit("transpose", [name], None, {"perm": perm})[0]


@tf_lowering("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", emits=("fc", "matmul", "transpose"))
def _tf_matmul(ctx, fn):
    """A constant 2-D (or [1, .., K, N]) second operand makes an `fc` (Dense), else `matmul`."""
    a, b = fn.inputs[0], fn.inputs[1]
    adj_a = fn.attrs.get("transpose_a", fn.attrs.get("adj_x", False))
    adj_b = bool(fn.attrs.get("transpose_b", fn.attrs.get("adj_y", False)))
    if adj_a:
        a = _swap_last(ctx, a)
    bv = ctx.const(b)
    if ctx.const(a) is None and bv is not None and 2 <= bv.ndim <= len(ctx.shape(a)) \
            and all(d == 1 for d in bv.shape[:-2]):
        if bv.ndim > 2:
            b = _derived_const(ctx, b, bv.reshape(bv.shape[-2:]), "2d")
        return emit_checked(ctx, "fc", [a, b], fn.outputs[:1], {"transpose_w": adj_b})
    if adj_b:
        b = _swap_last(ctx, b)
    return emit_checked(ctx, "matmul", [a, b], fn.outputs[:1], {})


# -- TensorFlow Lite -----------------------------------------------------------------------
@tflite_lowering("FULLY_CONNECTED", emits=("fc", "reshape", "transpose", "matmul", "act"))
def _tflite_fc(ctx, fn):
    """x @ w.T + b with w [N, K]; without keep_num_dims the input is flattened to [-1, K]."""
    from gxnpuc.ops.activation import emit_fused
    from gxnpuc.ops.shape_ops import emit_reshape

    x, w = fn.inputs[0], fn.inputs[1]
    b = fn.inputs[2] if len(fn.inputs) > 2 else ""
    wv, shape = ctx.const(w), ctx.shape(x)
    k = int(ctx.shape(w)[-1])
    if not fn.attrs.get("keep_num_dims") and len(shape) != 2 and int(np.prod(shape)) % k == 0:
        x = emit_reshape(ctx, x, [int(np.prod(shape)) // k, k])
    if b and ctx.const(b) is None:
        return ctx.reject("FULLY_CONNECTED bias must be constant")
    if wv is not None and wv.ndim == 2:
        return emit_fused(ctx, fn, "fc", [x, w] + ([b] if b else []), {"transpose_w": True})
    if b or fn.attrs.get("fused_activation_function", "NONE") != "NONE":
        return ctx.reject("FULLY_CONNECTED with a computed weight, a bias or a fused activation")
    return emit_checked(ctx, "matmul", [x, _swap_last(ctx, w)], fn.outputs[:1], {})


@tflite_lowering("BATCH_MATMUL", emits=("fc", "matmul", "transpose"))
def _tflite_batch_matmul(ctx, fn):
    fn.attrs.setdefault("adj_x", False)
    _tf_matmul(ctx, fn)
