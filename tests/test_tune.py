"""`gxnpuc -t` (issue 7, SPEC 7): the tuner meets targets plain min/max compression misses, with
fewer bytes than leaving every conv in fp16, and its tuned config compiles to what it measured.

Oracles are independent of the tuner: onnxruntime runs the model, the SNR is computed here
with numpy, and the tuned config is compiled by plain `gxnpuc` (compiler.compile / cli).
Models are built with onnx.helper and fixed seeds; the bundled KWS example is built by its
own script.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
from contextlib import redirect_stdout

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from gxnpuc import cli, compiler, config, report, sim, targets, tune
from gxnpuc import evaluate as ev
from gxnpuc.config import write
from gxnpuc.tune import costmodel
from gxnpuc.tune import report as tune_report
from gxnpuc.tune import sweep as tune_sweep
from gxnpuc.errors import GxnpucError
from npu_util import ROOT, load_kws
from onnx_util import make_model

SAMPLES = 16
TARGET_DB = 40.0
USER_CONFIG = """\
# my model: planted outliers in two convs
ONNX_FILE: m.onnx
OUTPUT_FILE: m.h
COMPRESS: true
CONV2D_COMPRESS: true   # keep: users comment their lines
# an earlier manual attempt, replaced by the tuner:
EXCLUDE_COMPRESS_OPS:
  - c3.w
MODEL_INFO: "planted"
"""


# -- models and oracles -------------------------------------------------------------------------
def _w(rng, *shape) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)


def _plant(rng, w: np.ndarray, count: int = 3, times: float = 30.0) -> np.ndarray:
    """A few values far out in the tail: they set the min/max range and carry signal."""
    flat = w.reshape(-1).copy()
    idx = rng.choice(flat.size, count, replace=False)
    flat[idx] = np.sign(rng.standard_normal(count)) * times * flat.std()
    return flat.reshape(w.shape)


def planted_cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv1d x3 (long tails planted in c1.w and c2.w) -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    init = {"c1.w": _plant(rng, _w(rng, 24, 8, 3)), "c1.b": 0.1 * _w(rng, 24, 1)[:, 0],
            "c2.w": _plant(rng, _w(rng, 24, 24, 3)), "c2.b": 0.1 * _w(rng, 24, 1)[:, 0],
            "c3.w": _w(rng, 24, 24, 1), "c3.b": 0.1 * _w(rng, 24, 1)[:, 0],
            "fc.w": _w(rng, 10, 24), "fc.b": 0.1 * _w(rng, 10, 1)[:, 0]}
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["y1"], pads=[1, 1], name="/c1/Conv"),
             helper.make_node("Relu", ["y1"], ["r1"]),
             helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["y2"], pads=[1, 1], name="/c2/Conv"),
             helper.make_node("Relu", ["y2"], ["r2"]),
             helper.make_node("Conv", ["r2", "c3.w", "c3.b"], ["y3"], name="/c3/Conv"),
             helper.make_node("Relu", ["y3"], ["r3"]),
             helper.make_node("GlobalAveragePool", ["r3"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1, name="/fc/Gemm")]
    return make_model(nodes, [("x", [1, 8, 32])], [("logits", [1, 10])], init)


def seeded_feeds(graph, n: int = SAMPLES, seed: int = 0) -> dict:
    """What `random` inputs are (SPEC 6): standard normal, seeded."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((n, *graph.tensors[k].shape)).astype(np.float32) for k in graph.inputs}


def ort_snr(model_path: str, compiled, feeds: dict) -> float:
    """Output SNR of the npu simulation against onnxruntime, computed here (one output)."""
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = sess.get_outputs()[0].name
    n = len(next(iter(feeds.values())))
    ref = np.stack([sess.run([name], {k: v[i] for k, v in feeds.items()})[0] for i in range(n)])
    out = sim.run_model_batch(compiled, feeds, "npu")[compiled.graph.outputs[0]]
    ref = ref.astype(np.float64).ravel()
    err = ref - np.asarray(out, np.float64).ravel()
    return 10 * math.log10(float(ref @ ref) / float(err @ err))


def stored_bytes(compiled) -> int:
    return sum(int(sw.nbytes_stored) for sw in compiled.weights.values())


