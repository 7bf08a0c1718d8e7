"""Keras models of the kinds people put on a GX8002-class chip (MLPerf-Tiny DS-CNN, ResNet-8,
MobileNetV2 blocks, the anomaly autoencoder, TC-ResNet, separable 1-D convs) and two models
full of the layers exports are made of. Built in code with fixed seeds and tiny shapes;
saved in every TF form by tests/tf_models.save_all. Used by tests/test_zoo_keras.py.
"""
from __future__ import annotations

import os

import tf_models as tm


def _kl():
    import keras
    from keras import layers

    return keras, layers


def _conv_bn_relu(layers, y, filters, kernel, strides=1, name="", act="relu"):
    y = layers.Conv2D(filters, kernel, strides=strides, padding="same", name=f"{name}conv")(y)
    y = layers.BatchNormalization(name=f"{name}bn")(y)
    return layers.Activation(act, name=f"{name}act")(y)


def ds_cnn_kws():
    """MLPerf-Tiny KWS DS-CNN (Keras reference layout), 16 channels instead of 64."""
    keras, layers = _kl()
    x = keras.Input((25, 10, 1), name="input_1")
    y = _conv_bn_relu(layers, x, 16, (10, 4), 2, "stem_")
    for k in range(2):
        y = layers.DepthwiseConv2D(3, padding="same", name=f"dw{k}")(y)
        y = layers.BatchNormalization(name=f"dw{k}_bn")(y)
        y = layers.Activation("relu", name=f"dw{k}_relu")(y)
        y = _conv_bn_relu(layers, y, 16, 1, 1, f"pw{k}_")
    y = layers.Dropout(0.4, name="drop")(y)
    y = layers.AveragePooling2D(pool_size=(13, 5), name="avg")(y)
    y = layers.Flatten(name="flat")(y)
    y = layers.Dense(12, activation="softmax", name="dense")(y)
    return tm._finish(keras.Model(x, y, name="ds_cnn_kws"), 11)


def resnet8():
    """MLPerf-Tiny ResNet-8 (Keras reference): residual Add, 1x1 strided shortcuts."""
    keras, layers = _kl()
    x = keras.Input((12, 12, 3), name="input_1")
    y = _conv_bn_relu(layers, x, 8, 3, 1, "stem_")
    for k, (f, s) in enumerate(((8, 1), (16, 2), (16, 2))):
        z = _conv_bn_relu(layers, y, f, 3, s, f"s{k}a_")
        z = layers.Conv2D(f, 3, padding="same", name=f"s{k}b_conv")(z)
        z = layers.BatchNormalization(name=f"s{k}b_bn")(z)
        short = y if s == 1 else layers.Conv2D(f, 1, strides=s, name=f"s{k}_short")(y)
        y = layers.Activation("relu", name=f"s{k}_out")(layers.Add(name=f"s{k}_add")([z, short]))
    y = layers.AveragePooling2D(pool_size=3, name="avg")(y)
    y = layers.Flatten(name="flat")(y)
    y = layers.Dense(10, name="logits")(y)
    return tm._finish(keras.Model(x, y, name="resnet8"), 12)


def mobilenetv2():
    """keras.applications-style MobileNetV2: ZeroPadding2D + VALID strided convs, ReLU(6.),
    inverted residuals with a residual Add, GlobalAveragePooling2D."""
    keras, layers = _kl()
    x = keras.Input((16, 16, 3), name="input_1")
    y = layers.ZeroPadding2D(((0, 1), (0, 1)), name="Conv1_pad")(x)
    y = layers.Conv2D(8, 3, strides=2, padding="valid", use_bias=False, name="Conv1")(y)
    y = layers.BatchNormalization(name="bn_Conv1")(y)
    y = layers.ReLU(6.0, name="Conv1_relu")(y)
    for k, (c, s) in enumerate(((8, 1), (12, 2))):
        z = layers.Conv2D(c * 4, 1, use_bias=False, name=f"block_{k}_expand")(y)
        z = layers.ReLU(6.0, name=f"block_{k}_expand_relu")(layers.BatchNormalization(name=f"block_{k}_expand_BN")(z))
        if s == 2:
            z = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"block_{k}_pad")(z)
        z = layers.DepthwiseConv2D(3, strides=s, padding="same" if s == 1 else "valid",
                                   use_bias=False, name=f"block_{k}_depthwise")(z)
        z = layers.ReLU(6.0, name=f"block_{k}_depthwise_relu")(layers.BatchNormalization(name=f"block_{k}_dw_BN")(z))
        z = layers.Conv2D(c, 1, use_bias=False, name=f"block_{k}_project")(z)
        z = layers.BatchNormalization(name=f"block_{k}_project_BN")(z)
        y = layers.Add(name=f"block_{k}_add")([y, z]) if s == 1 else z
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    y = layers.Dense(4, activation="softmax", name="predictions")(y)
    return tm._finish(keras.Model(x, y, name="mobilenetv2"), 13)


