"""A streaming keyword spotter built the vendor's way (TF1 graph API, frozen .pb), for the
STATE_OPS tests: per-layer context comes in as `State_c<k>` inputs and goes out as the
`State_c<k>_out` outputs of the next step; `phone_prob` holds per-frame posteriors.

    Feats [1, 4, 40] -> affine (40 -> 64) + ReLU
      -> concat(State_c0 [1, 3, 64], .) -> conv1d k=4 + ReLU   State_c0_out = last 3 frames
      -> concat(State_c1 [1, 4, 64], .) -> conv1d k=5 + ReLU   State_c1_out = last 4 frames
      -> concat(State_c2 [1, 5, 64], .) -> conv1d k=6 + ReLU   State_c2_out = last 5 frames
      -> affine (64 -> 12) -> softmax -> phone_prob [1, 4, 12]
"""
from __future__ import annotations

import os

import numpy as np

FRAMES, FEATS, HIDDEN, CLASSES = 4, 40, 64, 12
CONTEXT = (3, 4, 5)  # state frames per conv layer (kernel - 1)
STATE_OUTS = [f"State_c{k}_out" for k in range(len(CONTEXT))]


def build_pb(path: str, seed: int = 0) -> None:
    """Write the frozen GraphDef (weights from a fixed seed) to path."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    rng = np.random.default_rng(seed)
    g = tf.Graph()
    with g.as_default():
        feats = tf1.placeholder(tf.float32, [1, FRAMES, FEATS], name="Feats")
        states = [tf1.placeholder(tf.float32, [1, c, HIDDEN], name=f"State_c{k}") for k, c in enumerate(CONTEXT)]

        def var(name, shape, scale):
            return tf1.Variable((rng.standard_normal(shape) * scale).astype(np.float32), name=name)
        h = tf.nn.relu(tf.tensordot(feats, var("affine0/w", [FEATS, HIDDEN], 0.2), 1) + var("affine0/b", [HIDDEN], 0.1))
        outs = []
        for k, c in enumerate(CONTEXT):
            x = tf.concat([states[k], h], axis=1, name=f"tdnn{k + 1}/context")
            outs.append(tf.identity(x[:, -c:, :], name=STATE_OUTS[k]))
            w = var(f"tdnn{k + 1}/w", [c + 1, HIDDEN, HIDDEN], 0.6 / np.sqrt((c + 1) * HIDDEN))
            conv = tf.nn.conv1d(x, w, 1, "VALID", name=f"tdnn{k + 1}/conv1d")
            h = tf.nn.relu(conv + var(f"tdnn{k + 1}/b", [HIDDEN], 0.1))
        logits = tf.tensordot(h, var("out/w", [HIDDEN, CLASSES], 0.3), 1) + var("out/b", [CLASSES], 0.1)
        tf.nn.softmax(logits, name="phone_prob")
        with tf1.Session(graph=g) as sess:
            sess.run(tf1.global_variables_initializer())
            frozen = tf1.graph_util.convert_variables_to_constants(
                sess, g.as_graph_def(), ["phone_prob", *STATE_OUTS])
    with open(path, "wb") as fh:
        fh.write(frozen.SerializeToString())


def speech_like(samples: int, steps: int, seed: int = 1) -> np.ndarray:
    """[samples, steps, 1, FRAMES, FEATS] log-mel-like features: smooth over time and frequency,
    a slowly moving formant-like bump on a -1/f-like floor, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps * FRAMES)[None, :, None]
    f = np.arange(FEATS)[None, None, :]
    centre = 10 + 8 * np.sin(t / 17.0 + rng.uniform(0, 6, (samples, 1, 1)))
    level = 1.0 + 0.5 * np.sin(t / 9.0 + rng.uniform(0, 6, (samples, 1, 1)))
    noise = 0.1 * rng.standard_normal((samples, steps * FRAMES, FEATS))
    x = -0.03 * f + level * np.exp(-((f - centre) ** 2) / 30.0) + noise
    return x.reshape(samples, steps, 1, FRAMES, FEATS).astype(np.float32)


def tf_steps(path: str, feats: np.ndarray, carry: bool = True) -> dict[str, np.ndarray]:
    """TensorFlow run step by step with its own state carried (or zeros at every step when not
    carry): {output: [samples, steps, ...]}."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    with open(path, "rb") as fh:
        gd.ParseFromString(fh.read())
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    names = ["phone_prob", *STATE_OUTS]
    out = {n: [] for n in names}
    with tf.compat.v1.Session(graph=g) as sess:
        for s in range(len(feats)):
            state = [np.zeros((1, c, HIDDEN), np.float32) for c in CONTEXT]
            rows = {n: [] for n in names}
            for t in range(feats.shape[1]):
                feed = {"Feats:0": feats[s, t], **{f"State_c{k}:0": v for k, v in enumerate(state)}}
                res = sess.run([n + ":0" for n in names], feed)
                for n, r in zip(names, res):
                    rows[n].append(r)
                state = res[1:] if carry else state
            for n in names:
                out[n].append(np.stack(rows[n]))
    return {n: np.stack(v) for n, v in out.items()}


def config(folder: str, extra: str = "") -> str:
    """A vendor-style config for the model in folder/kws.pb; returns its path."""
    text = ("CORENAME: GRUS\nPB_FILE: kws.pb\nOUTPUT_FILE: model.h\n"
            "INPUT_OPS:\n  Feats: [1, 4, 40]\n  State_c0: [1, 3, 64]\n  State_c1: [1, 4, 64]\n"
            "  State_c2: [1, 5, 64]\n"
            "OUTPUT_OPS: [State_c0_out, State_c1_out, State_c2_out, phone_prob]\n"
            "FP16_OUT_OPS: [State_c0_out, State_c1_out, State_c2_out]\n"
            "COMPRESS: true\nCONV2D_COMPRESS: true\n" + extra)
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    return path