def write_planted(folder, text: str = USER_CONFIG) -> str:
    onnx.save(planted_cnn(), os.path.join(folder, "m.onnx"))
    path = os.path.join(folder, "c.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("planted"))
    cfg = dataclasses.replace(config.load(write_planted(folder)), tune_target_snr_db=TARGET_DB)
    result = tune.tune(cfg, "random", SAMPLES)
    tune_report.write_atomic(result.tuned_path, result.text)
    tuned_cfg = config.load(result.tuned_path)
    return dict(folder=folder, cfg=cfg, result=result, tuned_cfg=tuned_cfg,
                tuned=compiler.compile(tuned_cfg), plain=compiler.compile(cfg))


# -- done when ------------------------------------------------------------------------------------
def test_meets_target_min_max_misses_with_fewer_bytes_than_fp16_convs(planted):
    cfg, res = planted["cfg"], planted["result"]
    feeds = seeded_feeds(planted["plain"].graph)
    plain_snr = ort_snr(cfg.model_path, planted["plain"], feeds)
    tuned_snr = ort_snr(cfg.model_path, planted["tuned"], feeds)
    convs = tuple(n for n, sw in compiler.compile(tune.probe_config(cfg)).weights.items()
                  if sw.compressed and sw.family == "conv")
    no_conv = compiler.compile(dataclasses.replace(cfg, exclude_compress_ops=convs))
    assert len(convs) == 3
    assert plain_snr < TARGET_DB <= tuned_snr
    assert res.met and res.snr == pytest.approx(tuned_snr, abs=1e-6)
    assert stored_bytes(planted["tuned"]) == res.chosen.nbytes < stored_bytes(no_conv)


def test_eval_reports_exactly_the_tuners_snr(planted):
    tuned_cfg, model = planted["tuned_cfg"], planted["tuned"]
    feeds, _, _ = ev.load_inputs("random", model.graph, SAMPLES, 0)
    rep = ev.evaluate(tuned_cfg, model, feeds, None, "random")
    npu = min(r.snr_db for r in rep.outputs if r.mode == "npu")
    assert npu == planted["result"].snr


def test_tuned_config_keeps_user_text_and_comments_each_choice(planted):
    text, res = planted["result"].text, planted["result"]
    assert text.startswith(USER_CONFIG.splitlines()[0])
    assert "CONV2D_COMPRESS: true   # keep: users comment their lines" in text
    assert f"{tune_report.OFF}EXCLUDE_COMPRESS_OPS:" in text and f"{tune_report.OFF}  - c3.w" in text
    block = text[text.index(tune_report.MARK):].splitlines()
    choices = [line for line in block if line.startswith("  ")]
    excluded = [n for n, o in res.chosen.choice.items() if not o.compressed]
    clipped = [n for n, o in res.chosen.choice.items() if o.compressed and o.clip]
    assert len(choices) == len(excluded) + len(clipped) > 0
    assert all("#" in line and "dB" in line for line in choices)
    loaded = planted["tuned_cfg"]
    assert set(loaded.exclude_compress_ops) == set(excluded)
    assert {k: tuple(v) for k, v in loaded.weight_min_max.items()} == \
        {n: res.chosen.choice[n].clip for n in clipped}


def test_chosen_weights_compile_to_the_measured_codes(planted):
    res = planted["result"]
    for name, cand in res.candidates[tune.PER_TENSOR].items():
        sw, opt = planted["tuned"].weights[name], res.chosen.choice[name]
        assert bool(sw.compressed) == opt.compressed
        assert np.array_equal(sw.decode(), opt.stored.decode())
        assert cand.tried >= 2  # the config's own range and at least one clip were simulated


# -- targets --------------------------------------------------------------------------------------
def test_byte_budget(planted):
    cfg, res = planted["cfg"], planted["result"]
    vendor = res.steps[0]
    budget = vendor.nbytes + 700
    out = tune.tune(dataclasses.replace(cfg, tune_target_snr_db=None, tune_max_weight_bytes=budget),
                    "random", SAMPLES)
    assert out.met and out.chosen.nbytes <= budget
    assert out.verified_bytes == out.chosen.nbytes
    assert out.snr > vendor.snr
    within = [s for s in out.steps if s.selectable and s.nbytes <= budget]
    assert out.snr == max(s.snr for s in within)


def test_per_channel_when_allowed_is_the_cheaper_trade(planted):
    cfg, per_tensor = planted["cfg"], planted["result"]
    out = tune.tune(dataclasses.replace(cfg, tune_per_channel=True), "random", SAMPLES)
    tune_report.write_atomic(out.tuned_path, out.text)
    compiled = compiler.compile(config.load(out.tuned_path))
    assert out.chosen.path == tune.PER_CHANNEL and "COMPRESS_PER_CHANNEL: true" in out.text
    assert "# not vendor-clean: this plan needs gxnpuc-only COMPRESS_PER_CHANNEL: true" in out.text
    assert any(sw.compressed and sw.channels > 1 for sw in compiled.weights.values())
    assert ort_snr(cfg.model_path, compiled, seeded_feeds(compiled.graph)) >= TARGET_DB
    assert stored_bytes(compiled) < per_tensor.chosen.nbytes


@pytest.mark.parametrize("search, most", [("weight", 2), ("percentile", 2), ("none", 1)])
def test_cheaper_clip_searches_simulate_fewer_ranges(planted, search, most):
    out = tune.tune(dataclasses.replace(planted["cfg"], tune_clip_search=search), "random", SAMPLES)
    assert out.met and out.verified  # still meets the target, checked on the compiled config
    assert all(c.tried <= most for c in out.candidates[tune.PER_TENSOR].values())
    if search == "none":
        assert all(o.clip is None for o in out.chosen.choice.values())


# -- command line ---------------------------------------------------------------------------------
def test_cli_writes_config_and_plot_then_retunes_in_place(tmp_path):
    path = write_planted(str(tmp_path))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["-t", "--target-snr", str(TARGET_DB), path]) == 0
    out = buf.getvalue()
    assert "trade-off" in out and "weight B" in out and "us flash" in out and "chosen:" in out
    tuned, png = str(tmp_path / "c.tuned.yaml"), str(tmp_path / "c.tuned.png")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with redirect_stdout(io.StringIO()):
        assert cli.main(["-t", tuned]) == 0  # no target: EVAL_SNR_THRESHOLD_DB
        assert cli.main([tuned]) == 0  # plain gxnpuc compiles it
    with open(tuned) as fh:
        text = fh.read()
    assert text.count(tune_report.MARK) == 1 and "output SNR >= 20 dB" in text
    assert not os.path.exists(str(tmp_path / "c.tuned.tuned.yaml"))


