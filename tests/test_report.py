"""What the user sees after a compile: -w lines, -s pictures and their file names, the summary,
the -v/-m tables and the -L list (docs/ops.md must equal the generated text).

Models are small Gemm/Conv stacks built in code with hostile weight names, compiled through
the real pipeline (gxnpuc.compiler.compile).
"""
from __future__ import annotations

import os
import re

import numpy as np
import onnx
import pytest
from onnx import helper

from gxnpuc import report
from gxnpuc.report import hist, stats
from gxnpuc.report.files import safe_names
from gxnpuc.config import Config
from onnx_util import make_model, rand

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = "encoder/" + "very_long_layer_name_" * 20 + "kernel:0"
HOSTILE = ["../../x", "a/b:0", "a_b_0", LONG, "fc.weight"]  # "a/b:0" and "a_b_0" clash once made safe


def _mlp(names, widths, opset=17, batch="batch"):
    """Gemm(transB=1)+Relu stack whose weights carry the given names, like a PyTorch export."""
    nodes, inits, x = [], {}, "x"
    for k, (name, (n_in, n_out)) in enumerate(zip(names, zip(widths, widths[1:]))):
        w = rand((n_out, n_in), seed=k, scale=1 / np.sqrt(n_in))
        inits[name], inits[f"b{k}"] = w, rand((n_out,), seed=100 + k, scale=0.1)
        y = f"/l{k}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", [x, name, f"b{k}"], [y], name=f"/l{k}/Gemm", transB=1))
        x = y
        if k < len(names) - 1:
            nodes.append(helper.make_node("Relu", [y], [f"/r{k}/Relu_output_0"], name=f"/r{k}/Relu"))
            x = f"/r{k}/Relu_output_0"
    nodes.append(helper.make_node("Identity", [x], ["out"], name="/out/Identity"))
    return make_model(nodes, [("x", [batch, widths[0]])], [("out", [batch, widths[-1]])], inits, opset)


def _compile(model, tmp_path, **kw):
    from gxnpuc import compiler

    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    cfg = Config(path=str(tmp_path / "config.yaml"), model_key="ONNX_FILE", model_path=path,
                 output_file=str(tmp_path / "out" / "model.h"), **kw)
    os.makedirs(os.path.dirname(cfg.output_file), exist_ok=True)
    return compiler.compile(cfg), cfg


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    return _compile(_mlp(HOSTILE, [16, 12, 10, 8, 6, 4]), tmp, compress=True)


# -- safe file names (no model needed) ----------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/b:0", "a\\b", "x\x00y\n", "/abs/path", "CON",
                                  "nul.weight", LONG, "é/ü", "../" * 100])
def test_safe_name_stays_in_folder(name, tmp_path):
    fname = safe_names([name])[name]
    assert fname.endswith(".jpg") and len(fname) <= 120
    assert re.fullmatch(r"[A-Za-z0-9._+-]+\.jpg", fname) and not fname.startswith(".")
    assert os.path.dirname(os.path.realpath(tmp_path / fname)) == os.path.realpath(tmp_path)


def test_safe_names_unique_and_readable():
    names = ["a/b:0", "a_b_0", "A_B_0", "a:b/0", LONG, LONG + "x", "conv1.weight"]
    files = safe_names(names)
    assert len({f.lower() for f in files.values()}) == len(names)
    assert files["conv1.weight"] == "conv1.weight.jpg"  # clean names are kept as they are
    assert files["a_b_0"] == "a_b_0.jpg" and files["a/b:0"].startswith("a_b_0-")
    assert safe_names(names) == files  # deterministic


# -- -w -----------------------------------------------------------------------------------------
def test_weight_lines_format_and_order(hostile):
    model, _ = hostile
    lines = report.weight_lines(model)
    assert lines == [f"{n}: [{s[0]}, {s[1]}]" for n, s in
                     zip(HOSTILE, [(12, 16), (10, 12), (8, 10), (6, 8), (4, 6)])]


def test_weight_lines_follow_the_flags(tmp_path):
    model, _ = _compile(_mlp(["w0", "w1"], [8, 6, 4]), tmp_path, compress=True,
                        exclude_compress_ops=("w1",))
    assert report.weight_lines(model) == ["w0: [6, 8]"]
    model, _ = _compile(_mlp(["w0", "w1"], [8, 6, 4]), tmp_path, compress=False)
    assert report.weight_lines(model) == []


