"""TensorFlow-only glue lowerings: graph plumbing (Placeholder, Const, Identity, NoOp, Shape),
BiasAdd and FusedBatchNorm, and the element-wise TF ops that map onto the `act` op.

The IR ops themselves live in their own files; these functions only translate TF's
conventions (NHWC data_format, TF attr names) into them.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.activation import emit_clip
from gxnpuc.ops.base import ALIAS, CONSTANT, FRONT_END, tf_lowering
from gxnpuc.ops.runtime_norm import tf_batch_stats_norm


def _const(ctx, name: str, value) -> None:
    """Register `value` as the constant called `name` (the TF tensor name users see)."""
    real = ctx.add_const(name, value)
    if real != name:
        ctx.set_alias(name, real)


def _channel_axis(fmt: str, rank: int) -> int:
    """The channel axis of a TF data_format: NHWC/NWC/NDHWC -> last, NCHW/... -> 1."""
    return 1 if str(fmt).startswith("NC") and rank > 2 else rank - 1


@tf_lowering("NoOp", emits=FRONT_END)
def _tf_noop(ctx, fn):
    pass  # only ever a target of control edges, which the front end drops


@tf_lowering("Placeholder", emits=FRONT_END)
def _tf_placeholder(ctx, fn):
    if not ctx.has(fn.outputs[0]):  # the front end adds every needed Placeholder as an input
        ctx.reject("a Placeholder that is not a model input (name it in INPUT_OPS)")


@tf_lowering("Const", emits=CONSTANT)
def _tf_const(ctx, fn):
    _const(ctx, fn.outputs[0], np.asarray(fn.attrs["value"]))


@tf_lowering("Identity", "IdentityN", "StopGradient", "PreventGradient", "Snapshot",
             "EnsureShape", "CheckNumerics", emits=ALIAS)
def _tf_identity(ctx, fn):
    """An Identity of a constant renames it (as TF's constant folding does): a frozen TF2
    graph reads each weight through `<op>/ReadVariableOp`, and that is the name users see."""
    for src, out in zip(fn.inputs, fn.outputs):
        value = ctx.const(src)
        if value is not None:
            ctx.graph.record_alias(ctx.resolve(src), out)  # `dense/kernel` finds `dense/kernel/read`
            _const(ctx, out, value)
        else:
            ctx.set_alias(out, src)


@tf_lowering("PlaceholderWithDefault", emits=ALIAS)
def _tf_placeholder_default(ctx, fn):
    _tf_identity(ctx, fn)  # not named in INPUT_OPS: it is its default value


@tf_lowering("Shape", "Size", "Rank", emits=CONSTANT)
def _tf_shape(ctx, fn):
    """Shapes are static in the IR, so these are constants (Keras' dynamic-batch chains)."""
    shape = ctx.shape(fn.inputs[0])
    value = {"Shape": shape, "Size": int(np.prod(shape, dtype=np.int64)), "Rank": len(shape)}
    _const(ctx, fn.outputs[0], np.asarray(value[fn.op_type], dtype=fn.attrs.get("out_type", "int32")))


@tf_lowering("ShapeN", emits=CONSTANT)
def _tf_shape_n(ctx, fn):
    for src, out in zip(fn.inputs, fn.outputs):
        _const(ctx, out, np.asarray(ctx.shape(src), dtype=fn.attrs.get("out_type", "int32")))


@tf_lowering("ZerosLike", "OnesLike", emits=CONSTANT)
def _tf_zeros_like(ctx, fn):
    """zeros/ones of a (static) shape: a constant even when the input is computed at run time."""
    t = ctx.tensor(fn.inputs[0])
    _const(ctx, fn.outputs[0], np.full(t.shape, 0 if fn.op_type == "ZerosLike" else 1, t.dtype))


@tf_lowering("Fill", emits=CONSTANT)
def _tf_fill(ctx, fn):
    """tf.fill / tf.ones([n]) with n from tf.shape (Keras 2's LayerNormalization)."""
    dims, value = ctx.const(fn.inputs[0]), ctx.const(fn.inputs[1])
    if dims is None or value is None:
        return ctx.reject("Fill dims and value must be constant")
    _const(ctx, fn.outputs[0], np.full([int(d) for d in np.ravel(dims)], value.reshape(()), value.dtype))
    return None


@tf_lowering("BiasAdd", "BiasAddV1", emits=("binary", "reshape"))
def _tf_bias_add(ctx, fn):
    """x + bias along the channel axis; FUSE_BIASADD later moves it into the conv/fc."""
    x, bias = fn.inputs[:2]
    rank = len(ctx.shape(x))
    axis = _channel_axis(fn.attrs.get("data_format", "NHWC"), rank)
    if axis != rank - 1:
        shape = [ctx.shape(bias)[0]] + [1] * (rank - 1 - axis)
        bias = ctx.emit("reshape", [bias], attrs={"shape": shape})[0]
    ctx.emit("binary", [x, bias], fn.outputs[:1], {"fn": "add"})


@tf_lowering("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
             emits=("batchnorm", "reduce", "binary", "act", "reshape"))
def _tf_fused_bn(ctx, fn):
    rank = len(ctx.shape(fn.inputs[0]))
    axis = _channel_axis(fn.attrs.get("data_format", "NHWC"), rank)
    if fn.attrs.get("is_training", False):  # uses the batch's statistics, not the stored ones
        stats = [ctx.const(i) for i in fn.inputs[3:5]]
        if all(s is not None and s.size == 0 for s in stats):  # Keras 2 LayerNormalization
            return tf_batch_stats_norm(ctx, fn, axis)
        return ctx.reject("FusedBatchNorm in training mode (freeze with training=False)")
    ctx.emit("batchnorm", fn.inputs[:5], fn.outputs[:1],
             {"epsilon": float(fn.attrs.get("epsilon", 1e-4)), "axis": axis})


# TF op type -> (act fn, extra attrs from TF attrs)
_ACT = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Elu": "elu", "Selu": "selu",
        "Abs": "abs", "Neg": "neg", "Sqrt": "sqrt", "Rsqrt": "rsqrt", "Square": "square",
        "Exp": "exp", "Log": "log", "Reciprocal": "reciprocal", "Inv": "reciprocal",
        "Erf": "erf", "Erfc": "erfc", "Softplus": "softplus", "Softsign": "softsign"}


@tf_lowering(*_ACT, emits=("act",))
def _tf_act(ctx, fn):
    ctx.emit("act", fn.inputs[:1], fn.outputs[:1], {"fn": _ACT[fn.op_type]})


@tf_lowering("Relu6", emits=("act",))
def _tf_relu6(ctx, fn):
    ctx.emit("act", fn.inputs[:1], fn.outputs[:1], {"fn": "clip", "min": 0.0, "max": 6.0})


@tf_lowering("LeakyRelu", emits=("act",))
def _tf_leaky_relu(ctx, fn):
    ctx.emit("act", fn.inputs[:1], fn.outputs[:1],
             {"fn": "leaky_relu", "alpha": float(fn.attrs.get("alpha", 0.2))})


@tf_lowering("ClipByValue", emits=("act", "binary"))
def _tf_clip(ctx, fn):
    """Constant scalar bounds: the activation unit's clip; bounds computed at run time (or
    constant tensors) an element-wise max / min."""
    x, lo, hi = fn.inputs[:3]
    lo_v, hi_v = ctx.const(lo), ctx.const(hi)
    scalar = [v is not None and np.size(v) == 1 for v in (lo_v, hi_v)]
    emit_clip(ctx, x, float(np.ravel(lo_v)[0]) if scalar[0] else -np.inf,
              float(np.ravel(hi_v)[0]) if scalar[1] else np.inf,
              None if scalar[0] else lo, None if scalar[1] else hi, fn.outputs[:1])


_TF_COMPARE = {"Less": "less", "Greater": "greater", "LessEqual": "less_equal",
               "GreaterEqual": "greater_equal", "Equal": "equal", "NotEqual": "not_equal"}
_TF_LOGIC = {"LogicalAnd": "and", "LogicalOr": "or", "LogicalNot": "not"}


@tf_lowering(*_TF_COMPARE, emits=("compare",))
@tf_lowering(*_TF_LOGIC, emits=("logic",))
def _tf_compare_logic(ctx, fn):
    """Comparisons and boolean logic (loop conditions, masks): folded when constant, else the
    fold-only ops, which a pattern (guarded division) may still remove."""
    op, table = ("compare", _TF_COMPARE) if fn.op_type in _TF_COMPARE else ("logic", _TF_LOGIC)
    out = ctx.emit(op, fn.inputs[:2 if fn.op_type != "LogicalNot" else 1], fn.outputs[:1],
                   {"fn": table[fn.op_type]})[0]
    if not ctx.tensor(out).is_const:
        ctx.graph.tensors[out].dtype = "bool"
