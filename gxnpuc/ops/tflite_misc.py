"""TensorFlow Lite-only glue: SHAPE (a constant, shapes are static) and the resource-variable
ops of streaming models, which the front end turns into state inputs and outputs
(gxnpuc/frontend/tflite_state.py) before lowering; they never reach the NPU.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import CONSTANT, FRONT_END, tflite_lowering

_INT_TYPES = {2: "int32", 4: "int64"}  # schema TensorType of SHAPE's out_type


@tflite_lowering("SHAPE", emits=CONSTANT)
def _tflite_shape(ctx, fn):
    dtype = _INT_TYPES.get(int(fn.attrs.get("out_type", 2) or 2), "int32")
    ctx.add_const(fn.outputs[0], np.asarray(ctx.shape(fn.inputs[0]), dtype))


@tflite_lowering("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE", emits=FRONT_END)
def _tflite_variable(ctx, fn):
    # the front end removes these (variables become state inputs/outputs); one left over is
    # a variable the front end could not pair (outside the main graph)
    ctx.reject("resource variable op outside the main graph's variables")
