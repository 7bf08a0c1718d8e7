"""Measuring helpers: wall time, memcpy bandwidth, import time and peak RSS in fresh
processes, per-stage compile times, and a way to silence chatty libraries."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """(best seconds of `repeats` calls, the last result). The minimum, not the median: on a
    shared machine other jobs only ever add time, so the best run is the least disturbed."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def per_call(fn, min_seconds: float = 0.3, max_calls: int = 200) -> float:
    """Best seconds of one call, calling until min_seconds have passed (at least 3 calls)."""
    fn()  # warm-up: first-call allocations and caches
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_seconds and len(times) < max_calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def copyto_gbps(nbytes: int, repeats: int = 5) -> float:
    """np.copyto bandwidth in GB/s (bytes of the source per second), best of `repeats`,
    on float32 buffers of nbytes, both touched beforehand."""
    src = np.ones(max(nbytes // 4, 1), np.float32)
    dst = np.zeros_like(src)
    best = min(timed(lambda: np.copyto(dst, src), 1)[0] for _ in range(repeats))
    return src.nbytes / best / 1e9


@contextlib.contextmanager
def silenced():
    """Send fd 1 and 2 to /dev/null (TensorFlow's converter prints from C++ and Python)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def env() -> dict:
    """Environment for child processes: quiet TensorFlow, the project on the path."""
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return e


def import_seconds(modules: list[str], repeats: int = 2) -> float:
    """Best wall time to import `modules` in a fresh interpreter (disk cache warm after the first)."""
    code = ("import time; t = time.perf_counter()\n"
            + "".join(f"import {m}\n" for m in modules)
            + "print(time.perf_counter() - t)")
    best = float("inf")
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), check=True)
        best = min(best, float(out.stdout.strip().splitlines()[-1]))
    return best


def peak_rss_bytes(args: list[str]) -> int:
    """Peak RSS of `python -m benchmarks.rss_child ARGS`, read with RUSAGE_CHILDREN in a fresh
    wrapper process (so no earlier child of this process can be the maximum)."""
    cmd = [sys.executable, "-m", "benchmarks.rss_child", "--wrap", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"rss child failed: {out.stderr.strip()[-500:]}")
    return int(out.stdout.strip().splitlines()[-1])


# -- per-stage compile time ------------------------------------------------------------------
STAGES = (("front end", "gxnpuc.frontend", "load"), ("compression", "gxnpuc.compress", "compress_graph"),
          ("backend build", "gxnpuc.backend", "build"))


@contextlib.contextmanager
def stage_timer():
    """Wrap the pipeline's stage functions (looked up by compiler.compile at call time) and
    collect their seconds; compile() minus these is the passes and name checks."""
    import importlib

    spent: dict[str, float] = {}
    saved = []
    for label, mod_name, attr in STAGES:
        mod = importlib.import_module(mod_name)
        orig = getattr(mod, attr)

        def wrapped(*a, _orig=orig, _label=label, **kw):
            t0 = time.perf_counter()
            try:
                return _orig(*a, **kw)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - t0
        saved.append((mod, attr, orig))
        setattr(mod, attr, wrapped)
    try:
        yield spent
    finally:
        for mod, attr, orig in saved:
            setattr(mod, attr, orig)


def machine() -> dict:
    """nproc, CPU model, memory, date and versions, for docs/performance.md."""
    import platform

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem, 1),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "python": platform.python_version(),
            "numpy": np.__version__, "load_avg_1min_at_start": round(load, 2)}
