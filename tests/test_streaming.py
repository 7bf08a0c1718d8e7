"""Streaming state (STATE_OPS): pairs, the vendor `struct in_out` layout, sequences in --eval/--tune.

The keyword spotter of tests/streaming_models.py is built the vendor's way (TF1 graph API,
frozen); TensorFlow run step by step with its state carried is the independent oracle.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import streaming_models as kws
from bad_inputs import state_onnx

from gxnpuc import backend, cli, config, sim, state
from gxnpuc.evaluate import sequence
from gxnpuc.evaluate.metrics import snr_db
from gxnpuc.ir import Graph, Tensor

STEPS = 50


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("tensorflow")
    folder = str(tmp_path_factory.mktemp("kws"))
    kws.build_pb(os.path.join(folder, "kws.pb"))
    feats = kws.speech_like(3, STEPS)
    np.savez(os.path.join(folder, "seq.npz"), Feats=feats)
    return folder, kws.config(folder), feats, kws.tf_steps(os.path.join(folder, "kws.pb"), feats)


def _struct(text: str, name: str) -> list[str]:
    body = re.search(rf"struct {name} \{{\n(.*?)\}} __attribute__", text, re.DOTALL).group(1)
    return [ln.strip() for ln in body.splitlines()]


def test_vendor_layout(built, capsys):
    folder, cfg_path, _, _ = built
    assert cli.main(["-m", cfg_path]) == 0
    out = capsys.readouterr().out
    assert "state out -> State_c1 (next buffer)" in out
    assert "3 pair(s), output -> next step's input: State_c0_out -> State_c0" in out
    with open(os.path.join(folder, "model.h")) as fh:
        text = fh.read()
    assert _struct(text, "input") == ["npu_data_t Feats[1][4][40];", "npu_data_t State_c0[1][3][64];",
                                      "npu_data_t State_c1[1][4][64];", "npu_data_t State_c2[1][5][64];"]
    assert _struct(text, "output") == ["npu_data_t State_c0_out[1][3][64];", "npu_data_t State_c1_out[1][4][64];",
                                       "npu_data_t State_c2_out[1][5][64];", "float phone_prob[1][4][12];"]
    assert _struct(text, "in_out") == ["struct input input;", "float phone_prob[1][4][12];"]
    assert "const unsigned int output_offset = 320;" in text  # Feats: 4 * 40 fp16 values
    model = backend.read(os.path.join(folder, "model.h"))
    assert state.pairs_of(model.graph) == {f"State_c{k}_out": f"State_c{k}" for k in range(3)}
    places = model.plan["tensors"]
    for o, i in state.pairs_of(model.graph).items():
        assert places[o] == places[i]
    assert model.sizes["io"] == 2 * (160 + 192 + 256 + 320) + 4 * 48
    if shutil.which("gcc"):
        src = os.path.join(folder, "use.c")
        with open(src, "w") as fh:
            fh.write('#include <stddef.h>\n#include "model.h"\nint main(void) {\n'
                     "  _Static_assert(offsetof(struct in_out, input.State_c0) == 320, \"offset\");\n"
                     "  _Static_assert(sizeof(struct in_out) == 2048, \"size\");\n"
                     "  _Static_assert(320 + sizeof(struct output) == sizeof(struct in_out), \"tail\");\n"
                     "  return (int)output_offset - 320;\n}\n")
        subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", src[:-2], src], check=True)
        assert subprocess.run([src[:-2]], check=False).returncode == 0


def _read(buf: np.ndarray, place: tuple, dtype: str, shape) -> np.ndarray:
    off, nb = place
    return np.frombuffer(buf[off:off + nb].tobytes(), dtype).reshape(shape)


def test_double_buffer_matches_unrolled_npu(built):
    """The device procedure, byte for byte: two in_out buffers, the NPU writing struct output at
    the next buffer's output_offset, runs exactly like the unrolled npu simulation --eval uses."""
    folder, _, feats, _ = built
    model = backend.read(os.path.join(folder, "model.h"))
    g, places = model.graph, model.plan["tensors"]
    offset = places[g.inputs[1]][0]
    bufs = np.zeros((2, model.sizes["io"]), np.uint8)
    probs = []
    for t in range(10):
        cur, nxt = bufs[t % 2], bufs[(t + 1) % 2]
        off, nb = places["Feats"]
        cur[off:off + nb] = np.frombuffer(feats[0, t].astype("<f2").tobytes(), np.uint8)
        feeds = {n: _read(cur, places[n], "<f2", g.tensors[n].shape).astype(np.float32) for n in g.inputs}
        outs = sim.run_model(model, feeds, "npu")
        blob = b"".join(np.asarray(outs[n]).astype("<f2" if n in model.fp16_outputs else "<f4").tobytes()
                        for n in g.outputs)
        nxt[offset:offset + len(blob)] = np.frombuffer(blob, np.uint8)
        probs.append(_read(nxt, places["phone_prob"], "<f4", (1, 4, 12)))
    feeds = {**{f"State_c{k}": np.zeros((1, c, 64), np.float32) for k, c in enumerate(kws.CONTEXT)},
             **{f"Feats@{t}": feats[0, t] for t in range(10)}}
    unrolled = sim.run_model(sequence.unroll(model, 10), feeds, "npu")
    assert np.array_equal(np.stack(probs)[:, 0], unrolled["phone_prob"][0])


