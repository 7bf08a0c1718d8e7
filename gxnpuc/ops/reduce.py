"""`reduce`: mean, sum, max or min over sorted, non-negative `axes`, with `keepdims`.

ONNX moved `axes` from an attribute to an input (ReduceSum at opset 13, the others at 18);
both forms are read. `prod` exists only to fold shape arithmetic.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops import npu_kernels
from gxnpuc.ops.base import OpDef, onnx_lowering, register, tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import NOT_CONST, arg_ints, norm_axis

FUNCS = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod}
NPU_FNS = ("mean", "sum", "max", "min")


@register
class Reduce(OpDef):
    name = "reduce"
    ir_inputs = "x"
    ir_attrs = "`fn` mean|sum|max|min (+ prod, fold only), `axes` (sorted, non-negative), `keepdims`"
    category = "reduction"
    summary = "reduce " + "|".join(NPU_FNS) + " over some axes"
    constraints = ("`axes` constant", "`fn` one of " + ", ".join(NPU_FNS))

    def infer(self, node, in_shapes):
        axes, keep = node.attrs["axes"], node.attrs["keepdims"]
        shape = in_shapes[0]
        return [tuple(1 if k in axes else d for k, d in enumerate(shape) if keep or k not in axes)]

    def run(self, node, xs):
        x = np.asarray(xs[0])
        y = FUNCS[node.attrs["fn"]](x, axis=tuple(node.attrs["axes"]), keepdims=bool(node.attrs["keepdims"]))
        return [np.asarray(y).astype(x.dtype, copy=False)]

    def run_npu(self, node, xs):
        """sum: sequential from +0 in C order of the axes; mean: that sum / n."""
        a = node.attrs
        if a["fn"] not in ("sum", "mean") or not np.issubdtype(np.asarray(xs[0]).dtype, np.floating):
            return self.run(node, xs)
        kernel = npu_kernels.seq_sum if a["fn"] == "sum" else npu_kernels.mean
        return [kernel(xs[0], list(a["axes"]), bool(a["keepdims"]))]

    def check(self, node, in_shapes):
        fn = node.attrs["fn"]
        return None if fn in NPU_FNS else f"{fn} only when its input is constant (shape arithmetic)"

    def flops(self, node, in_shapes, out_shapes):
        return int(np.prod(in_shapes[0], dtype=np.int64))

    def batch(self, node, shapes, flags):
        axes = node.attrs["axes"]
        if 0 not in axes:
            return None
        if node.attrs.get("keepdims"):  # over the size-1 axis 0 of one sample: nothing to reduce
            return lambda n: {"axes": [a for a in axes if a != 0]}
        return "reduces over axis 0 and drops it"

    def keeps_f16(self, node):
        return node.attrs.get("fn") in ("max", "min")


_ONNX_REDUCE = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min",
                "ReduceProd": "prod"}


NOOP = "noop"  # _onnx_axes: no axes and noop_with_empty_axes=1


def _onnx_axes(ctx, fn, rank: int):
    """Sorted non-negative axes of an ONNX Reduce* (attr or input; none = all), NOOP for the
    no-op form, None after a rejection."""
    axes = arg_ints(ctx, fn, "axes", 1)
    if axes is NOT_CONST:
        ctx.reject("axes must be constant")
        return None
    if not axes and fn.attrs.get("noop_with_empty_axes", 0):
        return NOOP
    return sorted({norm_axis(ctx, a, rank) for a in axes or range(rank)})


@onnx_lowering(*_ONNX_REDUCE, emits=("reduce",))
def _onnx_reduce(ctx, fn):
    x = fn.inputs[0]
    axes = _onnx_axes(ctx, fn, len(ctx.shape(x)))
    if axes is None:
        return None
    if axes == NOOP:
        return ctx.set_alias(fn.outputs[0], x)
    ctx.emit("reduce", [x], fn.outputs, {"fn": _ONNX_REDUCE[fn.op_type], "axes": axes,
                                         "keepdims": int(fn.attrs.get("keepdims", 1))})


# norms as act -> reduce sum -> act (exact decompositions: sqrt(sum(x^2)), sum(|x|), ...)
_ONNX_COMPOSITE = {"ReduceL2": ("square", "sqrt"), "ReduceL1": ("abs", None),
                   "ReduceSumSquare": ("square", None), "ReduceLogSum": (None, "log")}


@onnx_lowering(*_ONNX_COMPOSITE, emits=("reduce", "act"))
def _onnx_reduce_norm(ctx, fn):
    """ReduceL2 (F.normalize, torch.norm), ReduceL1, ReduceSumSquare, ReduceLogSum."""
    x = fn.inputs[0]
    axes = _onnx_axes(ctx, fn, len(ctx.shape(x)))
    if axes is None:
        return None
    if axes == NOOP:
        return ctx.reject("noop_with_empty_axes=1 with no axes")
    pre, post = _ONNX_COMPOSITE[fn.op_type]
    y = ctx.emit("act", [x], None, {"fn": pre})[0] if pre else x
    attrs = {"fn": "sum", "axes": axes, "keepdims": int(fn.attrs.get("keepdims", 1))}
    y = ctx.emit("reduce", [y], None if post else fn.outputs, attrs)[0]
    if post:
        ctx.emit("act", [y], fn.outputs, {"fn": post})
    return None


_TF_REDUCE = {"Mean": "mean", "Sum": "sum", "Max": "max", "Min": "min", "Prod": "prod"}


@tf_lowering(*_TF_REDUCE, emits=("reduce",))
def _tf_reduce(ctx, fn):
    x, axes = fn.inputs[0], ctx.const(fn.inputs[1])
    if axes is None:
        return ctx.reject("reduction_indices must be constant")
    rank = len(ctx.shape(x))
    axes = sorted({norm_axis(ctx, a, rank) for a in np.ravel(axes)})
    if not axes:
        return ctx.set_alias(fn.outputs[0], x)
    ctx.emit("reduce", [x], fn.outputs[:1], {"fn": _TF_REDUCE[fn.op_type], "axes": axes,
                                             "keepdims": int(bool(fn.attrs.get("keep_dims", False)))})


_TFLITE_REDUCE = {"MEAN": "Mean", "SUM": "Sum", "REDUCE_MAX": "Max", "REDUCE_MIN": "Min",
                  "REDUCE_PROD": "Prod"}


@tflite_lowering(*_TFLITE_REDUCE, emits=("reduce",))
def _tflite_reduce(ctx, fn):
    """TF semantics: constant axes (input 1), keep_dims option."""
    from dataclasses import replace

    _tf_reduce(ctx, replace(fn, op_type=_TFLITE_REDUCE[fn.op_type]))
