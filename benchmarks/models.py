"""The benchmark models, built in code with fixed seeds: a keyword-spotting DS-CNN, a small image
CNN trained for a few seconds on scikit-learn's 8x8 digits, and wide MLPs (the big one has
>= 25M weights). Each is a Keras model, saved as .keras and exported to ONNX by
benchmarks/keras_onnx.py; `Sizes` scales them down for the smoke test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

SEED = 2025
KWS_FRAMES, KWS_MFCC, KWS_CLASSES = 49, 10, 12  # Hello-Edge DS-CNN input: 49 frames x 10 MFCC


@dataclass(frozen=True)
class Sizes:
    """Model sizes; FULL for `make bench`, TINY for the smoke test."""
    kws_channels: int = 64
    kws_blocks: int = 4
    kws_epochs: int = 6
    digits_epochs: int = 25
    digits_test: int | None = None  # held-out digits evaluated (None: all 450)
    mlp_widths: tuple = (1024, 3072, 3072, 3072, 1024)  # 25.2M weights
    sweep_in_out: int = 1024  # sweep MLP: in -> hidden -> in, weights linear in the hidden width
    sweep_widths: tuple = (3072, 12288, 49152)  # width x1, x4, x16: 6.3M, 25M, 101M weights
    samples: int = 64  # evaluation inputs for KWS / MLP
    calib_samples: int = 32  # calibration inputs for the tuner (KWS, digits), disjoint from x_eval
    mlp_calib_samples: int = 8  # ... for the big MLP: each tuner run over 25M weights costs seconds
    sim_batch: int = 64  # the simulator's batched timing (besides batch 1)


FULL = Sizes()
TINY = Sizes(kws_channels=8, kws_blocks=1, kws_epochs=1, digits_epochs=2, digits_test=100, mlp_widths=(64, 128, 64),
             sweep_in_out=32, sweep_widths=(16, 64, 256), samples=8, sim_batch=4,
             calib_samples=8, mlp_calib_samples=4)


@dataclass
class Bench:
    """One benchmark model: the Keras model, its two files, evaluation inputs and labels."""
    key: str  # kws | digits | mlp
    title: str
    keras_model: object
    keras_path: str
    onnx_path: str
    input_name: str  # the ONNX input (NHWC / [N, features], as the Keras model takes it)
    x_eval: np.ndarray  # [samples, *input shape without batch]
    y_eval: np.ndarray | None = None  # class labels (digits only: real test labels)
    x_calib: np.ndarray | None = None  # calibration inputs for the tuner, never any of x_eval
    calib_path: str = ""  # x_calib as .npz keyed by input_name (the tuner's `data`)
    artifacts: dict = field(default_factory=dict)  # peers' outputs made once, reused (tflite, ort_q)

    @property
    def n_weights(self) -> int:
        return int(sum(np.prod(w.shape) for w in self.keras_model.weights))


def _keras():
    import keras

    return keras


def seed_all(seed: int) -> None:
    _keras().utils.set_random_seed(seed)


# -- keyword spotting: DS-CNN ----------------------------------------------------------------
def kws_model(sizes: Sizes):
    """DS-CNN (Zhang et al., "Hello Edge"): conv 10x4/2, then depthwise-separable blocks."""
    k = _keras()
    L = k.layers
    c = sizes.kws_channels
    x_in = k.Input((KWS_FRAMES, KWS_MFCC, 1), name="mfcc")
    x = L.Conv2D(c, (10, 4), strides=(2, 2), padding="same", name="conv_1")(x_in)
    x = L.ReLU(name="relu_1")(L.BatchNormalization(name="bn_1")(x))
    for b in range(sizes.kws_blocks):
        x = L.DepthwiseConv2D(3, padding="same", name=f"dw_{b}")(x)
        x = L.ReLU(name=f"dw_relu_{b}")(L.BatchNormalization(name=f"dw_bn_{b}")(x))
        x = L.Conv2D(c, 1, name=f"pw_{b}")(x)
        x = L.ReLU(name=f"pw_relu_{b}")(L.BatchNormalization(name=f"pw_bn_{b}")(x))
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return k.Model(x_in, L.Dense(KWS_CLASSES, name="logits")(x), name="ds_cnn")


def kws_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MFCC-like inputs [n, 49, 10, 1]: a per-class spectro-temporal template plus noise,
    scaled like real MFCCs (low coefficients larger)."""
    rng = np.random.default_rng(SEED)  # the templates are the same for every split
    templates = rng.standard_normal((KWS_CLASSES, KWS_FRAMES, KWS_MFCC))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, KWS_CLASSES, n)
    scale = 8.0 / (1.0 + np.arange(KWS_MFCC))
    x = (templates[labels] + 0.8 * rng.standard_normal((n, KWS_FRAMES, KWS_MFCC))) * scale
    return x[..., None].astype(np.float32), labels


