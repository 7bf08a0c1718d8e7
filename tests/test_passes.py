"""Graph passes: each keeps the float result (checked against onnxruntime and against the
simulator before the pass) and changes the structure as intended.

ONNX models are built with onnx.helper; TensorFlow layouts (NHWC/HWIO, HWIM, Conv1D's
ExpandDims weight) are built directly in the IR with the same op contract the TF front end uses.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from gxnpuc import compress, numerics, passes, sim
from gxnpuc.evaluate.metrics import snr_db
from gxnpuc.config import Config
from gxnpuc.ir import Graph, Node, Tensor
from gxnpuc.ops import REGISTRY
from gxnpuc.ops import conv, elementwise, fc, norm, shape_ops  # noqa: F401 - fill the registry
from gxnpuc.passes import fold_constants, fuse_biasadd, fuse_bn, pipeline, remove_identity
from tests.onnx_util import assert_close, make_model, rand, run_ort, to_ir

CFG = Config(fuse_bn=True, fuse_biasadd=True)


# -- helpers -------------------------------------------------------------------------------
def bn_params(c: int, prefix: str = "bn", seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {f"{prefix}_s": rng.uniform(0.5, 2, c).astype(np.float32),
            f"{prefix}_b": rng.normal(0, 1, c).astype(np.float32),
            f"{prefix}_m": rng.normal(0, 1, c).astype(np.float32),
            f"{prefix}_v": rng.uniform(0.1, 2, c).astype(np.float32)}


def bn_node(x: str, y: str, prefix: str = "bn") -> object:
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in "sbmv"], [y],
                            name=prefix, epsilon=1e-3)


def ops_of(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def apply_onnx(model, feeds: dict, *passes) -> Graph:
    """Lower, run passes; the simulator before and after and onnxruntime must all agree."""
    graph = to_ir(model, {k: v.shape for k, v in feeds.items()})
    ref = run_ort(model, feeds)
    assert_close(sim.run(graph, feeds), ref)
    for p in passes:
        p(graph, CFG)
        graph.verify(p.__name__)
    assert_close(sim.run(graph, feeds), ref)
    return graph


def ir_graph(inputs: dict, consts: dict, nodes: list, outputs: list) -> Graph:
    """An IR graph by hand: nodes are (op, inputs, outputs, attrs); shapes from each op's infer."""
    g = Graph()
    for name, shape in inputs.items():
        g.tensors[name] = Tensor(name, tuple(shape))
        g.inputs.append(name)
    for name, value in consts.items():
        arr = np.asarray(value)
        g.tensors[name] = Tensor(name, arr.shape, arr.dtype.name, arr)
    for k, (op, ins, outs, attrs) in enumerate(nodes):
        node = Node(f"{op}_{k}", op, list(ins), list(outs), dict(attrs), op)
        shapes = [g.tensors[i].shape if i else None for i in ins]
        for o, s in zip(outs, REGISTRY[op].infer(node, shapes)):
            g.tensors[o] = Tensor(o, tuple(s))
        g.nodes.append(node)
    g.outputs = list(outputs)
    g.verify("test build")
    return g


def apply_ir(graph: Graph, feeds: dict, *passes) -> dict:
    """Run passes on a hand-built graph; float results before and after must agree."""
    before = sim.run(graph, feeds)
    for p in passes:
        p(graph, CFG)
        graph.verify(p.__name__)
    assert_close(sim.run(graph, feeds), before)
    return before


