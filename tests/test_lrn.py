"""Local response normalisation (ops/lrn.py) against each framework's runtime: ONNX LRN
against onnxruntime (odd sizes; it refuses even ones) and a float64 computation of the ONNX
definition (an even size; the ONNX reference evaluator's LRN fills only channel 0),
tf.nn.local_response_normalization in a frozen graph against TensorFlow, and the same through
the TFLite converter (LOCAL_RESPONSE_NORMALIZATION) against the interpreter."""
from __future__ import annotations

import os

import numpy as np
import pytest
from onnx import helper

from framework_checks import assert_tflite_matches_interpreter, write_tflite
from framework_checks import compile_file as _compile
from gxnpuc import sim
from onnx_util import make_model, run_ort, run_ours
from test_recurrent_onnx import snr_db

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
X = np.random.default_rng(0).standard_normal((1, 7, 4, 5)).astype(np.float32) * 3


def _float64_lrn(model, feeds):
    """The ONNX LRN definition: the window [c - floor((size-1)/2), c + ceil((size-1)/2)]."""
    a = {at.name: helper.get_attribute_value(at) for at in model.graph.node[0].attribute}
    x, size = feeds["x"].astype(np.float64), a["size"]
    sq = np.zeros_like(x)
    for c in range(x.shape[1]):
        lo, hi = max(0, c - (size - 1) // 2), min(x.shape[1], c + size - 1 - (size - 1) // 2 + 1)
        sq[:, c] = np.sum(x[:, lo:hi] ** 2, axis=1)
    return {"y": x / (a["bias"] + a["alpha"] / size * sq) ** a["beta"]}


@pytest.mark.parametrize("size,oracle", [(3, run_ort), (5, run_ort), (4, _float64_lrn)])
def test_onnx_lrn(size, oracle):
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=1e-2, beta=0.75, bias=2.0)
    model = make_model([node], [("x", list(X.shape))], [("y", None)], {}, opset=13)
    db = snr_db(run_ours(model, {"x": X})["y"], oracle(model, {"x": X})["y"])
    print(f"ONNX LRN size {size}: {db:.1f} dB")
    assert db >= 80


def _tf_fn():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 5, 7], tf.float32, name="x")])
    def fn(x):
        return tf.nn.local_response_normalization(x * 3.0, depth_radius=2, bias=1.5, alpha=0.05, beta=0.6)
    return fn


def test_tf_and_tflite_lrn(tmp_path):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = _tf_fn()
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 7)).astype(np.float32)
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    tf.io.write_graph(frozen.graph, str(tmp_path), "lrn.pb", as_text=False)
    model = _compile(tmp_path, "PB_FILE", str(tmp_path / "lrn.pb"))
    got = sim.run(model.graph, {model.graph.inputs[0]: x})[model.graph.outputs[0]]
    print(f"TF LRN: {snr_db(got, fn(x).numpy()):.1f} dB")
    assert snr_db(got, fn(x).numpy()) >= 80
    path = str(tmp_path / "lrn.tflite")
    write_tflite(fn, path)
    model = assert_tflite_matches_interpreter(tmp_path, path, "TFLite LOCAL_RESPONSE_NORMALIZATION", 1)
    assert "LOCAL_RESPONSE_NORMALIZATION" in {n.source for n in model.graph.nodes}
