"""Sequence --eval of streaming .tflite models (tests/tflite_stream_models.py): the LiteRT
interpreter runs step by step with its own resource variables carried (a new interpreter per
sample), the simulator carries the compiled state pairs. Float models: the float IR within
80 dB of the interpreter at every step range; the full-int8 model: within the interpreter's
own noise floor, measured against the float tf.Module run step by step. Models with explicit
state inputs/outputs (STATE_OPS) run the same way.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite")
pytest.importorskip("ai_edge_litert")

import tflite_stream_models as tsm  # noqa: E402

from gxnpuc import compiler, config, sim  # noqa: E402
from gxnpuc.evaluate import sequence  # noqa: E402
from gxnpuc.evaluate.metrics import snr_db  # noqa: E402

STEPS, SAMPLES = 24, 3
FRAME = "serving_default_frame"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite_seq")
    out = {"root": root, "frames": tsm.frames(SAMPLES, STEPS)}
    for name, data in (("vars", tsm.variables_tflite()), ("vars8", tsm.variables_tflite(int8=True)),
                       ("explicit", tsm.explicit_state_tflite())):
        (root / f"{name}.tflite").write_bytes(data)
    out["tf"] = tsm.tf_steps(out["frames"])
    return out


def _config(root, name: str, extra: str = "") -> str:
    path = root / f"{name}.yaml"
    path.write_text(f"TFLITE_FILE: {name}.tflite\nOUTPUT_FILE: {name}.h\nCOMPRESS: true\n{extra}")
    return str(path)


def _dbs(row: dict) -> list[float]:
    return [float(v) for v in row["snr_db"].values()]  # JSON writes "inf" for exact


def _eval(cfg: str, data: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", "-e", data, cfg], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"streaming: {STEPS} steps, state carried" in proc.stdout
    with open(cfg[:-5] + ".eval.json") as fh:
        return json.load(fh)


def test_variables_carried_by_the_interpreter(made):
    """gxnpuc -e seq.npz on a model with VAR_HANDLE/READ/ASSIGN_VARIABLE/CALL_ONCE: the float
    IR agrees with the interpreter carrying its variables at every step range (>= 80 dB)."""
    root = made["root"]
    np.savez(root / "seq.npz", **{FRAME: made["frames"]})
    report = _eval(_config(root, "vars"), str(root / "seq.npz"))
    rows = {(r["output"], r["mode"]): r for r in report["steps"]}
    assert {o for o, _ in rows} == {"ctx1_next", "ctx2_next", "h_next", "StatefulPartitionedCall:0"}
    for (o, mode), row in rows.items():
        assert len(row["snr_db"]) == 3 and row["steps"] == STEPS
        if mode == "float":
            assert min(_dbs(row)) >= 80, (o, row)
        else:
            assert 25 <= min(_dbs(row)) < 80, (o, row)  # compressed weights: a real error


def test_reference_is_the_interpreter_with_its_state(made):
    """The reference (interpreter, variables carried, reset per sample) equals the float
    tf.Module stepped in TensorFlow; stepping without the state would not (the test can fail)."""
    cfg = config.load(_config(made["root"], "vars"))
    seq = sequence.unroll(compiler.compile(cfg), STEPS)
    feeds = {**{f"{FRAME}:0@{t}": made["frames"][:, t] for t in range(STEPS)},
             **{i: np.zeros((SAMPLES, *seq.graph.tensors[i].shape), np.float32) for i in ("ctx1", "ctx2", "h")}}
    ref = sequence.reference(cfg, seq.graph, feeds)["StatefulPartitionedCall:0"][:, 0]
    assert snr_db(made["tf"], ref) >= 80
    fresh = tsm.tf_steps(made["frames"], carry=False)
    assert snr_db(made["tf"][:, 2:], fresh[:, 2:]) < 30


def test_int8_variables_to_the_interpreters_noise_floor(made):
    """Full int8 with int8 variables: the float IR (dequantised weights, float state) agrees with
    the interpreter as closely as the interpreter agrees with the float tf.Module (its floor),
    over the whole sequence and the last quarter, and is itself closer to the float model."""
    root = made["root"]
    cfg = config.load(_config(root, "vars8"))
    model = compiler.compile(cfg)
    from gxnpuc.frontend import tflite as front

    s, z, _ = front.io_quantisation(cfg.model_path)[f"{FRAME}:0"]
    frames = ((np.clip(np.round(made["frames"] / s) + z, -128, 127) - z) * s).astype(np.float32)
    np.savez(root / "seq8.npz", **{FRAME: frames})
    seq, feeds, _, _ = sequence.load(str(root / "seq8.npz"), model)
    interp = sequence.reference(cfg, seq.graph, feeds)["StatefulPartitionedCall:0"][:, 0]
    mine = sim.run_model_batch(seq, feeds, "float")["StatefulPartitionedCall:0"][:, 0]
    tf_ref = tsm.tf_steps(frames)
    q = STEPS // 4
    for part in (slice(None), slice(STEPS - q, None)):
        floor = snr_db(tf_ref[:, part], interp[:, part])  # the int8 interpreter against float
        assert 15 < floor < 60, floor
        assert snr_db(interp[:, part], mine[:, part]) >= floor - 6
        assert snr_db(tf_ref[:, part], mine[:, part]) > floor
    report = _eval(_config(root, "vars8"), str(root / "seq8.npz"))
    row = next(r for r in report["steps"] if r["output"] == "StatefulPartitionedCall:0" and r["mode"] == "float")
    assert float(row["snr_db"]["all steps"]) == pytest.approx(snr_db(interp, mine), abs=0.5)


def test_explicit_state_with_state_ops(made):
    """State as plain inputs/outputs of the .tflite (names the converter gives: Identity_k),
    paired by STATE_OPS: the interpreter is fed the state the sequence carries."""
    root = made["root"]
    np.savez(root / "eseq.npz", frame=made["frames"])
    cfg = _config(root, "explicit", "STATE_OPS: {Identity: ctx1, Identity_1: ctx2, Identity_2: h}\n")
    report = _eval(cfg, str(root / "eseq.npz"))
    rows = [r for r in report["steps"] if r["mode"] == "float"]
    assert len(rows) == 4 and all(min(_dbs(r)) >= 80 for r in rows), rows
    seq, feeds, _, _ = sequence.load(str(root / "eseq.npz"), compiler.compile(config.load(cfg)))
    ref = sequence.reference(config.load(cfg), seq.graph, feeds)["Identity_3"][:, 0]
    assert snr_db(made["tf"], ref) >= 80  # the same network as the variables model


def test_initial_state_of_a_variable_is_refused(made):
    """The interpreter keeps its variables inside: a given non-initial start is an error
    before anything is written; zeros (the model's start) are accepted."""
    root = made["root"]
    cfg = _config(root, "vars")
    np.savez(root / "bad.npz", **{FRAME: made["frames"][:, :4]}, h=np.ones((SAMPLES, 1, tsm.R), np.float32))
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", "-e", str(root / "bad.npz"), cfg],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "bad.npz: h: sets the initial state of a variable the TFLite interpreter keeps" in proc.stderr
    model = compiler.compile(config.load(cfg))
    np.savez(root / "zeros.npz", **{FRAME: made["frames"][:, :4]}, h=np.zeros((SAMPLES, 1, tsm.R), np.float32))
    _, feeds, _, source = sequence.load(str(root / "zeros.npz"), model)
    assert source == "zeros.npz, 4 steps" and not np.any(feeds["h"])
