"""`conv` op: ONNX Conv lowered and simulated vs onnxruntime; NHWC/HWIO/HWIM kernel forms; rejections."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from gxnpuc.errors import UnsupportedOpError
from gxnpuc.ir import Node
from gxnpuc.ops import REGISTRY
from gxnpuc.ops.conv import auto_pads, conv_attrs_from_same_padding
from onnx_util import check_against_ort, make_model, rand, run_ort, to_ir

# id: (x shape, w shape, Conv attrs, with bias)
CASES = {
    "2d_3x3_pad1": ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    "2d_no_bias": ((1, 3, 7, 6), (5, 3, 3, 2), {}, False),
    "2d_kernel_shape_attr": ((1, 2, 6, 6), (3, 2, 3, 3), {"kernel_shape": [3, 3]}, True),
    "2d_stride2": ((1, 3, 9, 8), (4, 3, 3, 3), {"strides": [2, 2]}, True),
    "2d_stride_2x1": ((2, 3, 9, 8), (4, 3, 3, 3), {"strides": [2, 1], "pads": [1, 1, 1, 1]}, True),
    "2d_dilation2": ((1, 3, 10, 10), (4, 3, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, True),
    "2d_dilation_stride": ((1, 3, 11, 10), (4, 3, 3, 2), {"dilations": [2, 3], "strides": [2, 1]}, True),
    "2d_asym_pads": ((1, 3, 7, 8), (4, 3, 3, 3), {"pads": [0, 1, 2, 1]}, True),
    "2d_1x1": ((1, 8, 5, 5), (6, 8, 1, 1), {}, True),
    "2d_group2": ((1, 4, 8, 8), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, True),
    "2d_group3_stride": ((1, 6, 9, 9), (9, 2, 3, 3), {"group": 3, "strides": [2, 2]}, True),
    "2d_depthwise": ((1, 5, 8, 8), (5, 1, 3, 3), {"group": 5, "pads": [1, 1, 1, 1]}, True),
    "2d_depthwise_mult2": ((1, 3, 8, 7), (6, 1, 3, 3), {"group": 3, "strides": [2, 2]}, True),
    "2d_depthwise_dil": ((1, 4, 9, 9), (4, 1, 3, 3), {"group": 4, "dilations": [2, 2]}, False),
    "2d_same_upper": ((1, 3, 8, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, True),
    "2d_same_upper_even_k": ((1, 3, 7, 7), (4, 3, 4, 2), {"auto_pad": "SAME_UPPER"}, True),
    "2d_same_lower": ((1, 3, 8, 8), (4, 3, 3, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}, True),
    "2d_same_lower_even_k": ((1, 3, 7, 7), (4, 3, 4, 2), {"auto_pad": "SAME_LOWER"}, True),
    "2d_same_dilated": ((1, 3, 9, 9), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "dilations": [2, 2]}, True),
    "2d_valid": ((1, 3, 8, 9), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}, True),
    "2d_notset": ((1, 3, 8, 8), (4, 3, 3, 3), {"auto_pad": "NOTSET", "pads": [1, 0, 0, 1]}, True),
    "1d_basic": ((1, 4, 16), (6, 4, 3), {}, True),
    "1d_pads_stride": ((2, 4, 16), (6, 4, 5), {"pads": [2, 1], "strides": [2]}, True),
    "1d_dilation": ((1, 4, 20), (6, 4, 3), {"dilations": [3]}, False),
    "1d_group": ((1, 6, 12), (4, 3, 3), {"group": 2}, True),
    "1d_depthwise": ((1, 8, 12), (8, 1, 5), {"group": 8, "pads": [2, 2]}, True),
    "1d_same_upper": ((1, 4, 15), (6, 4, 4), {"auto_pad": "SAME_UPPER", "strides": [2]}, True),
    "1d_same_lower": ((1, 4, 15), (6, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [2]}, True),
    "1d_valid": ((1, 4, 15), (6, 4, 4), {"auto_pad": "VALID"}, True),
}

REF_ORACLE = {"2d_same_dilated"}  # onnxruntime refuses dilation with SAME_*; ONNX's evaluator runs it


def conv_model(x_shape, w_shape, attrs, bias, seed=0, opset=17):
    inits = {"conv.weight": rand(w_shape, seed + 1, 0.5)}
    inputs = ["x", "conv.weight"]
    if bias:
        inits["conv.bias"] = rand((w_shape[0],), seed + 2)
        inputs.append("conv.bias")
    node = helper.make_node("Conv", inputs, ["y"], name="/conv/Conv", **attrs)
    return make_model([node], [("x", list(x_shape))], [("y", None)], inits, opset)


@pytest.mark.parametrize("case", sorted(CASES))
def test_conv_matches_onnxruntime(case):
    x_shape, w_shape, attrs, bias = CASES[case]
    oracle = "ref" if case in REF_ORACLE else "ort"
    check_against_ort(conv_model(x_shape, w_shape, attrs, bias), {"x": rand(x_shape, 7)}, oracle=oracle)


def test_conv_ir_keeps_names_layout_and_roles():
    x_shape, w_shape, attrs, bias = CASES["2d_group2"]
    g = to_ir(conv_model(x_shape, w_shape, attrs, bias))
    (node,) = g.nodes
    assert node.op == "conv" and node.source == "Conv"
    assert node.attrs["data_format"] == "NCHW" and node.attrs["w_format"] == "OIHW"
    assert g.tensors["conv.weight"].shape == w_shape
    assert [(i, role) for _, i, role in g.weight_slots()] == [(1, "conv"), (2, "bias")]
    out = g.tensors[g.outputs[0]].shape
    flops = REGISTRY["conv"].flops(node, [g.tensors[i].shape for i in node.inputs], [out])
    assert flops == 2 * np.prod(out) * w_shape[1] * w_shape[2] * w_shape[3] + np.prod(out)


@pytest.mark.parametrize("case", ["2d_asym_pads", "2d_group3_stride", "2d_dilation_stride",
                                  "2d_depthwise", "2d_depthwise_mult2", "1d_pads_stride", "1d_depthwise"])
def test_channels_last_kernel_matches_onnxruntime(case):
    """The TF forms (NHWC + HWIO, or HWIM for depthwise) against ORT on the NCHW model."""
    x_shape, w_shape, attrs, bias = CASES[case]
    model = conv_model(x_shape, w_shape, attrs, bias)
    x = rand(x_shape, 7)
    want = run_ort(model, {"x": x})["y"]
    w = rand(w_shape, 1, 0.5)
    r = len(x_shape) - 2
    group = attrs.get("group", 1)
    k_axes = tuple(range(2, 2 + r))
    if group > 1 and w_shape[1] == 1 and group == x_shape[1]:  # depthwise: O = C*M -> [*k, C, M]
        w_cl, fmt = w.reshape(group, -1, *w_shape[2:]).transpose(*k_axes, 0, 1), "HWIM" if r == 2 else "WIM"
    else:
        w_cl, fmt = w.transpose(*k_axes, 1, 0), "HWIO" if r == 2 else "WIO"
    pads = attrs.get("pads", [0] * 2 * r)
    a = conv_attrs_from_same_padding("NHWC" if r == 2 else "NWC", fmt, x_shape[2:], w_shape[2:],
                                     attrs.get("strides", [1] * r), attrs.get("dilations", [1] * r),
                                     pads, group)
    ins = [np.moveaxis(x, 1, -1), w_cl] + ([rand((w_shape[0],), 2)] if bias else [])
    node = Node("c", "conv", ["x", "w", "b"][:len(ins)], ["y"], a)
    shapes = [t.shape for t in ins]
    assert REGISTRY["conv"].check(node, shapes) is None
    (got,) = REGISTRY["conv"].run(node, ins)
    assert got.shape == REGISTRY["conv"].infer(node, shapes)[0]
    np.testing.assert_allclose(got, np.moveaxis(want, 1, -1), rtol=1e-5, atol=1e-5 * max(1, np.abs(want).max()))


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("size,k,s,d", [(8, 3, 2, 1), (7, 4, 1, 1), (9, 3, 1, 2), (5, 5, 3, 1), (4, 1, 2, 1)])
def test_auto_pads_give_the_onnx_output_length(mode, size, k, s, d):
    pads = auto_pads(mode, [size], [k], [s], [d])
    want = -(-size // s) if mode != "VALID" else (size - (k - 1) * d - 1) // s + 1
    assert (size + pads[0] + pads[1] - (k - 1) * d - 1) // s + 1 == want
    if mode == "VALID":
        assert pads == [0, 0]
    else:  # the odd pixel goes to the end (UPPER) or the begin (LOWER)
        extra = pads[1] - pads[0] if mode == "SAME_UPPER" else pads[0] - pads[1]
        assert extra in (0, 1) and min(pads) >= 0


def test_tf_same_is_same_upper():
    a = conv_attrs_from_same_padding("NHWC", "HWIO", [7, 8], [4, 3], [1, 2], [1, 1], "SAME")
    assert a["pads"] == auto_pads("SAME_UPPER", [7, 8], [4, 3], [1, 2], [1, 1])
    assert a["pads"][0] < a["pads"][2]  # the odd pixel goes to the end


def test_fp16_input_returns_fp16():
    x_shape, w_shape, attrs, bias = CASES["2d_3x3_pad1"]
    g = to_ir(conv_model(x_shape, w_shape, attrs, bias))
    node = g.nodes[0]
    x = rand(x_shape, 3).astype(np.float16)
    (y16,) = REGISTRY["conv"].run(node, [x] + [g.tensors[i].data for i in node.inputs[1:]])
    (y32,) = REGISTRY["conv"].run(node, [x.astype(np.float32)] + [g.tensors[i].data for i in node.inputs[1:]])
    assert y16.dtype == np.float16
    np.testing.assert_allclose(y16, y32, rtol=2e-3, atol=2e-3 * np.abs(y32).max())


def _unsupported(model) -> UnsupportedOpError:
    with pytest.raises(UnsupportedOpError) as err:
        to_ir(model)
    return err.value


def test_conv3d_transpose_and_runtime_weight_are_all_listed():
    w3 = rand((2, 3, 3, 3, 3), 1)
    wt = rand((3, 2, 3, 3, 3), 2)  # 3-D: 1-D and 2-D transposed convolutions are lowered
    nodes = [helper.make_node("Conv", ["x3", "w3"], ["y3"], name="/c3d/Conv"),
             helper.make_node("ConvTranspose", ["x3", "wt"], ["yt"], name="/up/ConvTranspose"),
             helper.make_node("Conv", ["x", "wrt"], ["yr"], name="/dyn/Conv")]
    model = make_model(nodes, [("x3", [1, 3, 6, 6, 6]), ("x", [1, 3, 6, 6]), ("wrt", [4, 3, 3, 3])],
                       [("y3", None), ("yt", None), ("yr", None)], {"w3": w3, "wt": wt})
    err = _unsupported(model)
    assert [(n, t) for n, t, _ in err.items] == [("/c3d/Conv", "Conv"), ("/up/ConvTranspose", "ConvTranspose"),
                                                 ("/dyn/Conv", "Conv")]
    reasons = [r for _, _, r in err.items]
    assert "1-D and 2-D" in reasons[0] and "transposed" in reasons[1] and "constant" in reasons[2]
    assert "/up/ConvTranspose [ConvTranspose]" in str(err) and "\n" not in str(err)


def test_bad_auto_pad_and_channel_mismatch_are_rejected():
    w = rand((4, 2, 3, 3), 1)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y1"], name="odd_pad", auto_pad="SAME"),
             helper.make_node("Conv", ["x", "w"], ["y2"], name="bad_group", group=2)]
    model = make_model(nodes, [("x", [1, 3, 6, 6])], [("y1", None), ("y2", None)], {"w": w})
    items = _unsupported(model).items
    assert [n for n, _, _ in items] == ["odd_pad", "bad_group"]
    assert "auto_pad" in items[0][2] and "channels" in items[1][2]