def autoencoder():
    """MLPerf-Tiny anomaly-detection dense autoencoder (Dense + BN + ReLU)."""
    keras, layers = _kl()
    x = keras.Input((64,), name="input_1")
    y = x
    for k, n in enumerate((32, 32, 8, 32, 32)):
        y = layers.Dense(n, name=f"dense_{k}")(y)
        y = layers.BatchNormalization(name=f"bn_{k}")(y)
        y = layers.Activation("relu", name=f"relu_{k}")(y)
    y = layers.Dense(64, name="out")(y)
    return tm._finish(keras.Model(x, y, name="autoencoder"), 14)


def tc_resnet():
    """TC-ResNet8 in Keras: Conv1D over time, MFCCs as channels, residual Adds."""
    keras, layers = _kl()
    x = keras.Input((24, 40), name="mfcc")
    y = layers.Conv1D(16, 3, padding="same", use_bias=False, name="stem")(x)
    for k, (c, s) in enumerate(((24, 2), (32, 2))):
        z = layers.Conv1D(c, 9, strides=s, padding="same", use_bias=False, name=f"b{k}_c1")(y)
        z = layers.ReLU(name=f"b{k}_r1")(layers.BatchNormalization(name=f"b{k}_bn1")(z))
        z = layers.Conv1D(c, 9, padding="same", use_bias=False, name=f"b{k}_c2")(z)
        z = layers.BatchNormalization(name=f"b{k}_bn2")(z)
        short = layers.Conv1D(c, 1, strides=s, use_bias=False, name=f"b{k}_short")(y)
        y = layers.ReLU(name=f"b{k}_out")(layers.Add(name=f"b{k}_add")([z, short]))
    y = layers.GlobalAveragePooling1D(name="gap")(y)
    y = layers.Dense(12, activation="softmax", name="probs")(y)
    return tm._finish(keras.Model(x, y, name="tc_resnet"), 15)


def separable_1d():
    """MatchboxNet-style SeparableConv1D blocks with a 1x1 residual and dilation."""
    keras, layers = _kl()
    x = keras.Input((24, 20), name="mfcc")
    y = layers.SeparableConv1D(16, 11, strides=2, padding="same", name="prologue")(x)
    y = layers.ReLU(name="pro_relu")(layers.BatchNormalization(name="pro_bn")(y))
    z = layers.SeparableConv1D(16, 5, padding="same", name="b0_sep")(y)
    z = layers.BatchNormalization(name="b0_bn")(z)
    r = layers.Conv1D(16, 1, name="b0_res")(y)
    y = layers.ReLU(name="b0_relu")(layers.Add(name="b0_add")([z, r]))
    y = layers.SeparableConv1D(12, 5, dilation_rate=2, padding="same", name="epilogue")(y)
    y = layers.GlobalAveragePooling1D(name="gap")(y)
    y = layers.Dense(5, name="logits")(y)
    return tm._finish(keras.Model(x, y, name="separable_1d"), 16)


def plumbing():
    """Layers exports are made of: SeparableConv2D, ZeroPadding2D, UpSampling2D, Concatenate,
    Reshape, Permute, TimeDistributed(Dense), GlobalMaxPooling2D/1D, Cropping2D."""
    keras, layers = _kl()
    x = keras.Input((6, 6, 2), name="image")
    a = layers.SeparableConv2D(4, 3, padding="same", activation="relu", name="sep")(x)
    b = layers.ZeroPadding2D(1, name="pad")(x)
    b = layers.Conv2D(4, 3, name="conv_b")(b)
    y = layers.Concatenate(name="cat")([a, b])                      # 6x6x8
    p = layers.MaxPooling2D(2, name="pool")(y)                      # 3x3x8
    u = layers.UpSampling2D(2, name="up")(p)                        # 6x6x8
    y = layers.Add(name="skip")([y, u])
    y = layers.Cropping2D(((1, 1), (0, 0)), name="crop")(y)         # 4x6x8
    g = layers.GlobalMaxPooling2D(name="gmax")(y)                   # 8
    t = layers.Reshape((4, 48), name="rows")(y)
    t = layers.Permute((2, 1), name="perm")(t)                      # 48x4
    t = layers.TimeDistributed(layers.Dense(3), name="td")(t)      # 48x3
    t = layers.GlobalMaxPooling1D(name="tmax")(t)                   # 3
    y = layers.Concatenate(name="head_in")([g, t])
    y = layers.Dense(4, name="logits")(y)
    return tm._finish(keras.Model(x, y, name="plumbing"), 17)