def test_eval_over_50_steps(built, capsys):
    """Float IR against TensorFlow step by step; with gcc, --runtime: the C runtime run as a
    firmware runs it (two buffers, gx_run_step) is bit-identical to npu at every output and step."""
    folder, cfg_path, feats, ref = built
    runtime = ["--runtime"] if shutil.which("gcc") else []
    assert cli.main(["-e", os.path.join(folder, "seq.npz"), *runtime, cfg_path]) == 0
    out = capsys.readouterr().out
    assert f"streaming: {STEPS} steps, state carried" in out
    with open(os.path.join(folder, "model.eval.json")) as fh:
        report = json.load(fh)
    # the float IR, unrolled with its own state carried, against TensorFlow step by step
    cfg = config.load(cfg_path)
    from gxnpuc import compiler

    seq, feeds, _, _ = sequence.load(os.path.join(folder, "seq.npz"), compiler.compile(cfg))
    mine = sim.run_model_batch(seq, feeds, "float")
    for name, want in ref.items():
        got = mine[name].reshape(want.shape)
        assert snr_db(want, got) >= 80, name
        row = next(r for r in report["steps"] if r["output"] == name and r["mode"] == "float")
        assert row["snr_db"]["all steps"] == pytest.approx(snr_db(want, got), abs=0.5)
        assert min(row["snr_db"].values()) >= 80
        npu = next(r for r in report["steps"] if r["output"] == name and r["mode"] == "npu")
        assert 25 <= min(npu["snr_db"].values()) < 80  # compressed weights: a real, finite error
    assert next(r for r in report["steps"] if r["output"] == "phone_prob")["state"] is False
    # without the state carried the outputs would be far from TensorFlow's: the test can fail
    fresh = kws.tf_steps(os.path.join(folder, "kws.pb"), feats, carry=False)
    assert snr_db(ref["phone_prob"][:, 1:], fresh["phone_prob"][:, 1:]) < 30
    rows = {r["output"]: r for r in report["outputs"] if r["mode"] == "runtime"}
    assert len(rows) == (4 if runtime else 0)
    for name, r in rows.items():
        assert r["bit_identical_to_npu"] is True and r["max_ulp_to_npu"] == 0, r
        assert r["snr_db"] == next(n["snr_db"] for n in report["outputs"] if n["output"] == name and n["mode"] == "npu")
    assert len([r for r in report["steps"] if r["mode"] == "runtime"]) == len(rows)


def test_runtime_every_op_over_50_steps(built):
    """The driver's dump of every op at every step (gxrun -s) against the unrolled npu run."""
    if not shutil.which("gcc"):
        pytest.skip("no gcc on PATH")
    from gxnpuc import compiler
    from gxnpuc import runtime_host as rh

    folder, cfg_path, feats, _ = built
    model = compiler.compile(config.load(cfg_path))
    seq, feeds, _, _ = sequence.load(os.path.join(folder, "seq.npz"), model)
    state0 = {i: feeds[i] for i in state.pairs_of(model.graph).values()}
    res = rh.run_sequence(model, state0, {"Feats": feats}, dump=True)
    want = sim.run_model_batch(seq, feeds, "npu", keep=True)
    assert len(model.graph.nodes) == 27
    for node in model.graph.nodes:
        for o in node.outputs:
            assert max(int(rh.ulp_distance(res.tensors[o][:, t], want[f"{o}@{t}"]).max()) for t in range(STEPS)) == 0, o


def test_tune_over_sequences(built):
    from gxnpuc import tune

    folder, cfg_path, feats, _ = built
    short = os.path.join(folder, "short.npz")
    np.savez(short, Feats=feats[:2, :8])
    result = tune.tune(config.load(cfg_path), short, jobs=1)
    assert "8 steps" in result.source
    assert result.met and result.snr >= 20


# -- pairs: inferred and given (ONNX, fast) ------------------------------------------------------------
def _graph(inputs: dict, outputs: dict) -> Graph:
    g = Graph(inputs=list(inputs), outputs=list(outputs))
    for n, s in {**inputs, **outputs}.items():
        g.tensors[n] = Tensor(n, tuple(s))
    return g


