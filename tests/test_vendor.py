"""Issue 14, vendor parity (points 1-5): a Kaldi-style TDNN built with the TF1 graph API and
frozen two ways (plain `convert_variables_to_constants`, and the session-folded graph with
`__cf__` names the vendor's `-w` prints), run through the real CLI in-process (TensorFlow is
imported once); the `vendor_tdnn` fixture (conftest.py) builds it once per session.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import vendor_models as vm  # noqa: E402
from vendor_models import WEIGHT, base, run, weight_names, write  # noqa: E402

from gxnpuc import compiler, config  # noqa: E402


@pytest.fixture
def tdnn(vendor_tdnn):
    return vendor_tdnn


# -- 1. folded-name forms are aliases on either pb; unknown names rank the same layer first ------
def test_names_of_either_folding_work_on_either_pb(tdnn, capsys, monkeypatch):
    plain_names = weight_names(tdnn, capsys, monkeypatch, "plain")
    cf_names = weight_names(tdnn, capsys, monkeypatch, "folded")
    assert WEIGHT.format("tdnn2") in plain_names
    cf2, cf3 = (vm.folded_name(cf_names, WEIGHT.format(k)) for k in ("tdnn2", "tdnn3"))
    models = {}
    forms = {"plain": (cf2, cf3), "folded": (WEIGHT.format("tdnn2"), WEIGHT.format("tdnn3"))}
    for pb, (excl, rng) in forms.items():
        text = base(pb, f"{pb}_alias.h") + f"EXCLUDE_COMPRESS_OPS: [{excl}]\nWEIGHT_MIN_MAX: {{{rng}: [-0.3, 0.3]}}\n"
        cfg = config.load(write(tdnn["folder"], f"{pb}_alias.yaml", text))
        models[pb] = compiler.compile(cfg).weights
    plain, folded = models["plain"], models["folded"]
    assert not plain[WEIGHT.format("tdnn2")].compressed and not folded[cf2].compressed
    assert plain[WEIGHT.format("tdnn1")].compressed
    # the range took effect on both: same codes, same fp16 range, for the same weight
    cf1 = vm.folded_name(cf_names, WEIGHT.format("tdnn1"))
    for p, f in ((WEIGHT.format("tdnn3"), cf3), (WEIGHT.format("tdnn1"), cf1)):
        assert np.array_equal(plain[p].decode(np.float32), folded[f].decode(np.float32))
    assert float(np.min(plain[WEIGHT.format("tdnn3")].decode(np.float32))) >= -0.3 - 1e-3
    raw = compiler.compile(config.load(write(tdnn["folder"], "raw.yaml", base("plain", "raw.h")))).weights
    assert not np.array_equal(raw[WEIGHT.format("tdnn3")].decode(np.float32),
                              plain[WEIGHT.format("tdnn3")].decode(np.float32))


def test_unknown_name_suggests_the_same_layer_first(tdnn, capsys, monkeypatch):
    text = base("plain", "bad.h") + "EXCLUDE_COMPRESS_OPS: [tdnn2.affine/weights]\n"
    code, _, err = run(tdnn["folder"], [write(tdnn["folder"], "bad.yaml", text)], capsys, monkeypatch)
    assert code == 1 and "bad.yaml:5: EXCLUDE_COMPRESS_OPS" in err
    close = err.split("close matches: ")[1].rstrip(")\n").split(", ")
    assert close[0].startswith("tdnn2.affine/") and WEIGHT.format("tdnn2") in close[:3]
    assert not os.path.exists(tdnn["folder"] / "bad.h")


# -- 2. EXCLUDE_COMPRESS_WEIGHT_OPS is honoured ---------------------------------------------------
def test_vendor_spelling_of_exclude_is_honoured_with_a_note(tdnn, capsys, monkeypatch):
    text = base("plain", "spelled.h") + f"EXCLUDE_COMPRESS_WEIGHT_OPS: [{WEIGHT.format('tdnn2')}]\n"
    code, out, err = run(tdnn["folder"], ["-w", write(tdnn["folder"], "spelled.yaml", text)], capsys, monkeypatch)
    assert code == 0
    assert "spelled.yaml:5: EXCLUDE_COMPRESS_WEIGHT_OPS read as EXCLUDE_COMPRESS_OPS" in err
    listed = [line.split(":")[0] for line in out.splitlines() if ": [" in line]
    assert WEIGHT.format("tdnn1") in listed and WEIGHT.format("tdnn2") not in listed
    both = text + f"EXCLUDE_COMPRESS_OPS: [{WEIGHT.format('tdnn3')}]\n"
    cfg = config.load(write(tdnn["folder"], "both.yaml", both))
    assert set(cfg.exclude_compress_ops) == {WEIGHT.format("tdnn2"), WEIGHT.format("tdnn3")}


# -- 3. struct input follows INPUT_OPS, struct output follows OUTPUT_OPS -------------------------
def struct_members(header: str, struct: str) -> list[str]:
    body = header.split(f"struct {struct} {{\n", 1)[1].split("}", 1)[0]
    return [line.split()[1].split("[")[0] for line in body.strip().splitlines()]


@pytest.mark.parametrize("order", [("ivector", "feats"), ("feats", "ivector")])
def test_struct_input_in_input_ops_order(tdnn, order, capsys, monkeypatch):
    shapes = {"feats": [1, vm.FRAMES, vm.FEATS], "ivector": [1, vm.FRAMES, vm.IVEC]}
    ops = ", ".join(f"{n}: {shapes[n]}" for n in order)
    out = f"order_{order[0]}.h"
    text = f"PB_FILE: folded.pb\nOUTPUT_FILE: {out}\nINPUT_OPS: {{{ops}}}\nOUTPUT_OPS: [{vm.OUTPUT}]\n"
    code, _, _ = run(tdnn["folder"], [write(tdnn["folder"], f"order_{order[0]}.yaml", text)], capsys, monkeypatch)
    assert code == 0
    path = str(tdnn["folder"] / out)
    header = open(path).read()
    assert struct_members(header, "input") == list(order)
    assert struct_members(header, "output") == [vm.OUTPUT]
    from gxnpuc import backend, sim

    model = backend.read(path)
    assert list(model.graph.inputs) == list(order)
    offsets = {n: model.plan["tensors"][n][0] for n in order}
    assert offsets[order[0]] == 0 and offsets[order[1]] == 2 * int(np.prod(shapes[order[0]]))
    got = sim.run_file(path, tdnn["feeds"], "float")[vm.OUTPUT]  # fp16 weights: 1e-2 of the scale
    assert np.max(np.abs(got - tdnn["ref"])) < 1e-2 * np.max(np.abs(tdnn["ref"]))


# -- 4. FUSE_BN folds forwards where exact and says what stayed; ranges that do nothing warn -----
def assert_close(got, want, rtol=1e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape and np.max(np.abs(got - want)) <= rtol * np.max(np.abs(want))


def test_fuse_bn_folds_kaldi_order_forwards_tf1(tdnn, capsys, monkeypatch):
    from gxnpuc import sim

    text = "PB_FILE: plain.pb\nOUTPUT_FILE: bn.h\nFUSE_BN: true\n"
    code, out, _ = run(tdnn["folder"], [write(tdnn["folder"], "bn.yaml", text)], capsys, monkeypatch)
    assert code == 0
    assert "note: FUSE_BN folded 2 BatchNorm(s)" in out
    assert ("note: FUSE_BN: BatchNorm tdnn2.batchnorm stays a separate op: the next layer "
            "tdnn3.affine/conv1d pads its input") in out
    model = compiler.compile(config.load(str(tdnn["folder"] / "bn.yaml")))
    left = {n.name.split("/")[0] for n in model.graph.nodes if "batchnorm" in n.name}
    assert left == {"tdnn2.batchnorm"}
    assert_close(sim.run_model(model, tdnn["feeds"], "float")[vm.OUTPUT], tdnn["ref"])
    off = compiler.compile(config.load(write(tdnn["folder"], "nobn.yaml", "PB_FILE: plain.pb\nOUTPUT_FILE: nobn.h\n")))
    assert len(off.graph.nodes) - len(model.graph.nodes) == 4  # mul + add of the two folded BNs


def test_fuse_bn_folds_forwards_pytorch_onnx(tmp_path, capsys, monkeypatch):
    from gxnpuc import sim

    feeds, ref = vm.torch_tdnn(str(tmp_path / "tdnn.onnx"))
    text = "ONNX_FILE: tdnn.onnx\nOUTPUT_FILE: tdnn.h\nFUSE_BN: true\nCONV2D_COMPRESS: true\n"
    code, out, _ = run(tmp_path, ["-w", write(tmp_path, "c.yaml", text)], capsys, monkeypatch)
    assert code == 0 and "note: FUSE_BN folded 2 BatchNorm(s)" in out
    assert "stays a separate op: the next layer /tdnn3/Conv pads its input" in out
    model = compiler.compile(config.load(str(tmp_path / "c.yaml")))
    assert sum(n.op == "batchnorm" for n in model.graph.nodes) == 1
    plain = compiler.compile(config.load(write(tmp_path, "f.yaml", text.replace("FUSE_BN: true", "FUSE_BN: false")
                                               .replace("CONV2D_COMPRESS: true", "CONV2D_COMPRESS: false"))))
    assert_close(sim.run_model(plain, feeds, "float")[vm.OUTPUT], ref)
    folded_float = compiler.compile(config.load(write(tmp_path, "g.yaml", text.replace("CONV2D_COMPRESS: true", ""))))
    assert_close(sim.run_model(folded_float, feeds, "float")[vm.OUTPUT], ref)


def test_weight_min_max_that_does_nothing_warns(tdnn, capsys, monkeypatch):
    w1, w2 = WEIGHT.format("tdnn1"), WEIGHT.format("tdnn2")
    text = (f"PB_FILE: plain.pb\nOUTPUT_FILE: mm.h\nCOMPRESS: true\nEXCLUDE_COMPRESS_OPS: [{w1}]\n"
            f"WEIGHT_MIN_MAX: {{{w1}: [-1, 1], {w2}: [-0.1, 0.1]}}\n")
    code, _, err = run(tdnn["folder"], [write(tdnn["folder"], "mm.yaml", text)], capsys, monkeypatch)
    assert code == 0
    assert f"mm.yaml:5: WEIGHT_MIN_MAX: range of '{w1}' has no effect: it is also listed in EXCLUDE" in err
    assert f"range of '{w2}' has no effect: CONV2D_COMPRESS is off" in err
    conv_on = write(tdnn["folder"], "mm2.yaml", text.replace("COMPRESS: true", "CONV2D_COMPRESS: true"))
    code, _, err = run(tdnn["folder"], [conv_on], capsys, monkeypatch)
    assert code == 0 and w2 not in err and w1 in err


# -- 5. -w and -s mark folded weights; the histogram shows the folded values ---------------------
def tf_consts(pb_path: str) -> dict:
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(open(pb_path, "rb").read())
    return {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in gd.node if n.op == "Const"}


def test_folded_weights_marked_in_w_and_s(tdnn, capsys, monkeypatch):
    from gxnpuc.report import hist

    drawn = {}
    real_draw = hist.draw

    def spy(path, name, shape, values, sw, clip, folded=None):
        drawn[name] = (np.array(values), folded)
        real_draw(path, name, shape, values, sw, clip, folded)

    monkeypatch.setattr(hist, "draw", spy)
    text = base("plain", "marked.h") + "FUSE_BN: true\n"
    code, out, _ = run(tdnn["folder"], ["-w", "-s", write(tdnn["folder"], "marked.yaml", text)], capsys, monkeypatch)
    assert code == 0
    import yaml

    block = out.split("saved ")[0]  # the -w block (then -s and the summary) stays YAML: `name: [dims]`
    listed = yaml.safe_load(block)
    assert listed[WEIGHT.format("tdnn2")] == [1, 3, 16, 16] and listed[WEIGHT.format("tdnn1")] == [1, 3, 12, 16]
    marks = [line for line in out.splitlines() if line.startswith("# ")]
    assert marks == [f"# {WEIGHT.format('tdnn2')}: folded: BatchNorm tdnn1.batchnorm (before it); "
                     "WEIGHT_MIN_MAX applies to the folded values",
                     f"# {WEIGHT.format('output')}: folded: BatchNorm tdnn3.batchnorm (before it); "
                     "WEIGHT_MIN_MAX applies to the folded values"]
    values, folded = drawn[WEIGHT.format("tdnn2")]
    assert folded == "tdnn1.batchnorm (before it)" and drawn[WEIGHT.format("tdnn1")][1] is None
    c = tf_consts(str(tdnn["folder"] / "plain.pb"))  # oracle: float64 from TF's own constants
    scale = c["tdnn1.batchnorm/gamma"].astype(np.float64) / np.sqrt(c["tdnn1.batchnorm/variance"] + 1e-3)
    want = c["tdnn2.affine/kernel"].astype(np.float64) * scale[None, :, None]
    assert np.allclose(values, want.ravel(), rtol=1e-6, atol=1e-7)
    assert "FUSE_BN: BatchNorm tdnn1.batchnorm (before it) folded in" in hist.title(
        "w", [1], values, compiler.compile(config.load(str(tdnn["folder"] / "marked.yaml"))).weights[
            WEIGHT.format("tdnn2")], folded)
    assert len(list((tdnn["folder"] / "npu_jpgs").glob("*.jpg"))) == 4
