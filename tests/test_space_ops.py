"""DepthToSpace / SpaceToDepth and SpaceToBatchND / BatchToSpaceND (ops/space_depth.py,
ops/space_batch.py) on models made the way their exporters make them, the float IR against
the framework's own runtime: PyTorch PixelShuffle / PixelUnshuffle -> ONNX and onnx.helper
(both DepthToSpace modes) against onnxruntime; a tf.function frozen graph against TensorFlow;
the same function through the TFLite converter against the LiteRT interpreter; Keras dilated
convolutions (SpaceToBatchND -> Conv2D -> BatchToSpaceND) folded into dilated convs."""
from __future__ import annotations

import os

import numpy as np
import pytest
from onnx import helper

from framework_checks import assert_onnx_matches_ort, assert_tflite_matches_interpreter, write_tflite
from framework_checks import compile_file as _compile
from gxnpuc import sim
from onnx_util import make_model, run_ort, run_ours
from test_recurrent_onnx import snr_db

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# -- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_onnx_depth_to_space_and_back(mode):
    """DepthToSpace (both modes) then SpaceToDepth, exact moves: bit-equal to onnxruntime."""
    nodes = [helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=2, mode=mode),
             helper.make_node("Relu", ["d"], ["r"]),
             helper.make_node("SpaceToDepth", ["r"], ["y"], blocksize=3)]
    model = make_model(nodes, [("x", [1, 8, 3, 6])], [("y", None)], opset=13)
    x = np.random.default_rng(0).standard_normal((1, 8, 3, 6)).astype(np.float32)
    ours, ref = run_ours(model, {"x": x}), run_ort(model, {"x": x})
    assert ref["y"].shape == (1, 18, 2, 4)
    assert np.array_equal(ours["y"], ref["y"])


def test_torch_pixel_shuffle(tmp_path):
    """nn.PixelShuffle exports as DepthToSpace CRD (torchscript exporter) around convs."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.PixelShuffle(2), nn.Conv2d(4, 8, 3, padding=1),
                        nn.PixelUnshuffle(2), nn.Conv2d(32, 4, 1)).eval()
    path = str(tmp_path / "ps.onnx")
    with torch.no_grad():
        torch.onnx.export(net, (torch.randn(1, 3, 6, 5),), path, input_names=["x"], opset_version=13, dynamo=False)
    import onnx
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "DepthToSpace" in ops
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 5)).astype(np.float32)
    assert_onnx_matches_ort(tmp_path, path, {"x": x}, "torch PixelShuffle")


# -- TensorFlow and TFLite ------------------------------------------------------------------------
def _tf_moves():
    """A tf.function with DepthToSpace, SpaceToDepth and a SpaceToBatchND/BatchToSpaceND pair
    that is no convolution (a relu and a different crop in between), NHWC."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    w = tf.constant(rng.standard_normal((3, 3, 12, 8)).astype(np.float32) * 0.2)

    @tf.function(input_signature=[tf.TensorSpec([1, 6, 4, 12], tf.float32, name="x")])
    def fn(x):
        a = tf.nn.conv2d(x, w, 1, "SAME")
        a = tf.nn.depth_to_space(a, 2)  # [1, 12, 8, 2]
        b = tf.space_to_batch_nd(a, [2, 2], [[1, 1], [2, 0]])  # [4, 7, 5, 2]
        b = tf.nn.relu(b) * 1.5
        b = tf.batch_to_space(b, [2, 2], [[0, 2], [1, 0]])  # [1, 12, 9, 2]
        return tf.nn.space_to_depth(b[:, :, :8, :], 4)  # [1, 3, 2, 32]
    return fn


def _frozen(fn, path: str) -> None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    tf.io.write_graph(frozen.graph, os.path.dirname(path), os.path.basename(path), as_text=False)


def test_tf_frozen_graph_space_ops(tmp_path):
    pytest.importorskip("tensorflow")
    fn = _tf_moves()
    _frozen(fn, str(tmp_path / "moves.pb"))
    model = _compile(tmp_path, "PB_FILE", str(tmp_path / "moves.pb"))
    x = np.random.default_rng(3).standard_normal((1, 6, 4, 12)).astype(np.float32)
    want = fn(x).numpy()
    got = sim.run(model.graph, {model.graph.inputs[0]: x})[model.graph.outputs[0]]
    print(f"tf frozen space ops: {snr_db(got.reshape(want.shape), want):.1f} dB")
    assert snr_db(got.reshape(want.shape), want) >= 80


