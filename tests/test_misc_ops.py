"""Einsum, Sign, CumSum, ReduceLogSumExp, GatherND / GatherElements with constant indices and
the TF / TFLite floor arithmetic (ops/einsum.py, ops/math_misc.py, ops/gather_nd.py), float IR
against the framework's runtime: onnx.helper and torch.einsum exports against onnxruntime,
Keras EinsumDense + MultiHeadAttention and a tf.function frozen graph against TensorFlow, the
same function through the TFLite converter against the LiteRT interpreter; run-time rounding
and diagonals are refused with their reason."""
from __future__ import annotations

import os

import numpy as np
import pytest
from onnx import helper

from framework_checks import assert_onnx_matches_ort, assert_tflite_matches_interpreter, write_tflite
from framework_checks import compile_file as _compile
from gxnpuc import sim
from gxnpuc.errors import UnsupportedOpError
from onnx_util import make_model, run_ort, run_ours, to_ir
from test_recurrent_onnx import snr_db

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
X = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
X[0, 0, :2] = 0  # Sign of exact zeros


def _onnx_case(nodes, inits, opset=13) -> float:
    model = make_model(nodes, [("x", list(X.shape))], [("y", None)], inits, opset=opset)
    ours, ref = run_ours(model, {"x": X})["y"], run_ort(model, {"x": X})["y"]
    assert ours.shape == ref.shape
    return snr_db(ours, ref)


_IDX = np.array([[1, 2], [0, 0], [1, -1]], np.int64)
_ONNX_CASES = {
    "Sign": ([helper.make_node("Sign", ["x"], ["y"])], {}),
    "CumSum": ([helper.make_node("CumSum", ["x", "a"], ["y"])], {"a": np.array(1, np.int64)}),
    "CumSum exclusive reverse": ([helper.make_node("CumSum", ["x", "a"], ["y"], exclusive=1, reverse=1)],
                                 {"a": np.array(-1, np.int64)}),
    "ReduceLogSumExp": ([helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[1, 2], keepdims=0)], {}),
    "GatherND": ([helper.make_node("GatherND", ["x", "i"], ["y"])], {"i": _IDX}),
    "GatherElements": ([helper.make_node("GatherElements", ["x", "i"], ["y"], axis=2)],
                       {"i": np.random.default_rng(1).integers(-4, 4, (2, 3, 2)).astype(np.int64)}),
}


@pytest.mark.parametrize("case", sorted(_ONNX_CASES))
def test_onnx_ops_against_onnxruntime(case):
    db = _onnx_case(*_ONNX_CASES[case])
    print(f"ONNX {case}: {db:.1f} dB")
    assert db >= 80


_EINSUMS = [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], False), ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)], False),
            ("bqhd,bkhd->bhqk", [(1, 3, 2, 4), (1, 5, 2, 4)], False), ("ij->ji", [(3, 4)], False),
            ("i,j->ij", [(3,), (4,)], False), ("abc,cde->abde", [(1, 3, 4), (4, 2, 5)], True),
            ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)], False), ("ij,jk", [(3, 4), (4, 5)], True),
            ("bij->bj", [(2, 3, 4)], False), ("bi,bi->b", [(2, 5), (2, 5)], False)]


@pytest.mark.parametrize("equation,shapes,const", _EINSUMS)
def test_onnx_einsum(equation, shapes, const):
    rng = np.random.default_rng(2)
    names = [f"x{i}" for i in range(len(shapes))]
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in zip(names, shapes)}
    inits = {names[1]: feeds.pop(names[1])} if const else {}
    model = make_model([helper.make_node("Einsum", names, ["y"], equation=equation)],
                       [(n, list(v.shape)) for n, v in feeds.items()], [("y", None)], inits, opset=13)
    ours, ref = run_ours(model, feeds)["y"], run_ort(model, feeds)["y"]
    assert ours.shape == ref.shape
    assert snr_db(ours, ref) >= 80
    if const:  # a constant operand is an fc weight
        assert "fc" in {n.op for n in to_ir(model, {k: v.shape for k, v in feeds.items()}).nodes}


def test_einsum_diagonal_refused():
    model = make_model([helper.make_node("Einsum", ["x"], ["y"], equation="bii->bi")],
                       [("x", [2, 3, 3])], [("y", None)], opset=13)
    with pytest.raises(UnsupportedOpError, match="diagonal"):
        to_ir(model)


