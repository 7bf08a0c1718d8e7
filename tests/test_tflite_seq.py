"""TFLite recurrent layers, transposed convolutions and guarded division against the LiteRT
interpreter (float IR >= 80 dB) or, for MediaPipe's custom op the interpreter lacks, a float64
numpy transposed convolution (itself checked against the interpreter's TRANSPOSE_CONV):

- Keras 3 LSTM / GRU (and unroll=True) / SimpleRNN / Bidirectional(LSTM), converted: WHILE
  loops, unrolled; several sequence lengths;
- UNIDIRECTIONAL_SEQUENCE_LSTM (batch- and time-major, peepholes, projection), BIDIRECTIONAL_
  SEQUENCE_LSTM, UNIDIRECTIONAL_SEQUENCE_RNN, built with TensorFlow's schema object API;
- TRANSPOSE_CONV (bias or not, SAME / VALID, stride 2) and Convolution2DTransposeBias;
- divide_no_nan (EQUAL + SELECT_V2) and run-time masks (lowered to fold-only ops, reported).
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

import tflite_seq_models as sm  # noqa: E402

from gxnpuc import compiler, sim  # noqa: E402
from gxnpuc.config import Config  # noqa: E402
from gxnpuc.errors import ConfigError, UnsupportedOpError  # noqa: E402
from gxnpuc.evaluate.oracle_tflite import interpreter  # noqa: E402

SAMPLES = 3
KERAS = [("lstm", 1), ("lstm", 5), ("lstm", 16), ("gru", 5), ("gru_unroll", 16), ("rnn", 5), ("rnn", 16),
         ("bilstm", 5)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite_seq")
    out: dict = {}

    def save(name, data):
        out[name] = str(root / f"{name}.tflite")
        with open(out[name], "wb") as fh:
            fh.write(data)
    for kind, steps in KERAS:
        save(f"{kind}{steps}", sm.keras_rnn(kind, steps))
    for bias, pad in ((True, "same"), (False, "valid"), (True, "valid")):
        data, w, b = sm.transpose_conv(bias, pad)
        save(f"deconv_{bias}_{pad}", data)
        out[f"weights_{bias}_{pad}"] = (w, b)
        if bias:
            save(f"mediapipe_{pad}", sm.as_mediapipe_transpose_conv(data, pad.upper(), 2))
    save("div_no_nan", sm.divide_no_nan())
    save("mask", sm.runtime_mask())
    return out


def snr(ref, x) -> float:
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64).reshape(np.shape(ref))
    err = float(np.sum((ref - x) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref ** 2)) / err)


def compile_tflite(path: str, tmp_path, **kw):
    cfg = Config(model_key="TFLITE_FILE", model_path=path, output_file=str(tmp_path / "model.h"), **kw)
    return compiler.compile(cfg)


def interpreter_outputs(path: str, x: np.ndarray) -> list[np.ndarray]:
    """The interpreter's outputs for each sample of x, every sample from the initial state (a
    fused LSTM's state tensors are variables the interpreter keeps between invokes)."""
    it = interpreter(path, False)
    (inp,), outs = it.get_input_details(), it.get_output_details()
    got = []
    for sample in x:
        it.reset_all_variables()
        it.set_tensor(inp["index"], sample.reshape(inp["shape"]).astype(np.float32))
        it.invoke()
        got.append([it.get_tensor(o["index"]).copy() for o in outs])
    return [np.stack([g[k] for g in got]) for k in range(len(outs))]


def float_ir_db(path: str, tmp_path, seed: int = 0, model=None) -> float:
    """The lowest SNR (dB) of the float IR against the interpreter over SAMPLES random inputs."""
    model = model or compile_tflite(path, tmp_path)
    g = model.graph
    (name,) = g.inputs
    x = np.random.default_rng(seed).standard_normal((SAMPLES, *g.tensors[name].shape)).astype(np.float32)
    want = interpreter_outputs(path, x)
    got = [sim.run_model(model, {name: s}) for s in x]
    assert len(want) == len(g.outputs)
    # the interpreter's outputs are in the order of the IR's (both the model's output list)
    return min(snr(w, np.stack([r[o] for r in got])) for w, o in zip(want, g.outputs))


@pytest.mark.parametrize("kind,steps", KERAS)
def test_keras_recurrent_while_loops(files, tmp_path, kind, steps):
    """Keras 3 recurrent layers (WHILE loops, or unrolled ops) over T = 1, 5, 16 steps."""
    model = compile_tflite(files[f"{kind}{steps}"], tmp_path)
    assert not any(n.source == "WHILE" and n.op not in ("fc", "binary", "act", "slice", "split", "reshape",
                                                         "concat", "matmul", "transpose")
                   for n in model.graph.nodes)
    db = float_ir_db(files[f"{kind}{steps}"], tmp_path, model=model)
    print(f"{kind} T={steps}: {db:.1f} dB")
    assert db >= 80, (kind, steps, db)


