"""Issue 14, vendor parity: a Kaldi-style TDNN built with the TF1 graph API and frozen two ways
(plain `convert_variables_to_constants`, and the session-folded graph with `__cf__` names the
vendor's `-w` prints), run through the real CLI in-process (TensorFlow is imported once).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import vendor_models as vm  # noqa: E402

from gxnpuc import cli, compiler, config  # noqa: E402

WEIGHT = "{}.affine/conv1d/ExpandDims_1"  # the plain name of a TF Conv1D weight


@pytest.fixture(scope="module")
def tdnn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vendor")
    built = vm.kaldi_tdnn(str(folder))
    np.savez(folder / "inputs.npz", **built["feeds"])
    return {"folder": folder, **built}


def write(folder, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def base(pb: str, out: str) -> str:
    return f"PB_FILE: {pb}.pb\nOUTPUT_FILE: {out}\nCOMPRESS: true\nCONV2D_COMPRESS: true\n"


def run(folder, args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.chdir(folder)
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def weight_names(tdnn, capsys, monkeypatch, pb: str) -> list[str]:
    cfg = write(tdnn["folder"], f"{pb}_w.yaml", base(pb, f"{pb}_w.h"))
    code, out, _ = run(tdnn["folder"], ["-w", cfg], capsys, monkeypatch)
    assert code == 0
    return [line.split(": [")[0] for line in out.splitlines() if ": [" in line]


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
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": [" in line)
    assert lines[WEIGHT.format("tdnn2")] == "[1, 3, 16, 16]  # folded: BatchNorm tdnn1.batchnorm (before it)"
    assert lines[WEIGHT.format("tdnn1")] == "[1, 3, 12, 16]"
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


# -- 6. -L -f PT ------------------------------------------------------------------------------------
def _torch_rows():
    """For every PYTORCH_LAYERS row: (module, input shape, opset) that torch.onnx.export exports."""
    import torch
    from torch import nn

    class F(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, *xs):
            return self.fn(*xs)

    seq = nn.Sequential
    c2, c1 = (1, 4, 6, 6), (1, 4, 6)
    return {
        "nn.Conv1d, nn.Conv2d": (nn.Conv2d(4, 4, 3), c2, 13),
        "nn.ConvTranspose1d, nn.ConvTranspose2d": (nn.ConvTranspose2d(4, 4, 3), c2, 13),
        "nn.Linear (2-D input)": (nn.Linear(6, 3), (1, 6), 13),
        "nn.Linear (3-D input, per frame)": (nn.Linear(6, 3), c1, 13),
        "nn.BatchNorm1d, nn.BatchNorm2d (after a non-conv)": (seq(nn.ReLU(), nn.BatchNorm2d(4)), c2, 13),
        "nn.LayerNorm": (nn.LayerNorm(6), c1, 17),
        "nn.ReLU": (nn.ReLU(), c1, 13), "nn.ReLU6, torch.clamp": (nn.ReLU6(), c1, 13),
        "nn.LeakyReLU": (nn.LeakyReLU(), c1, 13), "nn.PReLU": (nn.PReLU(), c1, 13),
        "nn.ELU": (nn.ELU(), c1, 13), "nn.Sigmoid": (nn.Sigmoid(), c1, 13), "nn.Tanh": (nn.Tanh(), c1, 13),
        "nn.Hardswish": (nn.Hardswish(), c1, 14), "nn.GELU": (nn.GELU(), c1, 13),
        "nn.SiLU": (nn.SiLU(), c1, 13), "nn.Softmax": (nn.Softmax(-1), c1, 13),
        "nn.LogSoftmax": (nn.LogSoftmax(-1), c1, 13), "nn.MaxPool1d, nn.MaxPool2d": (nn.MaxPool2d(2), c2, 13),
        "nn.AvgPool1d, nn.AvgPool2d": (nn.AvgPool2d(2), c2, 13),
        "nn.AdaptiveAvgPool2d(1)": (nn.AdaptiveAvgPool2d(1), c2, 13),
        "nn.Upsample (nearest)": (nn.Upsample(scale_factor=2), c2, 13),
        "nn.ZeroPad2d, F.pad": (nn.ZeroPad2d(1), c2, 13),
        "torch.flatten": (F(lambda x: torch.flatten(x, 1)), c2, 13),
        "x.view / x.reshape": (F(lambda x: x.reshape(1, 24)), c1, 13),
        "x.transpose / x.permute": (F(lambda x: x.transpose(1, 2)), c1, 13),
        "torch.cat": (F(lambda x: torch.cat([x, x * 2], 1)), c1, 13),
        "x + y, x * y, x - y, x / y": (F(lambda x: (x + 1) * x - x / 3), c1, 13),
        "x.mean(dim)": (F(lambda x: x.mean(-1)), c1, 13),
        "nn.LSTM": (F(nn.LSTM(6, 5, batch_first=True)), c1, 13),
        "nn.GRU": (F(nn.GRU(6, 5, batch_first=True)), c1, 13),
    }


def test_list_pytorch_ops_match_what_torch_exports(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import onnx

    from gxnpuc.report.pytorch import PYTORCH_LAYERS

    rows = _torch_rows()
    assert set(rows) == set(PYTORCH_LAYERS)
    for layer, (module, shape, opset) in rows.items():
        path = str(tmp_path / "m.onnx")
        with torch.no_grad():
            torch.onnx.export(module.eval(), (torch.randn(*shape),), path, dynamo=False, opset_version=opset)
        exported = {n.op_type for n in onnx.load(path).graph.node}
        assert set(PYTORCH_LAYERS[layer]) <= exported, (layer, exported)
    assert cli.main(["-L", "-f", "PT"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PyTorch models come in through torch.onnx.export")
    assert "nn.Conv1d, nn.Conv2d" in out and "ONNX (" in out and "TensorFlow (" not in out
    assert cli.main(["-L", "-f", "pt", "--markdown"]) == 0
    assert "| nn.ReLU | Relu | act |" in capsys.readouterr().out


# -- 7. -e on per-frame outputs --------------------------------------------------------------------
def tf_run(pb_path: str, feeds: dict) -> np.ndarray:
    """TensorFlow's own outputs, sample by sample (the oracle)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    gd = v1.GraphDef()
    gd.ParseFromString(open(pb_path, "rb").read())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(gd, name="")
    n = len(next(iter(feeds.values())))
    with v1.Session(graph=graph) as sess:
        return np.stack([sess.run(f"{vm.OUTPUT}:0", {f"{k}:0": v[i] for k, v in feeds.items()})
                         for i in range(n)])


