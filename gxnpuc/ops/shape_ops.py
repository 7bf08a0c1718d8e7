"""Data movement: `reshape`, `transpose`, `concat`, `split`, `slice`, `cast`, and ONNX Constant.

Also the small argument helpers the ONNX lowerings share (opset, axes given as attribute in
old opsets or as a constant input in new ones, axis normalisation).
"""
from __future__ import annotations

import numpy as np

from gxnpuc.errors import ModelError
from gxnpuc.ops.base import CONSTANT, OpDef, batch_not_axis_0, batch_per_sample, onnx_lowering, register

NOT_CONST = object()  # arg_ints(): the argument is an input computed at run time
FLOAT_DTYPES = ("float16", "float32", "float64")
# ONNX TensorProto element type -> numpy dtype name (bfloat16/strings have no numpy dtype)
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
               7: "int64", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


# -- helpers shared by the ONNX lowerings ---------------------------------------------------
def onnx_opset(ctx) -> int:
    """The model's default-domain opset (latest semantics when the front end did not say)."""
    return int(ctx.graph.meta.get("opset") or 21)


def norm_axis(ctx, axis: int, rank: int) -> int:
    """A non-negative axis; an out-of-range axis is a broken model."""
    axis = int(axis)
    if not -rank <= axis < rank:
        fn = ctx.fnode
        raise ModelError(f"node {fn.name!r} [{fn.op_type}]", f"axis {axis} is out of range for rank {rank}",
                         f"{-rank} <= axis < {rank}")
    return axis + rank if axis < 0 else axis


def arg_ints(ctx, fn, attr: str, idx: int):
    """Ints from attribute `attr` (older opsets) or constant input `idx`.

    None when neither is given; NOT_CONST when the input is computed at run time.
    """
    if attr in fn.attrs and fn.attrs[attr] is not None:
        return [int(v) for v in np.ravel(fn.attrs[attr])]
    if len(fn.inputs) > idx and fn.inputs[idx]:
        v = ctx.const(fn.inputs[idx])
        return NOT_CONST if v is None else [int(x) for x in np.ravel(v)]
    return None


def emit_reshape(ctx, x: str, shape, outputs=None) -> str:
    """Reshape x to a fully static shape; returns the output name."""
    return ctx.emit("reshape", [x], outputs, {"shape": [int(d) for d in shape]})[0]


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# -- ops ---------------------------------------------------------------------------------------
class _Move(OpDef):
    """Data movement: no arithmetic."""
    category = "data"

    def flops(self, node, in_shapes, out_shapes):
        return 0


@register
class Reshape(_Move):
    name = "reshape"
    ir_inputs = "x"
    ir_attrs = "`shape` (fully static). Reshape/Flatten/Squeeze/Unsqueeze/ExpandDims"
    sink = "move"
    summary = "change the shape, keep the element order (Reshape, Flatten, Squeeze, Unsqueeze)"
    constraints = ("target shape constant (Shape chains are folded first)",)

    def infer(self, node, in_shapes):
        return [tuple(node.attrs["shape"])]

    def run(self, node, xs):
        return [np.reshape(xs[0], node.attrs["shape"])]

    def batch(self, node, shapes, flags):
        shape = list(node.attrs["shape"])
        return lambda n: {"shape": [n] + shape[1:]}

    def keeps_f16(self, node):
        return True  # only moves input values


@register
class Transpose(_Move):
    name = "transpose"
    ir_inputs = "x"
    ir_attrs = "`perm`"
    sink = "move"
    summary = "permute axes"

    def infer(self, node, in_shapes):
        return [tuple(in_shapes[0][p] for p in node.attrs["perm"])]

    def run(self, node, xs):
        return [np.ascontiguousarray(np.transpose(xs[0], node.attrs["perm"]))]

    def batch(self, node, shapes, flags):
        return None if node.attrs["perm"][0] == 0 else "moves axis 0"

    def keeps_f16(self, node):
        return True  # only moves input values


