"""Layout normalisation (passes/sink_moves.py): reshape/transpose moved across element-wise
ops so inverse pairs cancel. Every case compares the graph without the pass and with it:
outputs bit-identical (float, and with fp16 rounding at every op), outputs named and shaped
as before, and onnxruntime / TensorFlow as the oracle. Models are built in code.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from gxnpuc import numerics, sim
from gxnpuc.config import Config
from gxnpuc.ir import Graph
from gxnpuc.passes import fold_constants, pipeline, remove_identity, sink_moves
from tests.onnx_util import assert_close, make_model, rand, run_ort, to_ir

CFG = Config()
NCHW, NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


# -- helpers -------------------------------------------------------------------------------
def ops_of(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def run_stages(graph: Graph, stages, cfg=CFG) -> Graph:
    for stage in stages:
        stage(graph, cfg)
        graph.verify(stage.__name__)
    return graph


def assert_same_bits(before: dict, after: dict) -> None:
    assert sorted(before) == sorted(after)
    for name, want in before.items():
        got = np.asarray(after[name])
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert np.array_equal(got.view(np.uint8), np.asarray(want).view(np.uint8)), name


def compare(before: Graph, after: Graph, feeds: dict) -> dict:
    """The pass changes no output bit (float and fp16-rounded runs), names or shapes."""
    assert after.outputs == before.outputs and after.inputs == before.inputs
    for name in before.outputs:
        assert after.tensors[name].shape == before.tensors[name].shape, name
    outs = sim.run(before, feeds)
    assert_same_bits(outs, sim.run(after, feeds))
    f16 = numerics.round_f16
    assert_same_bits(sim.run(before, feeds, cast=f16), sim.run(after, feeds, cast=f16))
    return outs


def onnx_case(nodes, inputs, inits, feeds, outputs=("out",)):
    """(graph without the pass, graph with it); both checked against onnxruntime."""
    model = make_model(nodes, inputs, [(o, None) for o in outputs], inits)
    shapes = {k: v.shape for k, v in feeds.items()}
    before = run_stages(to_ir(model, shapes), [fold_constants, remove_identity])
    after = run_stages(to_ir(model, shapes), [fold_constants, remove_identity, sink_moves])
    assert_close(compare(before, after, feeds), run_ort(model, feeds))
    return before, after


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, name=f"/{outs[0]}/{op}", **attrs)


# -- ONNX: reshape pairs --------------------------------------------------------------------
def test_reshape_and_unsqueeze_pairs_cancel_around_elementwise():
    inits = {"s_flat": np.array([1, 24], np.int64), "s_back": np.array([1, 4, 6], np.int64),
             "b": rand((6,), 1), "slope": np.abs(rand((6,), 2)) * 0.2, "ax": np.array([1], np.int64),
             "w": rand((6, 3), 3)}
    nodes = [node("Reshape", ["x", "s_flat"], ["flat"]), node("Relu", ["flat"], ["r"]),
             node("Reshape", ["r", "s_back"], ["back"]), node("Add", ["back", "b"], ["biased"]),
             node("Unsqueeze", ["biased", "ax"], ["u"]), node("LeakyRelu", ["u"], ["lr"], alpha=0.1),
             node("PRelu", ["lr", "slope"], ["pr"]), node("Squeeze", ["pr", "ax"], ["sq"]),
             node("MatMul", ["sq", "w"], ["out"])]
    before, after = onnx_case(nodes, [("x", [1, 4, 6])], inits, {"x": rand((1, 4, 6), 4)})
    assert ops_of(before).count("reshape") == 4
    assert ops_of(after) == ["act", "binary", "act", "prelu", "fc"]
    assert after.node("/pr/PRelu").inputs[1] == "slope" and after.node("/biased/Add").inputs[1] == "b"
    assert np.array_equal(after.const("slope"), inits["slope"]) and after.const("b").shape == (6,)


def test_time_distributed_dense_reshapes_cancel_through_fc():
    """Keras 2 TimeDistributed(Dense): Reshape [-1, F] -> MatMul -> Add -> Reshape [1, T, H];
    fc works row by row on [..., K], so the rows need no regrouping around it."""
    inits = {"s_rows": np.array([-1, 6], np.int64), "s_seq": np.array([1, 5, 8], np.int64),
             "s_rows2": np.array([-1, 8], np.int64), "s_out": np.array([1, 5, 3], np.int64),
             "w1": rand((6, 8), 34), "b1": rand((8,), 35), "w2": rand((8, 3), 36)}
    nodes = [node("Reshape", ["x", "s_rows"], ["rows"]), node("MatMul", ["rows", "w1"], ["m1"]),
             node("Add", ["m1", "b1"], ["a1"]), node("Reshape", ["a1", "s_seq"], ["seq"]),
             node("Relu", ["seq"], ["r"]), node("Reshape", ["r", "s_rows2"], ["rows2"]),
             node("MatMul", ["rows2", "w2"], ["m2"]), node("Reshape", ["m2", "s_out"], ["out"])]
    before, after = onnx_case(nodes, [("x", [1, 5, 6])], inits, {"x": rand((1, 5, 6), 37)})
    assert ops_of(before).count("reshape") == 4
    assert ops_of(after) == ["fc", "binary", "act", "fc"] and after.tensors["m1"].shape == (1, 5, 8)
    assert [n.inputs[1] for n in after.nodes if n.op == "fc"] == ["w1", "w2"]


def test_squeeze_into_reduce_and_size1_transpose_become_reshapes():
    """A Squeeze before a keepdims-0 reduce joins its axes; [T, 1, C] -> [1, T, C] is a reshape."""
    inits = {"ax": np.array([1], np.int64), "w": rand((6, 2), 5)}
    nodes = [node("Squeeze", ["x", "ax"], ["sq"]), node("Relu", ["sq"], ["r"]),
             node("ReduceMean", ["r"], ["m"], axes=[1], keepdims=0), node("MatMul", ["m", "w"], ["out"]),
             node("Transpose", ["z", ], ["zt"], perm=[1, 0, 2]), node("Sigmoid", ["zt"], ["zs"]),
             node("Unsqueeze", ["zs", "ax"], ["out2"])]
    feeds = {"x": rand((1, 1, 5, 6), 6), "z": rand((5, 1, 6), 7)}
    before, after = onnx_case(nodes, [("x", [1, 1, 5, 6]), ("z", [5, 1, 6])], inits, feeds,
                              ("out", "out2"))
    assert len(after.nodes) == len(before.nodes) - 2
    mean = after.node("/m/ReduceMean")
    assert mean.inputs == ["r"] and mean.attrs["axes"] == [1, 2] and after.tensors["r"].shape == (1, 1, 5, 6)
    assert ops_of(after)[-2:] == ["act", "reshape"] and after.producer("out2").inputs == ["zs"]


# -- ONNX: tf2onnx's NHWC/NCHW transposes ------------------------------------------------------
def test_nchw_nhwc_ping_pong_cancels_and_constants_follow():
    inits = {"w1": rand((8, 3, 3, 3), 8, 0.3), "k": rand((8,), 9), "b": rand((1, 1, 1, 8), 10),
             "w2": rand((4, 8, 1, 1), 11, 0.3)}
    nodes = [node("Transpose", ["x"], ["x_nchw"], perm=NCHW),
             node("Conv", ["x_nchw", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             node("Transpose", ["c1"], ["c1_nhwc"], perm=NHWC), node("Mul", ["c1_nhwc", "k"], ["m"]),
             node("Add", ["m", "b"], ["a"]), node("Relu", ["a"], ["r"]),
             node("Transpose", ["r"], ["r_nchw"], perm=NCHW), node("Conv", ["r_nchw", "w2"], ["c2"]),
             node("Transpose", ["c2"], ["out"], perm=NHWC)]
    before, after = onnx_case(nodes, [("x", [1, 6, 6, 3])], inits, {"x": rand((1, 6, 6, 3), 12)})
    assert ops_of(before).count("transpose") == 4
    assert ops_of(after) == ["transpose", "conv", "binary", "binary", "act", "conv", "transpose"]
    assert after.const("k").shape == (8, 1, 1) and after.const("b").shape == (1, 8, 1, 1)
    np.testing.assert_array_equal(after.const("k").reshape(-1), inits["k"])
    assert after.node("/m/Mul").inputs[1] == "k" and after.node("/a/Add").inputs[1] == "b"


def test_residual_add_of_two_transposed_branches():
    """Two roots with the same mapping feed one Add: both go, the exit transpose cancels."""
    inits = {"wa": rand((4, 2, 1, 1), 13), "wb": rand((4, 2, 3, 3), 14, 0.3), "wc": rand((3, 4, 1, 1), 15)}
    nodes = [node("Conv", ["x", "wa"], ["ca"]), node("Conv", ["x", "wb"], ["cb"], pads=[1, 1, 1, 1]),
             node("Transpose", ["ca"], ["ta"], perm=NHWC), node("Transpose", ["cb"], ["tb"], perm=NHWC),
             node("Relu", ["tb"], ["rb"]), node("Add", ["ta", "rb"], ["s"]), node("Tanh", ["s"], ["t"]),
             node("Transpose", ["t"], ["t_nchw"], perm=NCHW), node("Conv", ["t_nchw", "wc"], ["out"])]
    before, after = onnx_case(nodes, [("x", [1, 2, 5, 5])], inits, {"x": rand((1, 2, 5, 5), 16)})
    assert "transpose" in ops_of(before) and "transpose" not in ops_of(after)
    assert len(after.nodes) == len(before.nodes) - 3


def test_transposes_that_do_not_cancel_still_merge_into_one():
    nodes = [node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), node("Elu", ["t"], ["e"]),
             node("Transpose", ["e"], ["out"], perm=[0, 3, 2, 1])]
    before, after = onnx_case(nodes, [("x", [1, 2, 3, 4])], {}, {"x": rand((1, 2, 3, 4), 33)})
    assert ops_of(after) == ["act", "transpose"] and after.nodes[1].attrs["perm"] == [0, 1, 3, 2]


def test_batchnorm_channel_axis_follows_the_transpose():
    """An NHWC region holding a batchnorm (the IR op, as TF's FusedBatchNorm lowers) moves to NCHW."""
    from gxnpuc.ir import Node, Tensor

    g = Graph(inputs=["x"], outputs=["out"])
    g.tensors["x"] = Tensor("x", (1, 3, 4, 5))
    for k, name in enumerate(("s", "b", "m", "v")):
        g.tensors[name] = Tensor(name, (3,), data=np.abs(rand((3,), 17 + k)) + 0.5)
    shapes = {"t": (1, 4, 5, 3), "bn": (1, 4, 5, 3), "out": (1, 3, 4, 5)}
    g.tensors.update({n: Tensor(n, s) for n, s in shapes.items()})
    g.nodes = [Node("t", "transpose", ["x"], ["t"], {"perm": NHWC}),
               Node("bn", "batchnorm", ["t", "s", "b", "m", "v"], ["bn"], {"epsilon": 1e-3, "axis": 3}),
               Node("back", "transpose", ["bn"], ["out"], {"perm": NCHW})]
    feeds = {"x": rand((1, 3, 4, 5), 21)}
    want = sim.run(g, feeds)["out"]
    x, (s, b, m, v) = feeds["x"], (g.const(n).reshape(3, 1, 1) for n in "sbmv")
    np.testing.assert_allclose(want, (x - m) / np.sqrt(v + 1e-3) * s + b, rtol=1e-5, atol=1e-6)
    run_stages(g, [sink_moves])
    assert ops_of(g) == ["batchnorm"] and g.nodes[0].attrs["axis"] == 1 and g.nodes[0].outputs == ["out"]
    assert_same_bits({"out": want}, sim.run(g, feeds))


# -- what must stay --------------------------------------------------------------------------
def test_reshape_that_splits_the_channel_axis_stays():
    """[1, 6, 4] -> [1, 4, 6] + per-channel [6]: in the input layout the constant would need
    24 values, not 6, so nothing moves."""
    inits = {"s1": np.array([1, 4, 6], np.int64), "s2": np.array([1, 6, 4], np.int64), "c": rand((6,), 22)}
    nodes = [node("Reshape", ["x", "s1"], ["r1"]), node("Add", ["r1", "c"], ["a"]),
             node("Reshape", ["a", "s2"], ["out"])]
    before, after = onnx_case(nodes, [("x", [1, 6, 4])], inits, {"x": rand((1, 6, 4), 23)})
    assert ops_of(after) == ops_of(before) == ["reshape", "binary", "reshape"]
    assert after.const("c").shape == (6,)


def test_graph_output_inside_and_unhandled_reader_block_the_move():
    inits = {"s1": np.array([1, 24], np.int64), "s2": np.array([1, 4, 6], np.int64), "w": rand((24, 5), 24)}
    nodes = [node("Reshape", ["x", "s1"], ["flat"]), node("Relu", ["flat"], ["r"]),
             node("Reshape", ["r", "s2"], ["out"]), node("MatMul", ["r", "w"], ["fc_out"]),
             node("Reshape", ["y", "s1"], ["yflat"]), node("Exp", ["yflat"], ["e"]),
             node("Reshape", ["e", "s2"], ["out_y"])]
    feeds = {"x": rand((1, 4, 6), 25), "y": rand((1, 4, 6), 26)}
    before, after = onnx_case(nodes, [("x", [1, 4, 6]), ("y", [1, 4, 6])], inits, feeds,
                              ("out", "fc_out", "out_y", "e"))
    assert ops_of(after) == ops_of(before) and after.tensors["e"].shape == (1, 24)


# -- several readers -------------------------------------------------------------------------
def test_root_with_several_readers_moves_when_all_are_handled():
    inits = {"k": rand((4,), 27)}
    nodes = [node("Transpose", ["x"], ["t"], perm=NHWC), node("Relu", ["t"], ["r"]),
             node("Sigmoid", ["t"], ["g"]), node("Add", ["g", "k"], ["gk"]),
             node("Transpose", ["r"], ["r_back"], perm=NCHW),
             node("Transpose", ["gk"], ["g_back"], perm=NCHW),
             node("Mul", ["r_back", "g_back"], ["out"]),
             node("Add", ["z", "k"], ["out_z"])]  # k is shared with a node outside the region
    feeds = {"x": rand((1, 4, 3, 2), 28), "z": rand((1, 5, 4), 29)}
    before, after = onnx_case(nodes, [("x", [1, 4, 3, 2]), ("z", [1, 5, 4])], inits, feeds,
                              ("out", "out_z"))
    assert ops_of(before).count("transpose") == 3  # the two exits were merged with nothing yet
    assert ops_of(after) == ["act", "act", "binary", "binary", "binary"]
    region_k = after.node("/gk/Add").inputs[1]
    assert after.node("/out_z/Add").inputs[1] == "k" and np.array_equal(after.const("k"), inits["k"])
    assert region_k != "k" and after.const(region_k).shape == (4, 1, 1)
    assert region_k in after.meta["aliases"]["k"]


def test_root_with_an_unhandled_reader_stays():
    nodes = [node("Transpose", ["x"], ["t"], perm=NHWC), node("Relu", ["t"], ["r"]),
             node("Transpose", ["r"], ["out"], perm=NCHW), node("Softmax", ["t"], ["out_sm"], axis=-1)]
    before, after = onnx_case(nodes, [("x", [1, 4, 3, 2])], {}, {"x": rand((1, 4, 3, 2), 30)},
                              ("out", "out_sm"))
    assert ops_of(after) == ops_of(before) == ["transpose", "act", "transpose", "softmax"]


# -- TensorFlow: a Keras Conv1D TDNN, frozen ---------------------------------------------------
def _randomize(model, rng) -> None:
    """Seeded weights, kernels scaled by fan-in, positive variances (no zero biases)."""
    values = []
    for w in model.weights:
        if "variance" in w.path:
            values.append(rng.uniform(0.5, 2.0, w.shape))
        else:
            fan_in = np.prod(w.shape[:-1]) if len(w.shape) > 1 else 9
            values.append(rng.standard_normal(w.shape) / np.sqrt(fan_in))
    model.set_weights([v.astype(np.float32) for v in values])


@pytest.fixture(scope="module")
def tdnn_pb(tmp_path_factory):
    pytest.importorskip("tensorflow")
    import keras
    from keras import layers

    import tf_models as tm

    x = keras.Input((20, 8), name="feats")
    y = layers.Conv1D(16, 3, name="tdnn1.affine")(x)
    y = layers.BatchNormalization(name="tdnn1.batchnorm")(y)
    y = layers.ReLU(name="tdnn1.relu")(y)
    y = layers.Conv1D(16, 3, dilation_rate=2, name="tdnn2.affine")(y)
    y = layers.BatchNormalization(name="tdnn2.batchnorm")(y)
    y = layers.LeakyReLU(negative_slope=0.1, name="tdnn2.relu")(y)
    y = layers.Dense(12, activation="relu", name="frame.affine")(y)  # Tensordot: reshape, MatMul, reshape
    y = layers.Conv1D(12, 1, activation="relu", name="prefinal-l")(y)
    y = layers.GlobalAveragePooling1D(name="pool")(y)
    y = layers.Dense(4, name="output.affine")(y)
    model = keras.Model(x, y, name="tdnn")
    _randomize(model, np.random.default_rng(31))
    path = str(tmp_path_factory.mktemp("tdnn") / "tdnn.pb")
    tm.write_frozen_pb(model, path)
    feeds = tm.inputs_for(model, seed=32)
    return path, feeds, tm.reference(model, feeds)[0]


@pytest.mark.parametrize("fuse", [False, True])
def test_keras_conv1d_tdnn_squeeze_expanddims_cancel(tdnn_pb, fuse):
    from gxnpuc.frontend import tf as tf_front

    path, feeds, want = tdnn_pb
    cfg = Config(model_key="PB_FILE", model_path=path, fuse_bn=fuse, fuse_biasadd=fuse)
    stages = pipeline(cfg)
    assert sink_moves in stages
    before = run_stages(tf_front.to_ir(cfg), [s for s in stages if s is not sink_moves], cfg)
    after = run_stages(tf_front.to_ir(cfg), stages, cfg)
    outs = compare(before, after, feeds)
    got = outs[after.outputs[0]].reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(want))))
    assert ops_of(before).count("reshape") == 8  # ExpandDims + Squeeze around each conv, Tensordot's 2
    assert ops_of(after).count("reshape") == 1  # the input's ExpandDims: the graph input keeps [1, 20, 8]
    assert len(before.nodes) - len(after.nodes) == 7
    if fuse:  # as the ONNX export of the same network: no data movement left inside
        assert ops_of(after) == ["reshape", "conv", "act", "conv", "act", "fc", "act", "conv", "act",
                                 "reduce", "fc"]
    weights = {n.inputs[1] for n in after.nodes if n.op == "conv"}
    layers = ("tdnn1.affine", "tdnn2.affine", "prefinal-l")
    assert weights == {f"tdnn_1/{k}_1/convolution/ExpandDims_1" for k in layers}