def test_eval_per_frame_outputs_and_labels(tdnn, capsys, monkeypatch):
    import json

    rng = np.random.default_rng(7)
    feeds = {"feats": rng.standard_normal((6, 1, vm.FRAMES, vm.FEATS)).astype(np.float32),
             "ivector": rng.standard_normal((6, 1, vm.FRAMES, vm.IVEC)).astype(np.float32)}
    truth = tf_run(str(tdnn["folder"] / "plain.pb"), feeds).argmax(-1)[:, 0, :]  # [6, 11]
    labels = truth.copy()
    labels[:3, :4] = (labels[:3, :4] + 1) % vm.CLASSES  # 12 of 66 frames wrong for the framework
    want = float(np.mean(truth == labels))
    folder = tdnn["folder"]
    cfg = write(folder, "ev.yaml", base("plain", "ev.h"))
    for name, lab in (("idx", labels), ("onehot", np.eye(vm.CLASSES)[labels])):
        np.savez(folder / f"ev_{name}.npz", labels=lab, **feeds)
        code, out, err = run(folder, ["-e", f"ev_{name}.npz", cfg], capsys, monkeypatch)
        assert code == 0, err
        rows = {r["mode"]: r for r in json.load(open(folder / "ev.eval.json"))["outputs"]}
        assert rows["framework"]["accuracy"] == pytest.approx(want) and want == pytest.approx(54 / 66)
        assert rows["float"]["top1_agreement"] == 1.0 and rows["npu"]["top1_agreement"] is not None
        assert f"{want:.1%}" in out
    np.savez(folder / "ev_bad.npz", labels=labels[:, :10], **feeds)
    code, _, err = run(folder, ["-e", "ev_bad.npz", cfg], capsys, monkeypatch)
    assert code == 1 and "labels: has shape [6, 10]" in err and "per-frame class indices [6, 11]" in err


