"""The runtime section: the C runtime (runtime/gxnpu.c, gcc -O2, one thread) time per inference
against onnxruntime fp32 (one thread) on the bench models; the compiled `cmd` bytes; Cortex-M4
code size (arm-none-eabi-gcc -Os, arm-none-eabi-size) alone and with a model; worst stack depth.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

from benchmarks import measure, peers
from benchmarks.accuracy import base_config
from benchmarks.table import Row


def _runtime_seconds(model, x: np.ndarray, repeats: int) -> float:
    """Best wall time of one gx_run (the driver times it in C: no process or I/O cost)."""
    from gxnpuc import runtime_host as rh

    g = model.graph
    with tempfile.TemporaryDirectory() as tmp:
        raw, inp = os.path.join(tmp, "m.raw"), os.path.join(tmp, "in.bin")
        with open(raw, "wb") as fh:
            fh.write(rh.raw_bytes(model))
        blob = x.reshape(1, -1).astype("<f2").tobytes()
        with open(inp, "wb") as fh:
            fh.write(blob)
        out = subprocess.run([rh.build_driver(), raw, str(model.plan["io_size"]), str(len(blob)), inp,
                              os.path.join(tmp, "out.bin")], capture_output=True, text=True, check=True,
                             env={**os.environ, "GXRUN_REPEAT": str(repeats)})
    del g
    return float(out.stdout.split()[-1])


def rows(bench, workdir: str) -> list[Row]:
    from gxnpuc import compiler

    model = compiler.compile(base_config(bench, workdir))
    os.sync()  # the earlier sections' files (~0.5 GB) written back now, not while the C runtime is timed
    x = bench.x_eval[:1]
    sess = peers.ort_session(bench.onnx_path, threads=1)
    t_ort = measure.per_call(lambda: sess.run(None, {bench.input_name: x}))
    reps = max(3, min(200, int(0.5 / max(t_ort, 1e-5))))
    t = _runtime_seconds(model, x, reps)
    out = [Row("runtime", bench.key, "onnxruntime fp32 (batch 1)", "time per inference", 1e3 * t_ort, "ms"),
           Row("runtime", bench.key, "C runtime, gcc -O2 (host)", "time per inference", 1e3 * t, "ms",
               "onnxruntime fp32, 1 thread, batch 1", t / t_ort, "bit-exact device numerics, int8 codes decoded"),
           Row("runtime", bench.key, "gxnpuc cmd section", "bytes", float(model.sizes["cmd"]), "bytes")]
    return out


def m4_rows(benches, workdir: str) -> list[Row]:
    """Cortex-M4 code size alone and with the smaller bench models; the worst stack depth."""
    from gxnpuc import backend, compiler
    from gxnpuc import runtime_host as rh

    out = []
    depth, path = rh.measure_stack()
    out.append(Row("runtime", "-", "stack, gcc -O2 x86-64", "worst depth", float(depth), "bytes",
                   note="-fcallgraph-info=su: " + " > ".join(path)))
    if shutil.which("arm-none-eabi-gcc") is None:
        return out + [Row("runtime", "-", "Cortex-M4 size", "skipped", None, "",
                          note="arm-none-eabi-gcc not installed")]
    depth, path = rh.measure_stack("arm-none-eabi-gcc", rh.M4_FLAGS)
    out.append(Row("runtime", "-", "stack, Cortex-M4 -Os", "worst depth", float(depth), "bytes", note=" > ".join(path)))
    alone = rh.m4_sizes()
    for k in ("text", "data", "bss"):
        out.append(Row("runtime", "-", "runtime alone, Cortex-M4 -Os", f".{k}", float(alone[k]), "bytes",
                       note="every op included" if k == "text" else ""))
    for bench in benches:
        if bench.key == "mlp":
            continue  # a 25M-weight model.h does not fit a Cortex-M4 anyway
        model = compiler.compile(base_config(bench, workdir))
        header = backend.write(model, os.path.join(workdir, f"{bench.key}_rt_model.h"), "c_code")
        both = rh.m4_sizes(header)
        for k in ("text", "data", "bss"):
            out.append(Row("runtime", bench.key, "runtime + model.h, Cortex-M4 -Os", f".{k}", float(both[k]), "bytes"))
    return out