def test_while_body_weights_are_shared_fc_weights(files, tmp_path):
    """The loop body's FULLY_CONNECTED weights keep their TFLite names, are read by every
    step's fc, and are compressed (COMPRESS) like any fc weight."""
    model = compile_tflite(files["lstm16"], tmp_path, compress=True)
    g = model.graph
    readers: dict[str, int] = {}
    for n in g.nodes:
        if n.op == "fc":
            readers[n.inputs[1]] = readers.get(n.inputs[1], 0) + 1
    # kernel (16 steps), recurrent kernel (15: the first step's state is zero), the Dense head
    assert sorted(readers.values()) == [1, 15, 16], readers
    assert all("lstm" in name for name, k in readers.items() if k > 1)
    assert all(model.weights[name].family == "fc" and model.weights[name].compressed for name in readers)


@pytest.mark.parametrize("steps", [1, 5, 16])
@pytest.mark.parametrize("time_major", [False, True])
def test_unidirectional_sequence_lstm(tmp_path, steps, time_major):
    path = tmp_path / "lstm.tflite"
    path.write_bytes(sm.sequence_lstm(steps, time_major))
    db = float_ir_db(str(path), tmp_path)
    print(f"UNIDIRECTIONAL_SEQUENCE_LSTM T={steps} time_major={time_major}: {db:.1f} dB")
    assert db >= 80


def test_eval_starts_every_sample_from_the_initial_lstm_state(tmp_path):
    """The interpreter keeps a fused LSTM's state tensors from one invoke to the next; the
    --eval oracle resets them per sample, as the compiled model starts from zeros."""
    path = tmp_path / "lstm.tflite"
    path.write_bytes(sm.sequence_lstm(5, False))
    (tmp_path / "c.yaml").write_text(f"TFLITE_FILE: {path}\nOUTPUT_FILE: {tmp_path / 'model.h'}\n")
    run = subprocess.run([sys.executable, "-m", "gxnpuc", "-e", "random", "c.yaml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "model.eval.json").read_text())["outputs"]
    assert min(r["snr_db"] for r in rows if r["mode"] == "float") >= 80


@pytest.mark.parametrize("time_major", [False, True])
def test_sequence_lstm_peephole_projection_and_bidirectional(tmp_path, time_major):
    for name, data in (("pp", sm.sequence_lstm(5, time_major, peephole=True, projection=3)),
                       ("bi", sm.sequence_lstm(5, time_major, bidirectional=True)),
                       ("bi_pp", sm.sequence_lstm(5, time_major, peephole=True, projection=3, bidirectional=True)),
                       ("bi_apart", sm.sequence_lstm(5, time_major, bidirectional=True, merge=False))):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        db = float_ir_db(str(path), tmp_path)
        print(f"{name} time_major={time_major}: {db:.1f} dB")
        assert db >= 80, (name, db)


@pytest.mark.parametrize("steps", [1, 5, 16])
def test_unidirectional_sequence_rnn(tmp_path, steps):
    for time_major in (False, True):
        path = tmp_path / f"rnn{time_major}.tflite"
        path.write_bytes(sm.sequence_rnn(steps, time_major))
        db = float_ir_db(str(path), tmp_path)
        print(f"UNIDIRECTIONAL_SEQUENCE_RNN T={steps} time_major={time_major}: {db:.1f} dB")
        assert db >= 80


def test_fused_lstm_weights_listed_by_their_tflite_names(tmp_path):
    path = tmp_path / "lstm.tflite"
    path.write_bytes(sm.sequence_lstm(5, False, projection=3))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"TFLITE_FILE: {path}\nOUTPUT_FILE: {tmp_path / 'model.h'}\nCOMPRESS: true\n")
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", "-w", str(cfg)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed = {line.rsplit(": ", 1)[0].strip() for line in proc.stdout.splitlines() if line.endswith("]")}
    want = {f"lstm/w_{g}" for g in "ifco"} | {f"lstm/r_{g}" for g in "ifco"} | {"lstm/proj"}
    assert want <= listed, (want - listed, listed)


def test_open_sequence_length_names_the_input_ops_dimension(tmp_path):
    """A time-major LSTM whose time axis (the first) the model leaves open would otherwise run
    one step (the open first axis is taken as batch 1)."""
    path = tmp_path / "open.tflite"
    path.write_bytes(sm.sequence_lstm(5, True, open_time=True))
    with pytest.raises(ConfigError, match=r"dimension 0 is the sequence length.*INPUT_OPS: \{seq: \[T, 1, 3\]\}"):
        compile_tflite(str(path), tmp_path)
    model = compile_tflite(str(path), tmp_path, input_ops={"seq": [7, 1, 3]})
    assert model.graph.tensors["y"].shape == (7, 1, 5)


