"""The bundled TensorFlow example (examples/make_kws_tf.py + configs/kws_tf.yaml) works as
the README's `make demo` shows: TensorFlow names with Conv1D `[1, k, c_in, c_out]` shapes,
float IR equal to TensorFlow, and the printed names usable in the config."""
from __future__ import annotations

import os
import re
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import make_kws_tf  # noqa: E402

from gxnpuc import cli, sim  # noqa: E402
from gxnpuc.compiler import compile as compile_model  # noqa: E402
from gxnpuc.config import load  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_tf")
    os.makedirs(root / "configs")
    shutil.copy(os.path.join(ROOT, "configs", "kws_tf.yaml"), root / "configs")
    make_kws_tf.main(str(root / "examples" / "build"))
    return root


def test_weight_list_shows_tensorflow_conv1d_names(demo, capsys):
    assert cli.main(["-w", str(demo / "configs" / "kws_tf.yaml")]) == 0
    lines = re.findall(r"^(\S+): (\[[\d, ]+\])$", capsys.readouterr().out, re.M)
    convs = [(n, s) for n, s in lines if n.endswith("/ExpandDims_1")]
    assert [s for _, s in convs] == ["[1, 3, 40, 64]", "[1, 3, 64, 64]", "[1, 1, 64, 64]"]
    assert "tdnn1.affine" in convs[0][0] and "prefinal-l" in convs[2][0]
    assert len(lines) == 4  # three Conv1D weights and the Dense kernel
    assert (demo / "examples" / "build" / "kws_tf_model.h").exists()


def test_float_ir_matches_tensorflow(demo):
    import keras

    model = keras.models.load_model(str(demo / "examples" / "build" / "kws_tf.keras"), compile=False)
    compiled = compile_model(load(str(demo / "configs" / "kws_tf.yaml")))
    with np.load(demo / "examples" / "build" / "kws_tf_inputs.npz") as npz:
        feats = npz["feats"][:4]
    for x in feats:
        ref = np.asarray(model(x, training=False))
        ours = sim.run(compiled.graph, {compiled.graph.inputs[0]: x})[compiled.graph.outputs[0]]
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_printed_name_excludes_the_long_tailed_weight(demo, capsys):
    cfg_path = demo / "configs" / "kws_tf.yaml"
    assert cli.main(["-w", str(cfg_path)]) == 0
    tail = next(n for n in re.findall(r"^(\S+): \[", capsys.readouterr().out, re.M) if "prefinal-l" in n)
    edited = demo / "configs" / "kws_tf_excl.yaml"
    edited.write_text(cfg_path.read_text() + f'EXCLUDE_COMPRESS_OPS: ["{tail}"]\n')
    assert cli.main(["-w", str(edited)]) == 0
    listed = re.findall(r"^(\S+): \[", capsys.readouterr().out, re.M)
    assert tail not in listed and len(listed) == 3
