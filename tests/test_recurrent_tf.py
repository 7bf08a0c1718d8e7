"""Keras LSTM / GRU (reset_after both) / SimpleRNN / Bidirectional in every TensorFlow form
(.keras, .h5, SavedModel, frozen .pb): the frozen while loop is unrolled over the sequence
length INPUT_OPS gives; float mode matches TensorFlow (>= 80 dB) at 1, 5 and 16 steps; the
kernels are fc weights named like a Dense layer's, the same in every form, listed by `-w`."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tf_models as tm  # noqa: E402
from gxnpuc import cli, sim  # noqa: E402
from gxnpuc.compiler import compile as compile_model  # noqa: E402
from gxnpuc.config import load  # noqa: E402
from test_recurrent_onnx import snr_db  # noqa: E402


def recurrent_keras():
    """Every Keras recurrent layer, stacked; the time axis is left dynamic (None)."""
    import keras
    from keras import layers

    x = keras.Input((None, 6), name="feats")
    y = layers.LSTM(5, return_sequences=True, name="lstm")(x)
    y = layers.GRU(4, return_sequences=True, reset_after=False, name="gru_v1")(y)
    y = layers.Bidirectional(layers.GRU(3, return_sequences=True, name="gru"), name="bigru")(y)
    y = layers.SimpleRNN(4, name="rnn")(y)
    return tm._finish(keras.Model(x, layers.Dense(2, name="head")(y), name="recurrent"), 6)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = recurrent_keras()
    folder = tmp_path_factory.mktemp("recurrent")
    return model, folder, tm.save_all(model, str(folder))


def _config(folder, key: str, path: str, steps: int, tag: str) -> str:
    cfg = folder / f"{tag}_{steps}.yaml"
    cfg.write_text(f"{key}: {path}\nOUTPUT_FILE: out_{tag}.h\nCOMPRESS: true\n"
                   f"INPUT_OPS: {{feats: [1, {steps}, 6]}}\n")
    return str(cfg)


@pytest.mark.parametrize("form,steps", [("keras", 1), ("keras", 16), ("h5", 5),
                                        ("saved_model", 16), ("pb", 5)])
def test_float_ir_matches_tensorflow(saved, form, steps):
    model, folder, paths = saved
    key, path = paths[form]
    compiled = compile_model(load(_config(folder, key, path, steps, form)))
    x = np.random.default_rng(steps).standard_normal((1, steps, 6)).astype(np.float32)
    ref = np.asarray(model(x, training=False))
    ours = sim.run(compiled.graph, {compiled.graph.inputs[0]: x})[compiled.graph.outputs[0]]
    assert snr_db(ours, ref) >= 80, (form, steps, snr_db(ours, ref))
    names = sorted(n for n, w in compiled.weights.items() if w.family == "fc")
    # kernel and recurrent kernel of LSTM, SimpleRNN and both directions of the Bidirectional
    # GRU; GRU(reset_after=False) slices its recurrent kernel in two; the Dense head. One step
    # from the zero state: the recurrent products fold away (all but GRU v1's candidate's)
    assert len(names) == (2 * 4 + 3 + 1 if steps > 1 else 4 + 2 + 1), names
    assert "recurrent_1/lstm_1/lstm_cell_1/Cast/ReadVariableOp" in names, names


def test_w_names_agree_across_forms(saved, capsys):
    _, folder, paths = saved
    listed = {}
    for form in ("keras", "pb", "saved_model"):
        key, path = paths[form]
        assert cli.main(["-w", _config(folder, key, path, 5, form)]) == 0
        listed[form] = re.findall(r"^(\S.*): \[[\d, ]+\]$", capsys.readouterr().out, re.M)
    assert sorted(listed["keras"]) == sorted(listed["pb"]) == sorted(listed["saved_model"])
    assert len(listed["keras"]) == 12


def test_unknown_length_asks_for_input_ops(saved, tmp_path, capsys):
    _, folder, paths = saved
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"PB_FILE: {paths['pb'][1]}\nOUTPUT_FILE: {tmp_path}/m.h\n")
    assert cli.main([str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "input 'feats': dimension 1 is unknown" in err and "INPUT_OPS: {feats: [1, N, 6]}" in err
    assert not os.path.exists(tmp_path / "m.h")
