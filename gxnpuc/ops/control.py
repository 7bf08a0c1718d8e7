"""ONNX `If` whose condition is a constant once the config fixes the inputs it depends on (a
sample-rate input `sr` given in INPUT_VALUES, as voice-activity detectors take it): the taken
branch is lowered in place of the If, its nodes as if they were the graph's own. A condition
computed at run time is refused with the way to fix it.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import onnx_lowering

_RUNTIME = ("an If whose condition is computed at run time is not supported by the NPU; if it "
            "depends on an input such as a sample rate, fix that input with INPUT_VALUES "
            "(e.g. INPUT_VALUES: {sr: 16000})")


@onnx_lowering("If", emits=("fc", "conv", "binary", "act", "reshape", "concat", "slice"))
def _onnx_if(ctx, fn):
    from onnx import numpy_helper

    cond = ctx.const(fn.inputs[0])
    if cond is None or cond.size != 1:
        return ctx.reject(_RUNTIME)
    branch = fn.attrs["then_branch" if bool(np.ravel(cond)[0]) else "else_branch"]
    for t in branch.initializer:
        real = ctx.add_const(t.name, numpy_helper.to_array(t))
        if real != t.name:
            ctx.set_alias(t.name, real)
    if not ctx.lower_nodes(ctx.fnodes_of(branch.node)):
        return None
    for out, b in zip(fn.outputs, branch.output):
        ctx.set_alias(out, b.name)
    return None
