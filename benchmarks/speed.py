"""The speed and memory sections: import time, compile wall time (gxnpuc from ONNX and from
Keras vs the TFLite converter and ort quantize_dynamic), compression throughput vs np.copyto,
peak RSS of a big compile, simulator time per inference vs onnxruntime, and the size sweep.
"""
from __future__ import annotations

import os

import numpy as np

from benchmarks import measure, peers, settings
from benchmarks.accuracy import base_config
from benchmarks.table import Row

TFLITE = "TFLite converter (dynamic-range)"
ORT_Q = "ort quantize_dynamic (per-channel)"
GX_IMPORTS = ["gxnpuc.cli", "gxnpuc.compiler", "gxnpuc.frontend.onnx", "gxnpuc.ops", "gxnpuc.backend", "onnx"]


def gxnpuc_build(cfg):
    """What `gxnpuc config.yaml` does after parsing: compile, then write the output file."""
    from gxnpuc import backend, compiler

    model = compiler.compile(cfg)
    backend.write(model, cfg.output_file, cfg.output_type)
    return model


# -- import ----------------------------------------------------------------------------------
def import_rows() -> list[Row]:
    """Fresh-interpreter import time of each tool chain, best of two."""
    gx_onnx = measure.import_seconds(GX_IMPORTS)
    ort_q = measure.import_seconds(["onnxruntime.quantization"])
    gx_tf = measure.import_seconds([*GX_IMPORTS, "gxnpuc.frontend.tf", "tensorflow"])
    tf = measure.import_seconds(["tensorflow"])
    return [Row("import", "-", "gxnpuc (ONNX path)", "import time", gx_onnx, "s", "import onnxruntime.quantization",
                gx_onnx / ort_q),
            Row("import", "-", "gxnpuc (TF path, with tensorflow)", "import time", gx_tf, "s", "import tensorflow",
                gx_tf / tf),
            Row("import", "-", "onnxruntime.quantization", "import time", ort_q, "s"),
            Row("import", "-", "tensorflow (TFLite converter)", "import time", tf, "s")]


# -- compile ---------------------------------------------------------------------------------
def _tflite_from_file(bench, path: str) -> bytes:
    import keras

    with measure.silenced():
        blob, _ = peers.tflite_convert(keras.models.load_model(bench.keras_path))
    with open(path, "wb") as fh:
        fh.write(blob)
    return blob


def compile_rows(bench, workdir: str, repeats: int) -> list[Row]:
    """Wall time per tool on one model (best of `repeats`, imports already done), tools
    reading the model file and writing their output file."""
    note = f"best of {repeats}" if repeats > 1 else "1 run"
    t_onnx, _ = measure.timed(lambda: gxnpuc_build(base_config(bench, workdir)), repeats)
    t_keras, _ = measure.timed(lambda: gxnpuc_build(base_config(bench, workdir, "KERAS_FILE")), repeats)
    t_tfl, blob = measure.timed(lambda: _tflite_from_file(bench, os.path.join(workdir, f"{bench.key}.tflite")), repeats)
    q_path = os.path.join(workdir, f"{bench.key}_ort_q.onnx")
    t_ort, _ = measure.timed(lambda: peers.ort_quantize(bench.onnx_path, q_path), repeats)
    bench.artifacts.update(tflite=blob, ort_q=q_path)
    return [Row("compile", bench.key, "gxnpuc (ONNX)", "wall time", t_onnx, "s", ORT_Q, t_onnx / t_ort, note),
            Row("compile", bench.key, "gxnpuc (Keras)", "wall time", t_keras, "s", TFLITE, t_keras / t_tfl, note),
            Row("compile", bench.key, TFLITE, "wall time", t_tfl, "s", "", None, note + "; load_model + convert"),
            Row("compile", bench.key, ORT_Q, "wall time", t_ort, "s", "", None, note)]


def stage_rows(bench, workdir: str) -> list[Row]:
    """Where gxnpuc's time goes on one model: each stage as a share of compile + write."""
    import time

    from gxnpuc import backend, compiler

    cfg = base_config(bench, workdir)
    t0 = time.perf_counter()
    with measure.stage_timer() as spent:
        model = compiler.compile(cfg)
    t1 = time.perf_counter()
    backend.write(model, cfg.output_file, cfg.output_type)
    t2 = time.perf_counter()
    total = t2 - t0
    stages = dict(spent)
    stages["passes + name checks"] = (t1 - t0) - sum(spent.values())
    stages["write (C header)"] = t2 - t1
    return [Row("compile", bench.key, f"gxnpuc stage: {k}", "wall time", v, "s",
                "gxnpuc compile + write, same run", v / total) for k, v in stages.items()]


# -- compression throughput ----------------------------------------------------------------
def compression_rows(bench, workdir: str) -> list[Row]:
    """compress_graph alone on the lowered big model, GB/s of fp32 weights, vs np.copyto."""
    from dataclasses import replace

    from gxnpuc import compiler, compress
    from gxnpuc.config import names

    cfg = base_config(bench, workdir)
    graph = compiler.lower(cfg)
    nbytes = 4 * sum(t.size for t in graph.tensors.values() if t.is_const and t.dtype.startswith("float"))
    out = []
    for s in settings.SETTINGS:
        if s.prepare or not set(s.overrides) <= set(cfg.__dataclass_fields__):
            continue
        c = names.resolve(replace(cfg, **s.overrides), graph)
        t, _ = measure.timed(lambda: compress.compress_graph(graph, c), 3)
        copy = measure.copyto_gbps(nbytes)  # re-measured beside each setting: the machine is shared
        gbps = nbytes / t / 1e9
        out.append(Row("compression", bench.key, s.label, "throughput", gbps, "GB/s fp32 weights",
                       f"np.copyto {copy:.2f} GB/s", gbps / copy, f"{nbytes / 1e6:.0f} MB, best of 3"))
    return out


