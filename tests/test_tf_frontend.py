"""TensorFlow front end: every TF form of five Keras models lowers, and the IR's float run
matches TensorFlow; TensorFlow's names survive (Conv1D `.../ExpandDims_1`); bad inputs give
one-line errors. Models are built once per session (module fixtures), with tiny shapes.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tf_models as tm  # noqa: E402

from gxnpuc import sim  # noqa: E402
from gxnpuc.config import names  # noqa: E402
from gxnpuc.config import Config  # noqa: E402
from gxnpuc.errors import ConfigError, ModelError, UnsupportedOpError  # noqa: E402
from gxnpuc.frontend import tf as tf_front  # noqa: E402

MODELS = ("cnn_bn", "tdnn_kws", "ds_cnn", "mlp", "streaming")
FORMS = ("keras", "h5", "saved_model", "pb")
TDNN_CONV_WEIGHTS = {"tdnn_1/tdnn1.affine_1/convolution/ExpandDims_1": [1, 3, 8, 16],
                     "tdnn_1/tdnn2.affine_1/convolution/ExpandDims_1": [1, 3, 16, 16],
                     "tdnn_1/prefinal-l_1/convolution/ExpandDims_1": [1, 1, 16, 12]}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (model, {form: (key, path)}, feeds, TF reference outputs)."""
    root = tmp_path_factory.mktemp("tf_models")
    out = {}
    for k, name in enumerate(MODELS):
        model = getattr(tm, name)()
        feeds = tm.inputs_for(model, seed=10 + k)
        out[name] = (model, tm.save_all(model, str(root / name)), feeds, tm.reference(model, feeds))
    return out


def lower(key: str, path: str, **kw):
    return tf_front.to_ir(Config(model_key=key, model_path=path, **kw))


