"""Small models made the way users make .tflite files: tf.lite.TFLiteConverter from Keras
models and from concrete functions, in float, fp16-weight, dynamic-range and full-int8 forms.
Fixed seeds; each builder returns (tflite bytes, float64 reference function or None).
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

QUANT = ("float", "fp16", "dynamic", "int8")


def _tf():
    import tensorflow as tf

    return tf


def convert(converter, quant: str, rep=None) -> bytes:
    """Apply one of QUANT to a TFLiteConverter and convert."""
    tf = _tf()
    if quant != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quant == "int8":
        converter.representative_dataset = rep
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _randomize(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        scale = 0.5 / np.sqrt(max(np.prod(w.shape[:-1]), 1)) if len(w.shape) > 1 else 0.1
        w.assign(rng.normal(0, scale, w.shape).astype(np.float32) + (0.05 if len(w.shape) == 1 else 0))


def cnn():
    """CONV_2D (fused relu, stride 2; dilated), DEPTHWISE_CONV_2D (multiplier 2), PRELU,
    HARD_SWISH, MAX/AVERAGE_POOL_2D, PAD, CONCATENATION, MEAN, FULLY_CONNECTED (fused relu6),
    SOFTMAX. Weights big enough (>= 1024 values) for dynamic-range quantisation."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    x = keras.Input((12, 12, 3), batch_size=1, name="image")
    a = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="c1")(x)
    a = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(a)
    a = L.PReLU(shared_axes=[1, 2], name="prelu")(a)
    b = L.Conv2D(32, 3, padding="same", dilation_rate=2, name="c2")(a)
    b = L.Activation("hard_swish", name="hs")(b)
    b = L.MaxPooling2D(2, name="mp")(b)
    c = L.AveragePooling2D(3, strides=2, padding="same", name="ap")(a)
    c = L.ZeroPadding2D(((0, 0), (0, 0)), name="zp")(c)
    y = L.Concatenate(name="cat")([b, L.Conv2D(32, 1, name="c3")(c)])
    y = L.ZeroPadding2D(1, name="pad")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = L.Dense(64, activation="relu6", name="fc1")(y)
    y = L.Dense(10, activation="softmax", name="fc2")(y)
    model = keras.Model(x, y)
    _randomize(model, 1)
    return model


def cnn_tflite(quant: str) -> bytes:
    tf = _tf()
    model = cnn()
    rng = np.random.default_rng(2)

    def rep():
        for _ in range(16):
            yield [rng.standard_normal((1, 12, 12, 3)).astype(np.float32)]
    return convert(tf.lite.TFLiteConverter.from_keras_model(model), quant, rep), model


def movement_tflite() -> bytes:
    """A concrete function of data movement and element-wise ops: SPLIT, SPLIT_V,
    STRIDED_SLICE, PACK, TRANSPOSE, RESHAPE, EXPAND_DIMS, SQUEEZE, MIRROR_PAD (REFLECT and
    SYMMETRIC by 1), RESIZE_NEAREST_NEIGHBOR, ADD/SUB/MUL/DIV/MAXIMUM/MINIMUM,
    SQUARED_DIFFERENCE, TANH/LOGISTIC/RELU6/LEAKY_RELU/ELU, REDUCE_MAX, SUM, LOG_SOFTMAX,
    RESIZE_BILINEAR (x2 and x3, with and without half-pixel centers)."""
    tf = _tf()
    rng = np.random.default_rng(3)
    c = tf.constant(rng.uniform(0.5, 1.5, (1, 4, 6, 1)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 6, 2], tf.float32, name="x")])
    def fn(x):
        p, q = tf.split(x, 2, axis=3)
        r, s = tf.split(x, [2, 4], axis=2)
        t = tf.stack([p[:, ::2, 1:-1, 0], q[:, 1::2, :-2, 0]], axis=-1)  # [1, 2, 4, 2]
        t = tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [1, 4, 4])
        t = tf.squeeze(tf.expand_dims(t, 1), 1)
        m = tf.pad(x, [[0, 0], [1, 1], [2, 2], [0, 0]], mode="REFLECT")
        m = tf.pad(m, [[0, 0], [1, 0], [0, 1], [0, 0]], mode="SYMMETRIC")
        u = tf.image.resize(x, [8, 12], method="nearest")
        e = tf.nn.tanh(p) * c + tf.nn.sigmoid(q) - tf.nn.relu6(p) / (tf.abs(q) + 1.0)
        e = tf.maximum(e, tf.nn.leaky_relu(q, 0.1)) + tf.minimum(tf.nn.elu(p), 0.5)
        e = e + tf.math.squared_difference(p, q)
        b1 = tf.image.resize(x, [8, 18], method="bilinear")  # half-pixel centers, factors 2 and 3
        b2 = tf.compat.v1.image.resize_bilinear(x, [8, 12], half_pixel_centers=False)
        return {"b1": b1, "b2": b2, "t": t, "m": tf.reduce_max(m, axis=3, keepdims=True),
                "u": tf.reduce_sum(u, axis=[1, 2]), "e": e,
                "rs": tf.nn.log_softmax(tf.concat([r, s], axis=2), axis=-1)}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    return conv.convert()


def unsupported_tflite() -> bytes:
    """RESIZE_BILINEAR by a non-integer factor, SIN and ARG_MAX (behind the refused resize)
    in one model (all listed at once)."""
    import keras

    tf = _tf()
    L = keras.layers
    keras.utils.set_random_seed(4)
    x = keras.Input((4, 4, 2), batch_size=1, name="x")
    a = L.Resizing(8, 6, interpolation="bilinear", name="bilinear")(x)  # width 4 -> 6
    b = L.Lambda(lambda t: tf.math.sin(t), name="sin")(x)
    y = L.Lambda(lambda t: tf.cast(tf.argmax(t, axis=-1), tf.float32), name="argmax")(a)
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, [y, b], name="unsupported")).convert()