# -- FUSE_BN on ONNX models ----------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_bn_folds_into_weight_and_bias(with_bias):
    w = rand((6, 3, 3, 3), 2)
    inits = {"conv.weight": w, **bn_params(6)}
    ins = ["x", "conv.weight"] + (["conv.bias"] if with_bias else [])
    if with_bias:
        inits["conv.bias"] = rand((6,), 3)
    nodes = [helper.make_node("Conv", ins, ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
             bn_node("c", "y"), helper.make_node("Relu", ["y"], ["out"])]
    model = make_model(nodes, [("x", [1, 3, 8, 8])], [("out", None)], inits)
    g = apply_onnx(model, {"x": rand((1, 3, 8, 8), 4)}, fuse_bn)
    assert ops_of(g) == ["conv", "act"]
    cv = g.nodes[0]
    assert cv.inputs[1] == "conv.weight" and not np.allclose(g.const("conv.weight"), w)
    assert cv.inputs[2] == ("conv.bias" if with_bias else "/conv/Conv/bias")
    assert cv.outputs == ["y"] and "c" not in g.tensors


def test_depthwise_and_conv1d_bn():
    inits = {"dw": rand((4, 1, 3), 5), "pw": rand((8, 4, 1), 6), **bn_params(4, "b1"),
             **bn_params(8, "b2", 7)}
    nodes = [helper.make_node("Conv", ["x", "dw"], ["d"], group=4, pads=[1, 1]),
             bn_node("d", "d2", "b1"), helper.make_node("Relu", ["d2"], ["r"]),
             helper.make_node("Conv", ["r", "pw"], ["p"], strides=[2]), bn_node("p", "out", "b2")]
    model = make_model(nodes, [("x", [1, 4, 10])], [("out", None)], inits)
    g = apply_onnx(model, {"x": rand((1, 4, 10), 8)}, *pipeline(CFG))
    assert ops_of(g) == ["conv", "act", "conv"] and g.outputs == ["out"]
    assert [n.inputs[1] for n in g.nodes if n.op == "conv"] == ["dw", "pw"]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_bn(trans_b):
    w = rand((5, 7) if trans_b else (7, 5), 9)
    inits = {"fc.w": w, "fc.b": rand((5,), 10), **bn_params(5)}
    nodes = [helper.make_node("Gemm", ["x", "fc.w", "fc.b"], ["g"], transB=trans_b),
             bn_node("g", "out")]
    model = make_model(nodes, [("x", [2, 7])], [("out", None)], inits)
    g = apply_onnx(model, {"x": rand((2, 7), 11)}, fuse_bn)
    assert ops_of(g) == ["fc"] and g.nodes[0].inputs[1:] == ["fc.w", "fc.b"]


def test_matmul_mul_add_decomposed_bn():
    inits = {"w": rand((6, 4), 12), "scale": rand((4,), 13), "shift": rand((1, 4), 14)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Mul", ["m", "scale"], ["s"]),
             helper.make_node("Add", ["shift", "s"], ["out"])]
    model = make_model(nodes, [("x", [1, 3, 6])], [("out", None)], inits)
    g = apply_onnx(model, {"x": rand((1, 3, 6), 15)}, fuse_bn)
    assert ops_of(g) == ["fc"] and g.nodes[0].inputs[1] == "w"
    assert g.tensors[g.nodes[0].inputs[2]].shape == (4,)


def test_bn_alone_and_blocked_patterns_stay():
    """BN after a conv whose output has two readers or is a graph output stays; a BN on the input
    folds forwards into the unpadded conv after it (into a copy: the weight is shared)."""
    inits = {"w": rand((3, 3, 1, 1), 16), **bn_params(3, "a"), **bn_params(3, "b", 2),
             **bn_params(3, "c", 3)}
    nodes = [bn_node("x", "y0", "a"),
             helper.make_node("Conv", ["y0", "w"], ["c1"]), bn_node("c1", "y1", "b"),
             helper.make_node("Add", ["c1", "y1"], ["s"]),
             helper.make_node("Conv", ["s", "w"], ["c2"]), bn_node("c2", "y2", "c")]
    model = make_model(nodes, [("x", [1, 3, 4, 4])], [("y2", None), ("c2", None)], inits)
    g = apply_onnx(model, {"x": rand((1, 3, 4, 4), 17)}, fuse_bn)
    assert ops_of(g).count("batchnorm") == 2
    assert np.array_equal(g.const("w"), inits["w"])
    assert g.meta["folded"] == {"w/folded": "a (before it)"}


def test_shared_weight_is_copied_not_changed_for_the_other_reader():
    inits = {"w": rand((4, 4, 3, 3), 18), **bn_params(4)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="conv_a", pads=[1, 1, 1, 1]),
             bn_node("c1", "y1"),
             helper.make_node("Conv", ["x", "w"], ["y2"], name="conv_b", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["y1", "y2"], ["out"])]
    model = make_model(nodes, [("x", [1, 4, 5, 5])], [("out", None)], inits)
    g = apply_onnx(model, {"x": rand((1, 4, 5, 5), 19)}, fuse_bn)
    a, b = g.node("conv_a"), g.node("conv_b")
    assert "batchnorm" not in ops_of(g)
    assert b.inputs[1] == "w" and np.array_equal(g.const("w"), inits["w"])
    assert a.inputs[1] != "w" and a.inputs[1].startswith("w")


