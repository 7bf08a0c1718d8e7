"""Build the vendor-style example of docs/vendor.md: a Kaldi-style TDNN made with the TF1 graph
API (`tf.compat.v1`), frozen the TF1 way, in both forms a vendor user meets:

- OUT_DIR/kaldi.pb: `tf.compat.v1.graph_util.convert_variables_to_constants`;
- OUT_DIR/kaldi_cf.pb: the graph a TF1 session runs after its own constant folding, whose
  folded weights are named `.../ExpandDims_1/_7__cf__7` (what the vendor tool's `-w` prints).

Also OUT_DIR/kaldi_inputs.npz: 32 seeded inputs, with per-frame `labels` [32, 21] taken from
TensorFlow's own decisions (so accuracy = agreement with the framework). Layers follow the
Kaldi order affine -> ReLU -> BatchNorm; weights are random but seeded and scaled like a
trained network's, and `tdnn3.affine` gets a few outliers so the debugging walk has a story.

    python examples/make_kaldi_tf1.py examples/build
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEED, FRAMES, FEATS, CH, PHONES, SAMPLES = 14, 29, 40, 64, 65, 32
LAYERS = (("tdnn1", FEATS, 3, "VALID"), ("tdnn2", CH, 3, "VALID"), ("tdnn3", CH, 3, "VALID"),
          ("tdnn4", CH, 3, "VALID"))


def _graph(tf, rng):
    v1 = tf.compat.v1
    x = v1.placeholder(tf.float32, (1, FRAMES, FEATS), name="feats")
    y = x
    for name, c_in, k, pad in LAYERS:
        w = rng.standard_normal((k, c_in, CH)) / np.sqrt(k * c_in)
        if name == "tdnn3":  # a long tail: 6 weights ten times the rest
            w.flat[rng.choice(w.size, 6, replace=False)] *= 10
        w = v1.Variable(w.astype(np.float32), name=f"{name}.affine/kernel")
        b = v1.Variable((0.1 * rng.standard_normal(CH)).astype(np.float32), name=f"{name}.affine/bias")
        y = tf.nn.bias_add(tf.nn.conv1d(y, w, 1, pad, name=f"{name}.affine/conv1d"), b)
        y = tf.nn.relu(y, name=f"{name}.relu")
        stats = [v1.Variable(v.astype(np.float32), name=f"{name}.batchnorm/{n}") for n, v in (
            ("mean", 0.5 + 0.2 * rng.standard_normal(CH)), ("variance", rng.uniform(0.3, 2.0, CH)),
            ("beta", 0.2 * rng.standard_normal(CH)), ("gamma", rng.uniform(0.5, 1.5, CH)))]
        y = tf.nn.batch_normalization(y, stats[0], stats[1], stats[2], stats[3], 1e-3,
                                      name=f"{name}.batchnorm")
    w = v1.Variable((rng.standard_normal((1, CH, PHONES)) / np.sqrt(CH)).astype(np.float32),
                    name="output.affine/kernel")
    y = tf.nn.conv1d(y, w, 1, "VALID", name="output.affine/conv1d")
    return x, tf.nn.softmax(y, name="phone_prob")


def main(out_dir: str) -> int:
    import tensorflow as tf

    v1, rng = tf.compat.v1, np.random.default_rng(SEED)
    os.makedirs(out_dir, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x, y = _graph(tf, rng)
        feats = rng.standard_normal((SAMPLES, 1, FRAMES, FEATS)).astype(np.float32)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            probs = np.stack([sess.run(y, {x: f}) for f in feats])
            plain = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["phone_prob"])
    with open(os.path.join(out_dir, "kaldi.pb"), "wb") as fh:
        fh.write(plain.SerializeToString())
    with open(os.path.join(out_dir, "kaldi_cf.pb"), "wb") as fh:
        fh.write(_session_folded(tf, plain, feats[0]).SerializeToString())
    np.savez(os.path.join(out_dir, "kaldi_inputs.npz"), feats=feats, labels=probs.argmax(-1)[:, 0, :])
    print(f"wrote kaldi.pb, kaldi_cf.pb, kaldi_inputs.npz to {out_dir}")
    return 0


def _session_folded(tf, graph_def, feats: np.ndarray):
    """The partition graph a TF1 session runs (its own constant folding, Grappler off), with the
    `_Arg` feed turned back into a Placeholder and the `_Retval` dropped."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    config = v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    meta = v1.RunMetadata()
    with v1.Session(graph=graph, config=config) as sess:
        sess.run("phone_prob:0", {"feats:0": feats}, run_metadata=meta,
                 options=v1.RunOptions(output_partition_graphs=True))
    out, args = v1.GraphDef(), {}
    for node in meta.partition_graphs[0].node:
        if node.op == "_Retval":
            continue
        new = out.node.add()
        m = re.fullmatch(r"_arg_(.+)_0_\d+", node.name)
        if node.op == "_Arg" and m:
            args[node.name] = m.group(1)
            new.name, new.op = m.group(1), "Placeholder"
            new.attr["dtype"].type = tf.float32.as_datatype_enum
            new.attr["shape"].shape.CopyFrom(tf.TensorShape(feats.shape).as_proto())
            continue
        new.CopyFrom(node)
        new.ClearField("device")
        for k in [k for k in new.attr if k.startswith("_")]:
            del new.attr[k]
    for node in out.node:
        node.input[:] = [args.get(i, i) for i in node.input]
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("examples", "build")))
