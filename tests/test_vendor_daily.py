"""Issue 14, vendor parity (points 6-11, and the docs/vendor.md example): -L -f PT, per-frame
-e, the tuned config, strict C/C++ headers and the lowered-graph cache, on the Kaldi-style TF1
TDNN of the `vendor_tdnn` fixture (conftest.py) and PyTorch models exported to ONNX.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import vendor_models as vm  # noqa: E402
from vendor_models import base, run, write  # noqa: E402

from gxnpuc import cli, config  # noqa: E402


@pytest.fixture
def tdnn(vendor_tdnn):
    return vendor_tdnn


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


def test_cache_skips_tensorflow_and_gives_the_same_bytes(tdnn, tmp_path, capsys, monkeypatch):
    import subprocess
    import sys

    folder = tdnn["folder"]
    cfg = write(folder, "cache.yaml", base("folded", "cache.h"))
    env = {**os.environ, "GXNPUC_CACHE_DIR": str(tmp_path / "cache"), "SOURCE_DATE_EPOCH": "1"}

    def gx(*args):
        proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=folder, capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    cold = gx("-w", "-e", "inputs.npz", cfg)  # lowers and runs TensorFlow, fills the cache
    assert "TF-IMPORTED True" in cold and "tdnn2.affine/conv1d/ExpandDims_1/_" in cold
    cached_header = (folder / "cache.h").read_bytes()
    warm = gx("-w", "-e", "inputs.npz", cfg)
    assert "TF-IMPORTED False" in warm and warm.split("TF-IMPORTED")[0] == cold.split("TF-IMPORTED")[0]
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".json", ".npz", ".npz"]
    for p in (tmp_path / "cache").glob("*.npz"):
        with np.load(p, allow_pickle=False) as z:  # plain arrays only: loading needs no pickle
            assert all(z[k].dtype != object for k in z.files)
    monkeypatch.setenv("GXNPUC_CACHE", "off")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    assert run(folder, [cfg], capsys, monkeypatch)[0] == 0  # lowered afresh: the same bytes
    assert (folder / "cache.h").read_bytes() == cached_header


def test_cache_key_covers_every_value_lowering_reads(tdnn):
    import dataclasses

    from gxnpuc.frontend import cache

    cfg = config.load(write(tdnn["folder"], "key.yaml", base("plain", "key.h")))
    changed = [dataclasses.replace(cfg, input_ops={"feats": (1, vm.FRAMES, vm.FEATS)}),
               dataclasses.replace(cfg, output_ops=(vm.OUTPUT,)),
               dataclasses.replace(cfg, keras_allow_lambda=True),
               dataclasses.replace(cfg, input_values={"ivector": 0.5}),
               dataclasses.replace(cfg, model_path=str(tdnn["folder"] / "folded.pb")),
               dataclasses.replace(cfg, model_key="SAVED_MODEL_DIR")]
    keys = {cache.graph_key(c) for c in [cfg, *changed]}
    assert len(keys) == 1 + len(changed)
    assert cache.graph_key(dataclasses.replace(cfg, compress=False, fuse_bn=True)) == cache.graph_key(cfg)
    copy = tdnn["folder"] / "copy.pb"  # same path, other bytes: another key
    copy.write_bytes((tdnn["folder"] / "plain.pb").read_bytes())
    before = cache.graph_key(dataclasses.replace(cfg, model_path=str(copy)))
    copy.write_bytes((tdnn["folder"] / "folded.pb").read_bytes())
    assert cache.graph_key(dataclasses.replace(cfg, model_path=str(copy))) != before


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
