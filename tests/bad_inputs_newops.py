"""Catalogue rows of the ops real exports hit (issue 13, newops): quantised, Einsum and gather
models refused for a reason the NPU imposes. Appended to bad_inputs.CASES / FILES."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bad_inputs import Case, _bytes

_W = "Weights and ops"


def _c(id, cause, fix, config, *expect, **kw) -> Case:
    return Case(id, _W, cause, fix, config, tuple(expect), **kw)


def _onnx(nodes, inputs, inits) -> bytes:
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "newops", [vi(n, t, s) for n, t, s in inputs],
                              [vi("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def _quantized_input() -> bytes:
    """A QOperator-style model that takes uint8 data and dequantises it on the way in."""
    return _onnx([helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], name="/dq")],
                 [("x", TensorProto.UINT8, [1, 4])], {"s": np.float32(0.1), "z": np.uint8(128)})


def _einsum_diagonal() -> bytes:
    return _onnx([helper.make_node("Einsum", ["x"], ["y"], name="/trace", equation="bii->bi")],
                 [("x", TensorProto.FLOAT, [1, 3, 3])], {})


def _gather_runtime() -> bytes:
    return _onnx([helper.make_node("GatherND", ["x", "i"], ["y"], name="/pick")],
                 [("x", TensorProto.FLOAT, [2, 3]), ("i", TensorProto.INT64, [1, 2])], {})


ROWS = [
    _c("quantized-model-input", "a quantised model that takes uint8 input and dequantises it inside",
       "export the model with a float input (quantize_static keeps the float input)",
       "ONNX_FILE: qinput.onnx\nOUTPUT_FILE: out/model.h\n", "/dq [DequantizeLinear]", "float input",
       files=("qinput.onnx",)),
    _c("einsum-diagonal", "an Einsum that reads a diagonal ('bii->bi')",
       "take the diagonal with a constant mask and a sum instead",
       "ONNX_FILE: diag.onnx\nOUTPUT_FILE: out/model.h\n", "/trace [Einsum]", "diagonal",
       files=("diag.onnx",)),
    _c("gather-runtime-indices", "GatherND with indices computed at run time (a data-dependent lookup)",
       "compute the lookup on the host, or make the indices constant",
       "ONNX_FILE: gathernd.onnx\nOUTPUT_FILE: out/model.h\n", "/pick [GatherND]", "data-dependent",
       files=("gathernd.onnx",)),
]
FILES = {"qinput.onnx": _bytes(_quantized_input), "diag.onnx": _bytes(_einsum_diagonal),
         "gathernd.onnx": _bytes(_gather_runtime)}