def test_pipeline_without_fuse_bn_keeps_bn_params_uncompressed():
    model = make_model([helper.make_node("Conv", ["x", "w"], ["c"]), bn_node("c", "out")],
                       [("x", [1, 2, 3, 3])], [("out", None)], {"w": rand((2, 2, 1, 1), 20), **bn_params(2)})
    feeds = {"x": rand((1, 2, 3, 3), 21)}
    stages = pipeline(Config())
    assert fuse_bn not in stages and fuse_biasadd not in stages
    g = apply_onnx(model, feeds, *stages)
    assert ops_of(g) == ["conv", "batchnorm"]
    assert {fam for n, _, fam in g.weight_slots() if n.op == "batchnorm"} == {"param"}
    assert pipeline(CFG)[-3:] == [fuse_bn, fuse_biasadd, passes.bn_params]


def test_unfolded_bn_stores_its_multiply_add():
    """PP-OCRv4's detector keeps BatchNorms whose running variance (9.8e7) saturates fp16: the
    device must get mul = scale / sqrt(var + eps) and add, computed in float64, not the statistics."""
    params = bn_params(3)
    params["bn_v"] = np.array([9.79e7, 1e-9, 0.5], np.float32)  # beyond fp16, below it, plain
    params["bn_s"] = np.array([3e3, 1e-3, 1.5], np.float32)
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), bn_node("r", "out")],
                       [("x", [1, 3, 4, 4])], [("out", None)], params)
    feeds = {"x": rand((1, 3, 4, 4), 22)}
    g = apply_onnx(model, feeds, passes.bn_params)
    node = g.node("bn")
    assert node.attrs["epsilon"] == 0.0 and np.array_equal(g.const(node.inputs[3]), np.zeros((3,), np.float32))
    x64 = np.maximum(feeds["x"].astype(np.float64), 0)
    mul = params["bn_s"].astype(np.float64) / np.sqrt(params["bn_v"].astype(np.float64) + 1e-3)
    want = x64 * mul[:, None, None] + (params["bn_b"] - params["bn_m"] * mul)[:, None, None]
    npu = sim.run(g, feeds, numerics.device_consts(g, compress.compress_graph(g, Config())),
                  cast=numerics.round_f16)["out"]
    assert snr_db(want, npu) >= 60  # one fp16 rounding of mul, add and y; the statistics gave < 0 dB


# -- FUSE_BN on TensorFlow layouts (built in the IR) ---------------------------------------
def test_tf_conv2d_nhwc_hwio_biasadd_fusedbn():
    w = rand((3, 3, 2, 5), 22)
    consts = {"conv/Conv2D/ReadVariableOp": w, "conv/BiasAdd/b": rand((5,), 23),
              **{f"bn/{k}": v for k, v in bn_params(5).items()}}
    attrs = dict(data_format="NHWC", w_format="HWIO", strides=[1, 1], dilations=[1, 1],
                 pads=[1, 1, 1, 1], group=1)
    g = ir_graph({"x": (1, 6, 6, 2)}, consts, [
        ("conv", ["x", "conv/Conv2D/ReadVariableOp"], ["conv/Conv2D"], attrs),
        ("binary", ["conv/Conv2D", "conv/BiasAdd/b"], ["conv/BiasAdd"], {"fn": "add"}),
        ("batchnorm", ["conv/BiasAdd"] + [f"bn/bn_{k}" for k in "sbmv"], ["bn/FusedBatchNormV3"],
         {"epsilon": 1e-3, "axis": 3})], ["bn/FusedBatchNormV3"])
    apply_ir(g, {"x": rand((1, 6, 6, 2), 24)}, fuse_bn)
    assert ops_of(g) == ["conv"] and g.nodes[0].inputs[1] == "conv/Conv2D/ReadVariableOp"
    assert g.nodes[0].outputs == ["bn/FusedBatchNormV3"]


def test_tf_depthwise_hwim_mul_add():
    consts = {"dw/depthwise/ReadVariableOp": rand((3, 3, 3, 2), 25), "k": rand((6,), 26),
              "t": rand((1, 1, 1, 6), 27)}
    attrs = dict(data_format="NHWC", w_format="HWIM", strides=[1, 1], dilations=[1, 1],
                 pads=[0, 0, 0, 0], group=3)
    g = ir_graph({"x": (1, 5, 5, 3)}, consts, [
        ("conv", ["x", "dw/depthwise/ReadVariableOp"], ["dw/depthwise"], attrs),
        ("binary", ["dw/depthwise", "k"], ["bn/mul_1"], {"fn": "mul"}),
        ("binary", ["bn/mul_1", "t"], ["bn/add_1"], {"fn": "add"}),
        ("act", ["bn/add_1"], ["relu"], {"fn": "relu"})], ["relu"])
    apply_ir(g, {"x": rand((1, 5, 5, 3), 28)}, fuse_bn)
    assert ops_of(g) == ["conv", "act"] and g.nodes[0].inputs[2] == "conv_0/bias"


