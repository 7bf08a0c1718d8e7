"""ONNX activations lowered to `act` (and Identity/Dropout to aliases) against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.onnx_util import check_against_ort, make_model, rand, to_ir

N = helper.make_node
SHAPE = [2, 3, 8]


def _check(node, x, opset=17, inits=None):
    model = make_model([node], [("x", list(x.shape))], [("y", None)], inits, opset=opset)
    check_against_ort(model, {"x": x})
    return to_ir(model)


@pytest.mark.parametrize("op,kw", [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("Abs", {}), ("Neg", {}), ("Exp", {}), ("HardSwish", {}),
    ("Elu", {}), ("Elu", {"alpha": 0.5}), ("Selu", {}), ("Selu", {"alpha": 1.2, "gamma": 0.9}),
    ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2}),
    ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.1, "beta": 0.3})])
@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_act_any_sign(op, kw, scale):
    graph = _check(N(op, ["x"], ["y"], **kw), rand(SHAPE, 31, scale))
    assert [n.op for n in graph.nodes] == ["act"]


@pytest.mark.parametrize("op", ["Sqrt", "Log", "Reciprocal"])
def test_act_positive_domain(op):
    _check(N(op, ["x"], ["y"]), np.abs(rand(SHAPE, 32, 3.0)) + 0.05)


@pytest.mark.parametrize("kw", [{"min": -0.5, "max": 0.7}, {"min": 0.0}, {"max": 6.0}, {}])
def test_clip_opset6_attrs(kw):
    _check(N("Clip", ["x"], ["y"], **kw), rand(SHAPE, 33, 4.0), opset=6)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (0.0, None), (None, 6.0), (None, None)])
def test_clip_inputs(opset, lo, hi):
    names, inits = ["x", "", ""], {}
    if lo is not None:
        names[1], inits["lo"] = "lo", np.array(lo, np.float32)
    if hi is not None:
        names[2], inits["hi"] = "hi", np.array(hi, np.float32)
    while names[-1] == "":
        names.pop()
    graph = _check(N("Clip", names, ["y"]), rand(SHAPE, 34, 4.0), opset, inits)
    (node,) = graph.nodes
    assert node.attrs["min"] == (-np.inf if lo is None else np.float32(lo))
    assert node.attrs["max"] == (np.inf if hi is None else np.float32(hi))


def test_clip_bound_computed_at_run_time():
    """A rank-0 input as the lower bound, a constant upper one: max with the input, then clip."""
    model = make_model([N("Clip", ["x", "lo", "hi"], ["y"])], [("x", SHAPE), ("lo", [])], [("y", None)],
                       {"hi": np.array(2.5, np.float32)}, opset=13)
    check_against_ort(model, {"x": rand(SHAPE, 36, 4.0), "lo": np.array(-0.75, np.float32)})
    assert sorted(n.op for n in to_ir(model, {"x": SHAPE, "lo": []}).nodes) == ["act", "binary"]


@pytest.mark.parametrize("op,opset,extra", [("Identity", 17, {}), ("Dropout", 11, {"ratio": 0.3}),
                                            ("Dropout", 13, {}), ("Dropout", 7, {})])
def test_identity_and_dropout_vanish_inside_the_graph(op, opset, extra):
    model = make_model([N(op, ["x"], ["d"], **extra), N("Relu", ["d"], ["y"])], [("x", SHAPE)], [("y", None)],
                       opset=opset)
    check_against_ort(model, {"x": rand(SHAPE, 35)})
    assert [n.op for n in to_ir(model).nodes] == ["act"]


def test_dropout_with_ratio_input():
    model = make_model([N("Dropout", ["x", "r"], ["d"]), N("Sigmoid", ["d"], ["y"])], [("x", SHAPE)],
                       [("y", None)], {"r": np.array(0.5, np.float32)}, opset=13)
    check_against_ort(model, {"x": rand(SHAPE, 36)})


@pytest.mark.parametrize("op", ["Identity", "Dropout"])
def test_identity_as_graph_output_is_a_copy(op):
    graph = _check(N(op, ["x"], ["y"]), rand(SHAPE, 37))
    assert [n.op for n in graph.nodes] == ["identity"] and graph.outputs == ["y"]


def test_identity_of_a_constant():
    model = make_model([N("Identity", ["w"], ["w_id"]), N("Add", ["x", "w_id"], ["y"])], [("x", SHAPE)],
                       [("y", None)], {"w": rand([8], 38)})
    check_against_ort(model, {"x": rand(SHAPE, 39)})
