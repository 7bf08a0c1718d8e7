"""Shared steps of the tests that compile a model file the way a user does and compare the
float IR with the exporting framework's own runtime (test_misc_ops, test_space_ops, test_lrn):
the config, the TFLite conversion of a tf.function, and the >= 80 dB comparisons against
the LiteRT interpreter and onnxruntime."""
from __future__ import annotations

import numpy as np

from gxnpuc import sim
from gxnpuc.compiler import compile as compile_model
from gxnpuc.config import load
from onnx_util import run_ort
from test_recurrent_onnx import snr_db


def compile_file(folder, key: str, path: str):
    """Compile `path` (a model file of kind `key`, e.g. ONNX_FILE) with a minimal config."""
    cfg = folder / "cfg.yaml"
    cfg.write_text(f"{key}: {path}\nOUTPUT_FILE: {folder}/model.h\n")
    return compile_model(load(str(cfg)))


def write_tflite(fn, path: str) -> set[str]:
    """Convert a tf.function to `path` with the TFLite converter; the op types it wrote."""
    import tensorflow as tf

    from gxnpuc.frontend.tflite_read import read

    with open(path, "wb") as fh:
        fh.write(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert())
    return {op.op_type for op in read(path, path).subgraphs[0].ops}


def assert_tflite_matches_interpreter(folder, path: str, label: str, seed: int, min_db: float = 80.0):
    """Compile the .tflite file; every output of the float IR within min_db of the interpreter's
    on one seeded input. Returns the compiled model."""
    from gxnpuc.evaluate.oracle_tflite import runner

    model = compile_file(folder, "TFLITE_FILE", path)
    g = model.graph
    x = np.random.default_rng(seed).standard_normal(g.tensors[g.inputs[0]].shape).astype(np.float32)
    want, got = runner(path, g)({g.inputs[0]: x}), sim.run(g, {g.inputs[0]: x})
    for o in g.outputs:
        db = snr_db(got[o], np.reshape(want[o], got[o].shape))
        print(f"{label} {o}: {db:.1f} dB")
        assert db >= min_db, (o, db)
    return model


def assert_onnx_matches_ort(folder, path: str, feeds: dict, label: str, min_db: float = 80.0):
    """Compile the .onnx file; every output of the float IR within min_db of onnxruntime's."""
    model = compile_file(folder, "ONNX_FILE", path)
    got = sim.run(model.graph, feeds)
    for name, ref in run_ort(path, feeds).items():
        print(f"{label} {name}: {snr_db(got[name], ref):.1f} dB")
        assert snr_db(got[name], ref) >= min_db, (name, snr_db(got[name], ref))
    return model
