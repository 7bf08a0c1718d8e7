"""Fold-only ops and the shape-arithmetic chains exporters emit: folded away while lowering
(checked against onnxruntime), and any genuinely run-time use reported by reject_leftovers.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc.compiler import reject_leftovers
from gxnpuc.errors import UnsupportedOpError
from gxnpuc.ops import REGISTRY
from gxnpuc.ops.base import FOLD_ONLY
from tests.onnx_util import check_against_ort, make_model, rand, to_ir

N = helper.make_node
I64 = TensorProto.INT64


def _i64(*v):
    return np.array(v, np.int64)


def _lowered_ops(model):
    graph = to_ir(model)
    assert all(REGISTRY[n.op].npu for n in graph.nodes), [n.op for n in graph.nodes]
    reject_leftovers(graph)  # nothing left that the NPU cannot run
    return [n.op for n in graph.nodes]


def _check(nodes, shape, inits=None, opset=17, ops=None):
    model = make_model(nodes, [("x", shape)], [("y", None)], inits, opset=opset)
    check_against_ort(model, {"x": rand(shape, 21)})
    lowered = _lowered_ops(model)
    if ops is not None:
        assert lowered == ops


def _unsqueeze0(src, dst, opset):
    if opset >= 13:
        return N("Unsqueeze", [src, "zero"], [dst])
    return N("Unsqueeze", [src], [dst], axes=[0])


# -- exporter chains -----------------------------------------------------------------------
@pytest.mark.parametrize("opset", [11, 13, 17])
def test_torch_view_batch_minus_one(opset):
    """x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    nodes = [N("Shape", ["x"], ["/Shape_output_0"]),
             N("Gather", ["/Shape_output_0", "/Constant_output_0"], ["/Gather_output_0"], axis=0),
             _unsqueeze0("/Gather_output_0", "/Unsqueeze_output_0", opset),
             N("Concat", ["/Unsqueeze_output_0", "minus1"], ["/Concat_output_0"], axis=0),
             N("Reshape", ["x", "/Concat_output_0"], ["y"])]
    inits = {"/Constant_output_0": np.array(0, np.int64), "minus1": _i64(-1), "zero": _i64(0)}
    _check(nodes, [2, 3, 4, 5], inits, opset, ops=["reshape"])


@pytest.mark.parametrize("opset", [13, 15])
def test_shape_slice_concat_reshape(opset):
    if opset >= 15:
        nodes = [N("Shape", ["x"], ["s0"], start=0, end=-2)]
    else:
        nodes = [N("Shape", ["x"], ["s"]), N("Slice", ["s", "st", "en"], ["s0"])]
    nodes += [N("Concat", ["s0", "minus1"], ["shape"], axis=0), N("Reshape", ["x", "shape"], ["y"])]
    inits = {"st": _i64(0), "en": _i64(2), "minus1": _i64(-1)}
    _check(nodes, [2, 3, 4, 5], inits, opset, ops=["reshape"])


