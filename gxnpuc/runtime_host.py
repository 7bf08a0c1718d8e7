"""The C runtime (runtime/gxnpu.c) run on the host: build its driver, run a compiled model on
samples, read back the outputs and (optionally) every op's outputs, compare with the simulator.

    build_driver(cc, flags) -> path     gcc once per source/flag set (cached in the temp folder)
    run(model, feeds, dump)  -> result  feeds: input name -> [samples, *shape]
    run_sequence(model, state0, per_step, dump) -> result   a streaming model over steps
    compare(model, feeds)    -> report  per output and per op: bit-identical?, max ulp

The driver (runtime/host/gxrun.c) reads the model as a raw container, so this exercises the
runtime's own validation and the file format, not a Python re-encoding.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gxnpuc.errors import GxnpucError

CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
SOURCES = ("gxnpu.c", "host/gxrun.c")


def runtime_dir() -> Path:
    """runtime/ of the source tree this gxnpuc runs from."""
    d = Path(__file__).resolve().parent.parent / "runtime"
    if not (d / "gxnpu.c").is_file():
        raise GxnpucError("--runtime", f"the C runtime sources are not in {d}",
                          "a gxnpuc source checkout (pip install -e .)")
    return d


def build_driver(cc: str = "gcc", flags: tuple = (), out_dir: str | None = None) -> str:
    """Compile the host driver (cached by a hash of the sources, compiler and flags)."""
    src = runtime_dir()
    h = hashlib.sha256(" ".join((cc, *CFLAGS, *flags)).encode())
    for name in (*SOURCES, *sorted(p.name for p in src.glob("*.h"))):  # every header gxnpu.c may include
        h.update((src / name).read_bytes())
    folder = Path(out_dir or os.path.join(tempfile.gettempdir(), f"gxnpuc-runtime-{os.getuid()}"))
    exe = folder / f"gxrun-{h.hexdigest()[:16]}"
    if exe.is_file():
        return str(exe)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{exe.name}.{os.getpid()}"
    cmd = [cc, *CFLAGS, *flags, *[str(src / s) for s in SOURCES], "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise GxnpucError("--runtime", f"cannot run the C compiler {cc!r} ({exc.strerror})",
                          "a C99 compiler (gcc) on PATH") from None
    if proc.returncode:
        raise GxnpucError("--runtime", f"{cc} failed: {proc.stderr.strip()[:500]}", "gcc -std=c99")
    os.replace(tmp, exe)
    return str(exe)


@dataclass
class RunResult:
    outputs: dict  # graph output -> [samples, *shape] (float32, or float16 for FP16_OUT_OPS)
    tensors: dict = field(default_factory=dict)  # every op output -> [samples, *shape] float32
    status: int = 0  # the runtime's status code (0: ran)


def raw_bytes(model) -> bytes:
    from gxnpuc.backend import container, encode

    return bytes(container.pack(encode(model)))


def _f16(x, n: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x).reshape(n, -1).astype(np.float16).astype("<f2")


def _inputs_blob(model, feeds: dict) -> tuple[bytes, int, int]:
    n = len(next(iter(feeds.values())))
    parts = [_f16(feeds[name], n) for name in model.graph.inputs]
    blob = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), "<f2")
    return blob.tobytes(), blob.shape[1] * 2, n


def _sequence_blob(model, state0: dict, per_step: dict) -> tuple[bytes, int, int]:
    """Per sample: the state inputs, then each step's per-step inputs (gxrun -s)."""
    g = model.graph
    n, steps = len(next(iter(per_step.values()))), next(iter(per_step.values())).shape[1]
    parts = [_f16(state0[k], n) for k in g.inputs if k in state0]
    for t in range(steps):
        parts += [_f16(per_step[k][:, t], n) for k in g.inputs if k in per_step]
    return np.concatenate(parts, axis=1).tobytes(), n, steps


def _drive(model, blob: bytes, in_bytes: int, dump: bool, driver, raw, workdir, seq: tuple = ()):
    """Run gxrun on blob: (status, out bytes, dump bytes); seq = (steps, output_offset)."""
    driver = driver or build_driver()
    io_size = int(model.plan.get("io_size", model.sizes.get("io", 0)))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        paths = {k: os.path.join(tmp, k) for k in ("model.raw", "in.bin", "out.bin", "dump.bin")}
        Path(paths["model.raw"]).write_bytes(raw if raw is not None else raw_bytes(model))
        Path(paths["in.bin"]).write_bytes(blob)
        args = [driver, *(["-s", *map(str, seq)] if seq else []), paths["model.raw"], str(io_size),
                str(in_bytes), paths["in.bin"], paths["out.bin"]]
        proc = subprocess.run(args + ([paths["dump.bin"]] if dump else []), capture_output=True, text=True)
        if proc.returncode == 2:
            return int(proc.stdout.split()[-1]), b"", b""
        if proc.returncode:
            raise GxnpucError("--runtime", f"the runtime driver failed ({proc.returncode}): "
                              f"{(proc.stderr or proc.stdout).strip()[:300]}", "a model gxnpuc wrote")
        return 0, Path(paths["out.bin"]).read_bytes(), Path(paths["dump.bin"]).read_bytes() if dump else b""


