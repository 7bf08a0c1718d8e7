"""TensorFlow and TensorFlow Lite data-movement lowerings (StridedSlice with all five masks, Slice, Reshape,
Squeeze, ExpandDims, Transpose, ConcatV2, Pack/Unpack, Split/SplitV, Cast) onto the IR's
`slice`, `reshape`, `transpose`, `concat`, `split` and `cast` ops (ops/shape_ops.py).

Kept apart from shape_ops.py only to keep each file small; constants fold through these
lowerings too (Keras' dynamic-batch Shape -> StridedSlice -> Pack -> Reshape chains).
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import emit_cast, emit_reshape, norm_axis, target_shape


# -- StridedSlice -----------------------------------------------------------------------------
def _bound(v: int, masked: bool, step: int, dim: int, is_begin: bool) -> int:
    """One begin/end of a StridedSlice axis, normalised like Python slicing (-1 = through 0)."""
    if masked:
        return (0 if is_begin else dim) if step > 0 else (dim - 1 if is_begin else -1)
    v = int(v) + dim if v < 0 else int(v)
    return max(0, min(dim, v)) if step > 0 else max(-1, min(dim - 1, v))


def strided_slice_spec(shape, begin, end, strides, attrs: dict):
    """(slice attrs over the input axes, output shape) of a TF StridedSlice with all five
    masks, or a string saying why it cannot be expressed."""
    masks = {k: int(attrs.get(f"{k}_mask", 0))
             for k in ("begin", "end", "ellipsis", "new_axis", "shrink_axis")}
    bit = {k: (lambda i, m=m: bool(m >> i & 1)) for k, m in masks.items()}
    rank, n = len(shape), len(begin)
    if bin(masks["ellipsis"]).count("1") > 1:
        return "more than one ellipsis"
    used = sum(1 for i in range(n) if not bit["new_axis"](i) and not bit["ellipsis"](i))
    attrs_out = {"starts": [0] * rank, "ends": list(shape), "steps": [1] * rank}
    out, axis = [], 0
    for i in range(n):
        if bit["ellipsis"](i):
            out.extend(shape[axis:axis + rank - used])
            axis += rank - used
        elif bit["new_axis"](i):
            out.append(1)
        elif axis >= rank:
            return f"{n} slice entries for a rank-{rank} input"
        else:
            got = _one_axis(shape[axis], begin[i], end[i], int(strides[i]), i, bit)
            if isinstance(got, str):
                return got
            (attrs_out["starts"][axis], attrs_out["ends"][axis], attrs_out["steps"][axis]), size = got
            out.extend([] if size is None else [size])
            axis += 1
    return attrs_out, out + list(shape[axis:])


def _one_axis(dim: int, b, e, step: int, i: int, bit):
    """((start, end, step), output size or None when the axis is shrunk) for one axis."""
    if step == 0:
        return "stride 0"
    if bit["shrink_axis"](i):
        idx = int(b) + dim if b < 0 else int(b)
        if not 0 <= idx < dim:
            return f"index {int(b)} out of range for size {dim}"
        return (idx, idx + 1, 1), None
    start = _bound(b, bit["begin"](i), step, dim, True)
    stop = _bound(e, bit["end"](i), step, dim, False)
    return (start, stop, step), len(range(dim)[slice(start, None if stop < 0 else stop, step)])


# -- lowerings ----------------------------------------------------------------------------------
def _tf_ints(ctx, fn, idx: int):
    """Constant input idx as a list of ints, or None (after rejecting) when computed."""
    v = ctx.const(fn.inputs[idx])
    if v is None:
        ctx.reject(f"input {idx} of {fn.op_type} must be constant")
        return None
    return [int(x) for x in np.ravel(v)]


def _slice_reshape(ctx, fn, x: str, attrs: dict, out_shape) -> None:
    """slice (skipped when it keeps everything) then reshape (skipped when not needed)."""
    shape, out_shape = list(ctx.shape(x)), list(out_shape)
    cut = [len(range(d)[slice(s, None if e < 0 else e, st)])
           for d, s, e, st in zip(shape, attrs["starts"], attrs["ends"], attrs["steps"])]
    y = x
    if cut != shape or any(st != 1 for st in attrs["steps"]):
        y = ctx.emit("slice", [x], fn.outputs[:1] if cut == out_shape else None, attrs)[0]
    if cut != out_shape:
        emit_reshape(ctx, y, out_shape, fn.outputs[:1])
    elif y == x:
        ctx.set_alias(fn.outputs[0], x)


@tf_lowering("StridedSlice", emits=("slice", "reshape"))
def _tf_strided_slice(ctx, fn):
    args = [_tf_ints(ctx, fn, k) for k in (1, 2, 3)]
    if any(a is None for a in args):
        return None
    spec = strided_slice_spec(ctx.shape(fn.inputs[0]), *args, fn.attrs)
    if isinstance(spec, str):
        return ctx.reject(spec)
    _slice_reshape(ctx, fn, fn.inputs[0], *spec)


@tf_lowering("Slice", emits=("slice", "reshape"))
def _tf_slice(ctx, fn):
    begin = _tf_ints(ctx, fn, 1)
    size = None if begin is None else _tf_ints(ctx, fn, 2)
    if size is None:
        return None
    shape = list(ctx.shape(fn.inputs[0]))
    ends = [d if s == -1 else b + s for b, s, d in zip(begin, size, shape)]
    attrs = {"starts": begin, "ends": ends, "steps": [1] * len(shape)}
    _slice_reshape(ctx, fn, fn.inputs[0], attrs, [e - b for b, e in zip(begin, ends)])


@tf_lowering("Reshape", emits=("reshape",))
def _tf_reshape(ctx, fn):
    _reshape_to(ctx, fn, _tf_ints(ctx, fn, 1))


def _reshape_to(ctx, fn, spec):
    """Reshape input 0 to the TF-style spec (-1 inferred, 0 kept as a zero dim); None waits."""
    in_shape = ctx.shape(fn.inputs[0])
    shape = None if spec is None else target_shape(in_shape, spec, allowzero=True)
    if spec is not None and shape is None:
        return ctx.reject(f"cannot reshape {list(in_shape)} to {spec}")
    if shape is not None:
        emit_reshape(ctx, fn.inputs[0], shape, fn.outputs[:1])


@tf_lowering("Squeeze", emits=("reshape",))
def _tf_squeeze(ctx, fn):
    shape = ctx.shape(fn.inputs[0])
    axes = [norm_axis(ctx, a, len(shape)) for a in fn.attrs.get("squeeze_dims", [])] or \
        [k for k, d in enumerate(shape) if d == 1]
    if any(shape[a] != 1 for a in axes):
        return ctx.reject(f"cannot squeeze axes {axes} of shape {list(shape)} (size is not 1)")
    emit_reshape(ctx, fn.inputs[0], [d for k, d in enumerate(shape) if k not in axes], fn.outputs[:1])


@tf_lowering("ExpandDims", emits=("reshape",))
def _tf_expand_dims(ctx, fn):
    dim = _tf_ints(ctx, fn, 1)
    if dim is not None:
        shape = list(ctx.shape(fn.inputs[0]))
        shape.insert(norm_axis(ctx, dim[0], len(shape) + 1), 1)
        emit_reshape(ctx, fn.inputs[0], shape, fn.outputs[:1])


@tf_lowering("Transpose", emits=("transpose",))
def _tf_transpose(ctx, fn):
    perm = _tf_ints(ctx, fn, 1)
    if perm is not None:
        rank = len(ctx.shape(fn.inputs[0]))
        perm = [norm_axis(ctx, p, rank) for p in perm]
        ctx.emit("transpose", fn.inputs[:1], fn.outputs[:1], {"perm": perm})


@tf_lowering("ConcatV2", "Concat", emits=("concat",))
def _tf_concat(ctx, fn):
    v2 = fn.op_type == "ConcatV2"
    values, axis = (fn.inputs[:-1], _tf_ints(ctx, fn, len(fn.inputs) - 1)) if v2 else \
        (fn.inputs[1:], _tf_ints(ctx, fn, 0))
    if axis is not None:
        axis = norm_axis(ctx, axis[0], len(ctx.shape(values[0])))
        nonempty = [v for v in values if ctx.shape(v)[axis] > 0] or values[:1]
        if len(nonempty) == 1:
            return ctx.set_alias(fn.outputs[0], nonempty[0])
        ctx.emit("concat", nonempty, fn.outputs[:1], {"axis": axis})


@tf_lowering("Pack", emits=("concat", "reshape"))
def _tf_pack(ctx, fn):
    shape = list(ctx.shape(fn.inputs[0]))
    axis = norm_axis(ctx, fn.attrs.get("axis", 0), len(shape) + 1)
    shape.insert(axis, 1)
    if len(fn.inputs) == 1:
        return emit_reshape(ctx, fn.inputs[0], shape, fn.outputs[:1])
    parts = [emit_reshape(ctx, x, shape) for x in fn.inputs]
    ctx.emit("concat", parts, fn.outputs[:1], {"axis": axis})


@tf_lowering("Unpack", emits=("split", "reshape"))
def _tf_unpack(ctx, fn):
    shape = list(ctx.shape(fn.inputs[0]))
    axis = norm_axis(ctx, fn.attrs.get("axis", 0), len(shape))
    parts = ctx.emit("split", fn.inputs[:1], [ctx.fresh(f"{o}/part") for o in fn.outputs],
                     {"axis": axis, "sizes": [1] * shape[axis]})
    for part, out in zip(parts, fn.outputs):
        emit_reshape(ctx, part, shape[:axis] + shape[axis + 1:], [out])


@tf_lowering("Split", "SplitV", emits=("split",))
def _tf_split(ctx, fn):
    x, axis_idx = (fn.inputs[1], 0) if fn.op_type == "Split" else (fn.inputs[0], 2)
    axis = _tf_ints(ctx, fn, axis_idx)
    if axis is None:
        return None
    shape = ctx.shape(x)
    axis = norm_axis(ctx, axis[0], len(shape))
    n = len(fn.outputs)
    sizes = [shape[axis] // n] * n if fn.op_type == "Split" else _tf_ints(ctx, fn, 1)
    if sizes is None:
        return None
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = shape[axis] - sum(s for s in sizes if s != -1)
    if sum(sizes) != shape[axis] or min(sizes) < 0:
        return ctx.reject(f"cannot split size {shape[axis]} into {sizes}")
    ctx.emit("split", [x], fn.outputs, {"axis": axis, "sizes": sizes})


@tf_lowering("Cast", emits=("cast",))
def _tf_cast(ctx, fn):
    to = fn.attrs.get("DstT", "float32")
    try:
        np.dtype(to)
    except TypeError:
        to = None
    emit_cast(ctx, fn, to)


@tf_lowering("ReverseV2", emits=("slice",))
def _tf_reverse(ctx, fn):
    """tf.reverse (Keras' go_backwards, Bidirectional): a slice with step -1 on each axis."""
    axes = _tf_ints(ctx, fn, 1)
    if axes is None:
        return None
    shape = list(ctx.shape(fn.inputs[0]))
    attrs = {"starts": [0] * len(shape), "ends": list(shape), "steps": [1] * len(shape)}
    flip = [a for a in (norm_axis(ctx, a, len(shape)) for a in axes) if shape[a] > 1]
    if not flip:
        return ctx.set_alias(fn.outputs[0], fn.inputs[0])
    for a in flip:
        attrs["starts"][a], attrs["ends"][a], attrs["steps"][a] = shape[a] - 1, -1, -1
    ctx.emit("slice", fn.inputs[:1], fn.outputs[:1], attrs)
    return None


# -- TensorFlow Lite: the same ops under their TFLite names and options -------------------------
tflite_lowering("SQUEEZE", emits=("reshape",))(_tf_squeeze)  # squeeze_dims
tflite_lowering("REVERSE_V2", emits=("slice",))(_tf_reverse)  # REVERSE_V2(x, axes), as TF
tflite_lowering("EXPAND_DIMS", emits=("reshape",))(_tf_expand_dims)
tflite_lowering("TRANSPOSE", emits=("transpose",))(_tf_transpose)
tflite_lowering("PACK", emits=("concat", "reshape"))(_tf_pack)  # axis
tflite_lowering("UNPACK", emits=("split", "reshape"))(_tf_unpack)
tflite_lowering("SLICE", emits=("slice", "reshape"))(_tf_slice)


@tflite_lowering("RESHAPE", emits=("reshape",))
def _tflite_reshape(ctx, fn):
    """Target shape from input 1 (constant once shape chains fold) or the new_shape option."""
    if len(fn.inputs) > 1 and fn.inputs[1]:
        spec = _tf_ints(ctx, fn, 1)
    else:
        spec = [int(d) for d in fn.attrs.get("new_shape", [])]
    _reshape_to(ctx, fn, spec)


@tflite_lowering("CONCATENATION", emits=("concat", "act"))
def _tflite_concat(ctx, fn):
    from gxnpuc.ops.activation import emit_fused

    axis = norm_axis(ctx, int(fn.attrs.get("axis", 0)), len(ctx.shape(fn.inputs[0])))
    values = [v for v in fn.inputs if ctx.shape(v)[axis] > 0] or fn.inputs[:1]
    if len(values) == 1 and fn.attrs.get("fused_activation_function", "NONE") == "NONE":
        return ctx.set_alias(fn.outputs[0], values[0])
    return emit_fused(ctx, fn, "concat", values, {"axis": axis})


@tflite_lowering("SPLIT", "SPLIT_V", emits=("split",))
def _tflite_split(ctx, fn):
    """SPLIT(axis, x) with num_splits equal parts; SPLIT_V(x, size_splits, axis)."""
    from dataclasses import replace

    _tf_split(ctx, replace(fn, op_type="Split" if fn.op_type == "SPLIT" else "SplitV"))


@tflite_lowering("STRIDED_SLICE", emits=("slice", "reshape"))
def _tflite_strided_slice(ctx, fn):
    """TF's StridedSlice with all five masks; `offset` makes end relative to begin."""
    args = [_tf_ints(ctx, fn, k) for k in (1, 2, 3)]
    if any(a is None for a in args):
        return None
    if fn.attrs.get("offset"):
        args[1] = [b + e for b, e in zip(args[0], args[1])]
    spec = strided_slice_spec(ctx.shape(fn.inputs[0]), *args, fn.attrs)
    if isinstance(spec, str):
        return ctx.reject(spec)
    _slice_reshape(ctx, fn, fn.inputs[0], *spec)
    return None


@tflite_lowering("CAST", emits=("cast",))
def _tflite_cast(ctx, fn):
    emit_cast(ctx, fn, (fn.attrs.get("output_dtypes") or ["float32"])[0])
