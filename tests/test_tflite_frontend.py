"""TensorFlow Lite front end on converter-made models (tests/tflite_models.py): every covered
op lowers; the float IR matches the LiteRT interpreter (>= 80 dB, or for a fully int8 model
to the interpreter's own noise floor measured against the float Keras model); `-w` lists the
TFLite tensor names; the CLI compiles and evaluates; resource variables become state pairs.
Models are converted once per session (module fixture).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite")
pytest.importorskip("ai_edge_litert")

import tflite_models as tm  # noqa: E402

from gxnpuc import sim  # noqa: E402
from gxnpuc.config import Config  # noqa: E402
from gxnpuc.frontend import tflite as front  # noqa: E402
from gxnpuc.evaluate.oracle_tflite import runner  # noqa: E402

SAMPLES = 6


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> path of a converted .tflite (plus the Keras cnn for the int8 noise floor)."""
    root = tmp_path_factory.mktemp("tflite")
    out = {}

    def save(name, data):
        path = str(root / f"{name}.tflite")
        with open(path, "wb") as fh:
            fh.write(data)
        out[name] = path
    for q in tm.QUANT:
        data, model = tm.cnn_tflite(q)
        save(f"cnn_{q}", data)
    out["keras_cnn"] = model
    for name in ("movement", "more_ops", "unsupported", "streaming", "sparse"):
        save(name, getattr(tm, f"{name}_tflite")())
    for q in ("float", "int8"):
        save(f"dynamic_{q}", tm.dynamic_batch_tflite(q))
    save("open_time", tm.open_time_tflite())
    return out


def snr(ref, x) -> float:
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    err = float(np.sum((ref - x) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref ** 2)) / err)


def compile_tflite(path: str, out_dir, **kw):
    from gxnpuc import compiler

    out_dir.mkdir(exist_ok=True)
    cfg = Config(model_key="TFLITE_FILE", model_path=path, output_file=str(out_dir / "model.h"), **kw)
    return compiler.compile(cfg), cfg


