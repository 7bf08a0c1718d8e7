"""Streaming .tflite models made the way users make them (tf.Module + TFLiteConverter), for the
sequence --eval tests: the context lives in resource variables (VAR_HANDLE / READ_VARIABLE /
ASSIGN_VARIABLE / CALL_ONCE), in float and in full int8, or in explicit state inputs and
outputs. Fixed seeds. The float tf.Module run step by step is the float32 reference.

    frame [1, 1, F] -> concat(ctx1 [1, 2, F], frame) -> dense 3F -> H + ReLU   ctx1 <- last 2 frames
      -> concat(ctx2 [1, 1, H], .) -> dense 2H -> H + ReLU                     ctx2 <- last frame
      -> h = tanh(h @ U + . @ W)  (a recurrent state: error may accumulate)    h <- h
      -> y = sigmoid(h @ Wo) [1, C]
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

F, H, R, C = 8, 16, 12, 4


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.normal(0, 1.0 / np.sqrt(shape[0]), shape).astype(np.float32)
    return {"w1": w(3 * F, H), "b1": np.full(H, 0.05, np.float32), "w2": w(2 * H, H),
            "b2": np.full(H, 0.05, np.float32), "u": 0.6 * w(R, R), "wh": w(H, R), "wo": w(R, C)}


def module(seed: int = 3):
    """The float streaming tf.Module; .step(frame [1, 1, F]) -> {"y": [1, C]}; .reset()."""
    import tensorflow as tf

    k = {n: tf.constant(v) for n, v in _weights(seed).items()}

    class Stream(tf.Module):
        def __init__(self):
            super().__init__()
            self.ctx1 = tf.Variable(tf.zeros([1, 2, F]), name="ctx1")
            self.ctx2 = tf.Variable(tf.zeros([1, 1, H]), name="ctx2")
            self.h = tf.Variable(tf.zeros([1, R]), name="h")

        @tf.function(input_signature=[tf.TensorSpec([1, 1, F], tf.float32, name="frame")])
        def step(self, frame):
            full1 = tf.concat([self.ctx1, frame], axis=1)
            self.ctx1.assign(full1[:, 1:, :])
            a = tf.nn.relu(tf.matmul(tf.reshape(full1, [1, 3 * F]), k["w1"]) + k["b1"])
            full2 = tf.concat([self.ctx2, tf.reshape(a, [1, 1, H])], axis=1)
            self.ctx2.assign(full2[:, 1:, :])
            c = tf.nn.relu(tf.matmul(tf.reshape(full2, [1, 2 * H]), k["w2"]) + k["b2"])
            h = tf.tanh(tf.matmul(self.h, k["u"]) + tf.matmul(c, k["wh"]))
            self.h.assign(h)
            return {"y": tf.sigmoid(tf.matmul(h, k["wo"]))}

        def reset(self):
            for v in (self.ctx1, self.ctx2, self.h):
                v.assign(tf.zeros_like(v))
    return Stream()


def frames(samples: int, steps: int, seed: int = 4) -> np.ndarray:
    """[samples, steps, 1, 1, F]: smooth, feature-like frames in about [-2, 2]."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :, None]
    f = np.arange(F)[None, None, :]
    x = np.sin(t / 3.0 + f / 2.0 + rng.uniform(0, 6, (samples, 1, F))) + 0.3 * rng.standard_normal((samples, steps, F))
    return x.reshape(samples, steps, 1, 1, F).astype(np.float32)


def variables_tflite(int8: bool = False, seed: int = 3) -> bytes:
    """The module converted with resource variables; int8: full integer (int8 in and out)."""
    import tensorflow as tf

    mod = module(seed)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([mod.step.get_concrete_function()], mod)
    conv.experimental_enable_resource_variables = True
    if int8:
        calib = frames(4, 16, seed=11)

        def rep():
            for s in range(len(calib)):
                for t in range(calib.shape[1]):
                    yield [calib[s, t]]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def explicit_state_tflite(seed: int = 3) -> bytes:
    """The same network with its three states as inputs and outputs (no variables)."""
    import tensorflow as tf

    k = {n: tf.constant(v) for n, v in _weights(seed).items()}
    spec = [tf.TensorSpec([1, 1, F], tf.float32, name="frame"), tf.TensorSpec([1, 2, F], tf.float32, name="ctx1"),
            tf.TensorSpec([1, 1, H], tf.float32, name="ctx2"), tf.TensorSpec([1, R], tf.float32, name="h")]

    @tf.function(input_signature=spec)
    def step(frame, ctx1, ctx2, h):
        full1 = tf.concat([ctx1, frame], axis=1)
        a = tf.nn.relu(tf.matmul(tf.reshape(full1, [1, 3 * F]), k["w1"]) + k["b1"])
        full2 = tf.concat([ctx2, tf.reshape(a, [1, 1, H])], axis=1)
        c = tf.nn.relu(tf.matmul(tf.reshape(full2, [1, 2 * H]), k["w2"]) + k["b2"])
        h_next = tf.tanh(tf.matmul(h, k["u"]) + tf.matmul(c, k["wh"]))
        return {"y": tf.sigmoid(tf.matmul(h_next, k["wo"])), "ctx1_next": full1[:, 1:, :],
                "ctx2_next": full2[:, 1:, :], "h_next": h_next}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([step.get_concrete_function()])
    return conv.convert()


def tf_steps(xs: np.ndarray, seed: int = 3, carry: bool = True) -> np.ndarray:
    """The float tf.Module over xs [samples, steps, 1, 1, F], state reset per sample (or at
    every step when not carry): y [samples, steps, C] (float32 TensorFlow, the reference for
    the int8 noise floor)."""
    mod = module(seed)
    out = np.zeros((xs.shape[0], xs.shape[1], C), np.float32)
    for s in range(len(xs)):
        mod.reset()
        for t in range(xs.shape[1]):
            if not carry:
                mod.reset()
            out[s, t] = mod.step(xs[s, t])["y"].numpy()[0]
    return out