def test_torch_einsum_attention(tmp_path):
    torch = pytest.importorskip("torch")

    class Attn(torch.nn.Module):
        def forward(self, q):
            s = torch.einsum("bhqd,bhkd->bhqk", q, q * 0.5).softmax(-1)
            return torch.einsum("bhqk,bhkd->bqhd", s, q)
    path = str(tmp_path / "attn.onnx")
    torch.onnx.export(Attn(), (torch.randn(1, 2, 5, 4),), path, input_names=["q"], opset_version=13, dynamo=False)
    import onnx
    assert "Einsum" in {n.op_type for n in onnx.load(path).graph.node}
    q = np.random.default_rng(3).standard_normal((1, 2, 5, 4)).astype(np.float32)
    assert_onnx_matches_ort(tmp_path, path, {"q": q}, "torch einsum attention")


# -- TensorFlow, TFLite ---------------------------------------------------------------------------
def _tf_fn():
    import tensorflow as tf

    idx = tf.constant([[0, 2], [1, 5], [0, 0]])

    @tf.function(input_signature=[tf.TensorSpec([1, 6, 8], tf.float32, name="x")])
    def fn(x):
        half = tf.shape(x)[1] // 2 + tf.math.floormod(tf.shape(x)[2], 3)  # 3 + 2
        steps = tf.cast(tf.range(half), tf.float32) * tf.floor(tf.constant(1.7))
        y = tf.math.cumsum(x, axis=1, exclusive=True) + tf.sign(x) * steps[:, None][:1]
        w = tf.einsum("bij,bkj->bik", y, x)
        return tf.concat([tf.reshape(tf.gather_nd(w[0], idx), [1, 3]),
                          tf.reshape(tf.math.cumsum(w, axis=2, reverse=True), [1, 36]),
                          tf.reshape(tf.broadcast_to(x[:, :1, :2], [1, 2, 2]), [1, 4])], axis=1)
    return fn


def test_tf_frozen_graph_ops(tmp_path):
    pytest.importorskip("tensorflow")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    import tensorflow as tf

    fn = _tf_fn()
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    ops = {n.op for n in frozen.graph.as_graph_def().node}
    assert {"FloorDiv", "FloorMod", "Range", "Sign", "Cumsum", "Einsum", "GatherNd", "BroadcastTo"} <= ops, ops
    tf.io.write_graph(frozen.graph, str(tmp_path), "f.pb", as_text=False)
    model = _compile(tmp_path, "PB_FILE", str(tmp_path / "f.pb"))
    x = np.random.default_rng(4).standard_normal((1, 6, 8)).astype(np.float32)
    want = fn(x).numpy()
    got = sim.run(model.graph, {model.graph.inputs[0]: x})[model.graph.outputs[0]]
    print(f"TF frozen graph ops: {snr_db(got, want):.1f} dB")
    assert snr_db(got, want) >= 80


def test_keras_einsum_dense_and_attention(tmp_path):
    pytest.importorskip("tensorflow")
    import keras
    import tf_models as tm

    x = keras.Input((6, 8), name="x")
    a = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 12), bias_axes="d", name="ed")(x)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(a, a)
    net = tm._finish(keras.Model(x, a), 3)
    tm.write_frozen_pb(net, str(tmp_path / "e.pb"))
    model = _compile(tmp_path, "PB_FILE", str(tmp_path / "e.pb"))
    feeds = tm.inputs_for(net, 1)
    got = sim.run(model.graph, {model.graph.inputs[0]: feeds["x"]})[model.graph.outputs[0]]
    print(f"Keras EinsumDense + MultiHeadAttention: {snr_db(got, tm.reference(net, feeds)[0]):.1f} dB")
    assert snr_db(got, tm.reference(net, feeds)[0]) >= 80


