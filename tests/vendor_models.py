"""Models built the way the vendor tool's users build them (issue 14): a Kaldi-style TDNN with the
TF1 graph API (`tf.compat.v1`), frozen two ways, plus a PyTorch model exported to ONNX.

- `plain`: `tf.compat.v1.graph_util.convert_variables_to_constants` (weights are `.../kernel`,
  gxnpuc folds `ExpandDims_1` itself and keeps that name);
- `folded`: the graph a TF1 session runs after its own constant folding (Grappler off, the
  session's optimizer on): folded constants are renamed `.../ExpandDims_1/_1__cf__1`, which is
  what the vendor's `-w` prints. The partition graph's `_Arg`/`_Retval` become Placeholders and
  are dropped, so the file is an ordinary frozen GraphDef.

Layers (Kaldi order affine -> ReLU -> BatchNorm -> next affine):
ivector [1, 15, 4] ++ feats [1, 15, 8] -> tdnn1 (k3 VALID) -> tdnn2 (k3 VALID) ->
tdnn3 (k3 SAME: its input is padded) -> output.affine (k1) -> softmax: phone_prob [1, 11, 65].
"""
from __future__ import annotations

import os
import re

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FRAMES, FEATS, IVEC, CLASSES = 15, 8, 4, 65
INPUTS = ("feats", "ivector")  # graph order (the order the placeholders are made)
OUTPUT = "phone_prob"


def _layer(v1, tf, rng, y, name: str, c_in: int, c_out: int, k: int, pad: str, bn: bool):
    w = v1.Variable((rng.standard_normal((k, c_in, c_out)) / np.sqrt(k * c_in)).astype(np.float32),
                    name=f"{name}.affine/kernel")
    b = v1.Variable((0.1 * rng.standard_normal(c_out)).astype(np.float32), name=f"{name}.affine/bias")
    y = tf.nn.bias_add(tf.nn.conv1d(y, w, 1, pad, name=f"{name}.affine/conv1d"), b,
                       name=f"{name}.affine/BiasAdd")
    if not bn:
        return y
    y = tf.nn.relu(y, name=f"{name}.relu")
    stats = {n: v1.Variable(v.astype(np.float32), name=f"{name}.batchnorm/{n}") for n, v in (
        ("mean", 0.3 * rng.standard_normal(c_out)), ("variance", rng.uniform(0.3, 2.0, c_out)),
        ("beta", 0.3 * rng.standard_normal(c_out)), ("gamma", rng.uniform(0.5, 1.5, c_out)))}
    return tf.nn.batch_normalization(y, stats["mean"], stats["variance"], stats["beta"],
                                     stats["gamma"], 1e-3, name=f"{name}.batchnorm")


def kaldi_tdnn(folder: str, seed: int = 14) -> dict:
    """Write plain.pb and folded.pb into folder; returns feeds, the TF reference and the paths."""
    import tensorflow as tf

    v1, rng = tf.compat.v1, np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        feats = v1.placeholder(tf.float32, (1, FRAMES, FEATS), name="feats")
        ivec = v1.placeholder(tf.float32, (1, FRAMES, IVEC), name="ivector")
        y = tf.concat([ivec, feats], axis=2, name="input.concat")
        y = _layer(v1, tf, rng, y, "tdnn1", IVEC + FEATS, 16, 3, "VALID", True)
        y = _layer(v1, tf, rng, y, "tdnn2", 16, 16, 3, "VALID", True)
        y = _layer(v1, tf, rng, y, "tdnn3", 16, 16, 3, "SAME", True)
        y = _layer(v1, tf, rng, y, "output", 16, CLASSES, 1, "VALID", False)
        tf.nn.softmax(y, name=OUTPUT)
        feeds = {"feats": rng.standard_normal((1, FRAMES, FEATS)).astype(np.float32),
                 "ivector": rng.standard_normal((1, FRAMES, IVEC)).astype(np.float32)}
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            ref = sess.run(f"{OUTPUT}:0", {f"{k}:0": v for k, v in feeds.items()})
            plain = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), [OUTPUT])
    paths = {"plain": os.path.join(folder, "plain.pb"), "folded": os.path.join(folder, "folded.pb")}
    with open(paths["plain"], "wb") as fh:
        fh.write(plain.SerializeToString())
    with open(paths["folded"], "wb") as fh:
        fh.write(session_folded(plain, feeds).SerializeToString())
    return {"feeds": feeds, "ref": ref, "paths": paths}