# -- 8. the tuned config: vendor-clean when it can be, and its own OUTPUT_FILE -------------------
def test_tuned_config_is_vendor_clean_and_writes_its_own_header(tdnn, capsys, monkeypatch):
    import yaml

    from gxnpuc.config import KEYS, MODEL_KEYS

    folder = tdnn["folder"]
    text = base("plain", "tune.h") + "TUNE_CLIP_SEARCH: weight\nTUNE_TARGET_SNR_DB: 30\nFUSE_BN: true\n"
    cfg = write(folder, "tune.yaml", text)
    assert run(folder, [cfg], capsys, monkeypatch)[0] == 0
    before = (folder / "tune.h").read_bytes()
    code, out, err = run(folder, ["-t", cfg], capsys, monkeypatch)
    assert code == 0, err
    tuned_text = (folder / "tune.tuned.yaml").read_text()
    assert "# vendor-clean: every active key is one the vendor's gxnpuc reads" in tuned_text
    active = yaml.safe_load(tuned_text)
    vendor = {k.name for k in KEYS if not k.project} | set(MODEL_KEYS)
    assert set(active) <= vendor and "TUNE_TARGET_SNR_DB" not in active
    assert active["OUTPUT_FILE"] == "tune.tuned.h" and active["FUSE_BN"] is True
    code, _, err = run(folder, [str(folder / "tune.tuned.yaml")], capsys, monkeypatch)
    assert code == 0, err
    assert (folder / "tune.tuned.h").is_file() and (folder / "tune.h").read_bytes() == before


# -- 9. model.h compiles as C99, gnu99 and C++17 with strict flags ----------------------------------
READER = r"""
#include "model.h"
#include <string.h>
float first_prob(const struct in_out *io) {  /* no pointer to a packed member: memcpy */
    float v;
    memcpy(&v, (const char *)io + sizeof(struct input), sizeof v);
    return v;
}
float prob(const struct in_out *io, int frame, int phone) {  /* or read the member by value */
    return io->output.phone_prob[0][frame][phone];
}
"""
MAIN = r"""
#include "model.h"
#include <stdio.h>
#include <string.h>
float first_prob(const struct in_out *io);
float prob(const struct in_out *io, int frame, int phone);
static struct in_out io;
int main(void) {
    float want = 0.25f;
    memcpy((char *)&io + sizeof(struct input), &want, sizeof want);
    printf("%u %u %u %g %g\n", (unsigned)sizeof(struct in_out), io_size, total_size - npu_size,
           (double)first_prob(&io), (double)prob(&io, 0, 0));
    return 0;
}
"""


@pytest.mark.parametrize("compiler_, std, ext", [("gcc", "c99", "c"), ("gcc", "gnu99", "c"),
                                                 ("g++", "c++17", "cpp")])
