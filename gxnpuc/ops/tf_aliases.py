"""TensorFlow / TFLite ops whose semantics another framework's op already has: lowered by that
op's lowering, looked up in the registry when the node is lowered.

- BroadcastTo / BROADCAST_TO (x, shape): ONNX Expand with a constant shape (run-time tensors
  become concatenated copies, ops/fold.py);
- REVERSE_V2 (x, axes): TF ReverseV2 (a slice with step -1, ops/tf_shape.py).
"""
from __future__ import annotations

from gxnpuc.ops.base import LOWERING_EMITS, ONNX_LOWERINGS, TF_LOWERINGS, tf_lowering, tflite_lowering


def _broadcast_to(ctx, fn):
    ONNX_LOWERINGS["Expand"](ctx, fn)


def _reverse(ctx, fn):
    TF_LOWERINGS["ReverseV2"](ctx, fn)


_EXPAND = LOWERING_EMITS[("onnx", "Expand")]
tf_lowering("BroadcastTo", emits=_EXPAND)(_broadcast_to)
tflite_lowering("BROADCAST_TO", emits=_EXPAND)(_broadcast_to)
tflite_lowering("REVERSE_V2", emits=LOWERING_EMITS[("tf", "ReverseV2")])(_reverse)
