"""TensorFlow ops whose semantics another framework's op already has: lowered by that op's
lowering, looked up in the registry when the node is lowered.

- BroadcastTo (x, shape): ONNX Expand with a constant shape (run-time tensors become
  concatenated copies, ops/fold.py). TFLite's BROADCAST_TO is ops/tflite_logic.py's.
"""
from __future__ import annotations

from gxnpuc.ops.base import LOWERING_EMITS, ONNX_LOWERINGS, tf_lowering


def _broadcast_to(ctx, fn):
    ONNX_LOWERINGS["Expand"](ctx, fn)


tf_lowering("BroadcastTo", emits=LOWERING_EMITS[("onnx", "Expand")])(_broadcast_to)