def test_tflite_space_ops_against_interpreter(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    path = str(tmp_path / "moves.tflite")
    ops = write_tflite(_tf_moves(), path)
    assert {"DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"} <= ops, ops
    assert_tflite_matches_interpreter(tmp_path, path, "tflite space ops", 4)


def test_keras_dilated_convs_fold(tmp_path):
    """Keras Conv2D / DepthwiseConv2D with dilation_rate freeze as SpaceToBatchND -> conv ->
    BatchToSpaceND; each still becomes one dilated conv (frontend/tf_rewrite.py does it before
    lowering), not the general space-to-batch lowering (no data movement left)."""
    pytest.importorskip("tensorflow")
    import keras
    import tf_models as tm

    L = keras.layers
    x = keras.Input((10, 9, 3), name="x")
    a = L.Conv2D(8, 3, padding="same", dilation_rate=2, activation="relu", name="c1")(x)
    a = L.DepthwiseConv2D(3, padding="same", dilation_rate=(2, 3), name="dw")(a)
    a = L.Conv2D(4, 3, padding="valid", dilation_rate=2, name="c2")(a)
    net = tm._finish(keras.Model(x, a), 3)
    tm.write_frozen_pb(net, str(tmp_path / "dil.pb"))
    from tensorflow.core.framework import graph_pb2

    gd = graph_pb2.GraphDef()
    gd.ParseFromString((tmp_path / "dil.pb").read_bytes())
    assert sum(n.op == "SpaceToBatchND" for n in gd.node) == 3
    model = _compile(tmp_path, "PB_FILE", str(tmp_path / "dil.pb"))
    convs = [n for n in model.graph.nodes if n.op == "conv"]
    assert [c.attrs["dilations"] for c in convs] == [[2, 2], [2, 3], [2, 2]]
    assert not {"transpose", "reshape", "pad"} & {n.op for n in model.graph.nodes}
    feeds = tm.inputs_for(net, 1)
    got = sim.run(model.graph, {model.graph.inputs[0]: feeds["x"]})[model.graph.outputs[0]]
    print(f"keras dilated convs: {snr_db(got, tm.reference(net, feeds)[0]):.1f} dB")
    assert snr_db(got, tm.reference(net, feeds)[0]) >= 80


def test_tflite_dilated_pattern_folds():
    """SPACE_TO_BATCH_ND -> CONV_2D (fused RELU) -> BATCH_TO_SPACE_ND as older TFLite converters
    wrote dilated convs (the current one fuses them itself), through the shared lowering walk:
    one dilated conv + relu, against tf.nn.conv2d with dilations."""
    tf = pytest.importorskip("tensorflow")
    from gxnpuc.frontend.common import FNode, LowerCtx, lower
    from gxnpuc.ops import TFLITE_LOWERINGS

    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 9, 7, 3)).astype(np.float32)
    w_ohwi = rng.standard_normal((5, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(5).astype(np.float32)
    ctx = LowerCtx("tflite")
    ctx.add_input("x", x.shape)
    consts = {"block": np.array([2, 2], np.int32), "pads": np.array([[2, 3], [2, 3]], np.int32),
              "crops": np.array([[0, 1], [0, 1]], np.int32), "w": w_ohwi, "b": b}
    for name, value in consts.items():
        ctx.add_const(name, value)
    fnodes = [FNode("s", "SPACE_TO_BATCH_ND", ["x", "block", "pads"], ["s"], {}),
              FNode("c", "CONV_2D", ["s", "w", "b"], ["c"], {"padding": "VALID", "fused_activation_function": "RELU"}),
              FNode("y", "BATCH_TO_SPACE_ND", ["c", "block", "crops"], ["y"], {})]
    g = lower(ctx, fnodes, ["y"], TFLITE_LOWERINGS)
    assert [n.op for n in g.nodes] == ["conv", "act"] and g.nodes[0].attrs["dilations"] == [2, 2]
    want = tf.nn.relu(tf.nn.conv2d(x, np.transpose(w_ohwi, (1, 2, 3, 0)), 1, "SAME", dilations=2) + b).numpy()
    got = sim.run(g, {"x": x})["y"]
    print(f"tflite dilated pattern: {snr_db(got, want):.1f} dB")
    assert snr_db(got, want) >= 80