@register
class Concat(_Move):
    name = "concat"
    ir_inputs = "x..."
    ir_attrs = "`axis`"
    ir_roles = "constants: param"  # beside `weights`: how its constant inputs are stored
    summary = "join tensors along one axis"
    constraints = ("all inputs have the same shape except along `axis`",)

    def infer(self, node, in_shapes):
        axis = node.attrs["axis"]
        out = list(in_shapes[0])
        out[axis] = sum(s[axis] for s in in_shapes)
        return [tuple(out)]

    def run(self, node, xs):
        return [np.concatenate([np.asarray(x) for x in xs], axis=node.attrs["axis"])]

    def batch(self, node, shapes, flags):
        if not all(flags):
            return "joins sample data with a constant (that would need broadcasting)"
        return batch_not_axis_0(node, shapes, [False] * len(flags))

    def keeps_f16(self, node):
        return True  # only moves input values


@register
class Split(_Move):
    name = "split"
    ir_inputs = "x"
    ir_attrs = "`axis`, `sizes`; one output per size"
    summary = "cut a tensor along one axis into parts of the given sizes"

    def infer(self, node, in_shapes):
        axis, shape = node.attrs["axis"], in_shapes[0]
        return [shape[:axis] + (n,) + shape[axis + 1:] for n in node.attrs["sizes"]]

    def run(self, node, xs):
        cuts = np.cumsum(node.attrs["sizes"])[:-1]
        return [np.ascontiguousarray(p) for p in np.split(xs[0], cuts, axis=node.attrs["axis"])]

    def batch(self, node, shapes, flags):
        return batch_not_axis_0(node, shapes, flags)

    def keeps_f16(self, node):
        return True  # only moves input values


def _slices(node):
    # an end of -1 with a negative step means "through index 0" (Python needs None there)
    return tuple(slice(s, None if e < 0 else e, st)
                 for s, e, st in zip(node.attrs["starts"], node.attrs["ends"], node.attrs["steps"]))


@register
class Slice(_Move):
    name = "slice"
    ir_inputs = "x"
    ir_attrs = ("`starts`, `ends`, `steps`: one entry per axis of x, normalised (clamped, non-negative; "
                "an end of -1 with a negative step means through index 0)")
    summary = "strided window: one start/end/step per axis (end -1 with a negative step = through 0)"

    def infer(self, node, in_shapes):
        return [tuple(len(range(d)[s]) for d, s in zip(in_shapes[0], _slices(node)))]

    def run(self, node, xs):
        return [np.ascontiguousarray(np.asarray(xs[0])[_slices(node)])]

    def batch(self, node, shapes, flags):
        a = node.attrs
        return lambda n: {"starts": [0] + list(a["starts"][1:]), "ends": [n] + list(a["ends"][1:]),
                          "steps": [1] + list(a["steps"][1:])}

    def keeps_f16(self, node):
        return True  # only moves input values


@register
class Cast(_Move):
    name = "cast"
    ir_inputs = "x"
    ir_attrs = "`to` numpy dtype name"
    summary = "convert the element type"
    constraints = ("at run time only between float types (the NPU computes in fp16)",)

    def infer(self, node, in_shapes):
        return [in_shapes[0]]

    def run(self, node, xs):
        return [np.asarray(xs[0]).astype(node.attrs["to"])]

    def check(self, node, in_shapes):
        if node.attrs["to"] not in FLOAT_DTYPES:
            return f"cast to {node.attrs['to']} at run time (only between float types)"
        return None

    def batch(self, node, shapes, flags):
        return batch_per_sample(node, shapes, flags)


