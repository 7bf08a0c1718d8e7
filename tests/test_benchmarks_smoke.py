"""Smoke test of `make bench` (benchmarks/run.py) on tiny models: every section runs, the one
table has the expected columns, units, baselines and sane values, and the files are written.

No timing assertions (the machine is shared). The ONNX export the benchmark builds from the
Keras weights is checked against Keras itself with onnxruntime as the independent runner.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import models, run, settings, table  # noqa: E402

SECTIONS = "compile,compression,memory,simulator,accuracy,scaling"  # import: ~4 TF imports, too slow
TOOLS = {"gxnpuc (ONNX)", "gxnpuc (Keras)", "TFLite converter (dynamic-range)", "ort quantize_dynamic (per-channel)"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rows, meta = run.run(run.parse_args(["--tiny", "--out", str(out), "--sections", SECTIONS]))
    return rows, meta, table.save(rows, meta, str(out)), out


def _get(rows, section, model=None, item=None, metric=None):
    return [r for r in rows if r.section == section and (model is None or r.model == model)
            and (item is None or r.item == item) and (metric is None or r.metric == metric)]


def test_every_section_ran_without_failures(bench):
    rows, meta, _, _ = bench
    assert meta["failed_sections"] == 0, [r.note for r in rows if r.item == "FAILED"]
    assert {r.section for r in rows} == set(SECTIONS.split(","))
    assert meta["nproc"] >= 1 and meta["cpu"] and meta["sizes"] == "tiny"


def test_every_figure_has_unit_and_a_ratio_to_its_baseline(bench):
    rows = bench[0]
    for r in rows:
        assert r.unit and r.metric, r
        assert r.value is not None and not math.isnan(r.value), r
        if r.baseline and r.section != "accuracy":
            assert r.ratio is not None and math.isfinite(r.ratio) and r.ratio > 0, r


def test_compile_rows_cover_all_tools_and_models(bench):
    rows = bench[0]
    for model in ("kws", "digits", "mlp"):
        got = {r.item: r for r in _get(rows, "compile", model, metric="wall time")
               if not r.item.startswith("gxnpuc stage")}
        assert set(got) == TOOLS
        assert all(r.unit == "s" and r.value > 0 for r in got.values())
        onnx, ort = got["gxnpuc (ONNX)"], got["ort quantize_dynamic (per-channel)"]
        assert onnx.ratio == pytest.approx(onnx.value / ort.value)
    stages = _get(rows, "compile", "mlp")
    shares = [r.ratio for r in stages if r.item.startswith("gxnpuc stage")]
    assert len(shares) == 5 and sum(shares) == pytest.approx(1.0, abs=1e-6)


def test_compression_memory_and_simulator_values_are_sane(bench):
    rows = bench[0]
    comp = _get(rows, "compression", "mlp", metric="throughput")
    assert {r.item for r in comp} >= {"gxnpuc vendor default", "gxnpuc per-channel"}
    assert all(r.unit.startswith("GB/s") and r.baseline.startswith("np.copyto") for r in comp)
    mem = _get(rows, "memory", "mlp")
    assert len(mem) == 1 and mem[0].unit == "x fp32 weight bytes" and "peak" in mem[0].note
    for model in ("kws", "digits", "mlp"):
        sims = {r.item: r for r in _get(rows, "simulator", model)}
        for mode in ("float", "npu"):
            r = sims[f"gxnpuc sim {mode} (batch 1)"]
            assert r.unit == "ms" and r.ratio == pytest.approx(r.value / sims["onnxruntime fp32 (batch 1)"].value)


def test_accuracy_rows_for_every_setting_and_peer(bench):
    rows = bench[0]
    items = [s.label for s in settings.SETTINGS] + ["TFLite dynamic-range", "ort quantize_dynamic per-channel"]
    for model in ("kws", "digits", "mlp"):
        nbytes = {r.item: r.value for r in _get(rows, "accuracy", model, metric="weight bytes")}
        snr = {r.item: r.value for r in _get(rows, "accuracy", model, metric="output SNR")}
        assert set(items) <= set(nbytes) and set(items) <= set(snr)
        fp32 = nbytes["Keras fp32 (reference)"]
        assert nbytes["gxnpuc vendor default"] < nbytes["gxnpuc fp16 (no compression)"] < fp32
        assert snr["gxnpuc fp16 (no compression)"] > snr["gxnpuc vendor default"] > 20
    acc = {r.item: r for r in _get(rows, "accuracy", "digits", metric="test accuracy")}
    assert set(items) <= set(acc)
    assert all(0 <= r.value <= 100 for r in acc.values())
    assert acc["Keras fp32 (reference)"].value > 80  # really trained, even for two epochs


TUNED = ("gxnpuc tuned", "gxnpuc tuned per-channel")
PEERS = ("TFLite dynamic-range", "ort quantize_dynamic per-channel")


def test_tuned_rows_stay_within_the_smaller_peer_budget(bench):
    rows, _, _, out = bench
    for model in ("kws", "digits", "mlp"):
        nbytes = {r.item: r for r in _get(rows, "accuracy", model, metric="weight bytes")}
        snr = {r.item: r.value for r in _get(rows, "accuracy", model, metric="output SNR")}
        budget = min(nbytes[p].value for p in PEERS)
        for item in TUNED:
            assert nbytes[item].value <= budget, (model, item)
            assert f"budget {int(budget):,} B" in nbytes[item].note and "search took" in nbytes[item].note
            assert snr[item] >= snr["gxnpuc vendor default"] - 1.0, (model, item)  # never much worse
        with open(os.path.join(out, "work", f"{model}_tune.yaml"), encoding="utf-8") as fh:
            assert f"TUNE_MAX_WEIGHT_BYTES: {int(budget)}" in fh.read()
        assert os.path.isfile(os.path.join(out, "work", f"{model}_tune.tuned.yaml"))


def test_calibration_inputs_are_disjoint_from_the_evaluation_inputs(bench):
    out, sizes = bench[3], models.TINY
    x_eval = {"kws": models.kws_data(sizes.samples, models.SEED + 2)[0],
              "digits": models.digits_data()[1][:sizes.digits_test],
              "mlp": models.mlp_inputs(min(sizes.samples, 16), sizes.mlp_widths[0])}
    for (model, x), name in zip(x_eval.items(), ("mfcc", "image", "features")):
        with np.load(os.path.join(out, "work", f"{model}_calib.npz")) as npz:
            assert list(npz.files) == [name]
            calib = npz[name]
        assert calib.dtype == np.float32 and calib.shape[1:] == x.shape[1:] and len(calib) >= 4
        same = (calib.reshape(len(calib), 1, -1) == x.reshape(1, len(x), -1)).all(-1)
        assert not same.any(), model


def test_scaling_sweep_grows_weights_4x_and_16x(bench):
    rows = _get(bench[0], "scaling")
    counts = [int(r.note.split()[0].replace(",", "")) for r in rows]
    assert len(rows) == 3 and rows[0].ratio == pytest.approx(1.0)
    assert counts[1] / counts[0] == pytest.approx(4, rel=0.05) and counts[2] / counts[0] == pytest.approx(16, rel=0.05)


def test_files_written_with_the_table_columns(bench):
    rows, _, paths, _ = bench
    with open(paths["csv"], newline="", encoding="utf-8") as fh:
        data = list(csv.DictReader(fh))
    assert list(data[0]) == table.COLUMNS and len(data) == len(rows)
    with open(paths["json"], encoding="utf-8") as fh:
        doc = json.load(fh)
    assert len(doc["rows"]) == len(rows) and doc["meta"]["nproc"] >= 1
    assert os.path.getsize(paths["png"]) > 10_000
    text = table.text(rows)
    assert text.splitlines()[0].split()[:4] == ["section", "model", "item", "metric"]


def test_onnx_export_matches_keras(bench):
    import onnxruntime as ort

    out = bench[3]
    for stem, name in (("kws", "mfcc"), ("digits", "image"), ("mlp", "features")):
        import keras

        km = keras.models.load_model(os.path.join(out, "work", f"{stem}.keras"))
        x = np.random.default_rng(7).standard_normal((5, *km.inputs[0].shape[1:])).astype(np.float32)
        sess = ort.InferenceSession(os.path.join(out, "work", f"{stem}.onnx"), providers=["CPUExecutionProvider"])
        got, want = sess.run(None, {name: x})[0], np.asarray(km(x))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


def test_sweep_widths_scale_the_weight_count():
    pts = models.sweep_widths(models.FULL)
    counts = [2 * w[0] * w[1] for _, w in pts]
    assert [f for f, _ in pts] == [1, 4, 16] and counts[2] == 16 * counts[0] and counts[1] >= 25_000_000
    big = models.FULL.mlp_widths
    assert sum(a * b for a, b in zip(big[:-1], big[1:])) >= 25_000_000
