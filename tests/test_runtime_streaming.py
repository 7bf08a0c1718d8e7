"""The C runtime on streaming models (STATE_OPS) over sequences, the way a firmware runs them:
two `struct in_out` buffers, gx_run_step writing struct output at the next buffer +
output_offset, so each state output lands on its state input for the next step. Compared
bit for bit with the simulator's npu mode (unrolled over the steps) at every step and op.
The vendor-style spotter over 50 steps: tests/test_streaming.py (test_eval_over_50_steps,
test_runtime_every_op_over_50_steps), on the model it builds once.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from bad_inputs import _model, _rand
from gxnpuc import compiler, config, sim, state
from gxnpuc import runtime_host as rh
from gxnpuc.evaluate import sequence

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on PATH")


def _hazard_project(folder) -> str:
    """A cell whose state output is computed before the last read of its state input:
    s_out = 0.5 s + x, then y = s W. Run in place (one buffer), s_out would overwrite s before
    y reads it; the vendor layout writes it into the next buffer instead."""
    nodes = [helper.make_node("Mul", ["s", "half"], ["hs"], name="/decay"),
             helper.make_node("Add", ["hs", "x"], ["s_out"], name="/add"),
             helper.make_node("MatMul", ["s", "fc.weight"], ["y"], name="/fc/MatMul")]
    m = _model(nodes, [("x", [1, 6]), ("s", [1, 6])], [("s_out", [1, 6]), ("y", [1, 3])],
               {"fc.weight": _rand((6, 3), 5), "half": np.array([0.5], np.float32)})
    with open(os.path.join(folder, "cell.onnx"), "wb") as fh:
        fh.write(m.SerializeToString())
    path = os.path.join(folder, "cell.yaml")
    with open(path, "w") as fh:
        fh.write("ONNX_FILE: cell.onnx\nOUTPUT_FILE: cell.h\n")
    return path


def test_state_lands_in_the_next_buffer(tmp_path):
    """run_sequence (gxrun -s, gx_run_step) equals the unrolled npu simulation bit for bit, every
    output and every op at every step; the same steps run in place with gx_run do not (y reads
    its state after s_out overwrote it), which is why the runtime has gx_run_step."""
    model = compiler.compile(config.load(_hazard_project(str(tmp_path))))
    assert state.pairs_of(model.graph) == {"s_out": "s"}
    steps, n = 12, 2
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((n, steps, 1, 6)).astype(np.float32)
    s0 = rng.standard_normal((n, 1, 6)).astype(np.float32)
    res = rh.run_sequence(model, {"s": s0}, {"x": xs}, dump=True)
    assert res.status == 0
    seq = sequence.unroll(model, steps)
    feeds = {"s": s0, **{f"x@{t}": xs[:, t] for t in range(steps)}}
    want = sim.run_model_batch(seq, feeds, "npu", keep=True)
    for o in ("s_out", "y"):
        assert rh.ulp_distance(res.outputs[o].reshape(want[o].shape), want[o]).max() == 0, o
    for node in model.graph.nodes:
        for t in range(steps):
            (o,) = node.outputs
            assert rh.ulp_distance(res.tensors[o][:, t], want[f"{o}@{t}"]).max() == 0, (o, t)
    # float64 oracle of the state recursion: s_t = 0.5^t s0 + sum 0.5^(t-1-k) x_k
    s = s0.astype(np.float64)
    for t in range(steps):
        s = 0.5 * s + xs[:, t]
    assert np.allclose(res.outputs["s_out"][:, -1].astype(np.float64), s, atol=0.02)
    # one buffer, gx_run in place, each step given the right state: y is wrong at every step
    for t in range(steps):
        st = s0 if t == 0 else res.outputs["s_out"][:, t - 1].astype(np.float32)
        y = rh.run(model, {"x": xs[:, t], "s": st}).outputs["y"]
        assert not np.array_equal(y, res.outputs["y"][:, t]), t


def test_sequence_under_sanitizers(tmp_path):
    """gxrun -s and gx_run_step built with -fsanitize=address,undefined: same bits, no report;
    a buffer-size mismatch the driver cannot honour is refused, not run."""
    model = compiler.compile(config.load(_hazard_project(str(tmp_path))))
    san = rh.build_driver(flags=("-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"))
    rng = np.random.default_rng(8)
    state0, per_step = {"s": rng.standard_normal((2, 1, 6))}, {"x": rng.standard_normal((2, 7, 1, 6))}
    a = rh.run_sequence(model, state0, per_step, dump=True, driver=san)
    b = rh.run_sequence(model, state0, per_step, dump=True)
    assert a.status == 0 and a.tensors.keys() == b.tensors.keys()
    for k in (*a.outputs, *a.tensors):
        got, want = (a.outputs | a.tensors)[k], (b.outputs | b.tensors)[k]
        assert np.array_equal(rh.f16_bits(got), rh.f16_bits(want)), k
    blob = np.zeros(10, "<f2").tobytes()  # not a whole number of samples of (state, 7 steps)
    (tmp_path / "m.raw").write_bytes(rh.raw_bytes(model))
    (tmp_path / "in.bin").write_bytes(blob)
    at = model.plan["tensors"]["s"][0]
    proc = subprocess.run([san, "-s", "7", str(at), str(tmp_path / "m.raw"), str(model.plan["io_size"]), "24",
                           str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], capture_output=True, text=True)
    assert proc.returncode == 1 and "bad arguments" in proc.stderr


def test_cli_runtime_rows_and_first_diff_per_step(tmp_path, monkeypatch):
    """gxnpuc -e DATA --runtime --dump-dir on a streaming model: runtime rows per output (JSON
    mode "runtime", bit_identical_to_npu, max_ulp_to_npu) and per step range; ops named
    node@step; runtime dumps equal the npu dumps; a difference at one step is named there."""
    from gxnpuc.evaluate import evaluate

    cfg = _hazard_project(str(tmp_path))
    np.savez(tmp_path / "seq.npz", x=np.random.default_rng(4).standard_normal((2, 9, 6)).astype(np.float32),
             s=np.ones((2, 6), np.float32))
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", "-e", "seq.npz", "--runtime", "--dump-dir", "d", cfg],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "cell.eval.json").read_text())
    rows = [r for r in report["outputs"] if r["mode"] == "runtime"]
    assert [(r["output"], r["bit_identical_to_npu"], r["max_ulp_to_npu"]) for r in rows] == [
        ("s_out", True, 0), ("y", True, 0)]
    assert [(r["output"], r["mode"]) for r in report["steps"]][1:3] == [("s_out", "npu"), ("s_out", "runtime")]
    ops = report["runtime"]["ops"]
    assert report["runtime"]["first_diff_op"] is None and len(ops) == 3 * 9
    assert ops[3]["op"] == "/decay@1" and all(o["bit_identical_to_npu"] for o in ops)
    index = json.loads((tmp_path / "d" / "index.json").read_text())
    for t in (0, 8):
        f = index["files"][f"y@{t}"]
        assert np.array_equal(np.load(tmp_path / "d" / "runtime" / f), np.load(tmp_path / "d" / "npu" / f))
    # the runtime's tensor at one step made different: the report names that op and step
    real = rh.run_sequence

    def off_at_step_4(*args, **kw):
        res = real(*args, **kw)
        res.tensors["hs"][1, 4] += np.float32(1)
        return res
    monkeypatch.setattr(rh, "run_sequence", off_at_step_4)
    c = config.load(cfg)
    model, feeds, labels, source = sequence.load(str(tmp_path / "seq.npz"), compiler.compile(c))
    report = evaluate(c, model, feeds, labels, source, str(tmp_path / "d2"), runtime=True)
    assert report.runtime["first_diff_op"] == "/decay@4"
    assert all(r.bit_identical_to_npu for r in report.outputs if r.mode == "runtime")