def test_tflite_ops_against_interpreter(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    path = str(tmp_path / "f.tflite")
    ops = write_tflite(_tf_fn(), path)
    assert {"SIGN", "CUMSUM", "GATHER_ND"} <= ops, ops
    assert_tflite_matches_interpreter(tmp_path, path, "TFLite ops", 5)


def test_run_time_floor_refused(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def fn(x):
        return tf.math.floordiv(x, 0.5) + tf.round(x)
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    tf.io.write_graph(frozen.graph, str(tmp_path), "r.pb", as_text=False)
    with pytest.raises(UnsupportedOpError) as err:
        _compile(tmp_path, "PB_FILE", str(tmp_path / "r.pb"))
    assert "FloorDiv" in str(err.value) and "Round" in str(err.value) and "no floor/round" in str(err.value)


def test_lowerings_emit_only_what_they_declare(emitted):
    """The `emits=` of each new ONNX lowering (docs/ops.md) covers what it emitted here."""
    from gxnpuc.ops.base import LOWERING_EMITS, NoNpuOp

    seen = emitted
    for nodes, inits in _ONNX_CASES.values():
        _onnx_case(nodes, inits)
    for equation, shapes, const in _EINSUMS[:6]:
        names = [f"x{i}" for i in range(len(shapes))]
        inits = {names[1]: np.ones(shapes[1], np.float32)} if const else {}
        to_ir(make_model([helper.make_node("Einsum", names, ["y"], equation=equation)],
                         [(n, list(s)) for n, s in zip(names, shapes) if n not in inits], [("y", None)], inits,
                         opset=13))
    assert {t for t, _ in seen} >= {"Sign", "CumSum", "ReduceLogSumExp", "GatherND", "GatherElements", "Einsum"}
    for op_type, op in seen:
        declared = LOWERING_EMITS[("onnx", op_type)]
        assert not isinstance(declared, NoNpuOp) and op in declared, (op_type, op, declared)


def test_tflite_l2_normalization_broadcast_reverse(tmp_path):
    """tf.math.l2_normalize, tf.broadcast_to and tf.reverse through the TFLite converter
    (L2_NORMALIZATION, BROADCAST_TO, REVERSE_V2) against the interpreter."""
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    w = tf.constant(np.random.default_rng(7).standard_normal((8, 6)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 3, 8], tf.float32, name="x")])
    def fn(x):
        e = tf.math.l2_normalize(tf.matmul(x, w), axis=-1)
        return tf.reverse(e, axis=[1]), tf.broadcast_to(x[:, :1, :], [2, 3, 8])
    path = str(tmp_path / "l2.tflite")
    ops = write_tflite(fn, path)
    assert {"L2_NORMALIZATION", "BROADCAST_TO", "REVERSE_V2"} <= ops, ops
    assert_tflite_matches_interpreter(tmp_path, path, "TFLite L2_NORMALIZATION/BROADCAST_TO/REVERSE_V2", 8)


@pytest.mark.parametrize("p", [1, 2])
def test_onnx_lp_normalization(p):
    db = _onnx_case([helper.make_node("LpNormalization", ["x"], ["y"], axis=1, p=p)], {})
    print(f"ONNX LpNormalization p={p}: {db:.1f} dB")
    assert db >= 80


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_in_place_assignment_scatters(tmp_path, dynamo):
    """`y[:, 0] = ...; y[..., 2] = c` exports as ScatterND (torchscript) or ScatterElements
    (dynamo) with constant indices: a gather from [data, updates]."""
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    import onnx

    class Assign(torch.nn.Module):
        def forward(self, x):
            y = x * 1.0
            y[:, 0] = x[:, 1] * 2
            y[..., 2] = 0.5
            return y
    path = str(tmp_path / "assign.onnx")
    torch.onnx.export(Assign(), (torch.randn(1, 3, 4),), path, input_names=["x"], dynamo=dynamo,
                      opset_version=18 if dynamo else 16)
    assert {"ScatterND", "ScatterElements"} & {n.op_type for n in onnx.load(path).graph.node}
    x = np.random.default_rng(9).standard_normal((1, 3, 4)).astype(np.float32)
    assert_onnx_matches_ort(tmp_path, path, {"x": x}, f"torch in-place assignment (dynamo={dynamo})")


@pytest.mark.parametrize("op,idx,attrs", [
    ("ScatterND", np.array([[0, 1], [1, -1]], np.int64), {}),
    ("ScatterElements", np.array([[[0], [3], [1]], [[2], [2], [-1]]]), {"axis": 2})])
def test_onnx_scatter_against_onnxruntime(op, idx, attrs):
    rng = np.random.default_rng(10)
    u_shape = (2, 4) if op == "ScatterND" else (2, 3, 1)
    feeds = {"x": X, "u": rng.standard_normal(u_shape).astype(np.float32)}
    model = make_model([helper.make_node(op, ["x", "i", "u"], ["y"], **attrs)],
                       [("x", list(X.shape)), ("u", list(u_shape))], [("y", None)], {"i": idx.astype(np.int64)},
                       opset=16)
    assert snr_db(run_ours(model, feeds)["y"], run_ort(model, feeds)["y"]) >= 80


def test_scatter_writing_twice_refused():
    model = make_model([helper.make_node("ScatterND", ["x", "i", "u"], ["y"])], [("x", [4]), ("u", [2])],
                       [("y", None)], {"i": np.array([[1], [1]], np.int64)}, opset=16)
    with pytest.raises(UnsupportedOpError, match="twice"):
        to_ir(model)
