"""Data movement (reshape family, transpose, concat, split, slice, cast, Constant) vs onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc.errors import UnsupportedOpError
from tests.onnx_util import check_against_ort, make_model, rand, to_ir

I64_MAX, I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def _run(node, shape, opset=17, inits=None, outputs=("y",)):
    model = make_model([node], [("x", shape)], [(o, None) for o in outputs], inits, opset=opset)
    return check_against_ort(model, {"x": rand(shape, 11)}), model


def _ops(model):
    return [n.op for n in to_ir(model).nodes]


# -- reshape family ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [[2, -1], [0, 3, -1], [-1], [0, 0, 4, 5], [1, 2, 1, 60], [4, 0, 10]])
@pytest.mark.parametrize("opset", [11, 14])
def test_reshape(spec, opset):
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    _run(node, [2, 3, 4, 5], opset, {"s": np.array(spec, np.int64)})


def test_reshape_allowzero_without_zero_dims():
    node = helper.make_node("Reshape", ["x", "s"], ["y"], allowzero=1)
    _run(node, [2, 3, 4], 14, {"s": np.array([4, -1], np.int64)})


def test_reshape_runtime_shape_rejected():
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"])],
                       [("x", [2, 3]), ("s", [2], TensorProto.INT64)], [("y", None)])
    with pytest.raises(UnsupportedOpError, match="target shape must be constant"):
        to_ir(model)


@pytest.mark.parametrize("axis", [None, 0, 1, 2, 3, -1, -3])
def test_flatten(axis):
    kw = {} if axis is None else {"axis": axis}
    _run(helper.make_node("Flatten", ["x"], ["y"], **kw), [2, 3, 4])


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [None, [1], [-1], [1, 3]])
def test_squeeze(opset, axes):
    if axes is not None and opset >= 13:
        node, inits = helper.make_node("Squeeze", ["x", "a"], ["y"]), {"a": np.array(axes, np.int64)}
    else:
        node, inits = helper.make_node("Squeeze", ["x"], ["y"], **({} if axes is None else {"axes": axes})), {}
    _run(node, [2, 1, 3, 1], opset, inits)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[0], [-1], [1, 3], [0, -1], [4, 0]])
def test_unsqueeze(opset, axes):
    if opset >= 13:
        node, inits = helper.make_node("Unsqueeze", ["x", "a"], ["y"]), {"a": np.array(axes, np.int64)}
    else:
        node, inits = helper.make_node("Unsqueeze", ["x"], ["y"], axes=axes), {}
    _run(node, [2, 3, 4], opset, inits)


@pytest.mark.parametrize("perm", [None, [0, 2, 3, 1], [3, 1, 0, 2]])
def test_transpose(perm):
    kw = {} if perm is None else {"perm": perm}
    _run(helper.make_node("Transpose", ["x"], ["y"], **kw), [2, 3, 4, 5])


# -- concat / split ------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_concat_with_constant(axis):
    shape_w = [2, 3, 4]
    shape_w[axis] = 2
    model = make_model([helper.make_node("Concat", ["x", "w", "x"], ["y"], axis=axis)],
                       [("x", [2, 3, 4])], [("y", None)], {"w": rand(shape_w, 3)})
    check_against_ort(model, {"x": rand([2, 3, 4], 1)})
    assert to_ir(model).weight_slots()[0][2] == "param"


@pytest.mark.parametrize("opset,split,n", [(11, [2, 4], 2), (13, [1, 2, 3], 3), (11, None, 3), (13, None, 2),
                                          (18, None, 4), (18, [5, 1], 2)])
@pytest.mark.parametrize("axis", [1, -1])
def test_split(opset, split, n, axis):
    outs = [f"y{k}" for k in range(n)]
    kw, ins, inits = {"axis": axis}, ["x"], {}
    if split is not None and opset >= 13:
        ins, inits = ["x", "s"], {"s": np.array(split, np.int64)}
    elif split is not None:
        kw["split"] = split
    elif opset >= 18:
        kw["num_outputs"] = n
    _run(helper.make_node("Split", ins, outs, **kw), [2, 6, 6], opset, inits, outs)


def test_split_num_outputs_uneven():
    outs = ["a", "b", "c"]
    _run(helper.make_node("Split", ["x"], outs, axis=2, num_outputs=3), [1, 2, 7], 18, None, outs)


# -- slice ---------------------------------------------------------------------------------
SLICES = [
    ([1], [3], None, None),
    ([-3], [I64_MAX], [2], None),
    ([0, 1], [I64_MAX, -1], [0, 2], [2, 1]),
    ([-1], [I64_MIN], [1], [-1]),
    ([4, -2], [0, -100], [2, 1], [-2, -1]),
    ([-100], [2], [-1], None),
    ([100], [-100], [2], [-1]),  # start past the end with a negative step: clamped
    ([-100], [-200], [0], [-1]),  # start before the beginning with a negative step: element 0
    ([3], [1], [1], None),  # empty
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
def test_slice(starts, ends, axes, steps):
    names, inits = ["x", "s", "e"], {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64)}
    if axes is not None or steps is not None:
        names.append("a")
        inits["a"] = np.array(axes if axes is not None else list(range(len(starts))), np.int64)
    if steps is not None:
        names.append("st")
        inits["st"] = np.array(steps, np.int64)
    _run(helper.make_node("Slice", names, ["y"]), [5, 4, 6], 13, inits)


def test_slice_opset9_attributes():
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[I64_MAX, -1], axes=[0, 2])
    _run(node, [5, 4, 6], 9)


# -- cast / constant -----------------------------------------------------------------------
def test_cast_between_float_types():
    model = make_model([helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
                        helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)],
                       [("x", [3, 4])], [("y", None)])
    check_against_ort(model, {"x": rand([3, 4], 1, 100.0)}, rtol=0, atol=0)  # fp16 rounding is exact


def test_cast_float_to_int_at_run_time_rejected():
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)],
                       [("x", [3])], [("y", [3], TensorProto.INT64)])
    with pytest.raises(UnsupportedOpError, match="only between float types"):
        to_ir(model)


def test_cast_of_constants_folds_any_type():
    c = np.array([-2.7, 1.5, 3.9], np.float32)
    model = make_model([helper.make_node("Cast", ["c"], ["ci"], to=TensorProto.INT32),
                        helper.make_node("Cast", ["ci"], ["cf"], to=TensorProto.FLOAT),
                        helper.make_node("Mul", ["x", "cf"], ["y"])],
                       [("x", [3])], [("y", None)], {"c": c})
    check_against_ort(model, {"x": rand([3], 2)})
    assert _ops(model) == ["binary"]


@pytest.mark.parametrize("kw", [
    {"value": helper.make_tensor("v", TensorProto.FLOAT, [2, 3], np.arange(6, dtype=np.float32))},
    {"value_float": 2.5}, {"value_floats": [1.0, -2.0, 3.0]}])
def test_constant_float(kw):
    model = make_model([helper.make_node("Constant", [], ["c"], **kw), helper.make_node("Add", ["x", "c"], ["y"])],
                       [("x", [2, 3])], [("y", None)])
    check_against_ort(model, {"x": rand([2, 3], 3)})
    graph = to_ir(model)
    assert graph.tensors["c"].dtype == "float32" and graph.tensors["c"].is_const


@pytest.mark.parametrize("kw", [{"value_int": 6}, {"value_ints": [3, 2]}])
def test_constant_int_feeds_reshape(kw):
    nodes = [helper.make_node("Constant", [], ["c"], **kw),
             helper.make_node("Unsqueeze", ["c", "zero"], ["c1"]),  # value_int is a scalar
             helper.make_node("Reshape", ["x", "c1" if "value_int" in kw else "c"], ["y"])]
    model = make_model(nodes, [("x", [2, 3])], [("y", None)], {"zero": np.array([0], np.int64)})
    check_against_ort(model, {"x": rand([2, 3], 3)})
    assert _ops(model) == ["reshape"]