def train_kws(sizes: Sizes):
    """A short fit on the synthetic data: BatchNorm statistics and weights that look trained."""
    seed_all(SEED)
    model = kws_model(sizes)
    x, y = kws_data(1024, SEED + 1)
    model.compile(optimizer="adam", loss=_keras().losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=sizes.kws_epochs, batch_size=64, verbose=0)
    calibrate_bn(model, x)
    return model


def calibrate_bn(model, x: np.ndarray) -> None:
    """Set every BatchNorm's moving mean/variance to the statistics of x, as a long training
    run would (a short fit leaves them near their 0/1 initial values, so folding BN into the
    convs would be unrealistically gentle on the per-channel weight ranges)."""
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(x, training=True)
    for bn, m in zip(bns, saved):
        bn.momentum = m


# -- digits CNN ------------------------------------------------------------------------------
def digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as NHWC float32 in [0, 1]: (x_train, x_test, y_train, y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return tuple(train_test_split(x, d.target, test_size=0.25, random_state=SEED, stratify=d.target))


def digits_model():
    k = _keras()
    L = k.layers
    x_in = k.Input((8, 8, 1), name="image")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(x_in)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv_b")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv_c")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(64, activation="relu", name="fc")(x)
    return k.Model(x_in, L.Dense(10, name="logits")(x), name="digits_cnn")


def train_digits(sizes: Sizes):
    """(model, x_test, y_test): trained for sizes.digits_epochs epochs (a few seconds)."""
    seed_all(SEED)
    x_tr, x_te, y_tr, y_te = digits_data()
    model = digits_model()
    model.compile(optimizer=_keras().optimizers.Adam(3e-3),
                  loss=_keras().losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_tr, y_tr, epochs=sizes.digits_epochs, batch_size=32, verbose=0)
    return model, x_te, y_te


# -- MLPs ------------------------------------------------------------------------------------
def mlp_model(widths: tuple, name: str = "mlp", seed: int = SEED):
    """Dense layers widths[0] -> ... -> widths[-1], ReLU between; Glorot-uniform weights and
    small random biases (numpy-generated, so a 25M-weight model builds in a second)."""
    k = _keras()
    L = k.layers
    x_in = k.Input((widths[0],), name="features")
    x = x_in
    for i, w in enumerate(widths[1:]):
        last = i == len(widths) - 2
        x = L.Dense(w, activation=None if last else "relu", name=f"dense_{i}")(x)
    model = k.Model(x_in, x, name=name)
    rng = np.random.default_rng(seed)
    for layer in model.layers[1:]:
        n_in, n_out = layer.kernel.shape
        lim = np.sqrt(6.0 / (n_in + n_out))
        layer.set_weights([rng.uniform(-lim, lim, (n_in, n_out)).astype(np.float32),
                           (0.05 * rng.standard_normal(n_out)).astype(np.float32)])
    return model


def mlp_inputs(n: int, features: int, seed: int = SEED + 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, features)).astype(np.float32)


# -- files -----------------------------------------------------------------------------------
def save(model, folder: str, stem: str) -> tuple[str, str]:
    """Write stem.keras and stem.onnx (the tf2onnx-style export); return both paths."""
    from benchmarks import keras_onnx

    os.makedirs(folder, exist_ok=True)
    keras_path = os.path.join(folder, f"{stem}.keras")
    onnx_path = os.path.join(folder, f"{stem}.onnx")
    model.save(keras_path)
    keras_onnx.save(model, onnx_path)
    return keras_path, onnx_path


