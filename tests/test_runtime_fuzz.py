"""Coverage-guided fuzzing of the C runtime's model reader (runtime/host/fuzz_runtime.c, a
libFuzzer harness) under ASan/UBSan, from a seed corpus of every runtime test model; and the
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
from pathlib import Path

import pytest

import runtime_models as RM
from gxnpuc import runtime_host as rh

FUZZ_FLAGS = ("-std=c99", "-g", "-O1", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror",
              "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all")
FUZZ_SECONDS = 30
KEEP_CRC = 1 << 31


def seed(raw: bytes, io_size: int, keep_crc: bool = False) -> bytes:
    """One harness input: the io word (in_out size / 2, bit 31: keep the CRC), then the raw
    container without its debug section (the runtime never reads it)."""
    b = bytearray(raw)
    secs = [struct.unpack_from("<4sIII", b, 32 + 16 * k) for k in range(6)]
    end = max(off + size for tag, off, size, fl in secs[:3])
    if secs[5][1] >= end:
        struct.pack_into("<II", b, 32 + 16 * 5 + 4, end, 0)
        b = b[:end]
    b[16:20] = bytes(4)
    struct.pack_into("<I", b, 16, zlib.crc32(b))
    return struct.pack("<I", io_size // 2 | (KEEP_CRC if keep_crc else 0)) + bytes(b)


def write_corpus(folder: str) -> int:
    """The seeds: every runtime test model (one per NPU op variant) and the fp16/fp32 chain."""
    os.makedirs(folder, exist_ok=True)
    models = [(name, RM.build(g, **kw)) for name, g, kw in RM.op_models()]
    models.append(("chain", RM.build(RM.chain_model(), fp16_out_ops=("t1_0",))))
    for name, model in models:
        Path(folder, f"{name}.bin").write_bytes(seed(rh.raw_bytes(model), int(model.plan["io_size"])))
    return len(models)


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
                           "-timeout=10", "-rss_limit_mb=1024", "-print_final_stats=1",
                           f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=FUZZ_SECONDS + 120)
    assert _clean(proc), proc.stderr[-3000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr).group(1))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", proc.stderr)
    assert runs > 10 * n_seeds, proc.stderr[-2000:]
    init_cov = int(re.search(r"INITED cov: (\d+)", proc.stderr).group(1))
    assert int(cov[-1][0]) >= init_cov  # coverage never shrinks; it grows in practice


def test_every_seed_runs_and_passes_the_harness_checks(harness, tmp_path):
    """The unmutated seeds are accepted models (the harness runs them through raw and split)."""
    corpus = tmp_path / "corpus"
    write_corpus(str(corpus))
    proc = subprocess.run([str(harness), *sorted(map(str, corpus.iterdir()))], capture_output=True, text=True)
    assert _clean(proc), proc.stderr[-3000:]
    assert proc.stderr.count("Executed ") == len(list(corpus.iterdir()))


if __name__ == "__main__":
    print(f"{write_corpus(sys.argv[1] if len(sys.argv) > 1 else 'fuzz_corpus')} seeds written")
