"""Nearest-neighbour up-sampling by integer factors (`upsample`): every element repeated
`scales[axis]` times along each axis. ONNX Resize / Upsample and TF ResizeNearestNeighbor
lower to it when their pixel map is exactly that repetition; a map that takes every k-th
pixel becomes a `slice`. Linear up-sampling by integer factors (ONNX Resize mode linear with
half_pixel / pytorch_half_pixel / asymmetric coordinates, TF ResizeBilinear and TFLite
RESIZE_BILINEAR without align_corners) becomes blends of shifted copies, one axis at a time;
other maps and cubic / area modes are rejected.

The map is computed with the framework's own formulas (ONNX coordinate_transformation_mode
and nearest_mode, TF align_corners / half_pixel_centers), so PyTorch's asymmetric+floor,
ONNX's default half_pixel+round_prefer_floor and Keras 2's UpSampling2D all qualify.
"""
from __future__ import annotations

import math

import numpy as np

from gxnpuc.ops.base import OpDef, onnx_lowering, register, tf_lowering, tflite_lowering, unsupported
from gxnpuc.ops.shape_ops import NOT_CONST, onnx_opset

_EMITS = ("upsample", "slice")
_BILINEAR = ("pad", "slice", "binary", "reshape", "concat")


@register
class Upsample(OpDef):
    name = "upsample"
    ir_inputs = "x"
    ir_attrs = ("`scales` (one integer >= 1 per axis): nearest-neighbour, each element repeated "
                "`scales[axis]` times (Resize/Upsample/ResizeNearestNeighbor whose pixel map is a plain "
                "repetition)")
    category = "data"
    summary = "nearest-neighbour up-sampling: each element repeated scales[axis] times per axis"
    constraints = ("nearest mode with integer factors whose pixel map is a plain repetition "
                   "(PyTorch nearest, ONNX half_pixel/asymmetric with round or floor, Keras "
                   "UpSampling2D); linear and cubic interpolation are not supported",)

    def infer(self, node, in_shapes):
        return [tuple(d * s for d, s in zip(in_shapes[0], node.attrs["scales"]))]

    def run(self, node, xs):
        y = np.asarray(xs[0])
        for axis, s in enumerate(node.attrs["scales"]):
            if s != 1:
                y = np.repeat(y, s, axis=axis)
        return [y]

    def check(self, node, in_shapes):
        scales = node.attrs.get("scales", [])
        if len(scales) != len(in_shapes[0]) or any(int(s) != s or s < 1 for s in scales):
            return f"scales {scales} must be one integer >= 1 per axis"
        return None

    def flops(self, node, in_shapes, out_shapes):
        return 0

    def batch(self, node, shapes, flags):
        return None if node.attrs["scales"][0] == 1 else "repeats along axis 0"

    def keeps_f16(self, node):
        return True  # only moves input values


# -- the pixel map ------------------------------------------------------------------------------
def _round(v: float, mode: str) -> int:
    if mode == "floor":
        return math.floor(v)
    if mode == "ceil":
        return math.ceil(v)
    frac = v - math.floor(v)
    if frac == 0.5:
        return math.floor(v) if mode == "round_prefer_floor" else math.ceil(v)
    return round(v)


def onnx_source_index(n: int, m: int, scale: float, ctm: str, nearest: str) -> list[int] | str:
    """For each of m output pixels, the input pixel (of n) ONNX Resize nearest reads."""
    out = []
    for i in range(m):
        if ctm == "asymmetric":
            x = i / scale
        elif ctm in ("half_pixel", "half_pixel_symmetric") or (ctm == "pytorch_half_pixel" and m > 1):
            x = (i + 0.5) / scale - 0.5
            if ctm == "half_pixel_symmetric":
                x += n / 2 * (1 - m / (scale * n))
        elif ctm == "pytorch_half_pixel":
            x = -0.5
        elif ctm == "align_corners":
            x = 0.0 if m == 1 else i * (n - 1) / (m - 1)
        elif ctm == "tf_half_pixel_for_nn":
            x = (i + 0.5) / scale
        else:
            return f"coordinate_transformation_mode {ctm!r}"
        out.append(min(max(_round(x, nearest), 0), n - 1))
    return out


