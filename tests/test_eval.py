"""`gxnpuc --eval`: inputs, the report and its files, the per-weight sweep, and the advice.

References are independent: onnxruntime for outputs, a recompile with every other weight
excluded for the "only this weight" numbers, and a recompile with the pasted config line
for the advice.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from gxnpuc import evaluate as ev
from gxnpuc import sim
from gxnpuc.evaluate import advice as eval_advice
from gxnpuc.evaluate import oracle
from gxnpuc.evaluate import report as eval_report
from gxnpuc.errors import GxnpucError
from npu_util import compile_cfg, compile_onnx, load_kws, mlp, rand_feeds, two_outputs


def _report(model, cfg, feeds, labels=None, **kw):
    return ev.evaluate(replace(cfg, **kw), model, feeds, labels, "test")


def _snr(report, mode):
    return min(r.snr_db for r in report.outputs if r.mode == mode)


def _apply(cfg, line: str):
    """The config the user gets by pasting the advised line (parsed as YAML, like config.load)."""
    (key, value), = yaml.safe_load(line).items()
    value = {k: tuple(v) for k, v in value.items()} if isinstance(value, dict) else tuple(value)
    return replace(cfg, **{key.lower(): value})


@pytest.fixture(scope="module")
def two_out(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("two"))
    return compile_onnx(two_outputs(), out, compress=True, conv2d_compress=True)


def test_main_prints_and_writes_json_csv(two_out, capsys):
    model, cfg = two_out
    assert ev.main(cfg, SimpleNamespace(eval="random", dump_dir=None), model) == 0
    text = capsys.readouterr().out
    assert "verdict:" in text and "float IR" in text and "c.w" in text
    json_path, csv_path = eval_report.report_paths(cfg.output_file)
    with open(json_path) as fh:
        rep = json.load(fh)
    assert rep["output_names"] == ["seq", "head"] and rep["samples"] == ev.RANDOM_SAMPLES
    assert {r["weight"] for r in rep["layers"]} == {"c.w", "h.w"}
    for row in rep["outputs"]:
        if row["mode"] == "float":
            assert row["snr_db"] >= 80
        if row["mode"] == "npu_fp16":
            assert row["snr_db"] >= 50
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["section"] for r in rows].count("output") == 2 * 3
    assert [r["section"] for r in rows].count("layer") == 2
    assert rep["layers"][0]["only_snr_db"] <= rep["layers"][1]["only_snr_db"]


def test_only_this_weight_equals_a_recompile_excluding_the_others(two_out):
    model, cfg = two_out
    feeds = rand_feeds(model, 6, seed=5)
    rep = _report(model, cfg, feeds)
    names = [r.weight for r in rep.layers]
    for row in rep.layers:
        others = tuple(n for n in names if n != row.weight)
        alone = compile_cfg(replace(cfg, exclude_compress_ops=others))
        out = sim.run_model_batch(alone, feeds, "npu")
        ref = oracle.run(cfg, model.graph, feeds)
        for k, snr in row.only_snr_by_output.items():
            assert ev.snr_db(ref[k], out[k]) == pytest.approx(snr, abs=1e-9)


def test_sweep_does_not_recompile(two_out, monkeypatch):
    from gxnpuc import frontend, passes

    def boom(*a, **k):
        raise AssertionError("recompiled")
    monkeypatch.setattr(frontend, "load", boom)
    monkeypatch.setattr(passes, "pipeline", boom)
    model, cfg = two_out
    rep = _report(model, cfg, rand_feeds(model, 3), eval_snr_threshold_db=200.0)
    assert rep.verdict.action in ("clip", "exclude")


def test_dump_dir(two_out, tmp_path):
    model, cfg = two_out
    feeds = rand_feeds(model, 3)
    ev.evaluate(cfg, model, feeds, None, "test", dump_dir=str(tmp_path))
    with open(tmp_path / "index.json") as fh:
        files = json.load(fh)["files"]
    for mode in ("float", "npu"):
        seq = np.load(tmp_path / mode / files["seq"])
        assert seq.shape == (3, 1, 6, 20)
    assert np.load(tmp_path / "npu" / files["c"]).shape == (3, 1, 6, 20)  # an inner layer
    np.testing.assert_allclose(np.load(tmp_path / "framework" / files["head"]),
                               np.load(tmp_path / "float" / files["head"]), rtol=1e-4, atol=1e-5)


def test_fp16_overflow_is_named(tmp_path):
    from onnx import helper

    from onnx_util import make_model

    nodes = [helper.make_node("Mul", ["x", "k"], ["big"]), helper.make_node("Relu", ["big"], ["y"])]
    onnx_model = make_model(nodes, [("x", [1, 8])], [("y", [1, 8])], {"k": np.array([5000.0], np.float32)})
    model, cfg = compile_onnx(onnx_model, str(tmp_path))
    rep = _report(model, cfg, {"x": np.full((2, 1, 8), 20.0, np.float32)})
    assert any("fp16 range" in n and "big" in n for n in rep.notes)
    assert _snr(rep, "npu") == -np.inf and rep.verdict.action == "none"
    assert "fp16 limit" in rep.verdict.text


def test_fp16_underflow_of_a_guarded_log_is_named(tmp_path):
    """log(x*x + 1e-10), basic-pitch's normalised log: in fp16 the epsilon and the small squares
    are 0, so the npu gives -inf there; the compile notes name the epsilon, the eval notes the log."""
    from onnx import helper

    from onnx_util import make_model

    nodes = [helper.make_node("Mul", ["x", "x"], ["power"]), helper.make_node("Add", ["power", "eps"], ["guarded"]),
             helper.make_node("Log", ["guarded"], ["db"], name="normalized_log"),
             helper.make_node("Mul", ["db", "ten"], ["y"])]
    onnx_model = make_model(nodes, [("x", [1, 8])], [("y", [1, 8])], {"eps": np.array([1e-10], np.float32),
                                                                   "ten": np.array([10.0], np.float32)})
    model, cfg = compile_onnx(onnx_model, str(tmp_path))
    assert any("'eps'" in n and "is 0 on the NPU" in n for n in model.graph.meta["notes"])
    x = np.full((2, 1, 8), 1e-5, np.float32)
    x[:, :, 4:] = 3.0  # finite everywhere in float, -inf only where the square underflows
    rep = _report(model, cfg, {"x": x})
    assert any("first gives inf/NaN" in n and "normalized_log" in n for n in rep.notes), rep.notes
    flt = next(r for r in rep.outputs if r.mode == "float")
    assert flt.snr_db >= 80 and _snr(rep, "npu") < 0


# -- inputs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp_model(tmp_path_factory):
    return compile_onnx(mlp(), str(tmp_path_factory.mktemp("mlp")), compress=True)


def test_npz_with_labels_gives_accuracy(mlp_model, tmp_path):
    model, cfg = mlp_model
    x = rand_feeds(model, 20, seed=9)["x"]  # [20, 1, 32]
    truth = np.argmax(oracle.run(cfg, model.graph, {"x": x})["logits"][:, 0], axis=1)
    labels = truth.copy()
    labels[:5] = (labels[:5] + 1) % 10  # 75% right for the framework
    path = str(tmp_path / "in.npz")
    np.savez(path, x=x[:, 0], labels=labels)  # [samples, 32]: batch 1 left out
    feeds, got_labels, _ = ev.load_inputs(path, model.graph)
    assert feeds["x"].shape == (20, 1, 32)
    rep = ev.evaluate(cfg, model, feeds, got_labels, "in.npz")
    fw = next(r for r in rep.outputs if r.mode == "framework")
    assert fw.accuracy == pytest.approx(0.75)
    flt = next(r for r in rep.outputs if r.mode == "float")
    assert flt.top1_agreement == 1.0 and flt.accuracy == pytest.approx(0.75)


BAD_INPUTS = {
    "missing key": ({"y": np.zeros((2, 32), np.float32)}, "no array for model input 'x'"),
    "wrong shape": ({"x": np.zeros((2, 31), np.float32)}, r"has shape \[2, 31\].*\[samples, 1, 32\]"),
    "labels length": ({"x": np.zeros((2, 32), np.float32), "labels": np.zeros(3)}, "labels: has shape"),
    "nan": ({"x": np.full((2, 32), np.nan, np.float32)}, "NaN"),
    "label out of range": ({"x": np.zeros((2, 32), np.float32), "labels": np.array([0, 30])},
                           r"labels: holds class 30, outside the output's 10 classes"),
    "misspelt labels": ({"x": np.zeros((2, 32), np.float32), "lables": np.zeros(2)},
                        r"lables: is neither a model input nor `labels`"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_npz_is_a_one_line_error(mlp_model, tmp_path, case):
    model, _ = mlp_model
    arrays, pattern = BAD_INPUTS[case]
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    with pytest.raises(GxnpucError, match=pattern) as err:
        ev.load_inputs(path, model.graph)
    assert "\n" not in str(err.value)


def test_not_an_npz_and_missing_file(mlp_model, tmp_path):
    model, _ = mlp_model
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(GxnpucError, match="not a readable .npz"):
        ev.load_inputs(str(path), model.graph)
    with pytest.raises(GxnpucError, match="no such file"):
        ev.load_inputs(str(tmp_path / "nope.npz"), model.graph)


# -- ranking and advice --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tailed(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tail"))
    model, cfg = compile_onnx(mlp(tail_rows=4), out, compress=True)
    return model, cfg, rand_feeds(model, 24, seed=4)


@pytest.mark.parametrize("threshold,action", [(30.0, "clip"), (50.0, "exclude")])
def test_planted_tail_ranked_first_and_advice_raises_snr(tailed, threshold, action):
    model, cfg, feeds = tailed
    rep = _report(model, cfg, feeds, eval_snr_threshold_db=threshold)
    assert rep.layers[0].weight == "fc2.w"
    verdict = rep.verdict
    assert verdict.action == action and verdict.weight == "fc2.w"
    assert verdict.config_line in verdict.text
    fixed_cfg = _apply(cfg, verdict.config_line)
    fixed = compile_cfg(fixed_cfg)
    after = _report(fixed, fixed_cfg, feeds, eval_snr_threshold_db=threshold)
    assert _snr(after, "npu") > _snr(rep, "npu") + 3
    if action == "clip":
        lo, hi = verdict.range
        w = model.graph.tensors["fc2.w"].data
        assert w.min() < lo < hi < w.max() and np.mean((w >= lo) & (w <= hi)) > 0.99


def test_advice_merges_existing_config_entries(tailed):
    model, cfg, feeds = tailed
    cfg = replace(cfg, exclude_compress_ops=("out.w",), eval_snr_threshold_db=50.0)
    line = _report(model, cfg, feeds).verdict.config_line
    assert line == 'EXCLUDE_COMPRESS_OPS: ["out.w", "fc2.w"]'


def test_kws_example_ranks_its_planted_weight_first(tmp_path):
    kws = load_kws()
    model, cfg = compile_onnx(kws.build_model(), str(tmp_path), compress=True, conv2d_compress=True,
                              fuse_bn=True, input_ops={"mfcc": (1, 40, 98)})
    feeds = {"mfcc": kws.make_inputs(16)[:, None]}
    rep = _report(model, cfg, feeds)
    assert rep.layers[0].weight == "fc1.weight"
    assert _snr(rep, "float") >= 80


def test_harmful_user_clip_is_replaced_not_duplicated(tmp_path):
    kws = load_kws()
    onnx_model = kws.build_model()
    probe, _ = compile_onnx(onnx_model, str(tmp_path), input_ops={"mfcc": (1, 40, 98)})
    reader = next(n.name for n in probe.graph.nodes if "fc1.weight" in n.inputs)
    model, cfg = compile_onnx(onnx_model, str(tmp_path), compress=True, fuse_bn=True,
                              input_ops={"mfcc": (1, 40, 98)},
                              weight_min_max={reader: (-0.6, 0.6)})  # keyed by the op's name
    feeds = {"mfcc": kws.make_inputs(16)[:, None]}
    rep = _report(model, cfg, feeds, eval_snr_threshold_db=15.0)
    verdict = rep.verdict
    assert rep.layers[0].weight == "fc1.weight" and rep.layers[0].clipped_share > 0
    assert verdict.action in ("clip", "unclip", "exclude") and reader not in verdict.config_line
    fixed_cfg = _apply(cfg, verdict.config_line)
    after = _report(compile_cfg(fixed_cfg), fixed_cfg, feeds)
    assert _snr(after, "npu") > _snr(rep, "npu") + 6
    # a clip line replaces the entry keyed by the op's name instead of adding a second one
    line = eval_advice.clip_line(cfg, model.graph, "fc1.weight", -1.0, 1.0)
    assert line == 'WEIGHT_MIN_MAX: {"fc1.weight": [-1.0, 1.0]}'
    assert eval_advice.clip_line(cfg, model.graph, "fc1.weight", None, None) == "WEIGHT_MIN_MAX: {}"


def test_cli_eval_end_to_end(tmp_path, capsys):
    from gxnpuc import cli

    kws = load_kws()
    kws.main([str(tmp_path)])
    cfg_path = tmp_path / "kws.yaml"
    cfg_path.write_text("ONNX_FILE: kws.onnx\nOUTPUT_FILE: kws.h\nCOMPRESS: true\n"
                        "INPUT_OPS: {mfcc: [1, 40, 98]}\n")
    assert cli.main(["-e", str(tmp_path / "kws_inputs.npz"), str(cfg_path)]) == 0
    assert "verdict:" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "kws.eval.json")
    assert cli.main(["-e", str(tmp_path / "missing.npz"), str(cfg_path)]) == 1


def test_tensorflow_keras_model_against_tensorflow(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from gxnpuc.config import Config

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((20, 8), name="feat"),
                            keras.layers.Conv1D(12, 3, padding="same", activation="relu"),
                            keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(6)])
    path = str(tmp_path / "m.keras")
    net.save(path)
    cfg = Config(model_key="KERAS_FILE", model_path=path, output_file=str(tmp_path / "m.h"))
    model = compile_cfg(cfg)
    x = np.random.default_rng(0).standard_normal((6, 20, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", **{"feat:0": x})  # TF users may key by tensor name
    feeds, _, _ = ev.load_inputs(str(tmp_path / "in.npz"), model.graph)
    rep = ev.evaluate(cfg, model, feeds, None, "in.npz")
    assert rep.framework == "tensorflow"
    assert _snr(rep, "float") >= 80 and _snr(rep, "npu") >= 50
    want = net.predict(x, verbose=0)  # Keras itself, not the frozen graph
    got = sim.run_model_batch(model, feeds, "float")[model.graph.outputs[0]]
    assert ev.snr_db(want, got.reshape(want.shape)) >= 80


def test_clip_line_reads_back_exactly_in_yaml():
    import types

    import yaml

    from gxnpuc.evaluate.advice import clip_line
    from gxnpuc.ir import Graph

    cfg = types.SimpleNamespace(weight_min_max={"other/w:0": (-1e-05, 2.5e-07)})
    graph = Graph()
    line = clip_line(cfg, graph, "fc1.weight", -0.125, 1e-05)
    parsed = yaml.safe_load(line)["WEIGHT_MIN_MAX"]
    assert parsed == {"other/w:0": [-1e-05, 2.5e-07], "fc1.weight": [-0.125, 1e-05]}