def feeds_for(graph, seed: int, quant_grid: dict | None = None) -> dict[str, np.ndarray]:
    """Random inputs [SAMPLES, *shape]; on the model's int8 grid for quantised inputs."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        x = rng.standard_normal((SAMPLES, *graph.tensors[name].shape)).astype(np.float32)
        if quant_grid and name in quant_grid:
            s, z, _ = quant_grid[name]
            x = ((np.clip(np.round(x / s) + z, -128, 127) - z) * s).astype(np.float32)
        if name in graph.meta.get("state_pairs", {}).values():
            x[:] = 0  # the interpreter starts every sample from the variable's initial value
        out[name] = x
    return out


def float_vs_interpreter(path: str, out_dir, seed: int = 0) -> tuple[dict, dict, object]:
    model, _ = compile_tflite(path, out_dir)
    g = model.graph
    feeds = feeds_for(g, seed, front.io_quantisation(path))
    ref = runner(path, g)
    want = [ref({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(SAMPLES)]
    got = [sim.run_model(model, {k: v[i].reshape(g.tensors[k].shape) for k, v in feeds.items()})
           for i in range(SAMPLES)]
    return ({o: np.stack([w[o].reshape(g.tensors[o].shape) for w in want]) for o in g.outputs},
            {o: np.stack([r[o] for r in got]) for o in g.outputs}, feeds)


@pytest.mark.parametrize("quant", ["float", "fp16", "dynamic"])
def test_cnn_float_ir_matches_interpreter(files, tmp_path, quant):
    """CONV_2D, DEPTHWISE_CONV_2D, PRELU, HARD_SWISH, pools, PAD, CONCATENATION, MEAN,
    FULLY_CONNECTED, SOFTMAX with float, fp16 and dynamic-range int8 weights."""
    want, got, _ = float_vs_interpreter(files[f"cnn_{quant}"], tmp_path)
    for o in want:
        assert snr(want[o], got[o]) >= 80, (quant, o, snr(want[o], got[o]))


def test_int8_model_to_the_interpreters_noise_floor(files, tmp_path):
    """A fully int8 model computes its activations in int8; the float IR (dequantised weights)
    agrees with it as closely as the interpreter agrees with the float Keras model."""
    want, got, feeds = float_vs_interpreter(files["cnn_int8"], tmp_path, seed=3)
    x = next(iter(feeds.values()))
    keras_out = np.asarray(files["keras_cnn"](x.reshape(SAMPLES, 12, 12, 3), training=False))
    (o,) = want
    floor = snr(keras_out, want[o].reshape(keras_out.shape))  # the interpreter against float
    agree = snr(want[o], got[o])
    assert 25 < floor < 60, floor
    assert agree >= floor - 6, (agree, floor)
    assert snr(keras_out, got[o].reshape(keras_out.shape)) > floor  # weights only: closer to float


def test_movement_ops_match_interpreter(files, tmp_path):
    """SPLIT, SPLIT_V, STRIDED_SLICE, PACK, TRANSPOSE, RESHAPE, EXPAND_DIMS, SQUEEZE,
    MIRROR_PAD, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, element-wise ops, REDUCE_MAX, SUM,
    LOG_SOFTMAX."""
    want, got, _ = float_vs_interpreter(files["movement"], tmp_path)
    assert len(want) == 7
    for o in want:
        assert snr(want[o], got[o]) >= 80, (o, snr(want[o], got[o]))


def test_more_ops_match_interpreter(files, tmp_path):
    """Conv1D as EXPAND_DIMS/CONV_2D, BATCH_MATMUL, GATHER, SLICE, TILE, UNPACK, PADV2, SOFTMAX,
    MEAN, REDUCE_MIN, ADD_N, SELECT, GELU, SQRT, RSQRT, EXP, LOG, NEG, SQUARE, POW, RELU_N1_TO_1."""
    want, got, _ = float_vs_interpreter(files["more_ops"], tmp_path)
    assert len(want) == 9
    for o in want:
        assert snr(want[o], got[o]) >= 80, (o, snr(want[o], got[o]))


def test_open_batch_and_float_interface_int8(files, tmp_path):
    """An open batch (Flatten's SHAPE chain, Conv1D's EXPAND_DIMS) in float; the same model in
    int8 behind a float interface (QUANTIZE / DEQUANTIZE) agrees with its interpreter to the
    int8 noise floor (the int8 interpreter against the float one)."""
    want, got, feeds = float_vs_interpreter(files["dynamic_float"], tmp_path / "f")
    (o,) = want
    assert snr(want[o], got[o]) >= 80
    want8, got8, feeds8 = float_vs_interpreter(files["dynamic_int8"], tmp_path / "q")
    assert all(np.array_equal(feeds[k], feeds8[k]) for k in feeds)
    floor = snr(want[o], want8[o])
    assert 20 < floor < 60, floor
    assert snr(want8[o], got8[o]) >= floor - 6


def test_open_time_dimension_fixed_by_input_ops(files, tmp_path):
    """[batch, None, 4]: INPUT_OPS gives the length (with or without TFLite's `:0`); the
    interpreter is resized to it; SQUEEZE / EXPAND_DIMS of Conv1D with an open length."""
    from gxnpuc.errors import ConfigError

    with pytest.raises(ConfigError, match="dimension 1 is unknown"):
        front.to_ir(files["open_time"])
    g = front.to_ir(files["open_time"], {"serving_default_seq": [1, 10, 4]})
    assert g.tensors["serving_default_seq:0"].shape == (1, 10, 4)
    model, _ = compile_tflite(files["open_time"], tmp_path, input_ops={"serving_default_seq:0": [1, 10, 4]})
    ref = runner(files["open_time"], model.graph)
    x = np.random.default_rng(11).standard_normal((1, 10, 4)).astype(np.float32)
    (o,) = model.graph.outputs
    want = ref({"serving_default_seq:0": x[None]})[o]
    assert snr(want, sim.run_model(model, {"serving_default_seq:0": x})[o]) >= 80


def test_sparse_weight_densified(files, tmp_path):
    want, got, _ = float_vs_interpreter(files["sparse"], tmp_path)
    for o in want:
        assert snr(want[o], got[o]) >= 80
    model, _ = compile_tflite(files["sparse"], tmp_path)
    assert any("sparse weights made dense" in n for n in model.graph.meta["notes"])


def test_weights_keep_tflite_names(files, tmp_path):
    """-w prints the names of the tensors that store the weights (fp16: the stored tensor, not
    the DEQUANTIZE output); conv weights in the runtime's layouts (HWIO, HWIM), FC as [N, K]."""
    from gxnpuc.frontend.tflite_read import read

    sg = read(files["cnn_fp16"], "cnn").subgraphs[0]
    stored = {t.name: list(t.shape) for t in sg.tensors if t.data is not None and t.dtype == "float16"}
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", "-w", _config(tmp_path, files["cnn_fp16"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed = dict(line.rsplit(": ", 1) for line in proc.stdout.splitlines() if line.endswith("]"))
    assert listed and all(name in stored for name in listed), (listed, stored)
    assert any(v == "[3, 3, 3, 16]" for v in listed.values())  # [16, 3, 3, 3] OHWI as HWIO
    assert any(v == "[3, 3, 16, 2]" for v in listed.values())  # depthwise [1, 3, 3, 32] as HWIM
    assert any(v == "[64, 64]" for v in listed.values())  # FULLY_CONNECTED [N, K]