def with_calib(bench: Bench, x_calib: np.ndarray, folder: str) -> Bench:
    """Attach calibration inputs and write them as <key>_calib.npz {input_name: x_calib}."""
    bench.x_calib = np.ascontiguousarray(x_calib, np.float32)
    bench.calib_path = os.path.join(folder, f"{bench.key}_calib.npz")
    np.savez(bench.calib_path, **{bench.input_name: bench.x_calib})
    return bench


def build_kws(folder: str, sizes: Sizes) -> Bench:
    model = train_kws(sizes)
    x, _ = kws_data(sizes.samples, SEED + 2)
    x_calib, _ = kws_data(sizes.calib_samples, SEED + 4)  # training used SEED + 1
    return with_calib(Bench("kws", "KWS DS-CNN", model, *save(model, folder, "kws"), "mfcc", x), x_calib, folder)


def build_digits(folder: str, sizes: Sizes) -> Bench:
    model, x_te, y_te = train_digits(sizes)
    x_te, y_te = x_te[:sizes.digits_test], y_te[:sizes.digits_test]
    x_calib = digits_data()[0][:sizes.calib_samples]  # training images: never a test digit
    bench = Bench("digits", "digits CNN", model, *save(model, folder, "digits"), "image", x_te, y_te)
    return with_calib(bench, x_calib, folder)


def build_mlp(folder: str, sizes: Sizes) -> Bench:
    model = mlp_model(sizes.mlp_widths)
    x = mlp_inputs(min(sizes.samples, 16), sizes.mlp_widths[0])
    x_calib = mlp_inputs(sizes.mlp_calib_samples, sizes.mlp_widths[0], seed=SEED + 5)
    return with_calib(Bench("mlp", "big MLP", model, *save(model, folder, "mlp"), "features", x), x_calib, folder)


def sweep_widths(sizes: Sizes) -> list[tuple[int, tuple]]:
    """(width factor, widths) for the compile-time sweep: in -> hidden -> in, so the weight
    count (2 * in * hidden) grows exactly with the hidden width."""
    base = sizes.sweep_widths[0]
    return [(w // base, (sizes.sweep_in_out, w, sizes.sweep_in_out)) for w in sizes.sweep_widths]


def write_mlp_onnx(widths: tuple, path: str, seed: int = SEED) -> int:
    """The sweep MLP straight to ONNX (MatMul + Add + Relu, tf2onnx names), without Keras so
    that a 100M-weight point builds in seconds; returns the weight count."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, x, count = [], [], "features", 0
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        lim = np.float32(np.sqrt(6.0 / (n_in + n_out)))
        w = rng.random((n_in, n_out), np.float32)
        w = (w * 2 - 1) * lim
        b = (0.05 * rng.standard_normal(n_out)).astype(np.float32)
        scope = f"sweep_mlp/dense_{i}"
        inits += [numpy_helper.from_array(w, f"{scope}/MatMul/ReadVariableOp:0"),
                  numpy_helper.from_array(b, f"{scope}/BiasAdd/ReadVariableOp:0")]
        nodes += [helper.make_node("MatMul", [x, inits[-2].name], [f"{scope}/MatMul:0"], name=f"{scope}/MatMul"),
                  helper.make_node("Add", [f"{scope}/MatMul:0", inits[-1].name], [f"{scope}/BiasAdd:0"],
                                   name=f"{scope}/BiasAdd")]
        x = f"{scope}/BiasAdd:0"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"{scope}/Relu:0"], name=f"{scope}/Relu"))
            x = f"{scope}/Relu:0"
        count += w.size + b.size
    nodes.append(helper.make_node("Identity", [x], ["logits"], name="sweep_mlp/Identity"))
    graph = helper.make_graph(nodes, "sweep_mlp",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["unk__1", widths[0]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["unk__0", widths[-1]])],
                              inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return int(count)
