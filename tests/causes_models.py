"""A small voice-activity detector built like silero-vad (fixed seeds): an STFT as a Conv with
a fixed DFT basis (windowed cos and sin rows), magnitude (Pow, Add, Sqrt), two re-parameterised
convs whose weights have a few output channels far wider than the rest, an LSTM over the
frames and a sigmoid whose bias puts the speech probability near 0 on non-speech audio.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from onnx_util import make_model

SAMPLES, WIN, HOP, BINS, CH, HID = 320, 64, 32, 33, 16, 8
FRAMES = (SAMPLES - WIN) // HOP + 1


def dft_basis() -> np.ndarray:
    """[2 * BINS, 1, WIN]: Hann-windowed cos rows, then -sin rows (torch.stft's conv form)."""
    n = np.arange(WIN)
    k = np.arange(BINS)[:, None]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * n / WIN)
    ang = 2 * np.pi * k * n / WIN
    return np.concatenate([np.cos(ang) * win, -np.sin(ang) * win])[:, None, :].astype(np.float32)


def wide_channels(rng, w: np.ndarray, channels, times: float) -> np.ndarray:
    """w with the given output channels scaled up `times` (a merged identity / BatchNorm)."""
    w = w.copy()
    w[list(channels)] *= times
    return w


def vad_like(seed: int = 0, logit_bias: float = -6.0):
    """x [1, SAMPLES] -> prob [1, 1]."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale=None):
        return (rng.standard_normal(shape) * (scale or np.sqrt(2.0 / np.prod(shape[1:])))).astype(np.float32)
    init = {
        "stft.basis": dft_basis(),
        "enc1.w": wide_channels(rng, w(CH, BINS, 3), [3], 12.0), "enc1.b": 0.1 * w(CH, scale=1.0),
        "enc2.w": wide_channels(rng, w(CH, CH, 3), [5, 11], 40.0), "enc2.b": 0.1 * w(CH, scale=1.0),
        "lstm.W": w(1, 4 * HID, CH, scale=0.05), "lstm.R": w(1, 4 * HID, HID, scale=0.3),
        "head.w": w(HID, 1, scale=1.0), "head.b": np.array([logit_bias], np.float32),
        "axes1": np.array([1], np.int64), "re": np.array([0], np.int64), "im": np.array([BINS], np.int64),
        "end": np.array([2 * BINS], np.int64), "two": np.array(2.0, np.float32),
        "flat": np.array([1, HID], np.int64),
    }
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axes1"], ["x3"], name="/stft/Unsqueeze"),
        helper.make_node("Conv", ["x3", "stft.basis"], ["spec"], strides=[HOP], name="/stft/Conv"),
        helper.make_node("Slice", ["spec", "re", "im", "axes1"], ["real"], name="/stft/Slice"),
        helper.make_node("Slice", ["spec", "im", "end", "axes1"], ["imag"], name="/stft/Slice_1"),
        helper.make_node("Pow", ["real", "two"], ["re2"], name="/stft/Pow"),
        helper.make_node("Pow", ["imag", "two"], ["im2"], name="/stft/Pow_1"),
        helper.make_node("Add", ["re2", "im2"], ["pow"], name="/stft/Add"),
        helper.make_node("Sqrt", ["pow"], ["mag"], name="/stft/Sqrt"),
        helper.make_node("Conv", ["mag", "enc1.w", "enc1.b"], ["e1"], pads=[1, 1], name="/enc1/Conv"),
        helper.make_node("Relu", ["e1"], ["r1"], name="/enc1/Relu"),
        helper.make_node("Conv", ["r1", "enc2.w", "enc2.b"], ["e2"], pads=[1, 1], name="/enc2/Conv"),
        helper.make_node("Relu", ["e2"], ["r2"], name="/enc2/Relu"),
        helper.make_node("Transpose", ["r2"], ["seq"], perm=[2, 0, 1], name="/Transpose"),
        helper.make_node("LSTM", ["seq", "lstm.W", "lstm.R"], ["Y", "Y_h"], hidden_size=HID, name="/rnn/LSTM"),
        helper.make_node("Reshape", ["Y_h", "flat"], ["h"], name="/Reshape"),
        helper.make_node("Gemm", ["h", "head.w", "head.b"], ["logit"], name="/head/Gemm"),
        helper.make_node("Sigmoid", ["logit"], ["prob"], name="/head/Sigmoid"),
    ]
    return make_model(nodes, [("x", [1, SAMPLES])], [("prob", [1, 1])], init)


def audio(n: int, seed: int = 3) -> np.ndarray:
    """[n, 1, SAMPLES] voiced-like audio (harmonics of a 120-220 Hz f0 at 8 kHz, noise), peak 0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES) / 8000.0
    out = np.zeros((n, 1, SAMPLES))
    for i in range(n):
        f0 = rng.uniform(120, 220)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 12))
        x = x + 0.05 * rng.standard_normal(SAMPLES)
        out[i, 0] = 0.3 * x / np.abs(x).max()
    return out.astype(np.float32)