def test_tf_conv1d_expanddims_weight_through_squeeze():
    """Keras Conv1D: ExpandDims -> Conv2D -> Squeeze -> BiasAdd -> decomposed BN (Mul, Sub-folded Add)."""
    name = "tdnn1.affine/conv1d/ExpandDims_1"
    w = rand((1, 3, 4, 6), 29)
    attrs = dict(data_format="NHWC", w_format="HWIO", strides=[1, 1], dilations=[1, 1],
                 pads=[0, 0, 0, 0], group=1)
    g = ir_graph({"x": (1, 10, 4)}, {name: w, "b": rand((6,), 30), "k": rand((6,), 31),
                                     "t": rand((6,), 32)}, [
        ("reshape", ["x"], ["e"], {"shape": [1, 1, 10, 4]}),
        ("conv", ["e", name], ["c"], attrs),
        ("reshape", ["c"], ["sq"], {"shape": [1, 8, 6]}),
        ("binary", ["sq", "b"], ["ba"], {"fn": "add"}),
        ("binary", ["ba", "k"], ["m"], {"fn": "mul"}),
        ("binary", ["t", "m"], ["out"], {"fn": "sub"})], ["out"])
    apply_ir(g, {"x": rand((1, 10, 4), 33)}, fuse_bn)
    assert ops_of(g) == ["reshape", "conv", "reshape"] and g.nodes[1].inputs[1] == name
    assert g.const(name).shape == (1, 3, 4, 6) and not np.allclose(g.const(name), w)
    assert g.outputs == ["out"] and g.nodes[-1].outputs == ["out"]


def test_tf_dense_bn_and_nchw_transpose_div():
    consts = {"dense/MatMul/ReadVariableOp": rand((5, 3), 34), "d": rand((3,), 35) + 3,
              "w2": rand((3, 3, 1, 1), 36), **bn_params(3)}
    conv_attrs = dict(data_format="NCHW", w_format="OIHW", strides=[1, 1], dilations=[1, 1],
                      pads=[0, 0, 0, 0], group=1)
    g = ir_graph({"x": (2, 5), "z": (1, 3, 2, 2)}, consts, [
        ("fc", ["x", "dense/MatMul/ReadVariableOp"], ["f"], {"transpose_w": False}),
        ("batchnorm", ["f"] + [f"bn_{k}" for k in "sbmv"], ["y"], {"epsilon": 1e-3, "axis": 1}),
        ("conv", ["z", "w2"], ["c"], conv_attrs),
        ("transpose", ["c"], ["ct"], {"perm": [0, 2, 3, 1]}),
        ("binary", ["ct", "d"], ["q"], {"fn": "div"})], ["y", "q"])
    apply_ir(g, {"x": rand((2, 5), 37), "z": rand((1, 3, 2, 2), 38)}, fuse_bn)
    assert ops_of(g) == ["fc", "conv", "transpose"]


# -- FUSE_BIASADD ----------------------------------------------------------------------------
def test_biasadd_matmul_add_and_conv_bias_sum():
    inits = {"w": rand((6, 4), 39), "b": rand((4,), 40), "cw": rand((4, 1, 1, 3), 41),
             "cb": rand((4,), 42), "cadd": rand((4, 1, 1), 43), "k": rand((4, 1, 1), 44)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Reshape", ["a", "shape"], ["r"]),
             helper.make_node("Conv", ["r", "cw", "cb"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "cadd"], ["c2"]), helper.make_node("Mul", ["c2", "k"], ["out"])]
    inits["shape"] = np.array([1, 1, 4, 4], np.int64)
    model = make_model(nodes, [("x", [1, 4, 6])], [("out", None)], inits)
    g = apply_onnx(model, {"x": rand((1, 4, 6), 45)}, fuse_biasadd)
    assert ops_of(g) == ["fc", "reshape", "conv", "binary"]
    assert g.nodes[0].inputs[2] == g.nodes[0].name + "/bias" and g.nodes[2].inputs[2] == "cb"
    assert g.nodes[3].attrs["fn"] == "mul" and np.array_equal(g.const("w"), inits["w"])


