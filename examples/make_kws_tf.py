"""Build the bundled TensorFlow example: a Conv1D TDNN keyword spotter made with Keras.

Writes OUT_DIR/kws_tf.keras, the frozen GraphDef OUT_DIR/kws_tf.pb (tf.function +
convert_variables_to_constants_v2, as TF2 users freeze), and OUT_DIR/kws_tf_inputs.npz with
seeded inputs keyed by the input name. configs/kws_tf.yaml compiles the .pb the way the
vendor's configs do (PB_FILE). Weights are random but seeded and scaled like a trained
network's; `prefinal-l` gets a few outliers so that the accuracy report has a story to tell.

    python examples/make_kws_tf.py examples/build
"""
from __future__ import annotations

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEED = 2024
N_FRAMES, N_MFCC, CH, N_CLASSES = 98, 40, 64, 12


def build():
    """The Keras model, layer names as in Kaldi-style TDNN recipes."""
    import keras
    from keras import layers

    x = keras.Input((N_FRAMES, N_MFCC), name="feats")
    y = layers.Conv1D(CH, 3, name="tdnn1.affine")(x)
    y = layers.BatchNormalization(name="tdnn1.batchnorm")(y)
    y = layers.ReLU(name="tdnn1.relu")(y)
    y = layers.Conv1D(CH, 3, dilation_rate=2, name="tdnn2.affine")(y)
    y = layers.BatchNormalization(name="tdnn2.batchnorm")(y)
    y = layers.ReLU(name="tdnn2.relu")(y)
    y = layers.Conv1D(CH, 1, activation="relu", name="prefinal-l")(y)
    y = layers.GlobalAveragePooling1D(name="pool")(y)
    y = layers.Dense(N_CLASSES, name="output.affine")(y)
    model = keras.Model(x, y, name="tdnn")
    _set_weights(model, np.random.default_rng(SEED))
    return model


def _set_weights(model, rng) -> None:
    values = []
    for w in model.weights:
        shape, path = tuple(w.shape), w.path
        if "moving_variance" in path:
            v = rng.uniform(0.5, 2.0, shape)
        elif "gamma" in path:
            v = rng.uniform(0.7, 1.3, shape)
        elif len(shape) >= 2:
            v = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
            if path.startswith("prefinal-l"):
                v.flat[rng.choice(v.size, 3, replace=False)] *= 40.0  # the long tail
        else:
            v = rng.standard_normal(shape) * 0.1
        values.append(v.astype(np.float32))
    model.set_weights(values)


def freeze(model, path: str) -> None:
    """Write the frozen GraphDef a TF2 user would hand to the vendor tool."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((None, N_FRAMES, N_MFCC), tf.float32, name="feats")
    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(spec))
    tf.io.write_graph(frozen.graph, os.path.dirname(path), os.path.basename(path), as_text=False)


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    model = build()
    model.save(os.path.join(out_dir, "kws_tf.keras"))
    freeze(model, os.path.join(out_dir, "kws_tf.pb"))
    rng = np.random.default_rng(SEED + 7)
    feats = rng.standard_normal((32, 1, N_FRAMES, N_MFCC)).astype(np.float32)
    np.savez(os.path.join(out_dir, "kws_tf_inputs.npz"), feats=feats)
    print(f"wrote {out_dir}/kws_tf.keras, {out_dir}/kws_tf.pb ({model.count_params()} parameters "
          f"with the BatchNorm statistics) and {out_dir}/kws_tf_inputs.npz ({len(feats)} inputs)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python examples/make_kws_tf.py OUT_DIR", file=sys.stderr)
        raise SystemExit(2)
    main(sys.argv[1])