@pytest.mark.parametrize("inputs, outputs, want", [
    ({"x": [1, 40], "State_c0": [1, 3, 64]}, {"y": [1, 5], "State_c0_out": [1, 3, 64]}, {"State_c0_out": "State_c0"}),
    ({"input": [1, 512], "state": [2, 1, 128]}, {"output": [1, 1], "stateN": [2, 1, 128]}, {"stateN": "state"}),
    ({"x": [1, 8], "h0": [1, 16], "c0": [1, 16]}, {"y": [1, 2], "hn": [1, 16], "cn": [1, 16]},
     {"hn": "h0", "cn": "c0"}),
    ({"x": [1, 8], "cache": [1, 4, 8]}, {"y": [1, 2], "next_cache": [1, 4, 8]}, {"next_cache": "cache"}),
    ({"s": [1, 4], "s_in": [1, 4]}, {"s_out": [1, 4]}, {}),  # two inputs claim s_out: ambiguous
    ({"x": [1, 8], "s": [1, 4]}, {"s_out": [1, 5]}, {}),  # the name matches, the shape does not
])
def test_inferred_pairs(inputs, outputs, want):
    assert state.infer(_graph(inputs, outputs)) == want


def _onnx_case(tmp_path, extra: str = ""):
    with open(tmp_path / "state.onnx", "wb") as fh:
        fh.write(state_onnx().SerializeToString())
    (tmp_path / "c.yaml").write_text("ONNX_FILE: state.onnx\nOUTPUT_FILE: m.h\nCOMPRESS: true\n" + extra)
    return str(tmp_path / "c.yaml")


def test_onnx_pairs_inferred_given_and_off(tmp_path, capsys):
    from gxnpuc import compiler

    path = _onnx_case(tmp_path)
    model = compiler.compile(config.load(path))
    assert state.pairs_of(model.graph) == {"s_out": "s", "t_out": "t"}
    assert model.graph.inputs == ["x", "z", "s", "t"] and model.graph.outputs == ["s_out", "t_out", "y"]
    assert set(model.fp16_outputs) == {"s_out", "t_out"}
    given = compiler.compile(config.load(_onnx_case(tmp_path, "STATE_OPS: {t_out: t}\n")))
    assert state.pairs_of(given.graph) == {"t_out": "t"}
    off = _onnx_case(tmp_path, "STATE_OPS: {}\n")
    assert cli.main([off]) == 0
    text = (tmp_path / "m.h").read_text()
    assert "struct output output;" in text and "output_offset" not in text
    assert "state " not in capsys.readouterr().out


def test_onnx_eval_random_sequences_against_onnxruntime(tmp_path, capsys):
    """-e random on a streaming ONNX model: 16 steps; the float IR matches onnxruntime run step
    by step here (independently of gxnpuc's own reference)."""
    ort = pytest.importorskip("onnxruntime")
    from gxnpuc import compiler

    path = _onnx_case(tmp_path)
    assert cli.main(["-e", "random", path]) == 0
    assert f"streaming: {sequence.RANDOM_STEPS} steps" in capsys.readouterr().out
    seq, feeds, _, _ = sequence.load("random", compiler.compile(config.load(path)), 3)
    mine = sim.run_model_batch(seq, feeds, "float")
    sess = ort.InferenceSession(str(tmp_path / "state.onnx"), providers=["CPUExecutionProvider"])
    for s in range(3):
        st = {"s": feeds["s"][s], "t": feeds["t"][s]}
        for t in range(sequence.RANDOM_STEPS):
            feed = {"x": feeds[f"x@{t}"][s], "z": feeds[f"z@{t}"][s], **st}
            y, s_out, t_out = sess.run(["y", "s_out", "t_out"], feed)
            assert snr_db(y, mine["y"][s, 0, t]) >= 80
            st = {"s": s_out, "t": t_out}


def test_given_initial_state_is_used(tmp_path):
    """State inputs start from the arrays given ([samples, *shape]), zeros for the others;
    s_out = s + x + z accumulates over the steps (a float64 sum is the oracle)."""
    from gxnpuc import compiler

    rng = np.random.default_rng(7)
    x, z, s0 = (rng.standard_normal(shape).astype(np.float32) for shape in ((2, 5, 1, 4), (2, 5, 4), (2, 4)))
    np.savez(tmp_path / "seq.npz", x=x, z=z, s=s0)
    model = compiler.compile(config.load(_onnx_case(tmp_path)))
    seq, feeds, _, source = sequence.load(str(tmp_path / "seq.npz"), model)
    assert source == "seq.npz, 5 steps"
    got = sim.run_model_batch(seq, feeds, "float")
    want = s0[:, None].astype(np.float64) + np.cumsum(x[:, :, 0].astype(np.float64) + z, axis=1)
    assert snr_db(want, got["s_out"][:, 0]) >= 120
    assert np.array_equal(got["t_out"], np.zeros_like(got["t_out"]))  # t starts at zeros, halves