def tf_source_index(n: int, m: int, align_corners: bool, half_pixel: bool) -> list[int]:
    """The input pixel TF ResizeNearestNeighbor reads for each of m output pixels."""
    scale = (n - 1) / (m - 1) if align_corners and m > 1 else n / m
    out = []
    for i in range(m):
        v = (i + 0.5) * scale if half_pixel else i * scale
        idx = min(int(round(v) if align_corners else math.floor(v)), n - 1)
        out.append(max(idx, 0))
    return out


def _as_repeat_or_stride(index: list[int], n: int) -> tuple[str, int, int] | None:
    """("repeat", k, 0) when index = [0]*k + [1]*k + ..., ("stride", start, step) when it
    is start, start + step, ...; None otherwise."""
    m = len(index)
    if m % n == 0 and index == [i // (m // n) for i in range(m)]:
        return "repeat", m // n, 0
    step = index[1] - index[0] if m > 1 else 1
    if step >= 1 and index == [index[0] + k * step for k in range(m)]:
        return "stride", index[0], step
    return None


def emit_nearest(ctx, fn, x: str, maps: dict[int, list[int]], why: str) -> None:
    """Lower per-axis source-index maps to slice (strided picks) then upsample (repeats)."""
    shape = list(ctx.shape(x))
    scales, sl = [1] * len(shape), {"starts": [0] * len(shape), "ends": list(shape), "steps": [1] * len(shape)}
    for axis, index in maps.items():
        kind = _as_repeat_or_stride(index, shape[axis])
        if kind is None:
            return ctx.reject(f"nearest resize of axis {axis} ({shape[axis]} -> {len(index)}) is not an "
                              f"integer repetition or stride ({why}); resize by an integer factor")
        if kind[0] == "repeat":
            scales[axis] = kind[1]
        else:
            start, step = kind[1], kind[2]
            sl["starts"][axis], sl["steps"][axis] = start, step
            sl["ends"][axis] = start + (len(index) - 1) * step + 1
    y = x
    sliced = sl["starts"] != [0] * len(shape) or sl["ends"] != shape or sl["steps"] != [1] * len(shape)
    up = any(s != 1 for s in scales)
    if sliced:
        y = ctx.emit("slice", [y], None if up else fn.outputs[:1], sl)[0]
    if up:
        ctx.emit("upsample", [y], fn.outputs[:1], {"scales": scales})
    elif not sliced:
        ctx.set_alias(fn.outputs[0], x)
    return None


# -- ONNX ----------------------------------------------------------------------------------------
def _floats(ctx, name: str):
    if not name:
        return None
    v = ctx.const(name)
    return NOT_CONST if v is None else [float(f) for f in np.ravel(v)]


def _onnx_targets(ctx, fn, shape: list[int]):
    """(output sizes, scales) per axis from Resize's scales/sizes inputs (+ axes), or a reason."""
    rank = len(shape)
    axes = [a % rank for a in fn.attrs.get("axes", [])] or list(range(rank))
    scales = _floats(ctx, fn.inputs[2] if len(fn.inputs) > 2 else "")
    sizes = _floats(ctx, fn.inputs[3] if len(fn.inputs) > 3 else "")
    if scales is NOT_CONST or sizes is NOT_CONST:
        return "scales and sizes must be constant"
    full_scales, full_sizes = [1.0] * rank, list(shape)
    if sizes:
        if fn.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            return f"keep_aspect_ratio_policy {fn.attrs['keep_aspect_ratio_policy']!r} (stretch)"
        for a, m in zip(axes, sizes):
            full_sizes[a], full_scales[a] = int(m), int(m) / shape[a]
    elif scales:
        for a, s in zip(axes, scales):
            full_scales[a], full_sizes[a] = s, int(math.floor(shape[a] * s))
    else:
        return "neither scales nor sizes given"
    return full_sizes, full_scales


@onnx_lowering("Resize", emits=_EMITS + _BILINEAR[:1] + _BILINEAR[2:])
def _onnx_resize(ctx, fn):
    x = fn.inputs[0]
    shape = list(ctx.shape(x))
    mode = str(fn.attrs.get("mode", "nearest"))
    if mode not in ("nearest", "linear"):
        return ctx.reject(f"Resize mode {mode!r}: only nearest, and linear by integer factors")
    if mode == "linear" and onnx_opset(ctx) >= 11:
        return _onnx_linear(ctx, fn, shape)
    if onnx_opset(ctx) < 11:  # Resize-10: Upsample's semantics, scales as input 1
        return _onnx_upsample(ctx, fn)
    got = _onnx_targets(ctx, fn, shape)
    if isinstance(got, str):
        return ctx.reject(got)
    sizes, scales = got
    ctm = str(fn.attrs.get("coordinate_transformation_mode", "half_pixel"))
    nearest = str(fn.attrs.get("nearest_mode", "round_prefer_floor"))
    maps = {}
    for a, (n, m, s) in enumerate(zip(shape, sizes, scales)):
        if m != n or s != 1.0:
            index = onnx_source_index(n, m, s, ctm, nearest)
            if isinstance(index, str):
                return ctx.reject(index)
            maps[a] = index
    return emit_nearest(ctx, fn, x, maps, f"coordinate_transformation_mode={ctm}, nearest_mode={nearest}")


_LINEAR_MODES = {"half_pixel": True, "pytorch_half_pixel": True, "asymmetric": False}


def _onnx_linear(ctx, fn, shape: list[int]) -> None:
    """Resize linear (PyTorch bilinear, align_corners=False): separable, integer factors."""
    got = _onnx_targets(ctx, fn, shape)
    if isinstance(got, str):
        return ctx.reject(got)
    ctm = str(fn.attrs.get("coordinate_transformation_mode", "half_pixel"))
    x = fn.inputs[0]
    for axis, (n, m, s) in enumerate(zip(shape, *got)):
        if m == n and s == 1.0:
            continue
        if m % n or s != m // n or ctm not in _LINEAR_MODES:
            return ctx.reject(f"Resize linear of axis {axis} ({n} -> {m}, {ctm}): only up-sampling by an "
                              f"integer factor with {', '.join(_LINEAR_MODES)} coordinates")
        x = bilinear_axis(ctx, x, axis, m // n, _LINEAR_MODES[ctm])
    return ctx.set_alias(fn.outputs[0], x)


@onnx_lowering("Upsample", emits=_EMITS)
def _onnx_upsample(ctx, fn):
    """Upsample (opset 7-9) and Resize-10: nearest with integer scales is a repetition."""
    x = fn.inputs[0]
    shape = list(ctx.shape(x))
    if str(fn.attrs.get("mode", "nearest")) != "nearest":
        return ctx.reject(f"{fn.op_type} mode {fn.attrs.get('mode')!r}: only nearest "
                          "(interpolation is not supported by the NPU)")
    scales = fn.attrs.get("scales") or _floats(ctx, fn.inputs[1] if len(fn.inputs) > 1 else "")
    if scales is NOT_CONST or not scales or len(scales) != len(shape):
        return ctx.reject("scales must be constant, one per axis")
    if any(float(s) != int(s) or s < 1 for s in scales):
        return ctx.reject(f"scales {list(scales)}: only integer up-sampling factors")
    maps = {a: [i // int(s) for i in range(n * int(s))] for a, (n, s) in enumerate(zip(shape, scales)) if s != 1}
    return emit_nearest(ctx, fn, x, maps, "integer scales")


# -- TensorFlow ----------------------------------------------------------------------------------
@tf_lowering("ResizeNearestNeighbor", emits=_EMITS)
def _tf_resize_nearest(ctx, fn):
    """tf.image.resize(..., "nearest") / Keras 2 UpSampling2D: NHWC, size = [h, w]."""
    x, size = fn.inputs[0], ctx.const(fn.inputs[1])
    shape = list(ctx.shape(x))
    if size is None or len(shape) != 4:
        return ctx.reject("size must be constant and the input NHWC")
    align, half = bool(fn.attrs.get("align_corners", False)), bool(fn.attrs.get("half_pixel_centers", False))
    maps = {a: tf_source_index(shape[a], int(m), align, half)
            for a, m in zip((1, 2), np.ravel(size)) if int(m) != shape[a]}
    return emit_nearest(ctx, fn, x, maps, f"align_corners={align}, half_pixel_centers={half}")


_INTERPOLATION = ("only nearest-neighbour resizing and bilinear up-sampling by integer factors (cubic and "
                  "area interpolation are not supported by the NPU)")


@tf_lowering("ResizeBicubic", "ResizeArea", emits=unsupported(_INTERPOLATION))
def _tf_resize_other(ctx, fn):
    ctx.reject(_INTERPOLATION)


# -- TensorFlow Lite ------------------------------------------------------------------------------
@tflite_lowering("RESIZE_NEAREST_NEIGHBOR", emits=_EMITS)
def _tflite_resize_nearest(ctx, fn):
    _tf_resize_nearest(ctx, fn)  # same inputs (x, size) and options as TF


@tflite_lowering("RESIZE_BILINEAR", emits=_BILINEAR)
@tf_lowering("ResizeBilinear", emits=_BILINEAR)
def _tflite_resize_bilinear(ctx, fn):
    """Bilinear up-sampling of NHWC by integer factors, as TF and TFLite compute it (half-pixel
    centers or not; align_corners only where an axis keeps its size)."""
    x, size = fn.inputs[0], ctx.const(fn.inputs[1])
    shape = list(ctx.shape(x))
    if size is None or len(shape) != 4:
        return ctx.reject("size must be constant and the input NHWC")
    half = bool(fn.attrs.get("half_pixel_centers", False))
    for axis, m in zip((1, 2), (int(v) for v in np.ravel(size))):
        n = shape[axis]
        if m == n:
            continue
        if m % n or fn.attrs.get("align_corners"):
            return ctx.reject(f"{fn.op_type} of axis {axis} ({n} -> {m}): only up-sampling by an "
                              "integer factor without align_corners")
        x = bilinear_axis(ctx, x, axis, m // n, half)
    return ctx.set_alias(fn.outputs[0], x)


def bilinear_axis(ctx, x: str, axis: int, s: int, half_pixel: bool) -> str:
    """Each of the s phases p of output pixel i*s + p reads the input at i + d_p
    (d_p = (p + 0.5)/s - 0.5 with half-pixel centers, else p/s), clamped at the edges: a blend
    of two shifted copies of x (slices of x edge-padded by one), interleaved along `axis`."""
    shape = list(ctx.shape(x))
    n, rank = shape[axis], len(shape)
    pads = [0] * (2 * rank)
    pads[axis] = pads[rank + axis] = 1
    xp = ctx.emit("pad", [x], None, {"pads": pads, "mode": "edge", "value": 0.0})[0]

    def shifted(k: int) -> str:  # x[clamp(i + k)] for k in -1, 0, 1
        if k == 0:
            return x
        starts, ends = [0] * rank, list(shape)
        starts[axis], ends[axis] = 1 + k, 1 + k + n
        return ctx.emit("slice", [xp], None, {"starts": starts, "ends": ends, "steps": [1] * rank})[0]

    def scaled(name: str, w: float) -> str:
        c = ctx.add_const(ctx.fresh(f"{ctx.fnode.name}/w"), np.asarray(w, np.float32))
        return ctx.emit("binary", [name, c], None, {"fn": "mul"})[0]

    phases = []
    for p in range(s):
        d = (p + 0.5) / s - 0.5 if half_pixel else p / s
        k = int(np.floor(d))
        f = d - k
        y = shifted(k) if f == 0 else ctx.emit("binary", [scaled(shifted(k), 1 - f), scaled(shifted(k + 1), f)],
                                                None, {"fn": "add"})[0]
        phases.append(ctx.emit("reshape", [y], None, {"shape": shape[:axis + 1] + [1] + shape[axis + 1:]})[0])
    both = ctx.emit("concat", phases, None, {"axis": axis + 1})[0]
    return ctx.emit("reshape", [both], None, {"shape": shape[:axis] + [n * s] + shape[axis + 1:]})[0]
