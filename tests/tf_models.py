"""Keras test models built in code (fixed seeds, random weights incl. BatchNorm statistics),
and helpers that save one model in every TensorFlow form gxnpuc reads.

Each builder returns a compiled-free keras.Model with tiny shapes; `save_all` writes the
.keras, .h5, SavedModel (model.export) and frozen .pb forms and returns their paths.
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _randomize(model, seed: int) -> None:
    """Random weights everywhere (Keras zero-initialises biases and BN shifts, which would
    hide a dropped bias), kernels scaled by fan-in so that outputs stay unsaturated."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.weights:
        shape, name = tuple(w.shape), w.path if hasattr(w, "path") else w.name
        if "moving_variance" in name:
            value = rng.uniform(0.5, 2.0, shape)
        elif "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        else:
            value = rng.standard_normal(shape) * 0.3
        weights.append(value.astype(np.float32))
    model.set_weights(weights)


def cnn_bn():
    """Conv2D (SAME, odd size, stride 2) + BatchNorm + ReLU/ReLU6, pooling, Dense softmax."""
    import keras
    from keras import layers

    x = keras.Input((9, 9, 3), name="image")
    y = layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(x)
    y = layers.BatchNormalization(name="bn1")(y)
    y = layers.ReLU(name="relu1")(y)
    y = layers.Conv2D(8, 3, padding="valid", use_bias=False, name="conv2")(y)
    y = layers.BatchNormalization(name="bn2")(y)
    y = layers.Activation("relu6", name="act2")(y)
    y = layers.MaxPooling2D(2, padding="same", name="pool")(y)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    y = layers.Dense(5, activation="softmax", name="probs")(y)
    return _finish(keras.Model(x, y, name="cnn"), 1)


def tdnn_kws():
    """A Conv1D TDNN keyword spotter, layer names as in the vendor's docs."""
    import keras
    from keras import layers

    x = keras.Input((20, 8), name="feats")
    y = layers.Conv1D(16, 3, name="tdnn1.affine")(x)
    y = layers.BatchNormalization(name="tdnn1.batchnorm")(y)
    y = layers.ReLU(name="tdnn1.relu")(y)
    y = layers.Conv1D(16, 3, dilation_rate=2, name="tdnn2.affine")(y)
    y = layers.LeakyReLU(negative_slope=0.1, name="tdnn2.relu")(y)
    y = layers.Dropout(0.3, name="drop")(y)
    y = layers.Conv1D(12, 1, name="prefinal-l")(y)
    y = layers.MaxPooling1D(2, name="pool")(y)
    y = layers.Flatten(name="flat")(y)
    y = layers.Dense(4, name="output.affine")(y)
    y = layers.Softmax(name="output.softmax")(y)
    return _finish(keras.Model(x, y, name="tdnn"), 2)


def ds_cnn():
    """Depthwise-separable CNN: DepthwiseConv2D (multiplier 2), SeparableConv2D, AvgPool."""
    import keras
    from keras import layers

    x = keras.Input((10, 6, 1), name="mfcc")
    y = layers.Conv2D(6, (3, 3), strides=(2, 1), padding="same", name="conv0")(x)
    y = layers.BatchNormalization(name="bn0")(y)
    y = layers.Activation("relu", name="relu0")(y)
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw1")(y)
    y = layers.BatchNormalization(name="bn1")(y)
    y = layers.Activation("elu", name="elu1")(y)
    y = layers.SeparableConv2D(8, 3, padding="same", name="sep2")(y)
    y = layers.Activation("sigmoid", name="sig2")(y)
    y = layers.AveragePooling2D((2, 2), padding="same", name="avg")(y)
    y = layers.Flatten(name="flat")(y)
    y = layers.Dense(3, name="logits")(y)
    return _finish(keras.Model(x, y, name="ds_cnn"), 3)


def mlp():
    """Dense layers with tanh/selu/softmax, Dropout, Add and Concatenate merges."""
    import keras
    from keras import layers

    x = keras.Input((6, 4), name="x")
    f = layers.Flatten(name="flat")(x)
    a = layers.Dense(16, activation="tanh", name="fc1")(f)
    b = layers.Dense(16, activation="selu", name="fc2")(f)
    s = layers.Add(name="sum")([a, b])
    s = layers.Dropout(0.5, name="drop")(s)
    c = layers.Concatenate(name="cat")([s, f])
    y = layers.Dense(5, name="fc3")(c)
    y = layers.Activation("log_softmax", name="logp")(y)
    return _finish(keras.Model(x, y, name="mlp"), 4)


