"""The lowerings added for real third-party exports, each checked against onnxruntime on a
small onnx.helper model: nearest Resize/Upsample, LayerNormalization, Instance/Group
normalisation, ReduceL2-style norms, Gelu/Erf/Softplus/Softsign/Mish, Where with a constant
mask (incl. a -inf attention mask), torch's softplus threshold, and the clear rejections.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc.errors import UnsupportedOpError
from onnx_util import check_against_ort, make_model, rand, to_ir

N = helper.make_node
F32 = np.float32


def _one(node, x_shape, inits=None, opset=17, outputs=("y",), seed=0, scale=1.0):
    model = make_model([node], [("x", list(x_shape))], [(o, None) for o in outputs], inits or {}, opset)
    return model, {"x": rand(x_shape, seed, scale)}


def _ops(graph) -> list[str]:
    return [n.op for n in graph.nodes]


# -- Resize / Upsample ------------------------------------------------------------------------
RESIZES = [  # (coordinate_transformation_mode, nearest_mode, scales, sizes, opset)
    ("asymmetric", "floor", [1, 1, 2, 2], None, 13),               # torch nearest (TorchScript)
    ("half_pixel", "round_prefer_floor", [1, 1, 3, 3], None, 13),  # the ONNX defaults
    ("pytorch_half_pixel", "round_prefer_ceil", None, [1, 2, 8, 10], 13),
    ("asymmetric", "round_prefer_floor", [1, 1, 2, 1], None, 11),
    ("tf_half_pixel_for_nn", "floor", [1, 1, 2, 2], None, 11),
    ("asymmetric", "floor", [1, 1, 0.5, 0.5], None, 13),           # every other pixel: a slice
]


@pytest.mark.parametrize("ctm,nearest,scales,sizes,opset", RESIZES)
def test_nearest_resize_matches_onnxruntime(ctm, nearest, scales, sizes, opset):
    inits = {"roi": np.zeros(0, F32), "scales": np.asarray(scales or [], F32)}
    ins = ["x", "roi", "scales"]
    if sizes:
        inits["sizes"] = np.asarray(sizes, np.int64)
        ins.append("sizes")
    node = N("Resize", ins, ["y"], mode="nearest", coordinate_transformation_mode=ctm, nearest_mode=nearest)
    model, feeds = _one(node, [1, 2, 4, 5], inits, opset)
    check_against_ort(model, feeds, rtol=0, atol=0)
    assert set(_ops(to_ir(model))) <= {"upsample", "slice"}


def test_resize_18_with_axes_and_resize_10():
    node = N("Resize", ["x", "", "s"], ["y"], mode="nearest", axes=[2, 3],
             coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    model, feeds = _one(node, [1, 3, 2, 3], {"s": np.array([2, 3], F32)}, 18)
    check_against_ort(model, feeds, rtol=0, atol=0)
    old, feeds = _one(N("Resize", ["x", "s"], ["y"], mode="nearest"), [1, 3, 2, 3],
                      {"s": np.array([1, 1, 2, 2], F32)}, 10)
    check_against_ort(old, feeds, rtol=0, atol=0)


def test_upsample_opset9_matches_onnxruntime():
    model, feeds = _one(N("Upsample", ["x", "s"], ["y"], mode="nearest"), [1, 2, 3, 4],
                        {"s": np.array([1, 1, 2, 3], F32)}, 9)
    check_against_ort(model, feeds, rtol=0, atol=0)
    assert _ops(to_ir(model)) == ["upsample"]


@pytest.mark.parametrize("attrs,why", [
    ({"mode": "cubic"}, "only nearest, and linear"),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, "only up-sampling by an integer"),
    ({"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "floor"},
     "not an integer repetition"),
])
def test_resize_the_npu_cannot_do_is_one_clear_line(attrs, why):
    model, _ = _one(N("Resize", ["x", "", "s"], ["y"], **attrs), [1, 1, 3, 3],
                    {"s": np.array([1, 1, 2, 2], F32)}, 13)
    with pytest.raises(UnsupportedOpError, match=why) as err:
        to_ir(model)
    assert "[Resize]" in str(err.value) and "\n" not in str(err.value)


# -- normalisations with run-time statistics ------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_normalization_with_its_statistics_outputs(axis):
    shape = [2, 3, 4]
    norm = shape[axis:] if axis > 0 else shape[-1:]
    inits = {"g": rand(norm, 1, 0.5) + 1, "b": rand(norm, 2, 0.3)}
    node = N("LayerNormalization", ["x", "g", "b"], ["y", "mean", "inv"], axis=axis, epsilon=1e-3)
    model, feeds = _one(node, shape, inits, 17, ("y", "mean", "inv"), scale=3.0)
    check_against_ort(model, feeds, rtol=1e-5, atol=1e-5)


def test_instance_normalization_matches_onnxruntime():
    inits = {"g": rand([4], 1) + 1, "b": rand([4], 2)}
    model, feeds = _one(N("InstanceNormalization", ["x", "g", "b"], ["y"], epsilon=1e-4), [1, 4, 3, 5], inits, 13)
    check_against_ort(model, feeds)


@pytest.mark.parametrize("opset,per", [(18, "group"), (21, "channel")])
def test_group_normalization_matches_onnxruntime(opset, per):
    n = 2 if per == "group" else 6  # opset 18 keeps one scale per group, opset 21 per channel
    inits = {"g": rand([n], 1) + 1, "b": rand([n], 2)}
    node = N("GroupNormalization", ["x", "g", "b"], ["y"], num_groups=2, epsilon=1e-5)
    model, feeds = _one(node, [1, 6, 3, 4], inits, opset)
    check_against_ort(model, feeds)


@pytest.mark.parametrize("op", ["ReduceL2", "ReduceL1", "ReduceSumSquare", "ReduceLogSum"])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_norms_match_onnxruntime(op, opset):
    ins, inits, attrs = ["x"], {}, {"keepdims": 1}
    if opset >= 18:
        ins, inits = ["x", "axes"], {"axes": np.array([-1], np.int64)}
    else:
        attrs["axes"] = [-1]
    model, feeds = _one(N(op, ins, ["y"], **attrs), [2, 3, 5], inits, opset)
    if op == "ReduceLogSum":
        feeds["x"] = np.abs(feeds["x"]) + 0.1
    check_against_ort(model, feeds)


# -- activations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op,attrs,opset,oracle", [
    ("Erf", {}, 13, "ort"), ("Softplus", {}, 13, "ort"), ("Softsign", {}, 13, "ort"),
    ("Mish", {}, 18, "ort"), ("Gelu", {}, 20, "ort"), ("Gelu", {"approximate": "tanh"}, 20, "ort"),
    ("Swish", {"alpha": 0.7}, 24, "ort"), ("Swish", {}, 24, "ref")])
def test_smooth_activations_match_onnxruntime(op, attrs, opset, oracle):
    model, feeds = _one(N(op, ["x"], ["y"], **attrs), [3, 40], opset=opset, scale=4.0)
    check_against_ort(model, feeds, rtol=1e-5, atol=1e-6, oracle=oracle)
    assert _ops(to_ir(model)) == ["act"]


# -- Where with a constant condition ---------------------------------------------------------------
def test_where_with_constant_mask_is_npu_arithmetic():
    mask = np.random.default_rng(3).random([1, 4, 5]) > 0.4
    model = make_model([N("Where", ["m", "x", "z"], ["y"])], [("x", [2, 4, 5]), ("z", [2, 4, 5])],
                       [("y", None)], {"m": mask})
    feeds = {"x": rand([2, 4, 5], 1), "z": rand([2, 4, 5], 2)}
    check_against_ort(model, feeds, rtol=0, atol=0)
    assert "where" not in _ops(to_ir(model))


def test_attention_mask_with_minus_inf_never_makes_nan():
    """where(mask, scores, -inf) -> softmax: the fill is folded, never multiplied by zero."""
    mask = np.tril(np.ones((4, 4), bool))
    fill = np.array(-np.inf, F32)
    model = make_model([N("Where", ["m", "x", "ninf"], ["s"]), N("Softmax", ["s"], ["y"], axis=-1)],
                       [("x", [1, 4, 4])], [("y", None)], {"m": mask, "ninf": fill})
    ours = check_against_ort(model, {"x": rand([1, 4, 4], 4)})
    assert np.all(np.isfinite(ours["y"]))


def test_torch_softplus_threshold_where_drops_out():
    """The dynamo exporter writes softplus as where(x > 20, x, Softplus(x))."""
    nodes = [N("Softplus", ["x"], ["sp"]), N("Greater", ["x", "t"], ["big"]), N("Where", ["big", "x", "sp"], ["y"])]
    model = make_model(nodes, [("x", [2, 50])], [("y", None)], {"t": np.array(20.0, F32)})
    check_against_ort(model, {"x": rand([2, 50], 5, 15.0)}, rtol=1e-6, atol=1e-7)
    assert _ops(to_ir(model)) == ["act"]


# -- rejections with a reason ----------------------------------------------------------------------
def test_unknown_op_and_argmax_are_rejected_with_a_reason():
    model = make_model([N("Hardmax", ["x"], ["h"]), N("ArgMax", ["h"], ["y"], axis=-1)],
                       [("x", [4, 1, 5])], [("y", None, TensorProto.INT64)], {})
    with pytest.raises(UnsupportedOpError) as err:
        to_ir(model)
    # ArgMax reads a rejected node, and is listed too: it would be refused on its own
    assert [t for _, t, _ in err.value.items] == ["Hardmax", "ArgMax"]
    assert "no lowering for this op type" in str(err.value)