def test_unreachable_target_is_one_error_line_and_the_file_is_still_written(tmp_path, capsys):
    path = write_planted(str(tmp_path))
    assert cli.main(["-t", "--target-snr", "200", path]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gxnpuc: error: --tune: target output SNR >= 200 dB not met")
    assert os.path.exists(str(tmp_path / "c.tuned.yaml"))


def test_refuses_stdin_config_and_models_without_compressible_weights(tmp_path, planted):
    with pytest.raises(GxnpucError, match="config as a file"):
        tune.main(dataclasses.replace(planted["cfg"], path=""), object())
    relu = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 4])], [("y", [1, 4])])
    onnx.save(relu, str(tmp_path / "r.onnx"))
    (tmp_path / "r.yaml").write_text("ONNX_FILE: r.onnx\nOUTPUT_FILE: r.h\n")
    with pytest.raises(GxnpucError, match="no conv or fully-connected weight"):
        tune.tune(config.load(str(tmp_path / "r.yaml")))


# -- pieces ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_ctx(planted):
    cfg = planted["cfg"]
    probe = compiler.compile(tune.probe_config(cfg))
    feeds, _, _ = ev.load_inputs("random", probe.graph, 4, 0)

    class Bar:
        def update(self, n=1):
            pass
    runs = ev.simulate(cfg, probe, feeds, Bar())
    names = [sw.name for sw in ev.compressed_weights(probe)]
    return tune_sweep.Sweep(runs, tune.probe_config(cfg), "output"), names


def test_sweep_never_recompiles(sweep_ctx, monkeypatch):
    sw, names = sweep_ctx

    def boom(*a, **k):
        raise AssertionError("the sweep recompiled the model")
    monkeypatch.setattr(compiler, "compile", boom)
    cands = tune_sweep.sweep(sw, names, True, {"logits": 0.0}, jobs=1)
    assert set(cands) == set(names) and all(c.best.only for c in cands.values())