# -- -s -----------------------------------------------------------------------------------------
def test_histograms_one_safe_file_per_compressed_weight(hostile, tmp_path):
    model, cfg = hostile
    folder = tmp_path / "npu_jpgs"
    paths = report.save_histograms(model, cfg, str(folder))
    assert len(paths) == len(report.weight_lines(model)) == len(HOSTILE)
    assert len(set(paths)) == len(paths)
    for p in paths:
        assert os.path.dirname(os.path.realpath(p)) == os.path.realpath(folder)
        with open(p, "rb") as fh:
            assert fh.read(3) == b"\xff\xd8\xff"  # a JPEG
    assert sorted(os.listdir(folder)) == sorted([os.path.basename(p) for p in paths] + [hist.INDEX])
    assert not os.path.exists(tmp_path / "x.jpg") and not os.path.exists(tmp_path.parent / "x.jpg")
    index = (folder / hist.INDEX).read_text().splitlines()
    assert [line.split("\t")[0] for line in index] == [os.path.basename(p) for p in paths]


def test_histograms_default_folder_and_stale_pictures(tmp_path):
    model, cfg = _compile(_mlp(["w0", "w1"], [8, 6, 4]), tmp_path, compress=True)
    paths = report.save_histograms(model, cfg, None)
    folder = os.path.join(os.path.dirname(cfg.output_file), "npu_jpgs")
    assert [os.path.dirname(p) for p in paths] == [folder] * 2
    mine = os.path.join(folder, "mine.jpg")  # a user's own file is never touched
    open(mine, "wb").close()
    model, cfg = _compile(_mlp(["w0", "w1"], [8, 6, 4]), tmp_path, compress=True,
                          exclude_compress_ops=("w0",))
    report.save_histograms(model, cfg, None)
    assert sorted(os.listdir(folder)) == sorted(["w1.jpg", "mine.jpg", hist.INDEX])


def test_two_models_sharing_a_folder_keep_each_others_pictures(tmp_path):
    import dataclasses

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    model_a, cfg_a = _compile(_mlp(["a0", "a1"], [8, 6, 4]), tmp_path / "a", compress=True)
    model_b, cfg_b = _compile(_mlp(["m0"], [8, 6]), tmp_path / "b", compress=True)
    cfg_b = dataclasses.replace(cfg_b, output_file=str(tmp_path / "b" / "other.h"))
    folder = str(tmp_path / "npu_jpgs")
    report.save_histograms(model_a, cfg_a, folder)
    report.save_histograms(model_b, cfg_b, folder)
    assert sorted(os.listdir(folder)) == sorted(["a0.jpg", "a1.jpg", "m0.jpg", hist.INDEX])
    model_a, cfg_a = _compile(_mlp(["a0", "a1"], [8, 6, 4]), tmp_path / "a", compress=True,
                              exclude_compress_ops=("a0",))
    report.save_histograms(model_a, cfg_a, folder)  # a0 is gone, m0 (another model's) stays
    assert sorted(os.listdir(folder)) == sorted(["a1.jpg", "m0.jpg", hist.INDEX])


def test_histograms_never_write_through_symlinks(tmp_path):
    model, cfg = _compile(_mlp(["w0"], [8, 6]), tmp_path, compress=True)
    folder, outside = tmp_path / "jpgs", tmp_path / "precious.txt"
    folder.mkdir()
    outside.write_text("keep")
    for planted in ("w0.jpg", "w0.jpg.tmp", hist.INDEX, hist.INDEX + ".tmp"):
        os.symlink(outside, folder / planted)
    report.save_histograms(model, cfg, str(folder))
    assert outside.read_text() == "keep"
    assert not os.path.islink(folder / "w0.jpg") and not os.path.exists(folder / "w0.jpg.tmp")


def test_histogram_is_deterministic(tmp_path):
    model, cfg = _compile(_mlp(["w0"], [8, 6]), tmp_path, compress=True)
    a = report.save_histograms(model, cfg, str(tmp_path / "a"))[0]
    b = report.save_histograms(model, cfg, str(tmp_path / "b"))[0]
    assert open(a, "rb").read() == open(b, "rb").read()


def test_histogram_title_numbers():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(10000).astype(np.float32)
    v[:3] = [40.0, -40.0, 39.0]  # a long tail: almost nothing in the outer 10% of [min, max]
    lo, hi = float(v.min()), float(v.max())
    want = np.mean((v <= lo + 0.1 * (hi - lo)) | (v >= hi - 0.1 * (hi - lo)))
    assert stats.outer_share(v) == pytest.approx(want) and stats.outer_share(v) < 0.001
    assert stats.outer_share(np.linspace(-1, 1, 1001)) == pytest.approx(0.2, abs=0.01)