def session_folded(graph_def, feeds: dict):
    """The GraphDef a TF1 session actually runs after its own constant folding (`__cf__` names)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    config = v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True  # the session's folding only
    meta = v1.RunMetadata()
    with v1.Session(graph=graph, config=config) as sess:
        sess.run(f"{OUTPUT}:0", {f"{k}:0": v for k, v in feeds.items()},
                 options=v1.RunOptions(output_partition_graphs=True), run_metadata=meta)
    (part,) = meta.partition_graphs
    out = v1.GraphDef()
    for node in part.node:
        if node.op == "_Retval":
            continue
        new = out.node.add()
        new.CopyFrom(node)
        m = re.fullmatch(r"_arg_(.+)_0_\d+", node.name)
        if node.op == "_Arg" and m:
            new.Clear()
            new.name, new.op = m.group(1), "Placeholder"
            new.attr["dtype"].type = tf.float32.as_datatype_enum
            new.attr["shape"].shape.CopyFrom(tf.TensorShape(feeds[m.group(1)].shape).as_proto())
        for k in [k for k in new.attr if k.startswith("_")]:
            del new.attr[k]
    args = {n.name: re.fullmatch(r"_arg_(.+)_0_\d+", n.name).group(1) for n in part.node if n.op == "_Arg"}
    for node in out.node:
        node.input[:] = [args.get(i, i) for i in node.input]
        node.ClearField("device")
    return out


def folded_name(names: list[str], plain: str) -> str:
    """The `__cf__` spelling, among `names`, of a plain folded constant name."""
    (hit,) = [n for n in names if re.fullmatch(re.escape(plain) + r"/_\d+__cf__\d+", n)]
    return hit


def torch_tdnn(path: str, seed: int = 14):
    """The same TDNN in PyTorch (Conv1d -> ReLU -> BatchNorm1d, the last conv padded), exported
    with torch.onnx.export as the vendor's PyTorch users do; returns (feeds, onnxruntime output)."""
    import onnxruntime as ort
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Tdnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.tdnn1, self.bn1 = nn.Conv1d(FEATS, 16, 3), nn.BatchNorm1d(16)
            self.tdnn2, self.bn2 = nn.Conv1d(16, 16, 3), nn.BatchNorm1d(16)
            self.tdnn3, self.bn3 = nn.Conv1d(16, 16, 3, padding=1), nn.BatchNorm1d(16)
            self.output = nn.Conv1d(16, CLASSES, 1)

        def forward(self, x):  # x [N, FEATS, frames]
            x = self.bn1(torch.relu(self.tdnn1(x)))
            x = self.bn2(torch.relu(self.tdnn2(x)))
            x = self.bn3(torch.relu(self.tdnn3(x)))
            return torch.softmax(self.output(x), dim=1)

    model = Tdnn().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.3, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        x = torch.randn(1, FEATS, FRAMES)
        torch.onnx.export(model, (x,), path, input_names=["feats"], output_names=[OUTPUT],
                          dynamo=False, opset_version=13)
    feeds = {"feats": x.numpy()}
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    return feeds, ref


# -- helpers the vendor tests share (tests/test_vendor*.py) --------------------------------------
WEIGHT = "{}.affine/conv1d/ExpandDims_1"  # the plain name of a TF Conv1D weight


def write(folder, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def base(pb: str, out: str) -> str:
    return f"PB_FILE: {pb}.pb\nOUTPUT_FILE: {out}\nCOMPRESS: true\nCONV2D_COMPRESS: true\n"


def run(folder, args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """The real CLI in-process (TensorFlow imported once), in `folder`: (exit code, stdout, stderr)."""
    from gxnpuc import cli

    monkeypatch.chdir(folder)
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def weight_names(tdnn, capsys, monkeypatch, pb: str) -> list[str]:
    cfg = write(tdnn["folder"], f"{pb}_w.yaml", base(pb, f"{pb}_w.h"))
    code, out, _ = run(tdnn["folder"], ["-w", cfg], capsys, monkeypatch)
    assert code == 0
    return [line.split(": [")[0] for line in out.splitlines() if ": [" in line]