def run(model, feeds: dict, dump: bool = False, driver: str | None = None,
        raw: bytes | None = None, workdir: str | None = None) -> RunResult:
    """Run the C runtime on every sample of feeds (input name -> [samples, *shape])."""
    blob, in_bytes, n = _inputs_blob(model, feeds)
    status, out, dumped = _drive(model, blob, in_bytes, dump, driver, raw, workdir)
    if status:
        return RunResult({}, {}, status)
    return RunResult(_outputs(model, out, n, in_bytes, set(model.fp16_outputs)),
                     _dump(model, dumped, n) if dump else {})


def run_sequence(model, state0: dict, per_step: dict, dump: bool = False, driver: str | None = None,
                 workdir: str | None = None) -> RunResult:
    """Run a streaming model (state pairs) over sequences as a firmware does: two struct in_out
    buffers, each step's struct output written at the next buffer + output_offset (gxrun -s).
    state0: state input -> [samples, *shape]; per_step: other input -> [samples, steps, *shape].
    Outputs and (dump) every node's outputs come back as [samples, steps, *shape]."""
    g = model.graph
    pairs = g.meta.get("state_pairs") or {}
    at = model.plan["tensors"][next(i for i in g.inputs if i in pairs.values())][0]  # output_offset
    blob, n, steps = _sequence_blob(model, state0, per_step)
    in_bytes = sum(g.tensors[k].size * 2 for k in g.inputs)
    status, out, dumped = _drive(model, blob, in_bytes, dump, driver, None, workdir, (steps, at))
    if status:
        return RunResult({}, {}, status)

    def by_step(d: dict) -> dict:
        return {k: v.reshape(n, steps, *v.shape[1:]) for k, v in d.items()}
    return RunResult(by_step(_outputs(model, out, n * steps, at, set(model.fp16_outputs))),
                     by_step(_dump(model, dumped, n * steps)) if dump else {})


def _outputs(model, out: bytes, n: int, in_bytes: int, fp16: set) -> dict:
    g, res = model.graph, {}
    per = len(out) // max(n, 1)
    rows = np.frombuffer(out, np.uint8).reshape(n, per)
    for name in g.outputs:
        off, nbytes = model.plan["tensors"][name]
        dt = "<f4" if nbytes == 4 * g.tensors[name].size else "<f2"
        if name in g.inputs or off < in_bytes:  # (a state output run in place: over its input)
            continue
        cells = rows[:, off - in_bytes:off - in_bytes + nbytes].copy()
        res[name] = cells.view(dt).reshape(n, *g.tensors[name].shape).astype(
            np.float16 if name in fp16 else np.float32)
    return res


def _dump(model, blob: bytes, n: int) -> dict:
    """Per sample, per node, per output: its bytes (fp32 for graph outputs stored as fp32)."""
    g, fp16, pos = model.graph, set(model.fp16_outputs), 0
    per_sample: dict[str, list] = {o: [] for node in g.nodes for o in node.outputs}
    for _ in range(n):
        for node in g.nodes:
            for o in node.outputs:
                size = g.tensors[o].size
                f32 = o in g.outputs and o not in fp16 and o not in g.inputs
                width = 4 if f32 else 2
                vals = np.frombuffer(blob, "<f4" if f32 else "<f2", size, pos)
                pos += width * size
                per_sample[o].append(vals.astype(np.float32).reshape(g.tensors[o].shape))
    return {k: np.stack(v) for k, v in per_sample.items()}


# -- comparison ------------------------------------------------------------------------------
def f16_bits(x) -> np.ndarray:
    """fp16 bit patterns of float values that are fp16 (every NaN as 0x7E00)."""
    with np.errstate(over="ignore", invalid="ignore"):
        h = np.asarray(x, np.float32).astype(np.float16)
    bits = h.view(np.uint16).copy()
    bits[np.isnan(h)] = 0x7E00
    return bits


def ulp_distance(a, b) -> np.ndarray:
    """|a - b| in fp16 units in the last place (0 when the bits are equal; NaN vs number: 65535)."""
    ba, bb = f16_bits(a).astype(np.int64), f16_bits(b).astype(np.int64)
    oa = np.where(ba & 0x8000, 0x8000 - ba, ba)  # -0 and +0 map to 0, order preserved
    ob = np.where(bb & 0x8000, 0x8000 - bb, bb)
    d = np.abs(oa - ob)
    nan_a, nan_b = (ba & 0x7FFF) > 0x7C00, (bb & 0x7FFF) > 0x7C00
    d[nan_a != nan_b] = 0xFFFF
    d[nan_a & nan_b] = 0
    same = ba == bb
    d[same] = 0
    d[~same & (d == 0) & ~(nan_a & nan_b)] = 1  # +0 vs -0: not bit-identical, one step apart
    return d