def test_header_compiles_strict_in_c_and_cpp(tdnn, tmp_path, compiler_, std, ext, capsys, monkeypatch):
    import shutil
    import subprocess

    if shutil.which(compiler_) is None:
        pytest.skip(f"{compiler_} not installed")
    text = f"PB_FILE: {tdnn['folder'] / 'plain.pb'}\nOUTPUT_FILE: model.h\nCOMPRESS: true\nCONV2D_COMPRESS: true\n"
    assert run(tmp_path, [write(tmp_path, "c.yaml", text)], capsys, monkeypatch)[0] == 0
    (tmp_path / f"reader.{ext}").write_text(READER)
    (tmp_path / f"main.{ext}").write_text(MAIN)  # two files include model.h: one copy links
    flags = [f"-std={std}", "-Wall", "-Wextra", "-Werror"]
    proc = subprocess.run([compiler_, *flags, f"main.{ext}", f"reader.{ext}", "-o", "prog"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = subprocess.run(["./prog"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert got[0] == got[1] == got[2] and got[3] == got[4] == "0.25"
    # what the docs warn about: a pointer to a packed member fails -Werror
    (tmp_path / f"bad.{ext}").write_text('#include "model.h"\nconst float *p(struct in_out *io) '
                                         '{ return &io->output.phone_prob[0][0][0]; }\n')
    bad = subprocess.run([compiler_, f"-std={std}", "-Wall", "-Werror", "-c", f"bad.{ext}", "-o", "bad.o"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0 and "packed" in bad.stderr


# -- 11. the lowered-graph cache ----------------------------------------------------------------------
PROBE = ("import sys; from gxnpuc import cli; code = cli.main(sys.argv[1:]); "
         "print('TF-IMPORTED', 'tensorflow' in sys.modules); sys.exit(code)")


def test_cache_skips_tensorflow_and_gives_the_same_bytes(tdnn, tmp_path):
    import subprocess
    import sys

    folder = tdnn["folder"]
    cfg = write(folder, "cache.yaml", base("folded", "cache.h"))
    env = {**os.environ, "GXNPUC_CACHE_DIR": str(tmp_path / "cache"), "SOURCE_DATE_EPOCH": "1"}

    def gx(*args, **extra):
        proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=folder, capture_output=True,
                              text=True, env={**env, **extra}, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "TF-IMPORTED True" in gx("-w", cfg)  # cold: lowers with TensorFlow, fills the cache
    cold = (folder / "cache.h").read_bytes()
    out = gx("-w", "-e", "inputs.npz", cfg)  # -e twice: the first run stores TF's outputs
    assert "TF-IMPORTED True" in out and "tdnn2.affine/conv1d/ExpandDims_1/_" in out
    warm = gx("-w", "-e", "inputs.npz", cfg)
    assert "TF-IMPORTED False" in warm and warm.split("TF-IMPORTED")[0].replace("\r", "") == out.split("TF-IMPORTED")[0]
    assert (folder / "cache.h").read_bytes() == cold
    entries = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert entries == [".json", ".json", ".npz", ".npz"]
    for p in (tmp_path / "cache").glob("*.npz"):
        with np.load(p, allow_pickle=False) as z:  # plain arrays only: loading needs no pickle
            assert all(z[k].dtype != object for k in z.files)
    # a config value lowering reads is part of the key: a new entry, TensorFlow again
    changed = write(folder, "cache2.yaml", base("folded", "cache.h") + f"OUTPUT_OPS: [{vm.OUTPUT}]\n")
    assert "TF-IMPORTED True" in gx("-w", changed)
    assert "TF-IMPORTED True" in gx("-w", cfg, GXNPUC_CACHE="off")



def test_vendor_example_builds_and_its_vendor_names_work(tmp_path, capsys, monkeypatch):
    """examples/make_kaldi_tf1.py + configs/kaldi_tf1.yaml, as docs/vendor.md runs them."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("make_kaldi_tf1", os.path.join(root, "examples", "make_kaldi_tf1.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(str(tmp_path / "examples" / "build")) == 0
    (tmp_path / "configs").mkdir()
    text = open(os.path.join(root, "configs", "kaldi_tf1.yaml")).read()
    vendor_name = "tdnn3.affine/conv1d/ExpandDims_1/_11__cf__11"
    cfg = write(tmp_path / "configs", "k.yaml", text + f"EXCLUDE_COMPRESS_OPS: [{vendor_name}]\n")
    code, out, err = run(tmp_path, ["-w", cfg], capsys, monkeypatch)
    assert code == 0, err
    assert "tdnn3.affine/conv1d/ExpandDims_1:" not in out and "tdnn4.affine/conv1d/ExpandDims_1: [1, 3, 64, 64]" in out
    assert "note: FUSE_BN folded 4 BatchNorm(s)" in out
    cf = write(tmp_path / "configs", "cf.yaml", text.replace("kaldi.pb", "kaldi_cf.pb"))
    code, out, _ = run(tmp_path, ["-w", cf], capsys, monkeypatch)
    assert code == 0 and "tdnn3.affine/conv1d/ExpandDims_1/_11__cf__11: [1, 3, 64, 64]" in out
