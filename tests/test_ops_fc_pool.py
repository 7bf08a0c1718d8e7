"""`fc`, `matmul`, `batchnorm`, `pool`, `pad`: ONNX lowering + float simulator vs onnxruntime; rejections."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc.errors import UnsupportedOpError
from gxnpuc.ir import Node
from gxnpuc.ops import REGISTRY
from onnx_util import check_against_ort, make_model, rand, run_ort, to_ir

I64 = np.int64


def one_node(op, inputs, attrs, x_shapes, inits, opset=17, n_out=1, name="/m/op"):
    """Model with one node; graph inputs x0.. with x_shapes, initializers by name."""
    node = helper.make_node(op, inputs, [f"y{i}" for i in range(n_out)], name=name, **attrs)
    ins = [(f"x{i}", list(s)) for i, s in enumerate(x_shapes)]
    return make_model([node], ins, [(f"y{i}", None) for i in range(n_out)], inits, opset)


def feeds_for(x_shapes, seed=5):
    return {f"x{i}": rand(s, seed + i) for i, s in enumerate(x_shapes)}


def run_case(op, inputs, attrs, x_shapes, inits, opset=17, oracle="ort"):
    model = one_node(op, inputs, attrs, x_shapes, inits, opset)
    return check_against_ort(model, feeds_for(x_shapes), oracle=oracle), model


def unsupported(model) -> UnsupportedOpError:
    with pytest.raises(UnsupportedOpError) as err:
        to_ir(model)
    return err.value


# -- Gemm / MatMul -------------------------------------------------------------------------
GEMM = {  # id: (attrs, B shape, C shape or None)
    "plain": ({}, (6, 4), (4,)),
    "transB": ({"transB": 1}, (4, 6), (4,)),
    "no_C": ({"transB": 1}, (4, 6), None),
    "alpha_beta": ({"alpha": 0.5, "beta": 2.0, "transB": 1}, (4, 6), (4,)),
    "C_1xN": ({"beta": 0.25}, (6, 4), (1, 4)),
    "C_scalar": ({}, (6, 4), (1,)),
    "C_Mx1_same_rows": ({}, (6, 4), (1, 1)),
}


@pytest.mark.parametrize("case", sorted(GEMM))
def test_gemm(case):
    attrs, b_shape, c_shape = GEMM[case]
    inits = {"fc.weight": rand(b_shape, 1)}
    if c_shape:
        inits["fc.bias"] = rand(c_shape, 2)
    _, model = run_case("Gemm", ["x0", "fc.weight"] + (["fc.bias"] if c_shape else []), attrs,
                        [(1, 6)], inits)
    (node,) = to_ir(model).nodes
    assert node.op == "fc" and node.attrs["transpose_w"] == bool(attrs.get("transB"))


def test_gemm_keeps_weight_name_and_folds_alpha_into_a_new_constant():
    inits = {"fc.weight": rand((4, 6), 1), "fc.bias": rand((4,), 2)}
    g = to_ir(one_node("Gemm", ["x0", "fc.weight", "fc.bias"], {"transB": 1}, [(2, 6)], inits))
    assert [(n.inputs[i], role) for n, i, role in g.weight_slots()] == [("fc.weight", "fc"), ("fc.bias", "bias")]
    g = to_ir(one_node("Gemm", ["x0", "fc.weight", "fc.bias"], {"transB": 1, "alpha": 2.0}, [(2, 6)], inits))
    w = g.nodes[0].inputs[1]
    assert w.startswith("fc.weight") and np.array_equal(g.tensors[w].data, 2 * inits["fc.weight"])


def test_gemm_transA_with_constant_A_and_computed_B():
    a = rand((6, 2), 3)  # transA: A is [K, M]
    run_case("Gemm", ["a", "x0"], {"transA": 1}, [(6, 4)], {"a": a})


@pytest.mark.skipif("binary" not in REGISTRY, reason="needs the binary op (ops B)")
def test_gemm_C_varying_per_row_becomes_an_add():
    run_case("Gemm", ["x0", "w", "c"], {"beta": 0.5}, [(3, 6)], {"w": rand((6, 4), 1), "c": rand((3, 4), 2)})


@pytest.mark.skipif("transpose" not in REGISTRY or "binary" not in REGISTRY, reason="needs ops B")
@pytest.mark.parametrize("attrs,x_shapes,inputs", [
    ({"transA": 1, "transB": 1}, [(6, 2)], ["x0", "w"]),
    ({"transB": 1}, [(2, 6), (4, 6)], ["x0", "x1", "c"]),
    ({}, [(2, 6), (6, 4), (2, 4)], ["x0", "x1", "x2"]),
], ids=["computed_A_transA", "computed_B_transB", "computed_B_and_C"])
def test_gemm_with_computed_operands(attrs, x_shapes, inputs):
    run_case("Gemm", inputs, attrs, x_shapes, {"w": rand((4, 6), 1), "c": rand((4,), 2)})


MATMUL = {  # id: (x shapes, constant initializers, inputs)
    "x2d_const_w": ([(3, 6)], {"w": rand((6, 5), 1)}, ["x0", "w"]),
    "x3d_const_w": ([(2, 3, 6)], {"w": rand((6, 5), 1)}, ["x0", "w"]),
    "x4d_const_w": ([(1, 2, 3, 6)], {"w": rand((6, 5), 1)}, ["x0", "w"]),
    "x1d_const_w": ([(6,)], {"w": rand((6, 5), 1)}, ["x0", "w"]),
    "x3d_const_w_1KN": ([(2, 3, 6)], {"w": rand((1, 6, 5), 1)}, ["x0", "w"]),
    "const_w_1d": ([(2, 3, 6)], {"w": rand((6,), 1)}, ["x0", "w"]),
    "const_w_batched": ([(2, 3, 6)], {"w": rand((2, 6, 5), 1)}, ["x0", "w"]),
    "const_first": ([(2, 6, 5)], {"a": rand((3, 6), 1)}, ["a", "x0"]),
    "both_runtime": ([(2, 3, 6), (2, 6, 4)], {}, ["x0", "x1"]),
    "both_runtime_broadcast": ([(2, 1, 3, 6), (4, 6, 5)], {}, ["x0", "x1"]),
}


@pytest.mark.parametrize("case", sorted(MATMUL))
def test_matmul(case):
    x_shapes, inits, inputs = MATMUL[case]
    _, model = run_case("MatMul", inputs, {}, x_shapes, inits)
    (node,) = to_ir(model).nodes
    assert node.op == ("fc" if case.endswith(("const_w", "1KN")) else "matmul")


def test_fc_and_matmul_flops_count_a_mac_as_two():
    g = to_ir(one_node("MatMul", ["x0", "x1"], {}, [(2, 3, 6), (2, 6, 4)], {}))
    node = g.nodes[0]
    assert REGISTRY["matmul"].flops(node, [(2, 3, 6), (2, 6, 4)], [(2, 3, 4)]) == 2 * 2 * 3 * 4 * 6
    g = to_ir(one_node("Gemm", ["x0", "w"], {}, [(3, 6)], {"w": rand((6, 4), 1)}))
    assert REGISTRY["fc"].flops(g.nodes[0], [(3, 6), (6, 4)], [(3, 4)]) == 2 * 3 * 4 * 6


# -- BatchNormalization --------------------------------------------------------------------
def bn_inits(c, seed=1):
    return {"bn.scale": rand((c,), seed), "bn.bias": rand((c,), seed + 1), "bn.mean": rand((c,), seed + 2),
            "bn.var": np.abs(rand((c,), seed + 3)) + 0.1}


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("x_shape", [(1, 4, 5, 6), (2, 4, 7)])
def test_batchnorm(opset, x_shape):
    _, model = run_case("BatchNormalization", ["x0", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
                        {"epsilon": 1e-3}, [x_shape], bn_inits(x_shape[1]), opset)
    g = to_ir(model)
    assert [(n.op, n.attrs["axis"]) for n in g.nodes] == [("batchnorm", 1)]
    assert {role for _, _, role in g.weight_slots()} == {"param"}


def test_batchnorm_training_forms_are_rejected():
    ins = ["x0", "bn.scale", "bn.bias", "bn.mean", "bn.var"]
    err = unsupported(one_node("BatchNormalization", ins, {"training_mode": 1}, [(1, 4, 5)], bn_inits(4),
                               opset=15, n_out=3, name="/bn/train"))
    assert err.items[0][:2] == ("/bn/train", "BatchNormalization") and "training" in err.items[0][2]
    model = one_node("BatchNormalization", ["x0", "bn.scale", "bn.bias", "bn.mean", "x1"], {},
                     [(1, 4, 5), (4,)], {k: v for k, v in bn_inits(4).items() if k != "bn.var"})
    assert "constant" in unsupported(model).items[0][2]


# -- pooling -------------------------------------------------------------------------------
POOL = {  # id: (op, x shape, attrs, opset)
    "max_2d": ("MaxPool", (1, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}, 17),
    "max_2d_pads_asym": ("MaxPool", (1, 3, 7, 8), {"kernel_shape": [3, 3], "pads": [1, 0, 0, 1]}, 17),
    "max_2d_ceil": ("MaxPool", (1, 3, 8, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, 17),
    "max_2d_ceil_pads": ("MaxPool", (1, 2, 7, 7), {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                   "ceil_mode": 1}, 17),
    "max_2d_dilated": ("MaxPool", (1, 3, 9, 9), {"kernel_shape": [2, 3], "dilations": [2, 2]}, 17),
    "max_2d_same_upper": ("MaxPool", (1, 3, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 2],
                                                    "auto_pad": "SAME_UPPER"}, 17),
    "max_2d_same_lower": ("MaxPool", (1, 3, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 2],
                                                    "auto_pad": "SAME_LOWER"}, 17),
    "max_2d_valid": ("MaxPool", (1, 3, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}, 17),
    "max_1d": ("MaxPool", (2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}, 17),
    "max_1d_ceil": ("MaxPool", (1, 3, 10), {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}, 17),
    "avg_2d": ("AveragePool", (1, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}, 17),
    "avg_2d_pads_excl": ("AveragePool", (1, 3, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 17),
    "avg_2d_pads_incl": ("AveragePool", (1, 3, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 0, 2, 1],
                                                       "count_include_pad": 1}, 17),
    "avg_2d_ceil_excl": ("AveragePool", (1, 3, 8, 9), {"kernel_shape": [3, 3], "strides": [2, 2],
                                                       "ceil_mode": 1}, 17),
    "avg_2d_ceil_incl": ("AveragePool", (1, 3, 8, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1,
                                                       "pads": [1, 1, 1, 1], "count_include_pad": 1}, 17),
    "avg_2d_same_upper": ("AveragePool", (1, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2],
                                                        "auto_pad": "SAME_UPPER"}, 17),
    "avg_2d_same_lower_incl": ("AveragePool", (1, 3, 7, 7), {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER",
                                                             "count_include_pad": 1}, 17),
    "avg_2d_valid": ("AveragePool", (1, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2],
                                                   "auto_pad": "VALID"}, 17),
    "avg_2d_dilated_19": ("AveragePool", (1, 3, 9, 9), {"kernel_shape": [2, 2], "dilations": [2, 2],
                                                        "pads": [1, 1, 1, 1]}, 19),
    "avg_1d_incl": ("AveragePool", (1, 4, 12), {"kernel_shape": [4], "strides": [3], "pads": [2, 1],
                                                "count_include_pad": 1}, 17),
    "avg_1d_ceil": ("AveragePool", (1, 4, 12), {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}, 11),
    "gap_2d": ("GlobalAveragePool", (2, 5, 6, 7), {}, 17),
    "gmp_2d": ("GlobalMaxPool", (1, 5, 6, 7), {}, 17),
    "gap_1d": ("GlobalAveragePool", (1, 5, 9), {}, 17),
    "gmp_1d": ("GlobalMaxPool", (1, 5, 9), {}, 17),
}


@pytest.mark.parametrize("case", sorted(POOL))
def test_pool(case):
    op, x_shape, attrs, opset = POOL[case]
    _, model = run_case(op, ["x0"], attrs, [x_shape], {}, opset)
    assert [n.op for n in to_ir(model).nodes] == ["pool"]


@pytest.mark.parametrize("case", ["max_2d_ceil_pads", "avg_2d_ceil_incl", "avg_2d_pads_excl", "max_1d",
                                  "avg_1d_incl", "gap_2d"])
def test_pool_channels_last_kernel(case):
    """The TF layout (NHWC/NWC) of the same pooling against ORT on the channels-first model."""
    op, x_shape, attrs, opset = POOL[case]
    model = one_node(op, ["x0"], attrs, [x_shape], {}, opset)
    x = rand(x_shape, 5)
    want = run_ort(model, {"x0": x})["y0"]
    node = to_ir(model).nodes[0]
    a = dict(node.attrs, data_format="NHWC" if len(x_shape) == 4 else "NWC")
    cl = Node("p", "pool", ["x"], ["y"], a)
    x_cl = np.moveaxis(x, 1, -1)
    assert REGISTRY["pool"].check(cl, [x_cl.shape]) is None
    (got,) = REGISTRY["pool"].run(cl, [x_cl])
    assert got.shape == REGISTRY["pool"].infer(cl, [x_cl.shape])[0]
    np.testing.assert_allclose(got, np.moveaxis(want, 1, -1), rtol=1e-5, atol=1e-6)


def test_pool_rejections_list_every_node():
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "idx"], name="/p/with_indices", kernel_shape=[2, 2]),
             helper.make_node("AveragePool", ["x3"], ["y3"], name="/p/3d", kernel_shape=[2, 2, 2]),
             helper.make_node("LpPool", ["x"], ["y4"], name="/p/lp", kernel_shape=[2, 2])]
    model = make_model(nodes, [("x", [1, 2, 6, 6]), ("x3", [1, 2, 4, 4, 4])],
                       [("y", None), ("idx", None), ("y3", None), ("y4", None)])
    err = unsupported(model)
    assert [n for n, _, _ in err.items] == ["/p/with_indices", "/p/3d", "/p/lp"]
    assert "Indices" in err.items[0][2] and "1-D and 2-D" in err.items[1][2]


# -- Pad -----------------------------------------------------------------------------------
PAD = {  # id: (x shape, attrs, pads, constant_value, axes, opset)
    "attr_constant_2": ((1, 3, 4, 5), {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "value": 1.5}, None, None, None, 2),
    "attr_reflect_2": ((1, 3, 4, 5), {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "mode": "reflect"}, None, None, None, 2),
    "constant_11": ((1, 3, 4, 5), {}, [0, 0, 1, 0, 0, 0, 0, 3], -2.0, None, 11),
    "constant_no_value": ((1, 3, 6), {}, [0, 1, 2, 0, 0, 1], None, None, 13),
    "reflect": ((1, 3, 4, 5), {"mode": "reflect"}, [0, 0, 3, 1, 0, 0, 2, 4], None, None, 17),
    "edge": ((1, 3, 4, 5), {"mode": "edge"}, [0, 0, 2, 1, 0, 0, 3, 5], None, None, 17),
    "negative_crop": ((1, 3, 6, 7), {}, [0, 0, -1, 2, 0, 0, 1, -2], 0.5, None, 17),
    "axes_18": ((1, 3, 4, 5), {"mode": "edge"}, [1, 2, 3, 0], None, [-1, 2], 18),
    "axes_18_constant": ((1, 3, 4, 5), {}, [2, 1], 3.0, [1], 18),
}


@pytest.mark.parametrize("case", sorted(PAD))
def test_pad(case):
    x_shape, attrs, pads, value, axes, opset = PAD[case]
    inits, inputs = {}, ["x0"]
    if pads is not None:
        inits["pads"] = np.array(pads, I64)
        inputs.append("pads")
        inputs.append("value" if value is not None else "")
        if value is not None:
            inits["value"] = np.array(value, np.float32)
        if axes is not None:
            inits["axes"] = np.array(axes, I64)
            inputs.append("axes")
    while inputs[-1] == "":
        inputs.pop()
    _, model = run_case("Pad", inputs, attrs, [x_shape], inits, opset)
    assert [n.op for n in to_ir(model).nodes] == ["pad"]


def test_pad_rejections():
    nodes = [helper.make_node("Pad", ["x", "p"], ["y1"], name="/pad/runtime_pads"),
             helper.make_node("Pad", ["x", "pc"], ["y2"], name="/pad/wrap", mode="wrap"),
             helper.make_node("Pad", ["x", "big"], ["y3"], name="/pad/reflect_too_far", mode="reflect")]
    model = make_model(nodes, [("x", [1, 2, 3]), ("p", [6], TensorProto.INT64)],
                       [("y1", None), ("y2", None), ("y3", None)],
                       {"pc": np.array([0, 0, 1, 0, 0, 1], I64), "big": np.array([0, 0, 3, 0, 0, 0], I64)},
                       opset=19)
    err = unsupported(model)
    assert [n for n, _, _ in err.items] == ["/pad/runtime_pads", "/pad/wrap", "/pad/reflect_too_far"]
    assert "constant" in err.items[0][2] and "wrap" in err.items[1][2] and "reflect" in err.items[2][2]


# -- a small real-looking chain ------------------------------------------------------------
def test_conv_bn_relu_pool_pad_chain():
    c = 4
    nodes = [helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["/conv/Conv_output_0"],
                              name="/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["/conv/Conv_output_0", "bn.scale", "bn.bias", "bn.mean",
                                                     "bn.var"], ["/bn/out"], name="/bn/BatchNormalization"),
             helper.make_node("Relu", ["/bn/out"], ["/relu/out"], name="/relu/Relu"),
             helper.make_node("MaxPool", ["/relu/out"], ["/pool/out"], name="/pool/MaxPool",
                              kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
             helper.make_node("Pad", ["/pool/out", "pads"], ["/pad/out"], name="/pad/Pad", mode="edge"),
             helper.make_node("AveragePool", ["/pad/out"], ["/avg/out"], name="/avg/AveragePool", kernel_shape=[3, 3]),
             helper.make_node("GlobalAveragePool", ["/avg/out"], ["output"], name="/gap/GlobalAveragePool")]
    inits = {"conv.weight": rand((c, 3, 3, 3), 1), "conv.bias": rand((c,), 2), **bn_inits(c, 3),
             "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], I64)}
    model = make_model(nodes, [("input", [1, 3, 9, 9])], [("output", None)], inits, opset=13)
    check_against_ort(model, {"input": rand((1, 3, 9, 9), 9)})
