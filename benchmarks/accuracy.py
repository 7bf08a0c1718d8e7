"""The accuracy section: output SNR, stored weight bytes and digits test accuracy for every
gxnpuc compression setting (benchmarks/settings.py) beside TFLite dynamic-range and
onnxruntime quantize_dynamic (per-channel), on the same models and the same inputs.

The reference is the Keras model's fp32 output; gxnpuc numbers come from the simulator's
npu mode (what the device computes: fp16 activations, weights as decoded) on the model
compiled from the ONNX export. The peers run first: a setting found by search (the tuner)
gets the smaller of their weight bytes as its budget (peer_budget).
"""
from __future__ import annotations

import os
from dataclasses import fields

import numpy as np

from benchmarks import peers, settings
from benchmarks.table import Row

REF = "Keras fp32"
TFLITE, ORT = "TFLite dynamic-range", "ort quantize_dynamic per-channel"


def base_config(bench, workdir: str, key: str = "ONNX_FILE"):
    """The model's Config as a user would write it: compression on, BatchNorm folded."""
    from gxnpuc.config import Config

    path = bench.onnx_path if key == "ONNX_FILE" else bench.keras_path
    out = os.path.join(workdir, f"{bench.key}_{key.split('_')[0].lower()}.h")
    return Config(model_key=key, model_path=path, output_file=out, **settings.BASE)


def simulate(model, x: np.ndarray, mode: str = "npu") -> np.ndarray:
    """The model's first output for every sample of x ([samples, ...]), one sample a run;
    the device's constants are decoded once, not per sample."""
    from gxnpuc import sim

    g = model.graph
    consts, cast = sim.model_consts(model, mode), sim.model_cast(mode)
    outs = []
    for i in range(len(x)):
        env = sim.run(g, {g.inputs[0]: x[i:i + 1].reshape(g.tensors[g.inputs[0]].shape)}, consts, cast=cast)
        outs.append(np.asarray(sim.finish_outputs(model, env, mode)[g.outputs[0]], np.float32))
    return np.stack(outs).reshape(len(x), -1)


def keras_ref(bench) -> np.ndarray:
    x = bench.x_eval
    return np.concatenate([np.asarray(bench.keras_model(x[i:i + 64])) for i in range(0, len(x), 64)])


def weight_bytes(model) -> int:
    """Stored bytes of every constant the compiled model reads (codes, lo/step, fp16 rest)."""
    return int(sum(sw.nbytes_stored for sw in model.weights.values()))


def _rows(bench, item: str, ref, y, nbytes: int, fp32_bytes: int, note: str = "") -> list[Row]:
    from gxnpuc.evaluate import snr_db

    rows = [Row("accuracy", bench.key, item, "weight bytes", nbytes, "bytes", "fp32 weight bytes",
                nbytes / fp32_bytes, note),
            Row("accuracy", bench.key, item, "output SNR", snr_db(ref, y), "dB", f"{REF} output")]
    if bench.y_eval is not None:
        acc = 100.0 * float(np.mean(np.argmax(y, axis=-1) == bench.y_eval))
        ref_acc = 100.0 * float(np.mean(np.argmax(ref, axis=-1) == bench.y_eval))
        rows.append(Row("accuracy", bench.key, item, "test accuracy", acc, "%",
                        f"{REF} accuracy {ref_acc:.2f} %", acc / ref_acc if ref_acc else None,
                        f"{len(bench.y_eval)} held-out digits"))
    return rows


def gxnpuc_rows(bench, workdir: str, ref, fp32_bytes: int) -> list[Row]:
    import time

    from gxnpuc import compiler
    from gxnpuc.config import Config

    rows = []
    known = {f.name for f in fields(Config)}
    for setting in settings.supported(known):
        t0 = time.perf_counter()
        cfg, note = setting.prepared(base_config(bench, workdir), bench)
        prep = time.perf_counter() - t0
        model = compiler.compile(cfg)
        y = simulate(model, bench.x_eval)
        if setting.prepare:
            note = "; ".join(filter(None, [note, f"search took {prep:.1f} s"]))
        rows += _rows(bench, setting.label, ref, y, weight_bytes(model), fp32_bytes, note)
    return rows


def peer_outputs(bench, workdir: str) -> dict:
    """{peer label: (outputs on x_eval, weight bytes, note)}: TFLite dynamic-range and ort
    quantize_dynamic(per_channel=True), made once per bench (kept in bench.artifacts), reusing
    the converted models the compile section made when there are any."""
    if "peers" in bench.artifacts:
        return bench.artifacts["peers"]
    from benchmarks.measure import silenced

    blob = bench.artifacts.get("tflite")
    if blob is None:
        with silenced():
            blob, _ = peers.tflite_convert(bench.keras_model)
    with silenced():
        y_tfl = peers.tflite_run(blob, bench.x_eval)
    q_path = bench.artifacts.get("ort_q") or os.path.join(workdir, f"{bench.key}_ort_q.onnx")
    if not os.path.exists(q_path):
        peers.ort_quantize(bench.onnx_path, q_path)
    y_ort = peers.ort_run(q_path, bench.input_name, bench.x_eval)
    bench.artifacts["peers"] = {
        TFLITE: (y_tfl, peers.tflite_weight_bytes(blob), "int8 weights (tensors >= 1024 values), fp32 rest"),
        ORT: (y_ort, peers.ort_weight_bytes(q_path), "int8 weights + uint8 dynamic activations")}
    return bench.artifacts["peers"]


def peer_budget(bench, workdir: str) -> tuple[int, str]:
    """(bytes, which peer): the smaller of the two peers' weight bytes, the fair budget for a
    searched setting that is to beat both at equal or fewer bytes."""
    nbytes, label = min((v[1], k) for k, v in peer_outputs(bench, workdir).items())
    return nbytes, label


def peer_rows(bench, workdir: str, ref, fp32_bytes: int) -> list[Row]:
    return [row for label, (y, nbytes, note) in peer_outputs(bench, workdir).items()
            for row in _rows(bench, label, ref, y, nbytes, fp32_bytes, note)]


def rows(bench, workdir: str) -> list[Row]:
    """The whole section for one model: the fp32 reference, every gxnpuc setting, the peers
    (run first, for the tuner's budget; listed last)."""
    ref = keras_ref(bench)
    fp32_bytes = 4 * bench.n_weights
    peer = peer_rows(bench, workdir, ref, fp32_bytes)
    out = _rows(bench, f"{REF} (reference)", ref, ref, fp32_bytes, fp32_bytes)
    return out + gxnpuc_rows(bench, workdir, ref, fp32_bytes) + peer
