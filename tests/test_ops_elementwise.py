"""binary, prelu, softmax and reduce: lowered ONNX models against onnxruntime (fixed seeds)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc.errors import UnsupportedOpError
from gxnpuc.ops import REGISTRY
from tests.onnx_util import check_against_ort, make_model, rand, to_ir


def _ops(model, feeds):
    graph = to_ir(model, {k: np.shape(v) for k, v in feeds.items()})
    return [n.op for n in graph.nodes]


def _unary_model(node, shape, out_shape=None, opset=17, inits=None):
    return make_model([node], [("x", shape)], [("y", out_shape)], inits, opset=opset)


# -- binary --------------------------------------------------------------------------------
SHAPES = [([2, 3, 4, 5], [2, 3, 4, 5]), ([2, 3, 4, 5], [5]), ([2, 1, 4, 1], [3, 1, 5]),
          ([1, 3, 1, 1], [2, 3, 4, 6]), ([4], [])]


def _operands(op, sa, sb):
    a, b = rand(sa, 1), rand(sb, 2)
    if op == "Div":
        b = b + np.sign(b) + (b == 0)  # keep away from 0
    if op == "Pow":
        a = np.abs(a) + 0.5
    return np.asarray(a, np.float32), np.asarray(b, np.float32)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"])
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_binary_runtime_operands(op, sa, sb):
    a, b = _operands(op, sa, sb)
    model = make_model([helper.make_node(op, ["a", "b"], ["y"])], [("a", sa), ("b", sb)], [("y", None)])
    check_against_ort(model, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"])
@pytest.mark.parametrize("const_first", [False, True])
def test_binary_constant_operand(op, const_first):
    a, w = _operands(op, [1, 3, 4, 4], [3, 1, 1])
    if const_first and op == "Pow":  # base constant, exponent at run time
        a, w = rand([1, 3, 4, 4], 1), np.abs(w) + 0.5
    ins = ["w", "x"] if const_first else ["x", "w"]
    model = make_model([helper.make_node(op, ins, ["y"])], [("x", [1, 3, 4, 4])], [("y", None)], {"w": w})
    check_against_ort(model, {"x": a})


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_variadic(op, n):
    names = [f"x{k}" for k in range(n)]
    shapes = [[2, 3, 4], [3, 4], [2, 1, 4]][:n]
    feeds = {nm: rand(s, k) for k, (nm, s) in enumerate(zip(names, shapes))}
    model = make_model([helper.make_node(op, names, ["y"])], list(zip(names, shapes)), [("y", None)])
    check_against_ort(model, feeds)


@pytest.mark.parametrize("exponent", [2.0, 0.5, 3.0, -1.0, [2.0]])
def test_pow_constant_scalar_is_act(exponent):
    x = np.abs(rand([1, 4, 6], 3)) + 0.1
    e = np.asarray(exponent, np.float32)
    model = _unary_model(helper.make_node("Pow", ["x", "e"], ["y"]), [1, 4, 6], inits={"e": e})
    check_against_ort(model, {"x": x})
    assert _ops(model, {"x": x}) == ["act"]


def test_pow_tensor_exponent_is_binary():
    x = np.abs(rand([2, 3], 3)) + 0.1
    model = _unary_model(helper.make_node("Pow", ["x", "e"], ["y"]), [2, 3],
                         inits={"e": np.array([1.0, 2.0, 0.5], np.float32)})
    check_against_ort(model, {"x": x})
    assert _ops(model, {"x": x}) == ["binary"]


@pytest.mark.parametrize("op,fmod", [("Div", None), ("Mod", 0), ("Mod", 1), ("Mul", None), ("Sub", None)])
def test_integer_constants_fold_with_onnx_semantics(op, fmod):
    """ONNX integer Div truncates toward zero; Mod takes the divisor's sign unless fmod=1."""
    a = np.array([-7, 7, -8, 9, 5, -3], np.int64)
    b = np.array([2, -2, 3, -4, 5, 7], np.int64)
    kw = {} if fmod is None else {"fmod": fmod}
    nodes = [helper.make_node("Constant", [], ["a"], value=helper.make_tensor("a", TensorProto.INT64, [6], a)),
             helper.make_node(op, ["a", "b"], ["q"], **kw),
             helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "qf"], ["y"])]
    model = make_model(nodes, [("x", [6])], [("y", [6])], {"b": b})
    check_against_ort(model, {"x": rand([6], 0)})
    assert _ops(model, {"x": rand([6], 0)}) == ["binary"]


def test_integer_arithmetic_at_run_time_is_rejected():
    model = make_model([helper.make_node("Add", ["i", "j"], ["y"])],
                       [("i", [3], TensorProto.INT64), ("j", [3], TensorProto.INT64)],
                       [("y", [3], TensorProto.INT64)])
    with pytest.raises(UnsupportedOpError, match="int64 arithmetic at run time"):
        to_ir(model)