def _config(tmp_path, model: str, extra: str = "") -> str:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"TFLITE_FILE: {model}\nOUTPUT_FILE: {tmp_path / 'model.h'}\nCOMPRESS: true\n"
                   f"CONV2D_COMPRESS: true\n{extra}")
    return str(cfg)


def test_cli_compiles_and_evaluates_int8(files, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", "-e", "random", _config(tmp_path, files["cnn_int8"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert os.path.getsize(tmp_path / "model.h") > 0
    assert "is int8 in the model" in proc.stdout and "tflite (ai-edge-litert)" in proc.stdout


def test_streaming_variable_becomes_state_pair(files, tmp_path):
    """VAR_HANDLE/READ_VARIABLE/ASSIGN_VARIABLE/CALL_ONCE: input `ctx`, output `ctx_next`,
    paired on the graph; stepping the IR by hand matches the interpreter stepping itself."""
    from gxnpuc.evaluate.oracle_tflite import interpreter

    model, _ = compile_tflite(files["streaming"], tmp_path)
    g = model.graph
    assert g.meta["state_pairs"] == {"ctx_next": "ctx"}
    assert "ctx" in g.inputs and "ctx_next" in g.outputs
    assert not any(n.source in ("READ_VARIABLE", "ASSIGN_VARIABLE") for n in g.nodes)
    it = interpreter(files["streaming"], False)
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    frame = next(n for n in g.inputs if n != "ctx")
    (y,) = [o for o in g.outputs if o != "ctx_next"]
    state = np.zeros(g.tensors["ctx"].shape, np.float32)
    rng = np.random.default_rng(7)
    for _ in range(5):  # the interpreter keeps its own state between invokes
        x = rng.standard_normal(inp["shape"]).astype(np.float32)
        it.set_tensor(inp["index"], x)
        it.invoke()
        r = sim.run_model(model, {frame: x.reshape(g.tensors[frame].shape), "ctx": state})
        assert snr(it.get_tensor(out["index"]), r[y].reshape(out["shape"])) >= 80
        state = r["ctx_next"]


def test_oracle_carries_state_over_a_sequence(files, tmp_path):
    """runner(carry_state=True): the interpreter keeps its variable from step to step, as the
    IR does through ctx -> ctx_next; reset() starts a new sequence."""
    model, _ = compile_tflite(files["streaming"], tmp_path)
    g = model.graph
    assert g.meta["state_initial"] == {"ctx": np.zeros(g.tensors["ctx"].shape).tolist()}
    frame = next(n for n in g.inputs if n != "ctx")
    (y,) = [o for o in g.outputs if o != "ctx_next"]
    step = runner(files["streaming"], g, carry_state=True)
    rng = np.random.default_rng(14)
    xs = rng.standard_normal((6, *g.tensors[frame].shape)).astype(np.float32)
    for _ in range(2):  # the second pass after reset() repeats the first
        step.reset()
        state = np.zeros(g.tensors["ctx"].shape, np.float32)
        for x in xs:
            want = step({frame: x[None], "ctx": state[None]})
            got = sim.run_model(model, {frame: x, "ctx": state})
            assert snr(want[y], got[y].reshape(np.shape(want[y]))) >= 80
            assert snr(want["ctx_next"], got["ctx_next"].reshape(np.shape(want["ctx_next"]))) >= 80
            state = got["ctx_next"]


def test_unsupported_ops_listed_at_once(files, tmp_path):
    from gxnpuc.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError) as err:
        compile_tflite(files["unsupported"], tmp_path)
    kinds = {op for _, op, _ in err.value.items}
    assert kinds == {"RESIZE_BILINEAR", "SIN", "ARG_MAX"}


def test_list_ops_shows_tflite():
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", "-L", "-f", "TFLITE"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TensorFlow Lite" in proc.stdout and "CONV_2D" in proc.stdout and "Conv2D " not in proc.stdout