def test_reference_with_a_runner_that_keeps_its_own_state(tmp_path, monkeypatch):
    """The protocol TFLite resource variables need: the runner carries the state itself
    (reset per sample, per-step inputs only); the reference equals the explicit-state one."""
    from gxnpuc import compiler
    from gxnpuc.evaluate import oracle

    path = _onnx_case(tmp_path)
    seq, feeds, _, _ = sequence.load("random", compiler.compile(config.load(path)), 2)
    cfg = config.load(path)
    explicit = sequence.reference(cfg, seq.graph, feeds)
    plain = oracle.runner

    def keeping(cfg, graph, carry_state=False):
        assert carry_state  # a sequence: the runner is told the steps follow
        inner = plain(cfg, graph)
        held = {}

        def fn(one):
            assert set(one) == {"x", "z"}  # the state is not fed
            res = inner({**one, **held})
            held.update({i: res[o] for o, i in state.pairs_of(graph).items()})
            return res
        fn.keeps_state = set(state.pairs_of(graph).values())
        fn.reset = lambda initial: (held.clear(), held.update(initial))
        return fn
    monkeypatch.setattr(oracle, "runner", keeping)
    inside = sequence.reference(cfg, seq.graph, feeds)
    for k, v in explicit.items():
        assert np.array_equal(v, inside[k]), k


def test_input_values_reach_the_reference(tmp_path):
    """An INPUT_VALUES input is fed to onnxruntime with the config's value, not zeros (the
    silero VAD's `sr` chooses its branch); y = x * k with k fixed to 3."""
    from onnx import helper

    from bad_inputs import _model
    from gxnpuc import compiler
    from gxnpuc.evaluate import oracle

    model = _model([helper.make_node("Mul", ["x", "k"], ["y"], name="/mul")], [("x", [1, 4]), ("k", [1])],
                   [("y", [1, 4])], {})
    with open(tmp_path / "k.onnx", "wb") as fh:
        fh.write(model.SerializeToString())
    (tmp_path / "c.yaml").write_text("ONNX_FILE: k.onnx\nOUTPUT_FILE: m.h\nINPUT_VALUES: {k: [3.0]}\n")
    cfg = config.load(str(tmp_path / "c.yaml"))
    graph = compiler.compile(cfg).graph
    assert graph.inputs == ["x"]
    x = np.arange(8, dtype=np.float32).reshape(2, 1, 4)
    assert np.array_equal(oracle.run(cfg, graph, {"x": x})["y"], 3 * x)


def test_docs_firmware_step_loop(built, tmp_path):
    """The firmware loop of docs/runtime.md (gx_run_step, two buffers), compiled against the
    spotter's model.h: phone_prob bit-identical to the unrolled npu simulation over 10 steps."""
    if not shutil.which("gcc"):
        pytest.skip("no gcc on PATH")
    from gxnpuc import runtime_host as rh

    folder, cfg_path, feats, _ = built
    assert cli.main([cfg_path]) == 0  # model.h
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "runtime.md")) as fh:
        code = re.search(r"```c\n(static struct in_out buf\[2\];.*?)```", fh.read(), re.DOTALL).group(1)
    main = ("int main(void) {\n  static npu_data_t feats[10][160]; float scores[48]; unsigned k;\n"
            "  if (fread(feats, sizeof feats, 1, stdin) != 1 || GX_INIT_FROM_MODEL_H(&task, &buf[0])) return 1;\n"
            "  for (k = 0; k < 10; k++) {\n    if (model_step(k, feats[k], scores)) return 2;\n"
            "    fwrite(scores, sizeof scores, 1, stdout);\n  }\n  return 0;\n}\n")
    (tmp_path / "fw.c").write_text('#include <stdio.h>\n#include <string.h>\n#include "gxnpu.h"\n#include "model.h"\n'
                                   "static gx_task task;\n" + code + main)
    src = rh.runtime_dir()
    subprocess.run(["gcc", *rh.CFLAGS, "-I", str(src), "-I", folder, str(tmp_path / "fw.c"), str(src / "gxnpu.c"),
                    "-o", str(tmp_path / "fw")], check=True)
    out = subprocess.run([str(tmp_path / "fw")], input=feats[0, :10].astype("<f2").tobytes(), capture_output=True,
                         check=True).stdout
    model = backend.read(os.path.join(folder, "model.h"))
    feeds = {**{f"State_c{k}": np.zeros((1, c, 64), np.float32) for k, c in enumerate(kws.CONTEXT)},
             **{f"Feats@{t}": feats[0, t] for t in range(10)}}
    want = sim.run_model(sequence.unroll(model, 10), feeds, "npu")["phone_prob"]
    assert np.array_equal(np.frombuffer(out, "<f4").reshape(10, 4, 12), want.reshape(10, 4, 12))
