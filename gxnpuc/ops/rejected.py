"""Framework ops that exported models often hold and the NPU cannot run, each with the reason
(and the usual way around it) that users see in the error and in `gxnpuc -L`.

Without an entry here such an op is still reported, but only as "no lowering for this op type".
"""
from __future__ import annotations

from gxnpuc.ops.base import onnx_lowering, tf_lowering, tflite_lowering, unsupported

_INDEX = ("index-valued outputs (ArgMax/ArgMin/TopK) are not supported by the NPU; output the "
          "scores and take the arg-max on the host")
_CONTROL = ("control flow (an ONNX Loop/Scan, a TensorFlow conditional, a nested while loop) is not "
            "supported by the NPU; recurrent layers (LSTM, GRU, RNN) are unrolled instead; "
            "export a straight-line graph")


def _reject_with(reason: str):
    def lower(ctx, fn):
        ctx.reject(reason)
    return lower


onnx_lowering("ArgMax", "ArgMin", "TopK", emits=unsupported(_INDEX))(_reject_with(_INDEX))
onnx_lowering("Loop", "Scan", emits=unsupported(_CONTROL))(_reject_with(_CONTROL))
tf_lowering("ArgMax", "ArgMin", "TopKV2", emits=unsupported(_INDEX))(_reject_with(_INDEX))
tf_lowering("If", "StatelessIf", emits=unsupported(_CONTROL))(_reject_with(_CONTROL))


def reject_tf_loops(fnodes) -> None:
    """A TF1-style while loop that collapse_loops left alone (a nested one) has no topological
    order; name each loop once, by its LoopCond, before lowering trips on it."""
    from gxnpuc.errors import UnsupportedOpError

    loops = [(fn.name, "While", _CONTROL) for fn in fnodes if fn.op_type == "LoopCond"]
    if loops:
        raise UnsupportedOpError("tensorflow model", loops)
tflite_lowering("ARG_MAX", "ARG_MIN", "TOPK_V2", emits=unsupported(_INDEX))(_reject_with(_INDEX))
tflite_lowering("IF", emits=unsupported(_CONTROL))(_reject_with(_CONTROL))
_TFLITE_RECURRENT = ("the TFLite LSTM and RNN cell ops (one step, no sequence) are not lowered; "
                     "UNIDIRECTIONAL_SEQUENCE_LSTM / _RNN, BIDIRECTIONAL_SEQUENCE_LSTM and WHILE loops are")
tflite_lowering("LSTM", "RNN", emits=unsupported(_TFLITE_RECURRENT))(_reject_with(_TFLITE_RECURRENT))