def test_eval_refuses_state_other_than_the_initial_value(files, tmp_path):
    from gxnpuc.errors import GxnpucError

    model, _ = compile_tflite(files["streaming"], tmp_path)
    g = model.graph
    fn = runner(files["streaming"], g)
    frame = next(n for n in g.inputs if n != "ctx")
    x = np.ones((1, *g.tensors[frame].shape), np.float32)
    zeros = np.zeros((1, *g.tensors["ctx"].shape), np.float32)
    first, again = fn({frame: x, "ctx": zeros}), fn({frame: x, "ctx": zeros})
    assert set(first) == set(g.outputs)
    assert all(np.array_equal(first[o], again[o]) for o in first)  # each sample from the start
    with pytest.raises(GxnpucError, match="kept inside the TFLite interpreter"):
        fn({frame: x, "ctx": np.ones((1, *g.tensors["ctx"].shape), np.float32)})


def test_tflite_lowerings_emit_what_they_declare(files, emitted):
    """Every IR op a TFLite lowering emits on these models is in its `emits=` (gxnpuc -L)."""
    from gxnpuc.ops.base import LOWERING_EMITS

    for name in ("cnn_float", "cnn_int8", "cnn_fp16", "movement", "more_ops", "streaming", "sparse",
                 "dynamic_int8"):
        front.to_ir(files[name])
    front.to_ir(files["open_time"], {"serving_default_seq:0": [1, 7, 4]})
    seen = set(emitted)
    assert len({t for t, _ in seen}) > 25
    wrong = [(t, op) for t, op in seen if op not in LOWERING_EMITS[("tflite", t)]]
    assert not wrong, wrong


def test_mutated_flatbuffers_end_in_one_error_line(files, tmp_path):
    """Truncations and bit flips of a real .tflite: the model compiles or the front end raises
    a GxnpucError (the CLI's one line), never another exception."""
    from gxnpuc.errors import GxnpucError

    data = open(files["cnn_fp16"], "rb").read()
    rng = np.random.default_rng(12)
    cases = [data[:n] for n in (8, 64, len(data) // 3, len(data) - 16)]
    for _ in range(60):
        b = bytearray(data)
        for _ in range(3):
            b[int(rng.integers(8, min(len(b), 4096)))] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(b))
    path = tmp_path / "m.tflite"
    errors = 0
    for case in cases:
        path.write_bytes(case)
        try:
            front.to_ir(str(path))
        except GxnpucError:
            errors += 1
    assert errors >= 4  # the truncations at least


def test_output_ops_cut_at_an_inner_tensor(files, tmp_path):
    """OUTPUT_OPS naming an inner TFLite tensor: the graph is cut there, and the oracle reads
    that tensor from the interpreter (all tensors preserved)."""
    from gxnpuc.frontend.tflite_read import read

    sg = read(files["cnn_float"], "cnn").subgraphs[0]
    inner = next(sg.tensors[op.outputs[0]].name for op in sg.ops if op.op_type == "MEAN")
    model, _ = compile_tflite(files["cnn_float"], tmp_path, output_ops=(inner,))
    assert model.graph.outputs == [inner]
    assert not any(n.op in ("fc", "softmax") for n in model.graph.nodes)
    feeds = feeds_for(model.graph, 13)
    ref = runner(files["cnn_float"], model.graph)
    x = {k: v[:1] for k, v in feeds.items()}
    want = ref(x)[inner]
    got = sim.run_model(model, {k: v[0] for k, v in feeds.items()})[inner]
    assert snr(want, got.reshape(np.shape(want))) >= 80


@pytest.mark.parametrize("name", ["cnn_int8", "movement", "more_ops"])
def test_c_runtime_runs_tflite_models(files, tmp_path, name):
    """The C runtime runs compiled TFLite models (conv weights in HWIO / HWIM, bilinear resize as
    blends, ...) bit for bit as the simulator's npu mode, intermediate tensors included."""
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("no gcc on PATH")
    from gxnpuc import runtime_host as rh
    from test_runtime import AWAITING_NUMERICS_ULPS

    model, _ = compile_tflite(files[name], tmp_path, compress=True, conv2d_compress=True)
    g = model.graph
    rng = np.random.default_rng(15)
    feeds = {k: rng.standard_normal((2, *g.tensors[k].shape)).astype(np.float32) for k in g.inputs}
    c, _ = rh.compare(model, feeds)
    assert max(u for *_, u in c.per_node) <= AWAITING_NUMERICS_ULPS, c.per_node
    if AWAITING_NUMERICS_ULPS == 0:
        assert c.first_diff is None and all(ok for ok, _ in c.outputs.values())