@pytest.mark.skipif(not tune_sweep._can_fork(), reason="needs fork and threadpoolctl")
def test_parallel_sweep_equals_serial(sweep_ctx):
    sw, names = sweep_ctx
    serial = tune_sweep.sweep(sw, names, False, {"logits": 0.0}, jobs=1)
    pooled = tune_sweep.sweep(sw, names, False, {"logits": 0.0}, jobs=2, pool_min_seconds=0.0)
    for n in names:
        assert (serial[n].best.clip, serial[n].best.only) == (pooled[n].best.clip, pooled[n].best.only)
        assert serial[n].tried == pooled[n].tried


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_yaml_float_reads_back_exactly(x):
    assert yaml.safe_load(f"r: [{write.yaml_float(x)}, 1.0]")["r"][0] == x


def test_merge_flow_style_config_and_document_end():
    flow = '{ONNX_FILE: "a/b.onnx", COMPRESS: true, WEIGHT_MIN_MAX: {w: [-1, 1]}}\n'
    merged = write.comment_out(flow, {"WEIGHT_MIN_MAX", "COMPRESS"}, tune_report.OFF, tune_report.MARK)
    doc = yaml.safe_load(merged + "\nCOMPRESS: false\n")
    assert doc == {"ONNX_FILE": "a/b.onnx", "COMPRESS": False}
    ended = "ONNX_FILE: m.onnx\nEXCLUDE_COMPRESS_OPS: [a, b]  # mine\n...\n"
    merged = write.comment_out(ended, {"EXCLUDE_COMPRESS_OPS"}, tune_report.OFF, tune_report.MARK)
    assert yaml.safe_load(merged + "\nEXCLUDE_COMPRESS_OPS: []\n") == {"ONNX_FILE": "m.onnx",
                                                                       "EXCLUDE_COMPRESS_OPS": []}


def test_latency_of_a_weight_bound_fc_is_its_fetch_time(tmp_path):
    """One 256x256 Gemm at batch 1: 65,536 MACs take 2,048 cycles on 32 lanes, far less than
    fetching its weights, so the documented model gives bytes x cycles-per-byte / clock."""
    rng = np.random.default_rng(3)
    inits = {"w": _w(rng, 256, 256), "b": 0.1 * _w(rng, 256, 1)[:, 0]}
    m = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], [("x", [1, 256])],
                   [("y", [1, 256])], inits)
    onnx.save(m, str(tmp_path / "g.onnx"))
    (tmp_path / "g.yaml").write_text("ONNX_FILE: g.onnx\nOUTPUT_FILE: g.h\nCOMPRESS: true\n")
    model = compiler.compile(config.load(str(tmp_path / "g.yaml")))
    grus = targets.get("GRUS")
    nbytes = report.weight_stats(model)["stored"]
    fetch_sram = nbytes * grus.sram_cycles_per_byte
    assert len(model.graph.nodes) == 1 and model.weights["w"].compressed
    assert 256 * 256 / grus.macs_per_cycle < fetch_sram  # compute hides behind the fetch
    assert 256 * 256 * grus.decompress_cycles_per_value < fetch_sram  # and so does the decompressor
    for flash, per_byte in ((False, grus.sram_cycles_per_byte), (True, grus.flash_cycles_per_byte)):
        got = costmodel.latency_seconds(model.graph, model.weights, "GRUS", flash)
        assert got == pytest.approx(nbytes * per_byte / grus.clock_hz, rel=1e-12)


def test_bundled_kws_example(tmp_path):
    """examples/make_kws.py: its planted fc1 tail makes min/max miss the target; the tuner meets
    it with fewer bytes than leaving every conv uncompressed."""
    assert load_kws().main([str(tmp_path)]) == 0
    with open(os.path.join(ROOT, "configs", "kws_onnx.yaml")) as fh:
        (tmp_path / "kws.yaml").write_text(fh.read().replace("../examples/build/", ""))
    cfg = dataclasses.replace(config.load(str(tmp_path / "kws.yaml")), tune_target_snr_db=33.0)
    data = str(tmp_path / "kws_inputs.npz")
    res = tune.tune(cfg, data, SAMPLES)
    tune_report.write_atomic(res.tuned_path, res.text)
    tuned = compiler.compile(config.load(res.tuned_path))
    feeds, _, _ = ev.load_inputs(data, tuned.graph, SAMPLES)
    plain = compiler.compile(cfg)
    convs = tuple(n for n, sw in plain.weights.items() if sw.compressed and sw.family == "conv")
    no_conv = compiler.compile(dataclasses.replace(cfg, exclude_compress_ops=convs))
    assert ort_snr(cfg.model_path, plain, feeds) < 33.0 <= ort_snr(cfg.model_path, tuned, feeds)
    assert stored_bytes(tuned) < stored_bytes(no_conv)
