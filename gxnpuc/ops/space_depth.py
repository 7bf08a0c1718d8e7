"""DepthToSpace / SpaceToDepth (ONNX DCR and CRD, TensorFlow NHWC and NCHW, TFLite) as the
reshape -> transpose -> reshape they are: pure data movement, run by the NPU's move ops.

Layouts stay the framework's (NCHW for ONNX, NHWC for TF and TFLite). With block b and the
channels split as named below (C' = C / b^2 for DepthToSpace):
- ONNX DCR (and every TF / TFLite DepthToSpace): channel = (i*b + j)*C' + c
- ONNX CRD (PyTorch's PixelShuffle):             channel = c*b*b + i*b + j
- SpaceToDepth (ONNX, TF, TFLite) is the inverse of the DCR order, or of the CRD order
  (ONNX SpaceToDepth with mode CRD, newer opsets).
"""
from __future__ import annotations

from gxnpuc.ops.base import onnx_lowering, tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import emit_reshape

_EMITS = ("reshape", "transpose")


def _move(ctx, fn, split: list[int], perm: list[int], out_shape: list[int]) -> None:
    """x reshaped to `split`, permuted by `perm`, reshaped to `out_shape` (the node's output)."""
    a = emit_reshape(ctx, fn.inputs[0], split)
    t = ctx.emit("transpose", [a], None, {"perm": perm})[0]
    emit_reshape(ctx, t, out_shape, fn.outputs[:1])


def _block(ctx, fn, size_key: str = "blocksize") -> int | None:
    b = int(fn.attrs.get(size_key, 0) or 0)
    if b < 1:
        ctx.reject(f"block size {b} (a positive integer)")
        return None
    return b


def _nhwc(ctx, fn, layout: str) -> tuple[int, int, int, int] | None:
    """(n, h, w, c) of the 4-D input in either layout; None after a rejection."""
    shape = list(ctx.shape(fn.inputs[0]))
    if len(shape) != 4:
        ctx.reject(f"a 4-D input (got {shape})")
        return None
    n, h, w, c = shape if layout == "NHWC" else (shape[0], shape[2], shape[3], shape[1])
    return n, h, w, c


def depth_to_space(ctx, fn, b: int, layout: str, mode: str = "DCR") -> None:
    """layout "NCHW" or "NHWC"; mode DCR or CRD (NCHW only: the NHWC op is always DCR)."""
    dims = _nhwc(ctx, fn, layout)
    if dims is None:
        return None
    n, h, w, c = dims
    if c % (b * b):
        return ctx.reject(f"{c} channels are not divisible by block_size^2 = {b * b}")
    c2 = c // (b * b)
    if layout == "NHWC":
        return _move(ctx, fn, [n, h, w, b, b, c2], [0, 1, 3, 2, 4, 5], [n, h * b, w * b, c2])
    if mode == "CRD":
        return _move(ctx, fn, [n, c2, b, b, h, w], [0, 1, 4, 2, 5, 3], [n, c2, h * b, w * b])
    return _move(ctx, fn, [n, b, b, c2, h, w], [0, 3, 4, 1, 5, 2], [n, c2, h * b, w * b])


def space_to_depth(ctx, fn, b: int, layout: str, mode: str = "DCR") -> None:
    dims = _nhwc(ctx, fn, layout)
    if dims is None:
        return None
    n, h, w, c = dims
    if h % b or w % b:
        return ctx.reject(f"height {h} and width {w} are not divisible by block_size {b}")
    if layout == "NHWC":
        return _move(ctx, fn, [n, h // b, b, w // b, b, c], [0, 1, 3, 2, 4, 5], [n, h // b, w // b, b * b * c])
    perm = [0, 1, 3, 5, 2, 4] if mode == "CRD" else [0, 3, 5, 1, 2, 4]
    return _move(ctx, fn, [n, c, h // b, b, w // b, b], perm, [n, b * b * c, h // b, w // b])


@onnx_lowering("DepthToSpace", "SpaceToDepth", emits=_EMITS)
def _onnx_depth_space(ctx, fn):
    mode = str(fn.attrs.get("mode", "DCR") or "DCR")
    if mode not in ("DCR", "CRD"):
        return ctx.reject(f"mode {mode!r} (DCR, CRD)")
    b = _block(ctx, fn)
    if b is not None:
        (depth_to_space if fn.op_type == "DepthToSpace" else space_to_depth)(ctx, fn, b, "NCHW", mode)
    return None


def _tf_layout(ctx, fn) -> str | None:
    fmt = str(fn.attrs.get("data_format", "NHWC") or "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        ctx.reject(f"data_format {fmt!r} (NHWC, NCHW)")
        return None
    return fmt


@tf_lowering("DepthToSpace", emits=_EMITS)
def _tf_depth_to_space(ctx, fn):
    fmt, b = _tf_layout(ctx, fn), _block(ctx, fn, "block_size")
    return None if fmt is None or b is None else depth_to_space(ctx, fn, b, fmt)


@tf_lowering("SpaceToDepth", emits=_EMITS)
def _tf_space_to_depth(ctx, fn):
    fmt, b = _tf_layout(ctx, fn), _block(ctx, fn, "block_size")
    return None if fmt is None or b is None else space_to_depth(ctx, fn, b, fmt)


@tflite_lowering("DEPTH_TO_SPACE", emits=_EMITS)
def _tflite_depth_to_space(ctx, fn):
    b = _block(ctx, fn, "block_size")
    return None if b is None else depth_to_space(ctx, fn, b, "NHWC")


@tflite_lowering("SPACE_TO_DEPTH", emits=_EMITS)
def _tflite_space_to_depth(ctx, fn):
    b = _block(ctx, fn, "block_size")
    return None if b is None else space_to_depth(ctx, fn, b, "NHWC")