def norm_acts():
    """LayerNormalization and the activations Keras writes as small graphs:
    swish, gelu, hard_sigmoid, softplus, plus ReLU(max_value)."""
    keras, layers = _kl()
    x = keras.Input((8, 6), name="seq")
    y = layers.Dense(12, name="proj")(x)
    y = layers.LayerNormalization(name="ln1")(y)
    y = layers.Activation("swish", name="swish")(y)
    y = layers.Dense(12, activation="gelu", name="ffn_gelu")(y)
    y = layers.Activation("hard_sigmoid", name="hsig")(y)
    y = layers.Conv1D(8, 3, padding="same", name="conv")(y)
    y = layers.LayerNormalization(axis=-1, epsilon=1e-6, name="ln2")(y)
    y = layers.Activation("softplus", name="softplus")(y)
    y = layers.ReLU(max_value=3.0, name="relu_max")(y)
    y = layers.Flatten(name="flat")(y)
    y = layers.Dense(3, name="logits")(y)
    return tm._finish(keras.Model(x, y, name="norm_acts"), 18)


def keras2_style_pb(path: str, seed: int = 21, bilinear: bool = False):
    """A frozen TF2 graph with what Keras 2 / tf.nn code writes and Keras 3 no longer does:
    LayerNormalization as FusedBatchNormV3(is_training=True) on a [1, rows, C, 1] reshape with
    Fill-made scale/offset, UpSampling2D as ResizeNearestNeighbor (legacy and half-pixel),
    tf.where with a constant mask (SelectV2), tf.nn.gelu (Erfc), softplus, erf, zeros_like.

    Writes the .pb; returns (feeds, {output name: TF reference})."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    rng = np.random.default_rng(seed)
    w = tf.constant((rng.standard_normal((3, 3, 2, 4)) / 4).astype(np.float32))
    gamma, beta = (tf.constant(v.astype(np.float32)) for v in (rng.uniform(0.5, 1.5, 4), rng.standard_normal(4) * 0.3))
    mask = tf.constant(rng.random((1, 8, 8, 1)) > 0.3)
    wd = tf.constant((rng.standard_normal((4, 3)) / 2).astype(np.float32))

    def layer_norm_keras2(y):
        shape = tf.shape(y)
        rows = shape[0] * shape[1] * shape[2]
        flat = tf.reshape(y, tf.stack([1, rows, shape[3], 1]))
        z, _, _ = tf.compat.v1.nn.fused_batch_norm(flat, tf.ones([rows]), tf.zeros([rows]), epsilon=1e-3,
                                                   data_format="NCHW")
        return tf.reshape(z, shape) * gamma + beta

    def forward(x):
        y = layer_norm_keras2(tf.nn.conv2d(x, w, 1, "SAME"))                  # [N, 4, 4, 4]
        y = tf.nn.gelu(y)
        y = tf.compat.v1.image.resize_nearest_neighbor(y, [8, 8])             # legacy pixel map
        y = tf.where(mask, y, tf.zeros_like(y) - 3.0)
        method = "bilinear" if bilinear else "nearest"
        y = tf.image.resize(y, [16, 16], method=method)                        # half-pixel centres
        y = tf.nn.softplus(y) + tf.math.erf(y) * 0.5
        return tf.matmul(tf.reduce_mean(y, axis=[1, 2]), wd)

    spec = tf.TensorSpec((None, 4, 4, 2), tf.float32, name="x")
    fn = tf.function(forward, input_signature=[spec])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    tf.io.write_graph(frozen.graph, os.path.dirname(path), os.path.basename(path), as_text=False)
    feeds = {"x": rng.standard_normal((1, 4, 4, 2)).astype(np.float32)}
    return feeds, {"Identity": np.asarray(forward(tf.constant(feeds["x"])))}


MODELS = ("ds_cnn_kws", "resnet8", "mobilenetv2", "autoencoder", "tc_resnet", "separable_1d",
          "plumbing", "norm_acts")


def build(name: str):
    return globals()[name]()
