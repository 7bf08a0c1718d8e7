"""`make bench`: build the benchmark models, measure gxnpuc against TFLite and onnxruntime in
one run, print one table, save it under bench_results/ (CSV, JSON, Markdown, PNG).

    python benchmarks/run.py [--tiny] [--out DIR] [--sections compile,accuracy,...] [--update-docs] [--keep]

--tiny shrinks every model (the smoke test uses it); --update-docs rewrites the table in
docs/performance.md between its bench markers. Every figure is a ratio to a baseline measured
in the same run, because the machine is shared and absolute times are noisy.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Before numpy loads: the simulator's matmuls on one BLAS thread, like onnxruntime's baseline.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import accuracy, measure, models, runtime, speed, table  # noqa: E402
from benchmarks.table import Row  # noqa: E402

SECTIONS = ("import", "compile", "compression", "memory", "simulator", "runtime", "accuracy", "scaling")
DOC = os.path.join(ROOT, "docs", "performance.md")
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny models (smoke test)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench_results"), help="output folder")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ", ".join(SECTIONS))
    p.add_argument("--update-docs", action="store_true", help="rewrite the table in docs/performance.md")
    p.add_argument("--keep", action="store_true", help="keep the models and outputs in OUT/work (~0.6 GB at full size)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = set(args.sections) - set(SECTIONS)
    if bad:
        p.error(f"unknown section(s) {sorted(bad)}; choose from {', '.join(SECTIONS)}")
    return args


def quiet_tf() -> None:
    """Import TensorFlow once, silently (its import time is measured separately)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    with measure.silenced():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)


def build_models(sizes, workdir: str) -> list:
    with measure.silenced():
        return [models.build_kws(workdir, sizes), models.build_digits(workdir, sizes),
                models.build_mlp(workdir, sizes)]


class Runner:
    """Runs sections, turning a crash into a FAILED row (the rest of the bench still runs)."""

    def __init__(self):
        self.rows: list[Row] = []
        self.failed = 0

    def add(self, section: str, label: str, fn) -> None:
        t0 = time.perf_counter()
        print(f"[bench] {section}: {label} ...", file=sys.stderr, flush=True)
        try:
            self.rows += fn()
        except Exception as exc:  # a benchmark reports a broken stage and goes on
            self.failed += 1
            traceback.print_exc()
            self.rows.append(Row(section, label, "FAILED", "", None, "", note=f"{type(exc).__name__}: {exc}"[:200]))
        print(f"[bench]   {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def run(args) -> tuple[list[Row], dict]:
    sizes = models.TINY if args.tiny else models.FULL
    workdir = os.path.join(args.out, "work")
    os.makedirs(workdir, exist_ok=True)
    meta = {**measure.machine(), "sizes": "tiny" if args.tiny else "full"}
    r = Runner()
    t_start = time.perf_counter()
    if "import" in args.sections:
        r.add("import", "-", speed.import_rows)
    quiet_tf()
    t0 = time.perf_counter()
    benches = build_models(sizes, workdir)
    meta["model_build_seconds"] = round(time.perf_counter() - t0, 1)
    meta["models"] = {b.key: {"title": b.title, "weights": b.n_weights} for b in benches}
    big = benches[-1]
    for b in benches:
        if "compile" in args.sections:
            r.add("compile", b.key, lambda b=b: speed.compile_rows(b, workdir, 1 if args.tiny or b is big else 3))
    for section, fn in (("compile", speed.stage_rows), ("compression", speed.compression_rows),
                        ("memory", speed.memory_rows)):
        if section in args.sections:
            r.add(section, big.key, lambda fn=fn: fn(big, workdir))
    for b in benches if "simulator" in args.sections else ():
        r.add("simulator", b.key, lambda b=b: speed.simulator_rows(b, workdir, (1, sizes.sim_batch)))
    for b in benches if "runtime" in args.sections else ():
        r.add("runtime", b.key, lambda b=b: runtime.rows(b, workdir))
    if "runtime" in args.sections:
        r.add("runtime", "Cortex-M4", lambda: runtime.m4_rows(benches, workdir))
    for b in benches if "accuracy" in args.sections else ():
        r.add("accuracy", b.key, lambda b=b: accuracy.rows(b, workdir))
    if "scaling" in args.sections:
        r.add("scaling", "sweep", lambda: speed.scaling_rows(sizes, workdir))
    meta["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    meta["failed_sections"] = r.failed
    order = {s: k for k, s in enumerate(SECTIONS)}
    rows = sorted(r.rows, key=lambda row: order.get(row.section, len(order)))  # stable within a section
    return rows, meta


def machine_line(meta: dict) -> str:
    return (f"{meta['nproc']} cores ({meta['cpu']}), {meta['memory_gib']} GiB, python {meta['python']}, "
            f"numpy {meta['numpy']}; {meta['date']}; load average at start {meta['load_avg_1min_at_start']}; "
            f"whole run {meta['bench_seconds']} s ({meta['sizes']} sizes)")


def update_docs(rows: list[Row], meta: dict, path: str = DOC) -> None:
    with open(path, encoding="utf-8") as fh:
        doc = fh.read()
    if MARK_START not in doc or MARK_END not in doc:
        raise SystemExit(f"{path}: no {MARK_START} / {MARK_END} markers")
    block = (f"{MARK_START}\nMachine: {machine_line(meta)}.\n\n```\n{table.text(rows)}\n```\n\n"
             f"Accuracy, one line per setting:\n\n{table.accuracy_markdown(rows)}\n{MARK_END}")
    head, rest = doc.split(MARK_START, 1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + block + rest.split(MARK_END, 1)[1])


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rows, meta = run(args)
    if not args.keep:
        shutil.rmtree(os.path.join(args.out, "work"), ignore_errors=True)
    print(f"\ngxnpuc benchmark - {machine_line(meta)}\n")
    print(table.text(rows))
    paths = table.save(rows, meta, args.out)
    print("\nsaved: " + ", ".join(paths.values()))
    if args.update_docs:
        update_docs(rows, meta)
        print(f"updated {DOC}")
    return 1 if meta["failed_sections"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
