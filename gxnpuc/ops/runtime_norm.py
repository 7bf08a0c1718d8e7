"""Normalisations whose statistics come from the input itself, decomposed into IR ops.

LayerNormalization, InstanceNormalization (PyTorch's GroupNorm exports as one), ONNX
GroupNormalization, and TensorFlow's FusedBatchNorm in training mode with no stored
statistics (how Keras 2 wrote LayerNormalization into frozen graphs) all compute
    y = (x - mean(x)) * rsqrt(var(x) + eps) * scale + bias
over some axes, with the biased variance. That is exactly reduce mean, binary sub, act
square, reduce mean, binary add, act rsqrt, binary mul (then mul/add for the affine part),
so the NPU runs them with ops it already has; nothing is approximated.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import onnx_lowering
from gxnpuc.ops.shape_ops import emit_reshape, norm_axis

_NORM_OPS = ("reduce", "binary", "act", "reshape")


def emit_normalize(ctx, x: str, axes: list[int], eps: float, outputs=None,
                   mean_out: str | None = None, inv_out: str | None = None) -> str:
    """(x - mean) * rsqrt(var + eps) over `axes`; optionally names the mean and the
    inverse standard deviation (ONNX LayerNormalization's extra outputs)."""
    keep = {"fn": "mean", "axes": sorted(axes), "keepdims": 1}
    mean = ctx.emit("reduce", [x], [mean_out] if mean_out else None, keep)[0]
    centred = ctx.emit("binary", [x, mean], None, {"fn": "sub"})[0]
    square = ctx.emit("act", [centred], None, {"fn": "square"})[0]
    var = ctx.emit("reduce", [square], None, keep)[0]
    eps_name = ctx.add_const(ctx.fresh(f"{ctx.fnode.name}/epsilon"), np.asarray(eps, ctx.tensor(x).dtype))
    shifted = ctx.emit("binary", [var, eps_name], None, {"fn": "add"})[0]
    inv = ctx.emit("act", [shifted], [inv_out] if inv_out else None, {"fn": "rsqrt"})[0]
    return ctx.emit("binary", [centred, inv], outputs, {"fn": "mul"})[0]


def _broadcastable(ctx, name: str, shape: list[int]) -> str:
    """A per-channel parameter reshaped to `shape` (folded when constant)."""
    if list(ctx.shape(name)) == list(shape):
        return name
    value = ctx.const(name)
    if value is not None:
        return ctx.add_const(ctx.fresh(f"{name}/{'x'.join(map(str, shape))}"), value.reshape(shape))
    return emit_reshape(ctx, name, shape)


def _trivial(ctx, name: str, neutral: float) -> bool:
    """True when `name` is absent or a constant equal to `neutral` everywhere."""
    if not name:
        return True
    value = ctx.const(name)
    return value is not None and bool(np.all(value == neutral))


def emit_affine(ctx, y: str, scale: str, bias: str, shape: list[int], outputs) -> None:
    """y * scale + bias (each broadcast to `shape`), skipping a scale of ones / bias of zeros."""
    steps = [(fn, p) for fn, p, neutral in (("mul", scale, 1.0), ("add", bias, 0.0))
             if not _trivial(ctx, p, neutral)]
    if not steps:
        return ctx.set_alias(outputs[0], y)
    for k, (fn, p) in enumerate(steps):
        last = k == len(steps) - 1
        y = ctx.emit("binary", [y, _broadcastable(ctx, p, shape)], outputs if last else None, {"fn": fn})[0]
    return None


def _input(fn, k: int) -> str:
    return fn.inputs[k] if len(fn.inputs) > k else ""


def _check_stats_input(ctx, x: str, what: str) -> bool:
    if ctx.tensor(x).dtype not in ("float16", "float32", "float64"):
        ctx.reject(f"{what} of a {ctx.tensor(x).dtype} tensor (float only)")
        return False
    return True


# -- ONNX ------------------------------------------------------------------------------------
@onnx_lowering("LayerNormalization", emits=_NORM_OPS)
def _onnx_layer_norm(ctx, fn):
    """LayerNormalization (opset 17): normalise over axes axis..rank-1."""
    x = fn.inputs[0]
    if not _check_stats_input(ctx, x, "LayerNormalization"):
        return None
    rank = len(ctx.shape(x))
    axis = norm_axis(ctx, fn.attrs.get("axis", -1), rank)
    outs = list(fn.outputs) + ["", ""]
    y = emit_normalize(ctx, x, list(range(axis, rank)), float(fn.attrs.get("epsilon", 1e-5)),
                       None, outs[1] or None, outs[2] or None)
    return emit_affine(ctx, y, _input(fn, 1), _input(fn, 2), list(ctx.shape(x)[axis:]), fn.outputs[:1])


def _channel_shape(rank: int, c: int) -> list[int]:
    return [c] + [1] * (rank - 2)


@onnx_lowering("InstanceNormalization", emits=_NORM_OPS)
def _onnx_instance_norm(ctx, fn):
    """InstanceNormalization: per sample and channel over the spatial axes."""
    x = fn.inputs[0]
    shape = ctx.shape(x)
    if not _check_stats_input(ctx, x, "InstanceNormalization"):
        return None
    if len(shape) < 3:
        return ctx.reject(f"InstanceNormalization of a rank-{len(shape)} input (needs N, C, spatial...)")
    y = emit_normalize(ctx, x, list(range(2, len(shape))), float(fn.attrs.get("epsilon", 1e-5)))
    return emit_affine(ctx, y, _input(fn, 1), _input(fn, 2), _channel_shape(len(shape), shape[1]),
                       fn.outputs[:1])


def _per_channel(ctx, name: str, groups: int, c: int) -> str:
    """GroupNormalization-18 keeps scale/bias per group; repeat them per channel."""
    value = ctx.const(name) if name else None
    if value is None or value.size != groups or groups == c:
        return name
    return ctx.add_const(ctx.fresh(f"{name}/per_channel"), np.repeat(value.reshape(-1), c // groups))


@onnx_lowering("GroupNormalization", emits=_NORM_OPS)
def _onnx_group_norm(ctx, fn):
    """GroupNormalization (opset 18/21): channels in num_groups groups, each normalised over
    its channels and all spatial positions."""
    x = fn.inputs[0]
    shape = list(ctx.shape(x))
    groups = int(fn.attrs.get("num_groups", 0))
    if not _check_stats_input(ctx, x, "GroupNormalization"):
        return None
    if len(shape) < 2 or groups < 1 or shape[1] % groups:
        return ctx.reject(f"{shape[1] if len(shape) > 1 else '?'} channels in {groups} groups")
    grouped = emit_reshape(ctx, x, [shape[0], groups, int(np.prod(shape[1:])) // groups])
    y = emit_normalize(ctx, grouped, [2], float(fn.attrs.get("epsilon", 1e-5)))
    y = emit_reshape(ctx, y, shape)
    scale, bias = (_per_channel(ctx, _input(fn, k), groups, shape[1]) for k in (1, 2))
    return emit_affine(ctx, y, scale, bias, _channel_shape(len(shape), shape[1]), fn.outputs[:1])


# -- TensorFlow --------------------------------------------------------------------------------
def tf_batch_stats_norm(ctx, fn, axis: int) -> None:
    """FusedBatchNorm with is_training=True and empty mean/variance: the statistics of this
    input over every axis but the channel axis (Keras 2's LayerNormalization)."""
    x = fn.inputs[0]
    rank = len(ctx.shape(x))
    y = emit_normalize(ctx, x, [a for a in range(rank) if a != axis], float(fn.attrs.get("epsilon", 1e-3)))
    shape = [1] * rank
    shape[axis] = ctx.shape(x)[axis]
    emit_affine(ctx, y, fn.inputs[1], fn.inputs[2], shape, fn.outputs[:1])
