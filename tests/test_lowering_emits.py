"""Every lowering declares the IR ops it emits (`emits=` on its decorator, gxnpuc/ops/base.py),
and the declaration is true: `gxnpuc -L` and docs/ops.md are built from it.

The truth check lowers small ONNX models through the real front end with LowerCtx.emit
watched, on the paths where one framework op becomes several IR ops (Gemm with a transposed
computed operand and a full C, Gather/Expand/Tile on run-time tensors, old-opset Softmax,
Pow both ways), and compares what was emitted with what the decorator says.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc.ops import ONNX_LOWERINGS, REGISTRY, TF_LOWERINGS, TFLITE_LOWERINGS
from gxnpuc.ops.base import LOWERING_EMITS, UNDECLARED, NoNpuOp, onnx_lowering
from onnx_util import make_model, rand, to_ir

TABLES = {"onnx": ONNX_LOWERINGS, "tf": TF_LOWERINGS, "tflite": TFLITE_LOWERINGS}


def test_every_lowering_declares_what_it_emits():
    missing = [f"{fw} {t}" for fw, table in TABLES.items() for t in table
               if LOWERING_EMITS.get((fw, t), UNDECLARED) is UNDECLARED]
    assert not missing, "add emits=(...) to the decorator of: " + ", ".join(missing)


def test_every_declared_op_is_registered():
    unknown = [f"{fw} {t}: {op}" for (fw, t), emits in LOWERING_EMITS.items()
               if not isinstance(emits, NoNpuOp) for op in emits if op not in REGISTRY]
    assert not unknown, "not in the op registry: " + ", ".join(unknown)


def test_the_table_holds_only_registered_lowerings():
    assert {(fw, t) for fw, table in TABLES.items() for t in table} == set(LOWERING_EMITS)


def test_a_missing_emits_imports_but_is_reported(monkeypatch):
    monkeypatch.setattr("gxnpuc.ops.base.ONNX_LOWERINGS", {})
    monkeypatch.setattr("gxnpuc.ops.base.LOWERING_EMITS", {})
    from gxnpuc.ops import base

    onnx_lowering("NewOp")(lambda ctx, fn: None)
    assert base.LOWERING_EMITS[("onnx", "NewOp")] is UNDECLARED
    with pytest.raises(AssertionError):
        onnx_lowering("OtherOp", emits="conv")  # a string, not a tuple of names


# -- the declarations are true ------------------------------------------------------------------
def _node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, name=f"{op}/node", **attrs)


def _gemm():
    """transA on a computed A (transpose), computed B (matmul), C varying per row (binary);
    then a constant B (fc)."""
    nodes = [_node("Gemm", ["a", "b", "c"], ["h"], transA=1), _node("Gemm", ["h", "w"], ["y"])]
    inits = {"c": rand((2, 4), seed=1), "w": rand((4, 3), seed=3)}
    return make_model(nodes, [("a", [3, 2]), ("b", [3, 4])], [("y", None)], inits)


def _gather_expand_tile():
    nodes = [_node("Gather", ["x", "idx"], ["g"], axis=1),
             _node("Expand", ["g", "shape"], ["e"]),
             _node("Tile", ["e", "reps"], ["y"])]
    inits = {"idx": np.array([[3, 0, 1]], np.int64), "shape": np.array([2, 1, 1, 3], np.int64),
             "reps": np.array([1, 2, 1, 1], np.int64)}
    return make_model(nodes, [("x", [1, 4])], [("y", None)], inits)


def _softmax_old_opset():
    nodes = [_node("Softmax", ["x"], ["y"], axis=1)]
    return make_model(nodes, [("x", [2, 3, 4])], [("y", None)], opset=11)


def _pow_both_ways():
    nodes = [_node("Pow", ["x", "two"], ["p"]), _node("Pow", ["p", "x"], ["y"])]
    return make_model(nodes, [("x", [2, 3])], [("y", None)], {"two": np.array(2.0, np.float32)})


def _matmul_both_ways():
    nodes = [_node("MatMul", ["x", "w"], ["h"]), _node("MatMul", ["h", "v"], ["y"])]
    return make_model(nodes, [("x", [2, 3]), ("v", [4, 2])], [("y", None)], {"w": rand((3, 4), seed=2)})


def _shape_chain():
    """Exporter-style Shape -> Gather -> Cast -> Equal chain: all of it folds."""
    nodes = [_node("Shape", ["x"], ["s"]), _node("Gather", ["s", "zero"], ["n"], axis=0),
             _node("Equal", ["n", "one"], ["eq"]), _node("Where", ["eq", "x", "x"], ["y"])]
    inits = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64)}
    return make_model(nodes, [("x", [1, 3])], [("y", None)], inits)


@pytest.mark.parametrize("build", [_gemm, _gather_expand_tile, _softmax_old_opset, _pow_both_ways,
                                   _matmul_both_ways, _shape_chain])
def test_onnx_lowerings_emit_only_what_they_declare(build, emitted):
    to_ir(build())
    assert emitted
    for op_type, op in emitted:
        declared = LOWERING_EMITS[("onnx", op_type)]
        assert not isinstance(declared, NoNpuOp) and op in declared, (op_type, op, declared)


def test_the_multi_op_paths_were_taken(emitted):
    """The models above reach every op their lowerings declare (else the check proves little)."""
    for build in (_gemm, _gather_expand_tile, _softmax_old_opset, _pow_both_ways, _matmul_both_ways):
        to_ir(build())
    for op_type in ("Gemm", "Softmax", "Pow", "MatMul"):
        assert {op for t, op in emitted if t == op_type} == set(LOWERING_EMITS[("onnx", op_type)]), op_type
    for op_type in ("Gather", "Expand", "Tile"):  # the run-time paths; the fold-only op needs constants
        npu = {op for op in LOWERING_EMITS[("onnx", op_type)] if REGISTRY[op].npu}
        assert npu <= {op for t, op in emitted if t == op_type}, op_type


def test_no_op_lowerings_emit_nothing(emitted):
    nodes = [_node("Identity", ["x"], ["i"]), _node("Dropout", ["i"], ["d"]),
             _node("Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0])),
             _node("Add", ["d", "c"], ["y"])]
    to_ir(make_model(nodes, [("x", [1, 3])], [("y", None)]))
    assert {t for t, _ in emitted} == {"Add"}