@dataclass
class Comparison:
    outputs: dict  # output -> (bit_identical, max_ulp)
    first_diff: str | None  # name of the first node (execution order) whose outputs differ
    per_node: list  # (node name, op, bit_identical, max ulp) in execution order


def compare(model, feeds: dict, dump: bool = True, driver: str | None = None) -> tuple[Comparison, RunResult]:
    """Run the runtime and the simulator (npu mode) on the same samples; compare bits."""
    from gxnpuc import sim

    res = run(model, feeds, dump=dump, driver=driver)
    if res.status:
        raise GxnpucError("--runtime", f"the runtime refused the model (status {res.status})",
                          "a model gxnpuc wrote")
    ref = sim.run_model_batch(model, feeds, "npu", keep=dump)
    outs = {}
    for name in model.graph.outputs:
        if name in res.outputs:
            d = ulp_distance(res.outputs[name], ref[name])
            outs[name] = (bool(d.max(initial=0) == 0), int(d.max(initial=0)))
    per_node, first = [], None
    if dump:
        for node in model.graph.nodes:
            worst = max((int(ulp_distance(res.tensors[o], ref[o]).max(initial=0)) for o in node.outputs),
                        default=0)
            per_node.append((node.name, node.op, worst == 0, worst))
            if worst and first is None:
                first = node.name
    return Comparison(outs, first, per_node), res


# -- stack depth ----------------------------------------------------------------------------
def worst_stack(ci_text: str) -> tuple[int, list[str]]:
    """The deepest stack path of a gcc -fcallgraph-info=su call graph (.ci file): bytes and the
    functions on it. External callees (string.h) count 0. A frame gcc calls "dynamic,bounded"
    (realigned for 32-byte vectors) counts its bound. Raises ValueError on recursion or on a
    frame that is dynamic and unbounded (both would make the depth grow with the model)."""
    import re

    size: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    for m in re.finditer(r'node: \{ title: "([^"]+)" label: "[^"]*?(?:\\n(\d+) bytes \(([\w,]+)\))?" ', ci_text):
        if m.group(3) and m.group(3) not in ("static", "dynamic,bounded"):
            raise ValueError(f"{m.group(1)}: stack frame is {m.group(3)}")
        size[m.group(1)] = int(m.group(2) or 0)
    for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', ci_text):
        calls.setdefault(m.group(1), set()).add(m.group(2))
    memo: dict[str, tuple[int, list[str]]] = {}

    def depth(f: str, path: tuple) -> tuple[int, list[str]]:
        if f in path:
            raise ValueError(f"recursion through {f}")
        if f not in memo:
            best = max((depth(g, path + (f,)) for g in calls.get(f, ())), default=(0, []))
            memo[f] = (size.get(f, 0) + best[0], [f.split(":")[-1]] + best[1])
        return memo[f]
    return max(depth(f, ()) for f in size)


def measure_stack(cc: str = "gcc", flags: tuple = ("-O2",), workdir: str | None = None) -> tuple[int, list[str]]:
    """Compile runtime/gxnpu.c with -fstack-usage -fcallgraph-info=su; the deepest path."""
    src = runtime_dir() / "gxnpu.c"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        obj = os.path.join(tmp, "gxnpu.o")
        subprocess.run([cc, "-std=c99", "-ffp-contract=off", *flags, "-fstack-usage", "-fcallgraph-info=su",
                        "-c", str(src), "-o", obj], check=True, cwd=tmp)
        return worst_stack(Path(os.path.join(tmp, "gxnpu.ci")).read_text())


M4_FLAGS = ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb", "-Os")


def m4_sizes(model_h: str | None = None, workdir: str | None = None) -> dict:
    """arm-none-eabi-size of runtime/gxnpu.c for Cortex-M4F -Os: {"text", "data", "bss"},
    and with model_h the same for the runtime plus that model.h compiled in one object more
    (with GXNPUC_NO_DEBUG, as a firmware links it: no names)."""
    src = runtime_dir() / "gxnpu.c"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        objs = [os.path.join(tmp, "gxnpu.o")]
        cc = ["arm-none-eabi-gcc", "-std=c99", *M4_FLAGS, "-ffp-contract=off"]
        subprocess.run([*cc, "-c", str(src), "-o", objs[0]], check=True)
        if model_h:
            c_file = os.path.join(tmp, "model.c")
            Path(c_file).write_text(f'#include "{os.path.abspath(model_h)}"\n')
            objs.append(os.path.join(tmp, "model.o"))
            subprocess.run([*cc, "-DGXNPUC_NO_DEBUG", "-c", c_file, "-o", objs[1]], check=True)
        out = subprocess.run(["arm-none-eabi-size", "-t", *objs], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in out.stdout.strip().splitlines()[-1].split()[:3])
    return {"text": text, "data": data, "bss": bss}