# -- ONNX lowerings ----------------------------------------------------------------------------
def target_shape(in_shape, spec, allowzero: bool):
    """Resolve ONNX Reshape's 0 (copy) and -1 (infer); None when impossible."""
    out = [in_shape[i] if d == 0 and not allowzero and i < len(in_shape) else d
           for i, d in enumerate(spec)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        return None
    if -1 in out:
        known = _size([d for d in out if d != -1])
        if known == 0 or _size(in_shape) % known:
            return None
        out[out.index(-1)] = _size(in_shape) // known
    return out if _size(out) == _size(in_shape) else None


@onnx_lowering("Reshape", emits=("reshape",))
def _onnx_reshape(ctx, fn):
    spec = arg_ints(ctx, fn, "shape", 1)  # attribute before opset 5
    if spec is None or spec is NOT_CONST:
        return ctx.reject("target shape must be constant")
    in_shape = ctx.shape(fn.inputs[0])
    shape = target_shape(in_shape, spec, bool(fn.attrs.get("allowzero", 0)))
    if shape is None:
        return ctx.reject(f"cannot reshape {list(in_shape)} to {spec}")
    emit_reshape(ctx, fn.inputs[0], shape, fn.outputs)


@onnx_lowering("Flatten", emits=("reshape",))
def _onnx_flatten(ctx, fn):
    shape = ctx.shape(fn.inputs[0])
    axis = fn.attrs.get("axis", 1)
    axis = len(shape) if axis == len(shape) else norm_axis(ctx, axis, len(shape))
    emit_reshape(ctx, fn.inputs[0], [_size(shape[:axis]), _size(shape[axis:])], fn.outputs)


@onnx_lowering("Squeeze", emits=("reshape",))
def _onnx_squeeze(ctx, fn):
    shape = ctx.shape(fn.inputs[0])
    axes = arg_ints(ctx, fn, "axes", 1)
    if axes is NOT_CONST:
        return ctx.reject("axes must be constant")
    axes = [k for k, d in enumerate(shape) if d == 1] if not axes else \
        [norm_axis(ctx, a, len(shape)) for a in axes]
    if any(shape[a] != 1 for a in axes):
        return ctx.reject(f"cannot squeeze axes {axes} of shape {list(shape)} (size is not 1)")
    emit_reshape(ctx, fn.inputs[0], [d for k, d in enumerate(shape) if k not in axes], fn.outputs)


@onnx_lowering("Unsqueeze", emits=("reshape",))
def _onnx_unsqueeze(ctx, fn):
    shape = list(ctx.shape(fn.inputs[0]))
    axes = arg_ints(ctx, fn, "axes", 1)
    if axes is None or axes is NOT_CONST:
        return ctx.reject("axes must be constant")
    rank = len(shape) + len(axes)
    for a in sorted(norm_axis(ctx, a, rank) for a in axes):
        shape.insert(a, 1)
    emit_reshape(ctx, fn.inputs[0], shape, fn.outputs)


@onnx_lowering("Transpose", emits=("transpose",))
def _onnx_transpose(ctx, fn):
    rank = len(ctx.shape(fn.inputs[0]))
    perm = fn.attrs.get("perm") or list(range(rank))[::-1]
    ctx.emit("transpose", fn.inputs[:1], fn.outputs, {"perm": [norm_axis(ctx, p, rank) for p in perm]})


@onnx_lowering("Concat", emits=("concat",))
def _onnx_concat(ctx, fn):
    shape = ctx.shape(fn.inputs[0])
    axis = norm_axis(ctx, fn.attrs.get("axis", 0), len(shape))
    ins = [i for i in fn.inputs if i]
    nonempty = [i for i in ins if ctx.shape(i)[axis] > 0]
    ctx.emit("concat", nonempty or ins[:1], fn.outputs, {"axis": axis})


def _split_sizes(ctx, fn, dim: int):
    sizes = arg_ints(ctx, fn, "split", 1)
    if sizes is NOT_CONST or sizes:
        return sizes
    n = int(fn.attrs.get("num_outputs", len(fn.outputs)))
    if "num_outputs" in fn.attrs:  # opset 18: the last part may be smaller
        chunk = -(-dim // n)
        return [min(chunk, max(dim - chunk * k, 0)) for k in range(n)]
    return [dim // n] * n if dim % n == 0 else None


@onnx_lowering("Split", emits=("split",))
def _onnx_split(ctx, fn):
    shape = ctx.shape(fn.inputs[0])
    axis = norm_axis(ctx, fn.attrs.get("axis", 0), len(shape))
    sizes = _split_sizes(ctx, fn, shape[axis])
    if sizes is NOT_CONST:
        return ctx.reject("split sizes must be constant")
    if sizes is None or sum(sizes) != shape[axis] or len(sizes) != len(fn.outputs):
        return ctx.reject(f"cannot split size {shape[axis]} into {len(fn.outputs)} parts ({sizes})")
    ctx.emit("split", fn.inputs[:1], fn.outputs, {"axis": axis, "sizes": sizes})


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def norm_slice(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """ONNX Slice clamping: negative = from the end; INT_MAX/INT_MIN-style ends saturate."""
    start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
    if step > 0:
        return _clamp(start, 0, dim), _clamp(end, 0, dim), step
    return _clamp(start, 0, dim - 1), _clamp(end, -1, dim - 1), step


@onnx_lowering("Slice", emits=("slice",))
def _onnx_slice(ctx, fn):
    shape = ctx.shape(fn.inputs[0])
    # attributes before opset 10, constant inputs 1..4 since
    args = [arg_ints(ctx, fn, a, k) for k, a in enumerate(("starts", "ends", "axes", "steps"), 1)]
    if any(a is NOT_CONST for a in args):
        return ctx.reject("starts, ends, axes and steps must be constant")
    starts, ends, axes, steps = args
    if starts is None or ends is None:
        return ctx.reject("Slice without starts/ends")
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    attrs = {"starts": [0] * len(shape), "ends": list(shape), "steps": [1] * len(shape)}
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = norm_axis(ctx, a, len(shape))
        if st == 0:
            return ctx.reject("slice step 0")
        attrs["starts"][a], attrs["ends"][a], attrs["steps"][a] = norm_slice(s, e, st, shape[a])
    ctx.emit("slice", fn.inputs[:1], fn.outputs, attrs)


def emit_cast(ctx, fn, to: str | None):
    """Cast fn's input to numpy dtype `to` (ONNX Cast/CastLike, TF Cast); a same-type cast aliases."""
    x = fn.inputs[0]
    if to is None:
        return ctx.reject("cast to a type numpy cannot hold (bfloat16, string, ...)")
    if ctx.const(x) is None:
        src = ctx.tensor(x).dtype
        if src == to:
            return ctx.set_alias(fn.outputs[0], x)
        if src not in FLOAT_DTYPES or to not in FLOAT_DTYPES:
            return ctx.reject(f"cast from {src} to {to} at run time (only between float types)")
    out = ctx.emit("cast", [x], fn.outputs, {"to": to})[0]
    ctx.graph.tensors[out].dtype = to


@onnx_lowering("Cast", emits=("cast",))
def _onnx_cast(ctx, fn):
    to = fn.attrs.get("to", 1)
    emit_cast(ctx, fn, ONNX_DTYPES.get(to) if isinstance(to, int) else str(to).lower())


@onnx_lowering("CastLike", emits=("cast",))
def _onnx_cast_like(ctx, fn):
    emit_cast(ctx, fn, ctx.tensor(fn.inputs[1]).dtype)


_CONST_ATTRS = {"value": None, "value_float": "float32", "value_floats": "float32",
                "value_int": "int64", "value_ints": "int64"}


@onnx_lowering("Constant", emits=CONSTANT)
def _onnx_constant(ctx, fn):
    for attr, dtype in _CONST_ATTRS.items():
        if attr in fn.attrs:
            value = np.asarray(fn.attrs[attr], dtype=dtype)
            ctx.add_const(fn.outputs[0], value)
            return None
    return ctx.reject(f"constant of kind {sorted(fn.attrs)} (only tensors and numbers)")