def assert_matches(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4) -> None:
    """Within rtol of TensorFlow, relative to the output's scale."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = max(float(np.max(np.abs(want))), 1e-6)
    assert float(np.max(np.abs(got - want))) <= rtol * scale


def expected_outputs(model, form: str) -> list[str]:
    n = len(model.outputs)
    if form in ("keras", "h5"):
        return list(model.output_names)
    if form == "saved_model":
        return [f"output_{k}" for k in range(n)]
    return ["Identity"] + [f"Identity_{k}" for k in range(1, n)]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", MODELS)
def test_every_form_matches_tensorflow(built, name, form):
    model, paths, feeds, ref = built[name]
    graph = lower(*paths[form])
    assert graph.inputs == [t.name for t in model.inputs]
    assert graph.outputs == expected_outputs(model, form)
    got = sim.run(graph, feeds)
    for out, want in zip(graph.outputs, ref):
        assert_matches(got[out], want)
    assert not [n for n in graph.nodes if n.source in ("Identity", "ReadVariableOp")]
    assert any("unknown batch dimension set to 1" in note for note in graph.meta["notes"])


@pytest.mark.parametrize("form", FORMS)
def test_conv1d_weights_keep_tensorflow_names(built, form):
    _, paths, _, _ = built["tdnn_kws"]
    graph = lower(*paths[form])
    conv = {node.inputs[i]: list(graph.tensors[node.inputs[i]].shape)
            for node, i, family in graph.weight_slots() if family == "conv"}
    assert conv == TDNN_CONV_WEIGHTS
    consts = [n for n, t in graph.tensors.items() if t.is_const]
    assert not [n for n in consts if n.endswith("/resource") or n.startswith("StatefulPartitionedCall/")]
    fc = [node.inputs[1] for node in graph.nodes if node.op == "fc"]
    assert fc == ["tdnn_1/output.affine_1/Cast/ReadVariableOp"]


def test_dilated_conv1d_is_one_conv(built):
    graph = lower(*built["tdnn_kws"][1]["keras"])
    convs = {n.name: n.attrs for n in graph.nodes if n.op == "conv"}
    assert convs["tdnn_1/tdnn2.affine_1/convolution"]["dilations"] == [1, 2]
    assert {n.source for n in graph.nodes}.isdisjoint({"SpaceToBatchND", "BatchToSpaceND"})


def _write_config(folder, text: str) -> str:
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_printed_weight_names_work_in_the_config(built, tmp_path, capsys):
    """The seed workflow: `gxnpuc -w` prints the conv1d weights; pasted into
    EXCLUDE_CONV2D_COMPRESS_OPS / WEIGHT_MIN_MAX they take effect."""
    from gxnpuc import cli, compiler, config

    keras_path = built["tdnn_kws"][1]["keras"][1]
    base = f"KERAS_FILE: {keras_path}\nOUTPUT_FILE: {tmp_path}/model.h\nCONV2D_COMPRESS: true\n"
    assert cli.main(["-w", _write_config(tmp_path, base)]) == 0
    printed = capsys.readouterr().out
    for name, shape in TDNN_CONV_WEIGHTS.items():
        assert f"{name}: {shape}" in printed
    first, second = list(TDNN_CONV_WEIGHTS)[:2]
    text = base + f"EXCLUDE_CONV2D_COMPRESS_OPS: [{first}]\nWEIGHT_MIN_MAX:\n  {second}: [-0.1, 0.1]\n"
    model = compiler.compile(config.load(_write_config(tmp_path, text)))
    assert not model.weights[first].compressed
    assert model.weights[second].compressed
    assert model.weights[second].clip == (-0.1, 0.1) or list(model.weights[second].clip) == [-0.1, 0.1]


def test_output_ops_prunes_and_names_inner_node(built):
    import keras

    model, paths, feeds, _ = built["tdnn_kws"]
    inner = "tdnn_1/tdnn1.relu_1/Relu"
    graph = lower(*paths["pb"], output_ops=(inner,))
    assert graph.outputs == [inner]
    assert {n.op for n in graph.nodes} <= {"reshape", "conv", "binary", "act"}
    sub = keras.Model(model.inputs, model.get_layer("tdnn1.relu").output)
    assert_matches(sim.run(graph, feeds)[inner], np.asarray(sub([feeds["feats"]])))


def test_saved_model_accepts_signature_keys_and_node_names(built):
    _, paths, feeds, ref = built["streaming"]
    graph = lower(*paths["saved_model"], output_ops=("output_1",))
    assert graph.outputs == ["output_1"]
    assert_matches(sim.run(graph, feeds)["output_1"], ref[1])
    node = "stream_1/scores_1/Mul"
    graph = lower(*paths["saved_model"], output_ops=(node,), input_ops={"frame": (1, 1, 8)})
    assert_matches(sim.run(graph, feeds)[node], ref[0])


def test_unknown_output_name_suggests_close_ones(built):
    with pytest.raises(ConfigError) as err:
        lower(*built["streaming"][1]["keras"], output_ops=("scroes",))
    assert "scores" in str(err.value) and "\n" not in str(err.value)


def test_input_ops_cuts_the_graph_at_an_inner_node(built, tmp_path):
    """INPUT_OPS may name an inner node of a frozen graph; TensorFlow can feed it too."""
    import tensorflow as tf

    path = built["tdnn_kws"][1]["pb"][1]
    inner = "tdnn_1/tdnn1.relu_1/Relu"
    graph = lower("PB_FILE", path, input_ops={inner: (1, 18, 16)})
    assert graph.inputs == [inner]
    x = np.random.default_rng(3).standard_normal((1, 18, 16)).astype(np.float32)
    gd = tf.compat.v1.GraphDef()
    with open(path, "rb") as fh:
        gd.ParseFromString(fh.read())
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            want = sess.run("Identity:0", {inner + ":0": x})
    assert_matches(sim.run(graph, {inner: x})["Identity"], want)


def test_unknown_time_dimension_needs_input_ops(tmp_path):
    import keras

    x = keras.Input((None, 5), name="frames")
    y = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(4, 3, name="c")(x))
    model = keras.Model(x, y)
    path = str(tmp_path / "var.keras")
    model.save(path)
    with pytest.raises(ConfigError) as err:
        lower("KERAS_FILE", path)
    text = str(err.value)
    assert "frames" in text and "INPUT_OPS" in text and "dimension 1" in text and "\n" not in text
    graph = lower("KERAS_FILE", path, input_ops={"frames": (1, 9, 5)})
    feeds = {"frames": np.random.default_rng(1).standard_normal((1, 9, 5)).astype(np.float32)}
    assert_matches(sim.run(graph, feeds)[graph.outputs[0]], np.asarray(model(feeds["frames"])))
    with pytest.raises(ConfigError):
        lower("KERAS_FILE", path, input_ops={"frames": (1, 9, 6)})  # the model says 5 channels


def test_input_ops_name_colon_0_is_that_input(built, tmp_path):
    """`Placeholder:0` in INPUT_OPS (as TF users write it) is that input, not a second one,
    and its shape is the one used (a dimension the model leaves unknown)."""
    import tensorflow as tf

    for key, path in (built["tdnn_kws"][1]["pb"], built["tdnn_kws"][1]["keras"]):
        plain = lower(key, path)
        name = plain.inputs[0]
        spelt = lower(key, path, input_ops={name + ":0": tuple(plain.tensors[name].shape)})
        assert spelt.inputs == plain.inputs
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, None, 4])  # node "Placeholder"
        tf.nn.relu(x, name="out")
    pb = tmp_path / "tf1.pb"
    pb.write_bytes(g.as_graph_def().SerializeToString())
    graph = lower("PB_FILE", str(pb), input_ops={"Placeholder:0": (1, 3, 4)}, output_ops=("out:0",))
    assert graph.inputs == ["Placeholder"] and graph.tensors["Placeholder"].shape == (1, 3, 4)


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("lambda")
    x = keras.Input((4,), name="x")
    y = keras.layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine_fn")(keras.layers.Dense(3, name="d")(x))
    model = keras.Model(x, y)
    tm._randomize(model, 9)
    paths = {ext: str(root / f"lam.{ext}") for ext in ("keras", "h5")}
    for p in paths.values():
        model.save(p)
    return model, paths


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_lambda_layer_refused_unless_allowed(lambda_model, ext):
    model, paths = lambda_model
    with pytest.raises(ModelError) as err:
        lower("KERAS_FILE", paths[ext])
    text = str(err.value)
    assert "'affine_fn'" in text and "KERAS_ALLOW_LAMBDA" in text and "\n" not in text
    graph = lower("KERAS_FILE", paths[ext], keras_allow_lambda=True)
    x = np.random.default_rng(2).standard_normal((1, 4)).astype(np.float32)
    assert_matches(sim.run(graph, {"x": x})[graph.outputs[0]], np.asarray(model(x)))


def _freeze_function(fn, spec, path: str) -> None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(tf.function(fn).get_concrete_function(spec))
    tf.io.write_graph(frozen.graph, os.path.dirname(path), os.path.basename(path), as_text=False)


def test_unsupported_ops_are_all_listed(tmp_path):
    import tensorflow as tf

    def fn(x):
        a = tf.math.floor(x, name="running")  # run-time rounding: no NPU form
        b = tf.math.sin(x, name="wave")
        return tf.nn.relu(a + b + tf.math.atan(x, name="angle"))

    path = str(tmp_path / "bad.pb")
    _freeze_function(fn, tf.TensorSpec((1, 6), tf.float32, name="x"), path)
    with pytest.raises(UnsupportedOpError) as err:
        lower("PB_FILE", path)
    items = {(n, t) for n, t, _ in err.value.items}
    assert items == {("running", "Floor"), ("wave", "Sin"), ("angle", "Atan")}
    assert "\n" not in str(err.value)


def test_tf1_frozen_graph_with_fused_batchnorm(tmp_path):
    path = str(tmp_path / "tf1.pb")
    feeds, ref = tm.tf1_frozen_graph(path)
    graph = lower("PB_FILE", path)
    assert graph.inputs == ["input"] and graph.outputs == ["prob"]
    assert "batchnorm" in {n.op for n in graph.nodes}
    assert_matches(sim.run(graph, feeds)["prob"], ref["prob"])
    assert names.weight_for(graph, "conv/weights") == ["conv/Conv2D/ReadVariableOp"]


def test_saved_model_inlining_prefix_is_dropped_but_accepted(built):
    graph = lower(*built["tdnn_kws"][1]["saved_model"])
    first = list(TDNN_CONV_WEIGHTS)[0]
    assert names.weight_for(graph, "StatefulPartitionedCall/" + first) == [first]


@pytest.mark.parametrize("which", ["fused", "decomposed"])
def test_fuse_bn_folds_both_batchnorm_forms(built, tmp_path, which):
    from gxnpuc import compiler

    if which == "fused":
        path = str(tmp_path / "tf1.pb")
        feeds, ref = tm.tf1_frozen_graph(path)
        key, want, out = "PB_FILE", ref["prob"], "prob"
    else:
        _, paths, feeds, ref = built["cnn_bn"]
        (key, path), want, out = paths["keras"], ref[0], "probs"
    cfg = Config(model_key=key, model_path=path, fuse_bn=True)
    before = sum(1 for n in tf_front.to_ir(cfg).nodes if n.op in ("batchnorm", "binary"))
    graph = compiler.lower(cfg)
    assert not [n for n in graph.nodes if n.op == "batchnorm"]
    assert sum(1 for n in graph.nodes if n.op in ("batchnorm", "binary")) < before
    assert_matches(sim.run(graph, feeds)[out], want)


def test_strided_slice_masks_and_data_movement_ops(tmp_path):
    """Python slicing (all five StridedSlice masks) and the TF data-movement ops."""
    import tensorflow as tf

    rng = np.random.default_rng(4)
    w = tf.constant(rng.standard_normal((4, 3)).astype(np.float32))

    def fn(x):  # x: [1, 6, 5, 4]
        parts = [x[:, 1:-1:2, ..., tf.newaxis, 0], x[0, ::-2, 3:, :2], x[..., 1], x[:, -1]]
        parts = [tf.reshape(p, [1, -1]) for p in parts]
        a, b = tf.split(x, [2, 4], axis=1)
        c = tf.concat([tf.unstack(b, axis=1)[3], a[:, 0]], axis=-1)
        d = tf.pad(tf.transpose(x, [0, 3, 1, 2]), [[0, 0], [0, 0], [1, 2], [0, 1]], mode="REFLECT")
        e = tf.slice(x, [0, 1, 1, 0], [1, 3, -1, 2])
        f = tf.stack([tf.reduce_max(x, axis=[1, 2]), tf.reduce_sum(x, axis=1)[:, 0]], axis=1)
        g = tf.matmul(tf.squeeze(x[:, :1], axis=1), tf.expand_dims(w, 0))  # BatchMatMulV2, constant b
        h = tf.gather(x, [3, 0, 2], axis=2) + tf.tile(x[:, :1, :3], [1, 6, 1, 1])
        return tf.concat(parts + [tf.reshape(t, [1, -1]) for t in (c, d, e, f, g, h)], axis=1)

    path = str(tmp_path / "slices.pb")
    _freeze_function(fn, tf.TensorSpec((1, 6, 5, 4), tf.float32, name="x"), path)
    x = rng.standard_normal((1, 6, 5, 4)).astype(np.float32)
    graph = lower("PB_FILE", path)
    assert_matches(sim.run(graph, {"x": x})["Identity"], fn(tf.constant(x)).numpy(), 1e-5)


def test_elementwise_and_nn_ops_match_tensorflow(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(5)
    k = tf.constant(rng.standard_normal((3, 3, 4, 6)).astype(np.float32) * 0.3)
    dw = tf.constant(rng.standard_normal((3, 3, 4, 2)).astype(np.float32) * 0.3)
    c = tf.constant(rng.uniform(0.5, 1.5, 4).astype(np.float32))

    def fn(x):  # x: [1, 7, 7, 4]
        y = tf.nn.conv2d(x, k, 2, "SAME") + tf.nn.conv2d(x, k, 2, [[0, 0], [1, 1], [2, 0], [0, 0]])[:, :4, :4]
        z = tf.nn.depthwise_conv2d(x, dw, [1, 1, 1, 1], "SAME", dilations=[2, 2])
        z = tf.nn.avg_pool2d(z, 3, 2, "SAME") - tf.nn.max_pool2d(z, 2, 2, "SAME")
        e = [tf.nn.elu(x), tf.nn.selu(x), tf.nn.leaky_relu(x, 0.3), tf.sigmoid(x), tf.tanh(x),
             tf.abs(x) / c, tf.negative(x), tf.sqrt(tf.abs(x) + 1), tf.math.rsqrt(x * x + c),
             tf.square(x), tf.exp(-tf.abs(x)), tf.math.squared_difference(x, c),
             tf.maximum(x, c) - tf.minimum(x, -c), tf.nn.log_softmax(x), tf.nn.relu6(x * 4),
             tf.reduce_mean(x, axis=[1, 2], keepdims=True) + 0 * x]
        flat = [tf.reshape(t, [1, -1]) for t in (y, z, *e)]
        return tf.concat(flat, axis=1)

    path = str(tmp_path / "zoo.pb")
    _freeze_function(fn, tf.TensorSpec((1, 7, 7, 4), tf.float32, name="x"), path)
    x = rng.standard_normal((1, 7, 7, 4)).astype(np.float32)
    graph = lower("PB_FILE", path)
    assert_matches(sim.run(graph, {"x": x})["Identity"], fn(tf.constant(x)).numpy(), 1e-5)


def test_not_frozen_and_unreadable_pb_are_one_line_errors(tmp_path):
    import tensorflow as tf

    bad = tmp_path / "junk.pb"
    bad.write_bytes(b"\x00\x01 not a graph")
    with pytest.raises(ModelError) as err:
        lower("PB_FILE", str(bad))
    assert "\n" not in str(err.value)
    gd = tf.compat.v1.GraphDef()
    gd.node.add(name="v", op="VarHandleOp")
    live = tmp_path / "live.pb"
    live.write_bytes(gd.SerializeToString())
    with pytest.raises(ModelError, match="not frozen"):
        lower("PB_FILE", str(live))


def test_missing_tensorflow_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
    with pytest.raises(ModelError, match=r"pip install gxnpuc\[tf\]"):
        lower("PB_FILE", str(tmp_path / "x.pb"))


def test_tensorflow_is_imported_only_for_tf_models():
    code = ("import sys, gxnpuc.ops, gxnpuc.frontend.tf, gxnpuc.frontend.tf_load, gxnpuc.frontend; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_tf1_learning_phase_switch_and_unordered_graph_def(tmp_path):
    """TF1 Keras graphs switch on `keras_learning_phase` (a PlaceholderWithDefault False);
    a GraphDef need not list producers first."""
    import tensorflow as tf

    v1, rng = tf.compat.v1, np.random.default_rng(6)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    v1.disable_control_flow_v2()
    try:
        with tf.Graph().as_default() as g:
            x = v1.placeholder(tf.float32, (None, 5), name="x")
            phase = v1.placeholder_with_default(False, (), name="keras_learning_phase")
            y = v1.cond(phase, lambda: tf.nn.dropout(x, rate=0.5), lambda: x * 2.0)
            y = tf.nn.tanh(tf.matmul(y, w), name="out")
            gd = g.as_graph_def()
    finally:
        v1.enable_control_flow_v2()
    assert {"Switch", "Merge"} <= {n.op for n in gd.node}
    shuffled = v1.GraphDef()
    shuffled.node.extend(reversed(gd.node))
    path = tmp_path / "phase.pb"
    path.write_bytes(shuffled.SerializeToString())
    feed = rng.standard_normal((1, 5)).astype(np.float32)
    graph = lower("PB_FILE", str(path), output_ops=("out",))
    assert graph.inputs == ["x"]
    assert_matches(sim.run(graph, {"x": feed})["out"], np.tanh((feed * 2.0) @ w))
