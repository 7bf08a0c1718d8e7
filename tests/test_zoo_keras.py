"""The Keras/TensorFlow model zoo (tests/zoo_keras_models.py) compiles, and its float IR
matches TensorFlow, saved as people save them (.keras, .h5, SavedModel, frozen .pb), with
COMPRESS / CONV2D_COMPRESS / FUSE_BN off and on; plus a Keras-2-style frozen graph
(training-mode FusedBatchNorm as LayerNormalization, ResizeNearestNeighbor, SelectV2, Erf,
Softplus, Fill) and the clear rejections (bilinear resize, data-dependent while loops).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tf_models as tm  # noqa: E402
import zoo_keras_models as zk  # noqa: E402

from gxnpuc import cli, sim  # noqa: E402
from gxnpuc.compiler import compile as compile_model  # noqa: E402
from gxnpuc.config import load  # noqa: E402
from gxnpuc.errors import UnsupportedOpError  # noqa: E402
from npu_util import config_file  # noqa: E402

# model -> the forms it is saved in (all four for one model; the others two each, for time)
FORMS = {"norm_acts": ("keras", "h5", "saved_model", "pb"), "plumbing": ("keras", "pb"),
         "mobilenetv2": ("h5", "pb"), "separable_1d": ("keras", "pb"),
         "ds_cnn_kws": ("pb",), "tc_resnet": ("keras",)}
FLAGS = {"off": {"COMPRESS": False, "CONV2D_COMPRESS": False, "FUSE_BN": False},
         "on": {"COMPRESS": True, "CONV2D_COMPRESS": True, "FUSE_BN": True}}
KEYS = {"keras": "KERAS_FILE", "h5": "KERAS_FILE", "saved_model": "SAVED_MODEL_DIR", "pb": "PB_FILE"}


def _save(model, folder, form: str) -> str:
    path = os.path.join(folder, {"keras": "m.keras", "h5": "m.h5", "saved_model": "sm", "pb": "m.pb"}[form])
    if form in ("keras", "h5"):
        model.save(path)
    elif form == "saved_model":
        model.export(path, verbose=False)
    else:
        tm.write_frozen_pb(model, path)
    return path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """name -> (folder, {form: path}, feeds, TF reference outputs); each model built once."""
    root, out = tmp_path_factory.mktemp("zoo_keras"), {}
    for k, (name, forms) in enumerate(FORMS.items()):
        model = zk.build(name)
        folder = root / name
        (folder / "out").mkdir(parents=True)
        feeds = tm.inputs_for(model, seed=30 + k)
        out[name] = folder, {f: _save(model, str(folder), f) for f in forms}, feeds, tm.reference(model, feeds)
    return out


def _config(folder, key: str, path: str, flags: str, tag: str = "") -> str:
    return config_file(folder / f"{tag}{flags}.yaml", {key: os.path.basename(path),
                                                       "OUTPUT_FILE": f"out/{tag}{flags}.h", **FLAGS[flags]})


def _assert_matches(got, want, rtol: float = 1e-4):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want))) <= rtol * max(float(np.max(np.abs(want))), 1e-6)


CASES = [(n, f) for n, forms in FORMS.items() for f in forms]


@pytest.mark.parametrize("name,form", CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_zoo_model_compiles_and_matches_tensorflow(zoo, name, form):
    folder, paths, feeds, ref = zoo[name]
    for flags in FLAGS:
        model = compile_model(load(_config(folder, KEYS[form], paths[form], flags, f"{form}_")))
        got = sim.run(model.graph, feeds)
        for out, want in zip(model.graph.outputs, ref):
            _assert_matches(got[out], want)
        assert any(w.compressed for w in model.weights.values()) == (flags == "on")


def test_zoo_model_through_the_cli_with_w_s_e(zoo, capsys):
    folder, paths, _, _ = zoo["norm_acts"]
    cfg = _config(folder, "PB_FILE", paths["pb"], "on", "cli_")
    assert cli.main(["-w", "-s", "-e", "random", cfg]) == 0
    assert ": [" in capsys.readouterr().out
    assert os.listdir(folder / "out" / "npu_jpgs")
    report = json.loads(next((folder / "out").glob("cli_*.json")).read_text())
    assert all(r["snr_db"] == "inf" or r["snr_db"] > 100 for r in report["outputs"] if r["mode"] == "float")


def test_gelu_lowers_through_erfc(zoo):
    """Keras' gelu is 0.5 * x * erfc(-x / sqrt(2)): Erfc used to be unsupported."""
    folder, paths, _, _ = zoo["norm_acts"]
    graph = compile_model(load(_config(folder, "PB_FILE", paths["pb"], "off", "ops_"))).graph
    assert {"Erfc", "Softplus"} <= {n.source for n in graph.nodes}


@pytest.fixture(scope="module")
def keras2_pb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras2")
    (folder / "out").mkdir()
    feeds, ref = zk.keras2_style_pb(str(folder / "k2.pb"))
    return folder, feeds, ref


@pytest.mark.parametrize("flags", list(FLAGS))
def test_keras2_style_frozen_graph_matches_tensorflow(keras2_pb, flags):
    folder, feeds, ref = keras2_pb
    model = compile_model(load(_config(folder, "PB_FILE", str(folder / "k2.pb"), flags)))
    _assert_matches(sim.run(model.graph, feeds)["Identity"], ref["Identity"])
    sources = {n.source for n in model.graph.nodes}
    assert {"FusedBatchNormV3", "ResizeNearestNeighbor", "SelectV2", "Erfc", "Erf"} <= sources
    assert "where" not in {n.op for n in model.graph.nodes}


def test_bilinear_resize_matches_tensorflow(tmp_path):
    """tf.image.resize(..., "bilinear") by 2 (ResizeBilinear, half-pixel centres) lowers as
    TFLite's RESIZE_BILINEAR does (ops/resize.py)."""
    (tmp_path / "out").mkdir()
    feeds, ref = zk.keras2_style_pb(str(tmp_path / "bil.pb"), bilinear=True)
    model = compile_model(load(_config(tmp_path, "PB_FILE", str(tmp_path / "bil.pb"), "off")))
    assert "ResizeBilinear" in {n.source for n in model.graph.nodes}
    _assert_matches(sim.run(model.graph, feeds)["Identity"], ref["Identity"])


def test_data_dependent_while_loop_is_one_clear_line(tmp_path):
    """A loop whose trip count depends on the input (not a recurrent layer over a static
    sequence, which is unrolled: tests/test_recurrent_tf.py) is refused by name."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    @tf.function
    def halve_until_small(x):
        return tf.while_loop(lambda v: tf.reduce_sum(tf.abs(v)) > 1.0, lambda v: [v * 0.5], [x],
                             name="halve")[0]

    frozen = convert_variables_to_constants_v2(
        halve_until_small.get_concrete_function(tf.TensorSpec([1, 4], tf.float32, name="x")))
    tf.io.write_graph(frozen.graph, str(tmp_path), "loop.pb", as_text=False)
    with pytest.raises(UnsupportedOpError, match=r"halve.*\[While\]: control flow"):
        compile_model(load(_config(tmp_path, "PB_FILE", str(tmp_path / "loop.pb"), "off")))