def test_integer_div_floor_ceil_chain():
    """x.view(n, c // 2, -1) with float detours (Cast, Div, Floor/Ceil, Cast back)."""
    nodes = [N("Shape", ["x"], ["s"]),
             N("Gather", ["s", "one"], ["c"], axis=0),
             N("Div", ["c", "two"], ["half"]),  # integer Div truncates
             N("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
             N("Div", ["cf", "twof"], ["cf2"]),
             N("Floor", ["cf2"], ["fl"]), N("Ceil", ["cf2"], ["ce"]), N("Sub", ["ce", "fl"], ["d"]),
             N("Cast", ["d"], ["di"], to=I64),
             N("Add", ["half", "di"], ["h2"]),  # ceil - floor = 1 for odd c, 0 for even
             N("Unsqueeze", ["h2", "zero"], ["hu"]),
             N("Gather", ["s", "zeros"], ["n"], axis=0),
             N("Concat", ["n", "hu", "minus1"], ["shape"], axis=0),
             N("Reshape", ["x", "shape"], ["y"])]
    inits = {"one": np.array(1, np.int64), "two": np.array(2, np.int64), "twof": np.array(2, np.float32),
             "zero": _i64(0), "zeros": _i64(0), "minus1": _i64(-1)}
    _check(nodes, [2, 4, 3, 5], inits, ops=["reshape"])


def test_constant_of_shape_range_and_size():
    nodes = [N("Shape", ["x"], ["s"]),
             N("ConstantOfShape", ["s"], ["ones"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.5])),
             N("Gather", ["s", "last"], ["w"], axis=0),
             N("Range", ["zero", "w", "one"], ["r"]),
             N("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             N("Size", ["x"], ["sz"]), N("Cast", ["sz"], ["szf"], to=TensorProto.FLOAT),
             N("Mul", ["ones", "rf"], ["c"]), N("Add", ["c", "szf"], ["c2"]),
             N("Add", ["x", "c2"], ["y"])]
    inits = {"last": np.array(-1, np.int64), "zero": np.array(0, np.int64), "one": np.array(1, np.int64)}
    _check(nodes, [2, 3, 4], inits, ops=["binary"])


def test_compare_logic_where_build_a_shape():
    """PyTorch-style: replace the entries of a shape that equal 1 by -1, then Reshape."""
    nodes = [N("Shape", ["x"], ["s"]),
             N("Equal", ["s", "one"], ["eq"]), N("Greater", ["s", "one"], ["gt"]), N("Less", ["s", "one"], ["lt"]),
             N("Or", ["gt", "lt"], ["ne"]), N("Not", ["ne"], ["eq2"]), N("And", ["eq", "eq2"], ["both"]),
             N("Xor", ["both", "eq"], ["none"]), N("Or", ["both", "none"], ["sel"]),
             N("Where", ["sel", "minus1", "s"], ["shape"]),
             N("Reshape", ["x", "shape"], ["y"])]
    inits = {"one": np.array(1, np.int64), "minus1": np.array(-1, np.int64)}
    _check(nodes, [3, 1, 4], inits, ops=["reshape"])


def test_nonzero_and_round_of_constants():
    c = np.array([[0.0, 2.5], [-1.5, 0.0]], np.float32)
    nodes = [N("NonZero", ["c"], ["nz"]), N("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT),
             N("Round", ["c"], ["rc"]), N("ReduceSum", ["nzf"], ["t"], keepdims=0),
             N("Mul", ["x", "rc"], ["m"]), N("Add", ["m", "t"], ["y"])]
    _check(nodes, [2, 2], {"c": c}, ops=["binary", "binary"])


def test_expand_and_tile_of_constants_fold():
    nodes = [N("Expand", ["c", "shp"], ["e"]), N("Tile", ["c", "reps"], ["t"]),
             N("Mul", ["x", "e"], ["m"]), N("ReduceSum", ["t"], ["ts"], keepdims=0), N("Add", ["m", "ts"], ["y"])]
    inits = {"c": rand([3, 1], 4), "shp": _i64(2, 3, 4), "reps": _i64(2, 3)}
    _check(nodes, [2, 3, 4], inits, ops=["binary", "binary"])


# -- run-time data, constant indices/shapes ------------------------------------------------
@pytest.mark.parametrize("axis,idx", [(1, -1), (1, 0), (2, [0, 2, 4]), (2, [5, 3, 1]), (1, [3, 0, 1, 1]),
                                      (2, [[0, 1], [5, 4]]), (0, [1]), (-1, -2)])
def test_gather_on_runtime_tensor_lowers_to_slices(axis, idx):
    """PyTorch's x[:, -1] and index lists: Gather on activations with constant indices."""
    nodes = [N("Gather", ["x", "i"], ["y"], axis=axis)]
    _check(nodes, [2, 4, 6], {"i": np.array(idx, np.int64)})
    ops = _lowered_ops(make_model(nodes, [("x", [2, 4, 6])], [("y", None)], {"i": np.array(idx, np.int64)}))
    assert set(ops) <= {"slice", "concat", "reshape"}


@pytest.mark.parametrize("shape,target", [([1, 3, 1], [2, 3, 4]), ([3, 1], [2, 3, 4]), ([2, 3, 4], [1, 1]),
                                          ([1, 4], [3, 1, 1])])
def test_expand_runtime_tensor(shape, target):
    _check([N("Expand", ["x", "s"], ["y"])], shape, {"s": np.array(target, np.int64)})


@pytest.mark.parametrize("reps", [[2, 1], [1, 3], [2, 2], [1, 1]])
def test_tile_runtime_tensor(reps):
    _check([N("Tile", ["x", "r"], ["y"])], [2, 3], {"r": np.array(reps, np.int64)})


# -- leftovers -----------------------------------------------------------------------------
def test_runtime_uses_are_reported_by_reject_leftovers():
    """An embedding lookup (run-time indices) and a run-time mask cannot fold."""
    model = make_model([N("Gather", ["emb", "ids"], ["e"], axis=0),
                        N("Greater", ["x", "zero"], ["mask"]),
                        N("Where", ["mask", "x", "zero"], ["w"]),
                        N("Add", ["e", "w"], ["y"])],
                       [("ids", [3], I64), ("x", [3, 4])], [("y", None)],
                       {"emb": rand([10, 4], 1), "zero": np.array(0, np.float32)})
    graph = to_ir(model)
    with pytest.raises(UnsupportedOpError) as err:
        reject_leftovers(graph)
    reported = {(name, op) for name, op, reason in err.value.items if reason == FOLD_ONLY}
    assert {op for _, op in reported} == {"Gather", "Greater", "Where"}
    assert "3 unsupported op(s)" in str(err.value)


@pytest.mark.parametrize("op,inputs", [("Range", ["a", "b", "c"]), ("ConstantOfShape", ["s"]),
                                       ("NonZero", ["x"])])
def test_data_dependent_shapes_rejected_while_lowering(op, inputs):
    feeds = {"a": ([], I64), "b": ([], I64), "c": ([], I64), "s": ([2], I64), "x": ([3], TensorProto.FLOAT)}
    model = make_model([N(op, inputs, ["y"])], [(i, *feeds[i]) for i in inputs], [("y", None)])
    with pytest.raises(UnsupportedOpError, match=op):
        to_ir(model)


def test_fold_only_ops_declare_themselves():
    for name in ("shape", "gather", "const_of_shape", "range", "compare", "logic", "where", "expand",
                 "tile", "nonzero", "round"):
        opdef = REGISTRY[name]
        assert not opdef.npu and opdef.category == "fold"
        assert opdef.check(None, []) == FOLD_ONLY and FOLD_ONLY in opdef.constraints