# -- memory ----------------------------------------------------------------------------------
def memory_rows(bench, workdir: str) -> list[Row]:
    out_path = os.path.join(workdir, f"{bench.key}_rss.h")
    base = measure.peak_rss_bytes(["baseline", bench.onnx_path, out_path])
    peak = measure.peak_rss_bytes(["compile", bench.onnx_path, out_path])
    fp32 = 4 * bench.n_weights
    mib = 2 ** 20
    return [Row("memory", bench.key, "gxnpuc compile + write (ONNX)", "peak RSS - imports", (peak - base) / fp32,
                "x fp32 weight bytes", "", None,
                f"peak {peak / mib:.0f} MiB, imports alone {base / mib:.0f} MiB, weights {fp32 / mib:.0f} MiB")]


# -- simulator -------------------------------------------------------------------------------
def simulator_rows(bench, workdir: str, batches: tuple = (1, 64)) -> list[Row]:
    """Time per inference, float and npu modes, vs onnxruntime fp32 on 1 thread, same batch.

    Batch 1: one sample per sim.run, and the `--eval` path: sim.run_model_batch on N samples
    of the batch-1 model (batched chunks, bit-identical to one sample a run); batch N compiles
    the model with INPUT_OPS [N, ...]. The one-time weight decode of npu mode is its own row.
    """
    from dataclasses import replace

    from gxnpuc import compiler

    rows, sess = [], peers.ort_session(bench.onnx_path, threads=1)
    for n in batches:
        x = np.resize(bench.x_eval, (n, *bench.x_eval.shape[1:]))
        model = compiler.compile(replace(base_config(bench, workdir), input_ops={bench.input_name: x.shape}))
        t_ort = measure.per_call(lambda: sess.run(None, {bench.input_name: x})) / n
        rows.append(Row("simulator", bench.key, f"onnxruntime fp32 (batch {n})", "time per inference",
                        1e3 * t_ort, "ms"))
        for mode in ("float", "npu"):
            t_dec, t = _sim_seconds(model, x, mode)
            rows.append(Row("simulator", bench.key, f"gxnpuc sim {mode} (batch {n})", "time per inference",
                            1e3 * t / n, "ms", f"onnxruntime fp32, 1 thread, batch {n}", t / n / t_ort,
                            "one sample per sim.run" if n == 1 else ""))
            if n == 1:
                t_many = _sim_many_seconds(model, bench, mode, batches[-1])
                rows.append(Row("simulator", bench.key, f"gxnpuc sim {mode} (batch 1, --eval path)",
                                "time per inference", 1e3 * t_many, "ms", "onnxruntime fp32, 1 thread, batch 1",
                                t_many / t_ort, f"sim.run_model_batch, {batches[-1]} samples"))
            if mode == "npu" and n == batches[0]:
                rows.append(Row("simulator", bench.key, "gxnpuc sim npu: weight decode", "once per model",
                                1e3 * t_dec, "ms", f"sim npu time per inference (batch {n})", t_dec * n / t,
                                "sim.model_consts: once per model (cached on it)"))
    return rows


def _sim_seconds(model, x: np.ndarray, mode: str) -> tuple[float, float]:
    """(seconds to decode the mode's constants, best seconds of one sim.run on x)."""
    from gxnpuc import sim

    t_dec, consts = measure.timed(lambda: sim.model_consts(model, mode), 1)
    cast, g = sim.model_cast(mode), model.graph
    feeds = {g.inputs[0]: x.reshape(g.tensors[g.inputs[0]].shape)}
    return t_dec, measure.per_call(lambda: sim.finish_outputs(model, sim.run(g, feeds, consts, cast=cast), mode))


def _sim_many_seconds(model, bench, mode: str, samples: int) -> float:
    """Best seconds per inference of sim.run_model_batch (what --eval runs) on `samples` inputs."""
    from gxnpuc import sim

    xs = np.resize(bench.x_eval, (samples, *bench.x_eval.shape[1:]))
    return measure.per_call(lambda: sim.run_model_batch(model, {model.graph.inputs[0]: xs}, mode)) / samples


# -- scaling ---------------------------------------------------------------------------------
def scaling_rows(sizes, workdir: str) -> list[Row]:
    """gxnpuc compile + write at 1x, 4x, 16x the sweep MLP's width (weights grow alike)."""
    from dataclasses import replace

    from benchmarks import models

    rows, first = [], None
    for factor, widths in models.sweep_widths(sizes):
        path = os.path.join(workdir, f"sweep_x{factor}.onnx")
        n = models.write_mlp_onnx(widths, path)
        cfg = replace(base_config(_PathOnly(path), workdir), output_file=os.path.join(workdir, "sweep.h"))
        t, _ = measure.timed(lambda: gxnpuc_build(cfg), 2 if factor > 4 else 3)
        per = t / n
        first = first or per
        rows.append(Row("scaling", f"sweep MLP x{factor}", "gxnpuc (ONNX)", "wall time", t, "s",
                        "time per weight at x1", per / first, f"{n:,} weights, width {widths[1]}"))
        for f in (path, cfg.output_file):
            os.remove(f)
    return rows


class _PathOnly:
    """Enough of a Bench for base_config()."""

    def __init__(self, path: str):
        self.onnx_path, self.keras_path, self.key = path, "", "sweep"