def test_histogram_clip_and_per_channel(tmp_path):
    model, cfg = _compile(_mlp(["w0"], [64, 32]), tmp_path, compress=True, weight_min_max={"w0": (-0.1, 0.1)})
    sw, values = model.weights["w0"], model.graph.tensors["w0"].data
    assert stats.quant_range(sw) == pytest.approx((-0.1, 0.1), abs=1e-3)
    edge = 0.1 + 0.1 / 255  # beyond half a step past the end codes; fp16 moves the ends a little
    fewest, most = (int(np.count_nonzero(np.abs(values) > edge + d)) for d in (2e-3, -2e-3))
    got = int(re.search(r"saturated (\d+)", hist.title("w0", sw.shape, values, sw)).group(1))
    assert 0 < fewest <= got <= most
    assert len(report.save_histograms(model, cfg, str(tmp_path / "clip"))) == 1
    model, cfg = _compile(_mlp(["w0"], [64, 32]), tmp_path, compress=True, compress_per_channel=True)
    sw = model.weights["w0"]
    assert np.size(sw.lo_f16) == 32
    lo, hi = stats.quant_range(sw)
    assert lo <= float(values.min()) + 1e-3 and hi >= float(values.max()) - 1e-3
    assert len(report.save_histograms(model, cfg, str(tmp_path / "pc"))) == 1


# -- summary and tables ---------------------------------------------------------------------------
def test_summary_contents(hostile):
    model, cfg = hostile
    text = report.summary(model, cfg)
    for word in ("m.onnx", "GRUS", "NPU32", "cmd", "weight", "data", "npu_size", "total_size"):
        assert word in text, word
    st = report.weight_stats(model)
    assert st["compressed"] == len(HOSTILE) and st["stored"] < st["fp32"]
    assert f"{st['fp32']:,}" in text and f"{st['stored']:,}" in text
    assert "unknown batch dimension set to 1" in text  # the note from the front end
    assert ("fits GRUS" in text) != ("WARNING" in text)


def test_summary_warns_when_too_big(tmp_path):
    model, cfg = _compile(_mlp(["big"], [512, 512]), tmp_path, compress=False)
    text = report.summary(model, cfg)
    assert "WARNING" in text and f"{model.sizes['total_size']:,}" in text


def test_op_table_lists_every_node_with_flops(hostile):
    model, _ = hostile
    text = report.op_table(model)
    for node in model.graph.nodes:
        assert node.name in text
    first = next(line for line in text.splitlines() if line.startswith("/l0/Gemm"))
    cells = first.split()
    assert cells[1] == "fc" and cells[5] == f"{12 * 16 + 12}"  # weights + bias of a 16->12 Gemm
    assert int(cells[6].replace(",", "")) >= 2 * 16 * 12  # a multiply-accumulate counts as 2
    assert text.splitlines()[-1].startswith("total")


def test_mem_table_lists_activations_and_weights(hostile):
    model, _ = hostile
    text = report.mem_table(model)
    assert "activation" in text or "input" in text
    for name in HOSTILE:
        assert name in text


# -- -L -----------------------------------------------------------------------------------------
def test_list_ops_covers_the_registry():
    from gxnpuc.ops import ONNX_LOWERINGS, REGISTRY

    text = report.list_ops("GRUS", "ONNX")
    for op_type in ONNX_LOWERINGS:
        assert re.search(rf"^{re.escape(op_type)}\s", text, re.M), op_type
    for name in REGISTRY:
        assert re.search(rf"^{re.escape(name)}\s", text, re.M), name
    rows = dict(re.findall(r"^(\w+) +(\S.*)$", text, re.M))
    assert "fc" in rows["Gemm"].split(", ") and rows["Conv"] == "conv"
    assert rows["Dropout"].startswith("- ") and rows["Reshape"] == "reshape"
    assert rows["TopK"] == "- not supported" and rows["LSTM"].startswith("fc, ")


def test_list_ops_rejects_unknown_core():
    from gxnpuc.errors import GxnpucError

    with pytest.raises(GxnpucError, match="GRUS"):
        report.list_ops("NOPE")


def test_docs_ops_md_is_generated():
    """docs/ops.md is `gxnpuc -L --markdown`; after adding an op run `make docs`."""
    with open(os.path.join(ROOT, "docs", "ops.md"), encoding="utf-8") as fh:
        assert fh.read().rstrip("\n") == report.list_ops(markdown=True).rstrip("\n")


def test_docs_ir_md_op_table_is_generated():
    """docs/ir.md's op table comes from the OpDefs; after changing one run `make docs`."""
    from gxnpuc.ops import REGISTRY
    from gxnpuc.report.summary import IR_BEGIN, IR_END, ir_table

    with open(os.path.join(ROOT, "docs", "ir.md"), encoding="utf-8") as fh:
        text = fh.read()
    table = text.split(IR_BEGIN, 1)[1].split(IR_END, 1)[0]
    assert table == f"\n{ir_table()}\n", "docs/ir.md is out of date: python -m gxnpuc.report docs/ir.md"
    assert ir_table().count("\n") == 2 + sum(op.npu for op in REGISTRY.values())  # one row an op + fold row
