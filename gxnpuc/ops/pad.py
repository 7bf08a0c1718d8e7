"""Padding (`pad`): constant, reflect or edge, per axis; negative pads crop (ONNX allows them).

ONNX Pad before opset 11 keeps pads/value as attributes; from 11 they are inputs (which must
be constant), and opset 18 adds an `axes` input naming the padded axes.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import (OpDef, batch_per_sample, emit_checked, is_f16, onnx_lowering, register, tf_lowering,
                             tflite_lowering)

MODES = ("constant", "reflect", "edge")


@register
class Pad(OpDef):
    name = "pad"
    ir_inputs = "x"
    ir_attrs = "`pads` [begin..., end...] per axis (negative crops), `mode` constant|reflect|edge, `value`"
    category = "data"
    summary = "pad (or crop, with negative pads) every axis: constant, reflect or edge"
    constraints = ("pads and constant value known at compile time", "mode constant, reflect or edge",
                   "reflect pads smaller than the padded axis")

    def infer(self, node, in_shapes):
        x, p = in_shapes[0], node.attrs["pads"]
        return [tuple(n + p[i] + p[len(x) + i] for i, n in enumerate(x))]

    def run(self, node, xs):
        x, p, mode = np.asarray(xs[0]), node.attrs["pads"], node.attrs.get("mode", "constant")
        r = x.ndim
        x = x[tuple(slice(max(-p[i], 0), n - max(-p[r + i], 0)) for i, n in enumerate(x.shape))]
        widths = [(max(p[i], 0), max(p[r + i], 0)) for i in range(r)]
        if mode == "constant":
            return [np.pad(x, widths, constant_values=node.attrs.get("value", 0))]
        return [np.pad(x, widths, mode=mode)]

    def check(self, node, in_shapes):
        x, p, mode = in_shapes[0], node.attrs.get("pads", []), node.attrs.get("mode", "constant")
        if len(p) != 2 * len(x):
            return f"pads {p} need 2 values per axis of a rank-{len(x)} input"
        if mode not in MODES:
            return f"pad mode {mode!r} ({', '.join(MODES)})"
        if min(self.infer(node, in_shapes)[0], default=1) < 1:
            return f"pads {p} crop an axis of {list(x)} to nothing"
        r = len(x)
        if mode == "reflect" and any(max(p[i], p[r + i]) >= n for i, n in enumerate(x)):
            return f"reflect pads {p} must be smaller than each axis of {list(x)}"
        return None

    def flops(self, node, in_shapes, out_shapes):
        return 0

    def batch(self, node, shapes, flags):
        p, r = node.attrs["pads"], len(shapes[0])
        return batch_per_sample(node, shapes, flags) or (None if p[0] == 0 == p[r] else "pads axis 0")

    def keeps_f16(self, node):
        a = node.attrs
        return a.get("mode", "constant") != "constant" or is_f16(a.get("value", 0))


def _onnx_pad_inputs(ctx, fn, rank: int):
    """(pads over all axes, value) from an opset >= 11 Pad node; None after a rejection."""
    pv = ctx.const(fn.inputs[1]) if len(fn.inputs) > 1 else None
    if pv is None:
        return ctx.reject("Pad amounts (pads input) must be constant")
    value = 0
    if len(fn.inputs) > 2 and fn.inputs[2]:
        cv = ctx.const(fn.inputs[2])
        if cv is None:
            return ctx.reject("Pad constant_value must be constant")
        value = cv.reshape(-1)[0].item() if cv.size else 0
    pads = [int(v) for v in pv.reshape(-1)]
    if len(fn.inputs) > 3 and fn.inputs[3]:
        av = ctx.const(fn.inputs[3])
        if av is None:
            return ctx.reject("Pad axes must be constant")
        axes = [int(a) % rank for a in av.reshape(-1)]
        if len(pads) != 2 * len(axes):
            return ctx.reject(f"{len(pads)} pads for {len(axes)} axes")
        full = [0] * (2 * rank)
        for i, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
        pads = full
    return pads, value


@onnx_lowering("Pad", emits=("pad",))
def _onnx_pad(ctx, fn):
    x = fn.inputs[0]
    rank = len(ctx.shape(x))
    if "pads" in fn.attrs or "paddings" in fn.attrs:  # opset < 11
        pads = [int(v) for v in fn.attrs.get("pads", fn.attrs.get("paddings"))]
        value = float(fn.attrs.get("value", 0.0))
    else:
        got = _onnx_pad_inputs(ctx, fn, rank)
        if got is None:
            return None
        pads, value = got
    mode = fn.attrs.get("mode", "constant")
    if ctx.tensor(x).dtype.startswith("float"):
        value = float(value)
    return emit_checked(ctx, "pad", [x], fn.outputs[:1], {"pads": pads, "mode": mode, "value": value})


# -- TensorFlow ----------------------------------------------------------------------------
@tf_lowering("Pad", "PadV2", "MirrorPad", emits=("pad",))
def _tf_pad(ctx, fn):
    """paddings [rank, 2] -> pads [begins..., ends...]; MirrorPad REFLECT only."""
    x, paddings = fn.inputs[0], ctx.const(fn.inputs[1])
    if paddings is None:
        return ctx.reject("paddings must be constant")
    mode = {"Pad": "constant", "PadV2": "constant"}.get(fn.op_type) or \
        {"REFLECT": "reflect"}.get(fn.attrs.get("mode", ""), "")
    if not mode:
        return ctx.reject(f"MirrorPad mode {fn.attrs.get('mode')!r} (REFLECT only)")
    value = 0.0
    if fn.op_type == "PadV2":
        cv = ctx.const(fn.inputs[2])
        if cv is None:
            return ctx.reject("constant_values must be constant")
        value = cv.reshape(-1)[0].item()
    pairs = np.asarray(paddings, np.int64).reshape(-1, 2)
    pads = [int(p) for p in pairs[:, 0]] + [int(p) for p in pairs[:, 1]]
    if ctx.tensor(x).dtype.startswith("float"):
        value = float(value)
    return emit_checked(ctx, "pad", [x], fn.outputs[:1], {"pads": pads, "mode": mode, "value": value})


# -- TensorFlow Lite -----------------------------------------------------------------------
@tflite_lowering("PAD", "PADV2", "MIRROR_PAD", emits=("pad",))
def _tflite_pad(ctx, fn):
    """paddings [rank, 2]; MIRROR_PAD REFLECT, or SYMMETRIC by at most 1 (which is edge)."""
    x, paddings = fn.inputs[0], ctx.const(fn.inputs[1])
    if paddings is None:
        return ctx.reject("paddings must be constant")
    pairs = np.asarray(paddings, np.int64).reshape(-1, 2)
    pads = [int(p) for p in pairs[:, 0]] + [int(p) for p in pairs[:, 1]]
    mode, value = "constant", 0.0
    if fn.op_type == "MIRROR_PAD":
        kind = str(fn.attrs.get("mode", "REFLECT"))
        if kind == "SYMMETRIC" and max(pads, default=0) > 1:
            return ctx.reject(f"MIRROR_PAD SYMMETRIC by more than 1 ({pads}); REFLECT, or SYMMETRIC by 1")
        mode = "reflect" if kind == "REFLECT" else "edge"
    elif fn.op_type == "PADV2" and len(fn.inputs) > 2 and fn.inputs[2]:
        cv = ctx.const(fn.inputs[2])
        if cv is None:
            return ctx.reject("constant_values must be constant")
        value = float(cv.reshape(-1)[0]) if cv.size else 0.0
    return emit_checked(ctx, "pad", [x], fn.outputs[:1], {"pads": pads, "mode": mode, "value": value})