def test_biasadd_leaves_non_per_channel_adds():
    inits = {"w": rand((2, 2, 1, 1), 46), "full": rand((2, 3, 3), 47)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "full"], ["out"])]
    model = make_model(nodes, [("x", [1, 2, 3, 3])], [("out", None)], inits)
    g = apply_onnx(model, {"x": rand((1, 2, 3, 3), 48)}, fuse_biasadd, fuse_bn)
    assert ops_of(g) == ["conv", "binary"]


# -- constant folding and identity removal ---------------------------------------------------
def test_fold_constants_keeps_names_and_computed_outputs():
    a, b = rand((3,), 49), rand((3,), 50)
    g = ir_graph({"x": (2, 3)}, {"a": a, "b": b}, [
        ("binary", ["a", "b"], ["ab"], {"fn": "add"}),
        ("act", ["ab"], ["ab_exp"], {"fn": "exp"}),
        ("binary", ["x", "ab_exp"], ["y"], {"fn": "mul"}),
        ("binary", ["a", "b"], ["const_out"], {"fn": "sub"})], ["y", "const_out"])
    apply_ir(g, {"x": rand((2, 3), 51)}, fold_constants)
    assert ops_of(g) == ["binary", "binary"] and g.nodes[0].inputs == ["x", "ab_exp"]
    np.testing.assert_allclose(g.const("ab_exp"), np.exp(a + b), rtol=1e-6)
    assert "ab" not in g.tensors


def test_remove_identity_noops_and_merges():
    g = ir_graph({"x": (1, 2, 3, 4)}, {}, [
        ("act", ["x"], ["r"], {"fn": "relu"}),
        ("identity", ["r"], ["i1"], {}),
        ("reshape", ["i1"], ["same"], {"shape": [1, 2, 3, 4]}),
        ("transpose", ["same"], ["t0"], {"perm": [0, 1, 2, 3]}),
        ("cast", ["t0"], ["c"], {"to": "float32"}),
        ("transpose", ["c"], ["nhwc"], {"perm": [0, 2, 3, 1]}),
        ("transpose", ["nhwc"], ["nchw"], {"perm": [0, 3, 1, 2]}),
        ("reshape", ["nchw"], ["flat"], {"shape": [1, 24]}),
        ("reshape", ["flat"], ["out"], {"shape": [1, 6, 4]})], ["out"])
    apply_ir(g, {"x": rand((1, 2, 3, 4), 52)}, remove_identity)
    assert ops_of(g) == ["act", "reshape"] and g.nodes[0].inputs == ["x"]
    assert g.nodes[-1].outputs == ["out"]


def test_remove_identity_renames_onto_output_and_keeps_needed_copies():
    g = ir_graph({"x": (2, 3)}, {"k": rand((2, 3), 53)}, [
        ("act", ["x"], ["r"], {"fn": "tanh"}),
        ("identity", ["r"], ["i"], {}),
        ("reshape", ["i"], ["out"], {"shape": [2, 3]}),
        ("identity", ["x"], ["x_copy"], {}),
        ("reshape", ["k"], ["k_out"], {"shape": [2, 3]}),
        ("identity", ["out"], ["out2"], {})], ["out", "x_copy", "k_out", "out2"])
    apply_ir(g, {"x": rand((2, 3), 54)}, remove_identity)
    assert ops_of(g) == ["act", "identity", "identity", "identity"]
    assert g.nodes[0].outputs == ["out"] and g.outputs == ["out", "x_copy", "k_out", "out2"]


def test_onnx_identity_chains_and_exporter_reshapes():
    nodes = [helper.make_node("Identity", ["x"], ["i1"]), helper.make_node("Identity", ["i1"], ["i2"]),
             helper.make_node("Relu", ["i2"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Reshape", ["f", "s"], ["g"]), helper.make_node("Identity", ["g"], ["out"]),
             helper.make_node("Identity", ["x"], ["x_out"])]
    model = make_model(nodes, [("x", [1, 3, 4])], [("out", None), ("x_out", None)],
                       {"s": np.array([1, 3, 4], np.int64)})
    g = apply_onnx(model, {"x": rand((1, 3, 4), 55)}, fold_constants, remove_identity)
    assert sorted(ops_of(g)) == ["act", "identity"]
    assert g.producer("out").op == "act" and g.producer("x_out").inputs == ["x"]
