""".tflite files with recurrent layers, transposed convolutions and guarded division, made the
way users make them (tf.lite.TFLiteConverter from Keras 3 and tf.function, fixed seeds), plus
files the installed converter does not write, built with TensorFlow's own schema object API
(tensorflow.lite.python.schema_py_generated): the fused UNIDIRECTIONAL_SEQUENCE_LSTM / _RNN and
BIDIRECTIONAL_SEQUENCE_LSTM ops (Keras 3 layers become WHILE loops instead) and MediaPipe's
Convolution2DTransposeBias (a converted TRANSPOSE_CONV rewritten to the custom op).
"""
from __future__ import annotations

import os
import struct

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _randomize(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        scale = 0.6 / np.sqrt(max(w.shape[0], 1)) if len(w.shape) > 1 else 0.2
        w.assign(rng.normal(0, scale, w.shape).astype(np.float32))


def keras_rnn(kind: str, steps: int, seed: int = 0) -> bytes:
    """Keras 3 LSTM / GRU / GRU(unroll=True) / SimpleRNN / Bidirectional(LSTM) over `steps`
    frames of 3 features, all states returned as sequences, then a Dense layer."""
    import keras
    import tensorflow as tf

    L = keras.layers
    keras.utils.set_random_seed(seed)
    x = keras.Input((steps, 3), batch_size=1, name="seq")
    layer = {"lstm": lambda: L.LSTM(5, return_sequences=True, name="lstm"),
             "gru": lambda: L.GRU(5, return_sequences=True, name="gru"),
             "gru_unroll": lambda: L.GRU(5, return_sequences=True, unroll=True, name="gru"),
             "rnn": lambda: L.SimpleRNN(5, return_sequences=True, name="rnn"),
             "bilstm": lambda: L.Bidirectional(L.LSTM(4, return_sequences=True), name="bi")}[kind]()
    model = keras.Model(x, L.Dense(2, name="head")(layer(x)))
    _randomize(model, seed)
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def transpose_conv(bias: bool, padding: str, seed: int = 1):
    """Keras Conv2DTranspose, stride 2, kernel 3: TRANSPOSE_CONV with the converter's
    output_shape input (and bias as its fourth input). Returns (bytes, kernel [kh, kw, O, I], bias)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    x = keras.Input((5, 4, 3), batch_size=1, name="image")
    layer = keras.layers.Conv2DTranspose(4, 3, strides=2, padding=padding, use_bias=bias, name="deconv")
    model = keras.Model(x, layer(x))
    _randomize(model, seed)
    w = layer.get_weights()
    return (tf.lite.TFLiteConverter.from_keras_model(model).convert(), w[0],
            w[1] if bias else np.zeros(w[0].shape[2], np.float32))


def divide_no_nan() -> bytes:
    """tf.math.divide_no_nan(x, max(x) - min(x)) as a log-mel normaliser: EQUAL + SELECT_V2."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 6, 8], tf.float32, name="x")])
    def fn(x):
        span = tf.reduce_max(x, axis=[1, 2], keepdims=True) - tf.reduce_min(x, axis=[1, 2], keepdims=True)
        return {"y": tf.math.divide_no_nan(x - tf.reduce_min(x, axis=[1, 2], keepdims=True), span)}
    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()


def runtime_mask() -> bytes:
    """Comparisons, logic and a select on run-time values (no guarded division): GREATER,
    LESS_EQUAL, LOGICAL_AND / OR / NOT, NOT_EQUAL, SELECT_V2, FLOOR."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def fn(x):
        m = tf.logical_or(tf.logical_and(x > 0.5, x <= 2.0), tf.logical_not(tf.not_equal(x, 1.0)))
        return {"y": tf.where(m, tf.floor(x), -x)}
    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()


# -- files the converter does not write: the schema's object API --------------------------------
def _schema():
    from tensorflow.lite.python import schema_py_generated as fb

    return fb


def _build(fb, op: str, options_type: str, options, tensors: list[tuple], inputs: list[int],
           outputs: list[int], op_inputs: list[int], op_outputs: list[int], open_axis: int = -1) -> bytes:
    """One-operator model. tensors: (name, shape, value or None, variable); open_axis: a
    dimension of the model input left open (-1 in its shape signature)."""
    import flatbuffers

    model, sg = fb.ModelT(), fb.SubGraphT()
    model.version, model.buffers = 3, [fb.BufferT()]
    sg.tensors = []
    for name, shape, value, variable in tensors:
        t = fb.TensorT()
        t.name, t.shape, t.type, t.isVariable = name, list(shape), fb.TensorType.FLOAT32, variable
        t.buffer = 0
        if value is not None:
            b = fb.BufferT()
            b.data = list(np.asarray(value, "<f4").tobytes())
            model.buffers.append(b)
            t.buffer = len(model.buffers) - 1
        sg.tensors.append(t)
    if open_axis >= 0:
        sig = list(sg.tensors[inputs[0]].shape)
        sig[open_axis] = -1
        sg.tensors[inputs[0]].shapeSignature = sig
    code = fb.OperatorCodeT()
    code.builtinCode = getattr(fb.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    o = fb.OperatorT()
    o.opcodeIndex, o.inputs, o.outputs = 0, op_inputs, op_outputs
    o.builtinOptionsType, o.builtinOptions = getattr(fb.BuiltinOptions, options_type), options
    sg.operators, sg.inputs, sg.outputs, sg.name = [o], inputs, outputs, "main"
    model.operatorCodes, model.subgraphs = [code], [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def sequence_lstm(steps: int, time_major: bool, peephole: bool = False, projection: int = 0,
                  seed: int = 2, bidirectional: bool = False, open_time: bool = False, merge: bool = True) -> bytes:
    """UNIDIRECTIONAL_SEQUENCE_LSTM (or BIDIRECTIONAL_SEQUENCE_LSTM, outputs merged or not) over
    3 features, 5 cells, optional peepholes and a projection to `projection` outputs; the
    states are variable tensors starting at zero, as the converter writes them."""
    fb = _schema()
    rng = np.random.default_rng(seed)
    n_in, hidden, batch = 3, 5, 1
    out = projection or hidden
    xs = [steps, batch, n_in] if time_major else [batch, steps, n_in]
    tensors: list[tuple] = [("seq", xs, None, False)]

    def add(name, shape, value=None, variable=False):
        tensors.append((name, shape, value, variable))
        return len(tensors) - 1

    def direction(tag: str) -> list[int]:
        ins = [add(f"{tag}/w_{g}", [hidden, n_in], rng.normal(0, 0.5, (hidden, n_in))) for g in "ifco"]
        ins += [add(f"{tag}/r_{g}", [hidden, out], rng.normal(0, 0.4, (hidden, out))) for g in "ifco"]
        ins += [add(f"{tag}/peep_{g}", [hidden], rng.normal(0, 0.3, hidden)) if peephole else -1 for g in "ifo"]
        ins += [add(f"{tag}/b_{g}", [hidden], rng.normal(0, 0.2, hidden)) for g in "ifco"]
        ins += [add(f"{tag}/proj", [out, hidden], rng.normal(0, 0.4, (out, hidden))) if projection else -1,
                add(f"{tag}/proj_b", [out], rng.normal(0, 0.1, out)) if projection else -1]
        return ins
    if not bidirectional:
        weights = direction("lstm")
        states = [add("lstm/h", [batch, out], variable=True), add("lstm/c", [batch, hidden], variable=True)]
        ys = [add("y", [*xs[:2], out])]
        opts = fb.UnidirectionalSequenceLSTMOptionsT()
        op, kind = "UNIDIRECTIONAL_SEQUENCE_LSTM", "UnidirectionalSequenceLSTMOptions"
        op_inputs = [0, *weights, *states, -1, -1, -1, -1]
    else:
        fw, bw = direction("fw"), direction("bw")
        states = [add(f"{d}/{s}", [batch, out if s == "h" else hidden], variable=True)
                  for d in ("fw", "bw") for s in "hc"]
        ys = [add("y", [*xs[:2], 2 * out])] if merge else [add(f"y_{d}", [*xs[:2], out]) for d in ("fw", "bw")]
        opts = fb.BidirectionalSequenceLSTMOptionsT()
        opts.mergeOutputs = merge
        op, kind = "BIDIRECTIONAL_SEQUENCE_LSTM", "BidirectionalSequenceLSTMOptions"
        op_inputs = [0, *fw, *bw, *states] + [-1] * 9
    opts.fusedActivationFunction, opts.timeMajor = fb.ActivationFunctionType.TANH, time_major
    return _build(fb, op, kind, opts, tensors, [0], ys, op_inputs, ys,
                  (0 if time_major else 1) if open_time else -1)


def sequence_rnn(steps: int, time_major: bool, seed: int = 3) -> bytes:
    """UNIDIRECTIONAL_SEQUENCE_RNN (tanh) over 3 features, 4 units, hidden state variable."""
    fb = _schema()
    rng = np.random.default_rng(seed)
    xs = [steps, 1, 3] if time_major else [1, steps, 3]
    tensors = [("seq", xs, None, False), ("rnn/w", [4, 3], rng.normal(0, 0.5, (4, 3)), False),
               ("rnn/r", [4, 4], rng.normal(0, 0.4, (4, 4)), False), ("rnn/b", [4], rng.normal(0, 0.2, 4), False),
               ("rnn/h", [1, 4], None, True), ("y", [*xs[:2], 4], None, False)]
    opts = fb.SequenceRNNOptionsT()
    opts.fusedActivationFunction, opts.timeMajor = fb.ActivationFunctionType.TANH, time_major
    return _build(fb, "UNIDIRECTIONAL_SEQUENCE_RNN", "SequenceRNNOptions", opts, tensors, [0], [5],
                  [0, 1, 2, 3, 4], [5])


def as_mediapipe_transpose_conv(data: bytes, padding: str, stride: int) -> bytes:
    """The converted TRANSPOSE_CONV(output_shape, weights, input, bias) rewritten as MediaPipe's
    custom Convolution2DTransposeBias(input, weights, bias) with its raw options
    (TfLitePadding SAME=1 / VALID=2, stride_w, stride_h as int32)."""
    import flatbuffers

    fb = _schema()
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    codes = [k for k, c in enumerate(model.operatorCodes)
             if max(c.builtinCode, c.deprecatedBuiltinCode) == fb.BuiltinOperator.TRANSPOSE_CONV]
    for k in codes:
        c = model.operatorCodes[k]
        c.builtinCode = c.deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
        c.customCode = "Convolution2DTransposeBias"
    for op in model.subgraphs[0].operators:
        if op.opcodeIndex in codes:
            sizes, w, x, b = list(op.inputs)
            op.inputs = [x, w, b]
            op.builtinOptionsType, op.builtinOptions = 0, None
            op.customOptions = list(struct.pack("<iii", {"SAME": 1, "VALID": 2}[padding], stride, stride))
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def transpose_conv_f64(x: np.ndarray, w_hwoi: np.ndarray, bias: np.ndarray, stride: int, padding: str,
                       out_hw: tuple[int, int]) -> np.ndarray:
    """float64 transposed convolution, NHWC, weight [kh, kw, O, I] (Keras' layout): every input
    pixel scatters its kernel window onto the full output, which is then cropped as TF's
    Conv2DBackpropInput crops (SAME: the forward conv's padding, the odd pixel at the end)."""
    n, h, w_, _ = x.shape
    kh, kw, o, _ = w_hwoi.shape
    full = np.zeros((n, (h - 1) * stride + kh, (w_ - 1) * stride + kw, o))
    for i in range(h):
        for j in range(w_):
            full[:, i * stride:i * stride + kh, j * stride:j * stride + kw] += \
                np.einsum("nc,abkc->nabk", x[:, i, j].astype(np.float64), w_hwoi.astype(np.float64))
    tops = []
    for size, k, out in zip((h, w_), (kh, kw), out_hw):
        total = max((size - 1) * stride + k - out, 0) if padding == "SAME" else 0
        tops.append(total // 2)
    return full[:, tops[0]:tops[0] + out_hw[0], tops[1]:tops[1] + out_hw[1]] + bias