def streaming_tflite() -> bytes:
    """A streaming layer with its context in a resource variable: each step reads the last
    2 frames, appends the new one, convolves the 3 frames and stores the newest 2 back."""
    tf = _tf()
    rng = np.random.default_rng(5)
    w = tf.constant(rng.normal(0, 0.3, (3 * 4, 5)).astype(np.float32))

    class Stream(tf.Module):
        def __init__(self):
            super().__init__()
            self.ctx = tf.Variable(tf.zeros([1, 2, 4]), name="ctx")

        @tf.function(input_signature=[tf.TensorSpec([1, 1, 4], tf.float32, name="frame")])
        def step(self, frame):
            full = tf.concat([self.ctx, frame], axis=1)
            self.ctx.assign(full[:, 1:, :])
            return {"y": tf.nn.relu(tf.matmul(tf.reshape(full, [1, 12]), w))}
    mod = Stream()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([mod.step.get_concrete_function()], mod)
    conv.experimental_enable_resource_variables = True
    return conv.convert()


def sparse_tflite() -> bytes:
    """A Dense layer whose weight is mostly zeros, written with EXPERIMENTAL_SPARSITY
    (a DENSIFY of a sparse constant)."""
    import keras

    tf = _tf()
    keras.utils.set_random_seed(6)
    x = keras.Input((32,), batch_size=1, name="x")
    model = keras.Model(x, keras.layers.Dense(16, name="fc")(x))
    rng = np.random.default_rng(6)
    w = rng.normal(0, 0.3, (32, 16)).astype(np.float32)
    w[rng.random(w.shape) < 0.85] = 0
    model.get_layer("fc").set_weights([w, np.zeros(16, np.float32)])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return conv.convert()


def more_ops_tflite() -> bytes:
    """A second concrete function for the rest of the covered ops: CONV_2D of a Conv1D
    (EXPAND_DIMS / RESHAPE), BATCH_MATMUL, GATHER, SLICE, TILE, UNPACK, PADV2, SOFTMAX with
    beta, MEAN (keep_dims), REDUCE_MIN, ADD_N, SELECT_V2 with a constant condition, GELU,
    SQRT, RSQRT, EXP, LOG, NEG, SQUARE, POW, RELU, RELU_N1_TO_1."""
    tf = _tf()
    rng = np.random.default_rng(8)
    w1d = tf.constant(rng.normal(0, 0.3, (3, 4, 6)).astype(np.float32))
    keep = tf.constant(rng.random((1, 4, 6)) < 0.5)

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 6], tf.float32, name="x")])
    def fn(x):
        k = tf.nn.relu(tf.nn.conv1d(tf.transpose(x, [0, 2, 1])[:, :, :4], w1d, stride=1, padding="SAME"))
        b = tf.matmul(x, x, transpose_b=True)  # [1, 4, 4]
        g = tf.gather(x, [3, 0, 2], axis=2)[:, 1:, :] + tf.slice(x, [0, 1, 0], [1, 3, 3])
        t = tf.tile(x[:, :1, :], [1, 2, 1])
        parts = tf.unstack(x, axis=1)
        p = tf.pad(x, [[0, 0], [1, 0], [0, 2]], constant_values=1.5)
        s = tf.nn.softmax(x * 2.0)
        a = tf.abs(x) + 0.5
        e = tf.add_n([tf.sqrt(a), tf.math.rsqrt(a), tf.exp(-a), tf.math.log(a), tf.square(x),
                      tf.pow(a, 3.0), tf.nn.gelu(x, approximate=True), -x, tf.clip_by_value(x, -1.0, 1.0)])
        return {"k": k, "b": b, "g": g, "t": t, "u": parts[0] - parts[3], "p": p, "s": s,
                "m": tf.reduce_mean(e, axis=1, keepdims=True) + tf.reduce_min(e, axis=1, keepdims=True),
                "w": tf.where(keep, x, e)}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    return conv.convert()


def open_time_tflite() -> bytes:
    """A Keras model whose time dimension is open ([batch, None, 4]): INPUT_OPS fixes it."""
    import keras

    tf = _tf()
    keras.utils.set_random_seed(10)
    x = keras.Input((None, 4), name="seq")
    y = keras.layers.Conv1D(6, 3, padding="same", activation="relu", name="conv1d")(x)
    y = keras.layers.GlobalMaxPooling1D(name="gmp")(y)
    model = keras.Model(x, keras.layers.Dense(3, name="fc")(y))
    _randomize(model, 10)
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def dynamic_batch_tflite(quant: str = "int8") -> bytes:
    """A Keras model with an open batch dimension, converted to int8 with a float interface:
    QUANTIZE/DEQUANTIZE at the edges, Conv1D as EXPAND_DIMS + CONV_2D + SQUEEZE, Flatten's
    SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE chain, ReLU(max_value=1) (RELU_0_TO_1), RELU."""
    import keras

    tf = _tf()
    L = keras.layers
    keras.utils.set_random_seed(9)
    x = keras.Input((10, 4), name="seq")
    y = L.Conv1D(8, 3, padding="same", name="conv1d")(x)
    y = L.ReLU(max_value=1.0, name="relu01")(y)
    y = L.Flatten(name="flat")(y)
    y = L.ReLU(name="relu")(L.Dense(6, name="fc")(y))
    model = keras.Model(x, y)
    _randomize(model, 9)
    rng = np.random.default_rng(9)

    def rep():
        for _ in range(16):
            yield [rng.standard_normal((1, 10, 4)).astype(np.float32)]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return conv.convert()
    return conv.convert()
