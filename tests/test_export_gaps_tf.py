"""TensorFlow front-end gaps (issue 13), each on a model made the way TensorFlow/Keras make it:
Keras Conv2DTranspose (Conv2DBackpropInput), a SavedModel that tf.saved_model.load cannot
revive (the TF1 loader reads it), Keras-2-style .h5 inputs named stably, tf.math.divide_no_nan."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tf_models as tm  # noqa: E402
from gxnpuc import sim  # noqa: E402
from gxnpuc.compiler import compile as compile_model  # noqa: E402
from gxnpuc.config import load  # noqa: E402
from test_recurrent_onnx import snr_db  # noqa: E402


def _compile(folder, key: str, path: str, extra: str = ""):
    cfg = folder / "cfg.yaml"
    cfg.write_text(f"{key}: {path}\nOUTPUT_FILE: {folder}/model.h\n{extra}")
    return compile_model(load(str(cfg)))


def _run(model, x: np.ndarray) -> np.ndarray:
    return sim.run(model.graph, {model.graph.inputs[0]: x})[model.graph.outputs[0]]


def test_keras_conv2d_transpose(tmp_path):
    import keras
    from keras import layers

    x = keras.Input((5, 4, 3), name="x")
    y = layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up1")(x)
    y = layers.Conv2DTranspose(2, (2, 3), strides=(1, 2), padding="valid", name="up2")(y)
    model = tm._finish(keras.Model(x, y), 8)
    tm.write_frozen_pb(model, str(tmp_path / "up.pb"))
    compiled = _compile(tmp_path, "PB_FILE", str(tmp_path / "up.pb"), "CONV2D_COMPRESS: true\n")
    feeds = tm.inputs_for(model, 1)
    assert snr_db(_run(compiled, feeds["x"]), tm.reference(model, feeds)[0]) >= 80
    assert {n.op for n in compiled.graph.nodes} <= {"conv", "pad", "reshape", "slice", "binary"}


def _unrevivable_saved_model(folder: str) -> np.ndarray:
    """A SavedModel whose object graph current TF cannot revive (one object points at a
    function the file lacks, as a Keras 2 optimizer does), its graph and signature intact."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)

    class Model(tf.Module):
        def __init__(self):
            self.kernel, self.optimizer = tf.Variable(w, name="dense/kernel"), tf.Module()

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.kernel))}

    model = Model()
    tf.saved_model.save(model, folder, signatures={"serving_default": model.serve})
    path = os.path.join(folder, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as fh:
        sm.ParseFromString(fh.read())
    graph = sm.meta_graphs[0].object_graph_def
    opt = next(c.node_id for c in graph.nodes[0].children if c.local_name == "optimizer")
    graph.nodes[opt].function.concrete_functions.append("__inference_keras2_optimizer_step_1")
    with open(path, "wb") as fh:
        fh.write(sm.SerializeToString())
    with pytest.raises(Exception):
        tf.saved_model.load(folder)
    return w


def test_saved_model_falls_back_to_the_tf1_loader(tmp_path):
    w = _unrevivable_saved_model(str(tmp_path / "sm"))
    compiled = _compile(tmp_path, "SAVED_MODEL_DIR", str(tmp_path / "sm"), "COMPRESS: true\n")
    assert any("TF1 loader" in n for n in compiled.graph.meta["notes"])
    assert compiled.graph.inputs == ["x"] and compiled.graph.outputs == ["y"]
    x = np.random.default_rng(1).standard_normal((1, 4)).astype(np.float32)
    ref = np.maximum(x.astype(np.float64) @ w, 0)  # float64 oracle
    assert snr_db(_run(compiled, x), ref) >= 80
    assert [w.family for w in compiled.weights.values()].count("fc") == 1
    # --eval's TensorFlow oracle imports the same GraphDef again: the colocation hints of the
    # inlined function outputs must follow the renamed nodes (basic-pitch's SavedModel failed so)
    run = subprocess.run([sys.executable, "-m", "gxnpuc", "-e", "random", str(tmp_path / "cfg.yaml")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "model.eval.json").read_text())["outputs"]
    assert [r["snr_db"] for r in rows if r["mode"] == "float"][0] >= 80


def _keras2_style_h5(folder) -> tuple:
    """A Sequential saved as Keras 2 wrote it: the first layer carries batch_input_shape (no
    InputLayer entry); Keras 3 names its input after a global tensor counter (and reads the
    shape as [None, None, 4])."""
    import h5py
    import keras

    model = keras.Sequential([keras.layers.Dense(3, activation="tanh", name="dense")])
    model.build((None, 4))
    tm._randomize(model, 9)
    path = str(folder / "k2.h5")
    model.save(path)
    with h5py.File(path, "r+") as fh:
        config = json.loads(fh.attrs["model_config"])
        layers = config["config"]["layers"]
        layers[1]["config"]["batch_input_shape"] = [None, 4]
        del layers[0]
        fh.attrs["model_config"] = json.dumps(config)
    return model, path


def test_keras2_h5_input_name_is_stable(tmp_path):
    model, path = _keras2_style_h5(tmp_path)
    x = np.random.default_rng(2).standard_normal((1, 1, 4)).astype(np.float32)
    for _ in range(2):  # Keras' counter moves on between loads; the name users write does not
        shutil.copy(path, tmp_path / "copy.h5")
        compiled = _compile(tmp_path, "KERAS_FILE", str(tmp_path / "copy.h5"), "INPUT_OPS: {dense_input: [1, 1, 4]}\n")
        assert compiled.graph.inputs == ["dense_input"]
        assert snr_db(_run(compiled, x), np.asarray(model(x[0]))[None]) >= 80


def test_input_values_fix_a_tf_input(tmp_path):
    """INPUT_VALUES turns a placeholder into a constant (a gain the deployment fixes)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x, gain: tf.tanh(x * gain))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(
        tf.TensorSpec([1, 4], tf.float32, name="x"), tf.TensorSpec([], tf.float32, name="gain")))
    tf.io.write_graph(frozen.graph, str(tmp_path), "gain.pb", as_text=False)
    compiled = _compile(tmp_path, "PB_FILE", str(tmp_path / "gain.pb"),
                        "OUTPUT_OPS: [Identity]\nINPUT_VALUES: {gain: 0.5}\n")
    assert compiled.graph.inputs == ["x"]
    x = np.random.default_rng(4).standard_normal((1, 4)).astype(np.float32)
    assert snr_db(_run(compiled, x), np.tanh(x.astype(np.float64) * 0.5)) >= 80


def test_div_no_nan_and_its_where_form(tmp_path):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    def guarded(x):
        a, b = x[:, :4], tf.nn.relu(x[:, 4:])
        return tf.math.divide_no_nan(a, b) + tf.where(tf.equal(b, 0.0), tf.zeros_like(a), a / b)

    frozen = convert_variables_to_constants_v2(tf.function(guarded).get_concrete_function(
        tf.TensorSpec([1, 8], tf.float32, name="x")))
    tf.io.write_graph(frozen.graph, str(tmp_path), "div.pb", as_text=False)
    compiled = _compile(tmp_path, "PB_FILE", str(tmp_path / "div.pb"))
    x = np.random.default_rng(7).standard_normal((1, 8)).astype(np.float32)
    assert (np.maximum(x[:, 4:], 0) == 0).any()
    assert snr_db(_run(compiled, x), np.asarray(guarded(tf.constant(x)))) >= 80
    fns = sorted(n.attrs["fn"] for n in compiled.graph.nodes if n.op == "binary")
    assert fns == ["add", "div_no_nan", "div_no_nan"]