def streaming():
    """Two inputs (a new frame, the state ring buffer), two outputs (scores, the new state)."""
    import keras
    from keras import layers

    frame = keras.Input((1, 8), name="frame")
    state = keras.Input((4, 8), name="state")
    kept = layers.Cropping1D((1, 0), name="drop_oldest")(state)
    new_state = layers.Concatenate(axis=1, name="new_state")([kept, frame])
    y = layers.Conv1D(6, 4, name="conv")(new_state)
    y = layers.Flatten(name="flat")(y)
    a = layers.Dense(3, activation="tanh", name="head_a")(y)
    b = layers.Dense(3, name="head_b")(y)
    scores = layers.Multiply(name="scores")([a, b])
    return _finish(keras.Model([frame, state], [scores, new_state], name="stream"), 5)


def _finish(model, seed: int):
    _randomize(model, seed)
    return model


def inputs_for(model, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 inputs (batch 1) keyed by the Keras input names."""
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal((1, *t.shape[1:])).astype(np.float32) for t in model.inputs}


def reference(model, feeds: dict) -> list[np.ndarray]:
    """TensorFlow's own outputs, in the model's output order."""
    xs = [feeds[t.name] for t in model.inputs]
    ys = model(xs if len(xs) > 1 else xs[0], training=False)
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    return [np.asarray(y) for y in ys]


def write_frozen_pb(model, path: str) -> None:
    """The frozen GraphDef a TF2 user writes: tf.function + convert_variables_to_constants_v2."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=t.name) for t in model.inputs]
    single = len(specs) == 1
    fn = tf.function(lambda *xs: model(xs[0] if single else list(xs), training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(*specs))
    tf.io.write_graph(frozen.graph, os.path.dirname(path), os.path.basename(path), as_text=False)


def save_all(model, folder: str) -> dict[str, tuple[str, str]]:
    """Every TF form of the model: form -> (config model key, path)."""
    os.makedirs(folder, exist_ok=True)
    paths = {"keras": ("KERAS_FILE", os.path.join(folder, "model.keras")),
             "h5": ("KERAS_FILE", os.path.join(folder, "model.h5")),
             "saved_model": ("SAVED_MODEL_DIR", os.path.join(folder, "saved_model")),
             "pb": ("PB_FILE", os.path.join(folder, "frozen.pb"))}
    model.save(paths["keras"][1])
    model.save(paths["h5"][1])
    model.export(paths["saved_model"][1], verbose=False)
    write_frozen_pb(model, paths["pb"][1])
    return paths


def tf1_frozen_graph(path: str, seed: int = 7):
    """A TF1-style graph (Placeholder, VariableV2 + `/read`, FusedBatchNormV3, bias_add,
    Relu6, MaxPool, Reshape, MatMul, Softmax) frozen with the v1 graph_util.

    Returns (feeds, reference outputs by output node name)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, 6, 6, 2), name="input")
        w = v1.Variable(rng.standard_normal((3, 3, 2, 4)).astype(np.float32), name="conv/weights")
        b = v1.Variable(rng.standard_normal(4).astype(np.float32), name="conv/biases")
        y = tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME", name="conv/Conv2D")
        y = tf.nn.bias_add(y, b, name="conv/BiasAdd")
        bn = [v1.Variable(v, name=f"bn/{n}") for n, v in (
            ("gamma", rng.standard_normal(4)), ("beta", rng.standard_normal(4)),
            ("mean", rng.standard_normal(4)), ("var", rng.uniform(0.5, 2, 4)))]
        bn = [tf.cast(v, tf.float32) for v in bn]
        y, _, _ = v1.nn.fused_batch_norm(y, *bn[:2], mean=bn[2], variance=bn[3], epsilon=1e-3,
                                         is_training=False, name="bn/FusedBatchNorm")
        y = tf.nn.relu6(y, name="relu")
        y = tf.nn.max_pool2d(y, 2, 2, "VALID", name="pool")
        y = tf.reshape(y, (-1, 36), name="flatten")
        fw = v1.Variable(rng.standard_normal((36, 3)).astype(np.float32), name="fc/weights")
        y = tf.nn.softmax(tf.matmul(y, fw, name="fc/MatMul"), name="prob")
        feeds = {"input": rng.standard_normal((1, 6, 6, 2)).astype(np.float32)}
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            ref = sess.run(y, {x: feeds["input"]})
            gd = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["prob"])
    with open(path, "wb") as fh:
        fh.write(gd.SerializeToString())
    return feeds, {"prob": ref}