@pytest.mark.parametrize("bias,pad", [(True, "same"), (False, "valid"), (True, "valid")])
def test_transpose_conv(files, tmp_path, bias, pad):
    """TRANSPOSE_CONV against the interpreter; the float64 oracle of the MediaPipe op agrees
    with the interpreter too."""
    path = files[f"deconv_{bias}_{pad}"]
    model = compile_tflite(path, tmp_path)
    db = float_ir_db(path, tmp_path, model=model)
    print(f"TRANSPOSE_CONV bias={bias} {pad}: {db:.1f} dB")
    assert db >= 80
    w, b = files[f"weights_{bias}_{pad}"]
    x = np.random.default_rng(4).standard_normal((1, 5, 4, 3)).astype(np.float32)
    (want,) = interpreter_outputs(path, x[None])
    ref = sm.transpose_conv_f64(x, w, b, 2, pad.upper(), want.shape[2:4])
    assert snr(ref, want[0]) >= 100


@pytest.mark.parametrize("pad", ["same", "valid"])
def test_mediapipe_convolution2d_transpose_bias(files, tmp_path, pad):
    """Convolution2DTransposeBias (custom options padding / strides) against float64 numpy."""
    model = compile_tflite(files[f"mediapipe_{pad}"], tmp_path)
    w, b = files[f"weights_True_{pad}"]
    g = model.graph
    (name,), (out,) = g.inputs, g.outputs
    x = np.random.default_rng(5).standard_normal((SAMPLES, *g.tensors[name].shape)).astype(np.float32)
    for s in x:
        got = sim.run_model(model, {name: s})[out]
        ref = sm.transpose_conv_f64(s, w, b, 2, pad.upper(), got.shape[1:3])
        db = snr(ref, got)
        assert db >= 80, db
    print(f"Convolution2DTransposeBias {pad}: {db:.1f} dB")


def test_divide_no_nan_is_one_npu_division(files, tmp_path):
    model = compile_tflite(files["div_no_nan"], tmp_path)
    ops = [n.op for n in model.graph.nodes]
    assert "compare" not in ops and "where" not in ops
    assert any(n.op == "binary" and n.attrs.get("fn") == "div_no_nan" for n in model.graph.nodes)
    db = float_ir_db(files["div_no_nan"], tmp_path)
    print(f"divide_no_nan: {db:.1f} dB")
    assert db >= 80


def test_runtime_masks_are_reported_together(files, tmp_path):
    """Comparisons, logic and rounding of run-time values lower (no `no lowering`) and are then
    reported together as fold-only: the NPU has no comparison unit."""
    with pytest.raises(UnsupportedOpError) as err:
        compile_tflite(files["mask"], tmp_path)
    kinds = {op for _, op, _ in err.value.items}
    # the converter folds logical_not(not_equal) into EQUAL and writes tf.where as SELECT
    assert {"GREATER", "LESS_EQUAL", "EQUAL", "LOGICAL_AND", "LOGICAL_OR", "SELECT", "FLOOR"} <= kinds, kinds
    assert all("only supported when its inputs are constant" in why for *_, why in err.value.items)


def test_new_lowerings_emit_what_they_declare(files, tmp_path, emitted):
    """Every IR op the WHILE / fused recurrent / transposed-convolution / comparison lowerings
    emit on these models is in their `emits=` (gxnpuc -L)."""
    from gxnpuc.frontend import tflite as front
    from gxnpuc.ops.base import LOWERING_EMITS

    built = {"lstm.tflite": sm.sequence_lstm(3, True, peephole=True, projection=2),
             "bi.tflite": sm.sequence_lstm(3, False, bidirectional=True), "rnn.tflite": sm.sequence_rnn(3, False)}
    for name, data in built.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / n) for n in built] + [files[k] for k in ("lstm5", "bilstm5", "gru5", "deconv_True_same",
                                                                       "mediapipe_valid", "div_no_nan", "mask")]
    for path in paths:
        front.to_ir(path)
    seen = set(emitted)
    kinds = {t for t, _ in seen}
    # a WHILE emits nothing itself: its body's nodes are lowered (and counted) as what they are
    assert {"GATHER", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
            "TRANSPOSE_CONV", "Convolution2DTransposeBias", "EQUAL", "GREATER", "LOGICAL_AND", "FLOOR"} <= kinds, kinds
    wrong = [(t, op) for t, op in seen if op not in LOWERING_EMITS[("tflite", t)]]
    assert not wrong, wrong


def test_mutated_recurrent_files_end_in_one_error_line(files, tmp_path):
    """Bit flips of a WHILE-loop model, a fused bidirectional LSTM and the MediaPipe op: the
    front end lowers them or raises a GxnpucError (the CLI's one line), never another exception."""
    from gxnpuc.errors import GxnpucError
    from gxnpuc.frontend import tflite as front

    rng = np.random.default_rng(16)
    sources = [open(files["lstm5"], "rb").read(), sm.sequence_lstm(4, False, peephole=True, bidirectional=True),
               open(files["mediapipe_same"], "rb").read()]
    path = tmp_path / "m.tflite"
    errors = 0
    for data in sources:
        for _ in range(60):
            b = bytearray(data)
            for _ in range(3):
                b[int(rng.integers(8, len(b)))] ^= 1 << int(rng.integers(0, 8))
            path.write_bytes(bytes(b))
            try:
                front.to_ir(str(path))
            except GxnpucError:
                errors += 1
    assert errors >= 30
