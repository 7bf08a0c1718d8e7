"""Coverage-guided fuzzing of the C runtime's model reader and of gx_run / gx_run_step
(runtime/host/fuzz_runtime.c, a libFuzzer harness) under ASan/UBSan, from a seed corpus of every
runtime test model and a streaming model (state pairs: the two-buffer vendor layout); and the
regression cases the fuzzer found, replayed through the same harness.

The harness needs clang with libFuzzer (Debian: clang libclang-rt-dev); without it these tests
skip and say so (the seeded mutation loop of test_runtime.py still runs with gcc). Run it longer
by hand: `python tests/test_runtime_fuzz.py CORPUS_DIR` writes the seeds, then see docs/runtime.md.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from pathlib import Path

import pytest

import runtime_models as RM
from gxnpuc import runtime_host as rh, state

FUZZ_FLAGS = ("-std=c99", "-g", "-O1", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror",
              "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all")
FUZZ_SECONDS = 25
SPECIAL, KEEP_CRC = 1 << 30, 1 << 31
# no RSS limit: Linux carries the peak RSS of the forking pytest process (TensorFlow loaded: over
# 1 GB) across exec into the fuzzer's getrusage; the harness's own allocations stay bounded
NO_RSS_LIMIT = ("-rss_limit_mb=0", "-malloc_limit_mb=512")


def seed(raw: bytes, io_size: int, flags: int = 0) -> bytes:
    """One harness input: the io word (in_out size / 2, bit 30: special input values, bit 31:
    keep the CRC), then the raw container without its debug section (the runtime never reads it)."""
    b = bytearray(raw)
    secs = [struct.unpack_from("<4sIII", b, 32 + 16 * k) for k in range(6)]
    end = max(off + size for tag, off, size, fl in secs[:3])
    if secs[5][1] >= end:
        struct.pack_into("<II", b, 32 + 16 * 5 + 4, end, 0)
        b = b[:end]
    b[16:20] = bytes(4)
    struct.pack_into("<I", b, 16, zlib.crc32(b))
    return struct.pack("<I", io_size // 2 | flags) + bytes(b)


def write_corpus(folder: str) -> int:
    """The seeds: every runtime test model (one per NPU op variant), the fp16/fp32 chain and
    the streaming model, each with plain and with special input values."""
    os.makedirs(folder, exist_ok=True)
    models = [(name, RM.build(g, **kw)) for name, g, kw in RM.op_models()]
    models.append(("chain", RM.build(RM.chain_model(), fp16_out_ops=("t1_0",))))
    models.append(("streaming", RM.streaming_model()))
    for name, model in models:
        raw, io_size = rh.raw_bytes(model), int(model.plan["io_size"])
        Path(folder, f"{name}.bin").write_bytes(seed(raw, io_size))
        Path(folder, f"{name}_special.bin").write_bytes(seed(raw, io_size, SPECIAL))
    return 2 * len(models)


def _clang_libfuzzer(tmp: Path) -> str | None:
    """Why the harness cannot be built here, or None when clang links a libFuzzer program."""
    if shutil.which("clang") is None:
        return "clang is not installed (Debian: apt-get install clang libclang-rt-dev)"
    probe = tmp / "probe.c"
    probe.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                     "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    proc = subprocess.run(["clang", "-fsanitize=fuzzer,address,undefined", str(probe), "-o", str(tmp / "probe")],
                          capture_output=True, text=True)
    if proc.returncode:
        return f"clang cannot link libFuzzer (Debian: libclang-rt-dev): {proc.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("fuzz")
    missing = _clang_libfuzzer(tmp)
    if missing:
        pytest.skip(f"libFuzzer harness not built: {missing}")
    src = rh.runtime_dir()
    exe = tmp / "fuzz_runtime"
    subprocess.run(["clang", *FUZZ_FLAGS, str(src / "host/fuzz_runtime.c"), str(src / "gxnpu.c"), "-o", str(exe)],
                   check=True)
    return exe


def _clean(proc: subprocess.CompletedProcess) -> bool:
    bad = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "invariant failed",
           "ERROR: libFuzzer", "deadly signal")
    return proc.returncode == 0 and not any(b in proc.stderr for b in bad)


def test_libfuzzer_finds_nothing_in_a_bounded_run(harness, tmp_path):
    """Coverage-guided mutation from the seeds for FUZZ_SECONDS: no crash, leak, UB report or
    broken harness invariant, and the run gets well past the seeds."""
    corpus = tmp_path / "corpus"
    n_seeds = write_corpus(str(corpus))
    proc = subprocess.run([str(harness), str(corpus), f"-max_total_time={FUZZ_SECONDS}", "-seed=1",
                           "-timeout=30", *NO_RSS_LIMIT, "-print_final_stats=1",
                           f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=FUZZ_SECONDS + 120)
    assert _clean(proc), proc.stderr[-3000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr).group(1))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", proc.stderr)
    assert runs > 10 * n_seeds, proc.stderr[-2000:]
    init_cov = int(re.search(r"INITED cov: (\d+)", proc.stderr).group(1))
    assert int(cov[-1][0]) >= init_cov  # coverage never shrinks; it grows in practice


def test_every_seed_runs_and_passes_the_harness_checks(harness, tmp_path):
    """The unmutated seeds are accepted and run (through raw and split arrays), so the fuzzer
    starts from models that reach every kernel."""
    corpus = tmp_path / "corpus"
    n = write_corpus(str(corpus))
    proc = subprocess.run([str(harness), *NO_RSS_LIMIT, *sorted(map(str, corpus.iterdir()))], capture_output=True,
                          text=True, env={**os.environ, "FUZZ_RUNTIME_VERBOSE": "1"})
    assert _clean(proc), proc.stderr[-3000:]
    assert proc.stderr.count("Executed ") == n, proc.stderr[-3000:]
    assert re.findall(r"^status (-?\d+) ran (\d)$", proc.stderr, re.M) == [("0", "1")] * n, proc.stderr[-3000:]
    assert re.findall(r"^steps (\d+)$", proc.stderr, re.M) == ["2"] * n, proc.stderr[-3000:]  # gx_run_step ran


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on PATH (the runtime driver)")
def test_the_streaming_seed_runs_as_a_firmware_does():
    """The streaming seed has the vendor layout (struct output starts at the first state input,
    before the end of struct input), and the gcc driver's two-buffer loop (gx_run_step) gives
    the unrolled npu simulation's bits at every step: it is a model the harness's loop must run."""
    from gxnpuc import sim
    from gxnpuc.evaluate import sequence

    model = RM.streaming_model()
    g, tensors = model.graph, model.plan["tensors"]
    assert state.pairs_of(g) == {"t1_0": "s", "t4_0": "c"}
    in_bytes = sum(g.tensors[k].size * 2 for k in g.inputs)
    assert (tensors["t1_0"][0], tensors["t4_0"][0], in_bytes) == (tensors["s"][0], tensors["c"][0], 32)
    assert min(tensors[o][0] for o in g.outputs) == tensors["s"][0] == 12  # output_offset
    steps, rng = 5, np.random.default_rng(6)
    state0 = {"s": rng.standard_normal((2, 1, 6)), "c": rng.standard_normal((2, 1, 4))}
    xs = rng.standard_normal((2, steps, 1, 6))
    res = rh.run_sequence(model, state0, {"x": xs})
    assert res.status == 0
    want = sim.run_model_batch(sequence.unroll(model, steps),
                               {**state0, **{f"x@{t}": xs[:, t] for t in range(steps)}}, "npu")
    for o in g.outputs:  # every step of every output, the state outputs included
        assert rh.ulp_distance(res.outputs[o].reshape(want[o].shape), want[o]).max() == 0, o


# -- what the fuzzer found: each case built in code from a test model, replayed through the harness
# (split arrays: an exact-size cmd, so ASan sees a read past its end) and through the gcc driver,
# which must return the status code
OP = {"conv": 1, "reduce": 10, "concat": 13, "split": 14}


def _model(name: str):
    return next(RM.build(g, **kw) for n, g, kw in RM.op_models() if n == name)


def _first_node(raw: bytes) -> int:
    """Offset in the file of the first node record of cmd (docs/model-format.md)."""
    cmd = struct.unpack_from("<I", raw, 32 + 4)[0]
    n_t = struct.unpack_from("<H", raw, cmd + 6)[0]
    dims_at = 16 + (n_t + 3) // 4 * 4
    return cmd + dims_at + 4 * sum(raw[cmd + 16:cmd + 16 + n_t])


def _retyped(name: str, op: str, no_refs: bool = False) -> bytes:
    """The one node of a model whose record has no attribute word (nw = 0) and ends cmd, given
    the opcode of an op whose check read word 0 before the word count (fuzz crash 1); no_refs:
    also 0 inputs and 0 outputs over a first ref of 257, which the concat/split check read as its
    tensor before counting refs (fuzz crash 3)."""
    raw = bytearray(rh.raw_bytes(_model(name)))
    at = _first_node(raw)
    assert raw[at + 2] == 0  # no attribute words
    raw[at] = OP[op]
    if no_refs:
        struct.pack_into("<HHH", raw, at + 4, 0, 0, 257)
    return bytes(fix_crc(raw))


def _cmd_outside(raw: bytes) -> bytes:
    """The CMD section entry with flags 0 (bytes 'not stored') and an offset far outside the
    file: the reader checked bounds only for flagged sections (fuzz crash 2)."""
    b = bytearray(raw)
    struct.pack_into("<III", b, 32 + 4, 0x605FFFFF, 0xCB0A78, 0)
    return bytes(fix_crc(b))


def _io_not_output(model, name: str) -> bytes:
    """The ops record of graph output `name` (io, fp16) without its output flag: an op then
    wrote an io tensor that is no graph output, which gx_run_step put in its input buffer
    (streaming: the state output over its own state input) instead of struct output."""
    raw = bytearray(rh.raw_bytes(model))
    ops_at, ops_size = struct.unpack_from("<II", raw, 32 + 16 * 2 + 4)
    (at,) = [ops_at + r for r in range(0, ops_size, 32)
             if raw[ops_at + r + 4] == 1 and raw[ops_at + r + 7] & 6 == 4
             and struct.unpack_from("<I", raw, ops_at + r + 8)[0] == model.plan["tensors"][name][0]]
    assert raw[at + 7] & 8  # fp16: 2 bytes a value, as a tensor that is no output
    raw[at + 7] &= ~4
    return bytes(fix_crc(raw))


def fix_crc(b: bytearray) -> bytearray:
    b[16:20] = bytes(4)
    struct.pack_into("<I", b, 16, zlib.crc32(b))
    return b


def regressions() -> dict:
    """name -> (the model it came from, the mutated raw container, the status gx_init returns)."""
    out = {f"{m}_as_{op}": (_model(m), _retyped(m, op), -7)
           for m, ops in (("prelu", ("split", "conv")), ("act_relu", ("reduce", "concat"))) for op in ops}
    out |= {f"act_sqrt_as_{op}_no_refs": (_model("act_sqrt"), _retyped("act_sqrt", op, True), -7)
            for op in ("concat", "split")}
    chain = RM.build(RM.chain_model())
    out["cmd_outside_file"] = (chain, _cmd_outside(rh.raw_bytes(chain)), -4)
    chain16, streaming = RM.build(RM.chain_model(), fp16_out_ops=("t1_0",)), RM.streaming_model()
    out["chain_io_not_output"] = (chain16, _io_not_output(chain16, "t1_0"), -5)
    out["streaming_state_not_output"] = (streaming, _io_not_output(streaming, "t1_0"), -5)
    return out


def test_fuzz_regressions_status_codes():
    """gcc driver (no clang needed): every found case is refused with its status code."""
    for name, (model, raw, status) in regressions().items():
        assert rh.run(model, RM.feeds(model, 1, samples=1), raw=raw).status == status, name


def test_a_pool_window_wider_than_its_input_costs_only_the_input():
    """Fuzz hang: one flipped bit made a 1-D pool's kernel 134,217,730 taps wide, and k_pool
    visited every tap (minutes). It visits the taps inside x now: the run ends at once and gives
    the average of the row from each window's start on, as a float64 computation of the same window does."""
    model = _model("avgpool1d_nopad_count")
    raw = bytearray(rh.raw_bytes(model))
    at = _first_node(raw)
    assert raw[at] == 9 and raw[at + 2] == 6  # pool, 1 + 5 words: flags, kernel, stride, pads, dilation
    nref = sum(struct.unpack_from("<HH", raw, at + 4))
    kernel_at = at + 8 + 2 * nref + 2 * (nref & 1) + 4
    assert struct.unpack_from("<I", raw, kernel_at)[0] == 3
    struct.pack_into("<I", raw, kernel_at, 134_217_730)
    feeds = RM.feeds(model, 1, samples=1)
    got = rh.run(model, feeds, raw=bytes(fix_crc(raw)))
    assert got.status == 0
    (name,), (out,) = model.graph.inputs, model.graph.outputs
    x = np.asarray(feeds[name], np.float64).reshape(model.graph.tensors[name].shape)
    stride, pad = struct.unpack_from("<Ii", raw, kernel_at + 4)
    assert model.graph.nodes[0].attrs["count_include_pad"] == 0  # the divisor counts taps inside x
    starts = [max(0, stride * k - pad) for k in range(model.graph.tensors[out].shape[-1])]
    want = np.stack([x[..., s:].mean(axis=-1) for s in starts], axis=-1)  # each window runs to the row's end
    assert np.allclose(np.asarray(got.outputs[out], np.float64).reshape(want.shape), want, rtol=2e-3, atol=1e-3)


def test_fuzz_regressions_under_the_harness(harness, tmp_path):
    files = []
    for name, (model, raw, _) in regressions().items():
        files.append(tmp_path / f"{name}.bin")
        files[-1].write_bytes(struct.pack("<I", int(model.plan["io_size"]) // 2 | KEEP_CRC) + raw)
    proc = subprocess.run([str(harness), *NO_RSS_LIMIT, *map(str, files)], capture_output=True, text=True,
                          env={**os.environ, "FUZZ_RUNTIME_VERBOSE": "1"})
    assert _clean(proc), proc.stderr[-3000:]
    assert proc.stderr.count("Executed ") == len(files), proc.stderr[-3000:]
    statuses = [int(x) for x in re.findall(r"^status (-?\d+) ran 0$", proc.stderr, re.M)]
    assert statuses == [status for _, _, status in regressions().values()], proc.stderr[-3000:]


if __name__ == "__main__":
    print(f"{write_corpus(sys.argv[1] if len(sys.argv) > 1 else 'fuzz_corpus')} seeds written")