# -- prelu ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape,slope_shape", [([1, 4, 5, 6], [4, 1, 1]), ([2, 4], [4]), ([1, 4, 5, 6], [1]),
                                                  ([1, 3, 5], [5]), ([1, 4, 5], [4, 1])])
def test_prelu(x_shape, slope_shape):
    slope = rand(slope_shape, 5, 0.3)
    model = _unary_model(helper.make_node("PRelu", ["x", "s"], ["y"]), x_shape, inits={"s": slope})
    check_against_ort(model, {"x": rand(x_shape, 4)})
    graph = to_ir(model)
    (node,) = graph.nodes
    assert node.op == "prelu" and graph.weight_slots()[0][2] == "param"


def test_prelu_slope_that_does_not_broadcast_is_rejected():
    model = _unary_model(helper.make_node("PRelu", ["x", "s"], ["y"]), [1, 4, 5, 6],
                         inits={"s": rand([4], 1)})
    with pytest.raises(UnsupportedOpError, match="does not broadcast"):
        to_ir(model)


# -- softmax -------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("axis", [None, -1, 0, 1, 2, -2])
@pytest.mark.parametrize("shape", [[2, 3, 4], [2, 3, 1]])
def test_softmax(op, opset, axis, shape):
    kw = {} if axis is None else {"axis": axis}
    model = _unary_model(helper.make_node(op, ["x"], ["y"], **kw), shape, opset=opset)
    check_against_ort(model, {"x": rand(shape, 6, 3.0)})


def test_softmax_opset11_flattens_trailing_axes():
    model = _unary_model(helper.make_node("Softmax", ["x"], ["y"], axis=1), [2, 3, 4], opset=11)
    assert _ops(model, {"x": rand([2, 3, 4])}) == ["reshape", "softmax", "reshape"]
    model13 = _unary_model(helper.make_node("Softmax", ["x"], ["y"], axis=1), [2, 3, 4], opset=13)
    assert _ops(model13, {"x": rand([2, 3, 4])}) == ["softmax"]


# -- reduce --------------------------------------------------------------------------------
def _reduce_model(op, opset, axes, keepdims, noop=None):
    axes_as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    kw = {"keepdims": keepdims}
    if noop is not None:
        kw["noop_with_empty_axes"] = noop
    inits = {}
    ins = ["x"]
    if axes is not None and axes_as_input:
        inits["axes"] = np.array(axes, np.int64)
        ins.append("axes")
    elif axes is not None:
        kw["axes"] = axes
    return _unary_model(helper.make_node(op, ins, ["y"], **kw), [2, 3, 4, 5], opset=opset, inits=inits)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
@pytest.mark.parametrize("opset", [11, 13, 18])
@pytest.mark.parametrize("axes", [[1], [-1], [0, 2], [3, -3], None])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce(op, opset, axes, keepdims):
    model = _reduce_model(op, opset, axes, keepdims)
    check_against_ort(model, {"x": rand([2, 3, 4, 5], 7)}, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
def test_reduce_noop_with_empty_axes(op):
    model = _reduce_model(op, 18, None, 1, noop=1)
    check_against_ort(model, {"x": rand([2, 3, 4, 5], 8)})
    assert _ops(model, {"x": rand([2, 3, 4, 5])}) == ["identity"]


def test_reduce_axes_at_run_time_rejected():
    model = make_model([helper.make_node("ReduceSum", ["x", "a"], ["y"])],
                       [("x", [2, 3]), ("a", [1], TensorProto.INT64)], [("y", None)], opset=13)
    with pytest.raises(UnsupportedOpError, match="axes must be constant"):
        to_ir(model)


# -- op contract ---------------------------------------------------------------------------
def test_checks_flops_and_constraints():
    model = make_model([helper.make_node("Mul", ["x", "w"], ["m"]),
                        helper.make_node("PRelu", ["m", "s"], ["p"]),
                        helper.make_node("Softmax", ["p"], ["q"], axis=1),
                        helper.make_node("ReduceMean", ["q"], ["y"], axes=[2], keepdims=0)],
                       [("x", [1, 4, 6])], [("y", None)],
                       {"w": rand([4, 1], 1), "s": rand([4, 1], 2)}, opset=13)
    graph = to_ir(model)
    for node in graph.nodes:
        opdef = REGISTRY[node.op]
        ins = [graph.tensors[i].shape for i in node.inputs]
        outs = [graph.tensors[o].shape for o in node.outputs]
        assert opdef.check(node, ins) is None
        assert opdef.infer(node, ins) == outs
        assert opdef.flops(node, ins, outs) >= int(np.prod(outs[0]))
        assert opdef.constraints and opdef.summary
    fake = type(graph.nodes[0])("n", "binary", ["a", "b"], ["c"], {"fn": "mod"})
    assert "constant" in REGISTRY["binary"].check(fake, [(2,), (2,)])
