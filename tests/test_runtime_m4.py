"""The C runtime on an Arm Cortex-M4F: built with arm-none-eabi-gcc (-mcpu=cortex-m4
-mfpu=fpv4-sp-d16 -mfloat-abi=hard -Os) with a model.h and inputs compiled in, run under
qemu-system-arm -M mps2-an386 with semihosting; its outputs must equal the host runtime's bit
for bit. Two cases are also built at -O2, which compiles the fast kernels (runtime/gx_fast.h).
Skips, saying so, when the tools are missing (.ci/run installs them).
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import runtime_models as RM
from gxnpuc import backend
from gxnpuc import runtime_host as rh

TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "arm-none-eabi-size")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"SKIPPED Cortex-M4 runtime test: {', '.join(MISSING)} not installed "
    "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
M4 = ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb", "-Os")


def act_chain():
    fns = ["sigmoid", "tanh", "erf", "softplus", "gelu", "exp"]
    steps, prev = [], "x"
    for k, fn in enumerate(fns):
        steps.append(("act", {"fn": fn, "approximate": "none"} if fn == "gelu" else {"fn": fn}, [prev], 1))
        prev = f"t{k}_0"
    steps.append(("softmax", {"axis": 1, "log": True}, [prev], 1))
    return RM.graph_of(steps, {"x": (2, 40)})


def firmware(model, feeds, tmp_path, tag, opt="-Os"):
    src = rh.runtime_dir()
    backend.write(model, str(tmp_path / f"{tag}.h"), "c_code")
    g = model.graph
    n = len(feeds[g.inputs[0]])
    blob = np.concatenate([np.asarray(feeds[k], np.float32).reshape(n, -1).astype("<f2") for k in g.inputs], axis=1)
    rows = ",\n".join("{" + ",".join(map(str, row.tobytes())) + "}" for row in blob)
    (tmp_path / f"{tag}_in.h").write_text(f"#define GX_SAMPLES {n}\nstatic const unsigned char "
                                          f"gx_inputs[{n}][{blob.shape[1] * 2}] = {{\n{rows}\n}};\n")
    elf = tmp_path / f"{tag}.elf"
    subprocess.run(["arm-none-eabi-gcc", "-std=c99", *M4[:-1], opt, "-ffp-contract=off", "-Wall", "-Wextra", "-Werror",
                    "-I", str(src), "-I", str(tmp_path), f'-DGX_MODEL_H="{tag}.h"', f'-DGX_INPUTS_H="{tag}_in.h"',
                    "--specs=rdimon.specs", "-nostartfiles", "-T", str(src / "m4" / "mps2_an386.ld"),
                    str(src / "m4" / "startup.c"), str(src / "m4" / "main.c"), str(src / "gxnpu.c"), "-o", str(elf)],
                   check=True)
    proc = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting", "-kernel", str(elf)],
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.split()
    assert proc.returncode == 0 and lines[-1] == "done", proc.stdout[-500:] + proc.stderr[-500:]
    return [bytes.fromhex(x) for x in lines[:-1]]


CASES = [("chain", RM.chain_model, {"fp16_out_ops": ("t1_0",)}), ("acts", act_chain, {})]
CASES += [(name, (lambda g=g: g), kw) for name, g, kw in RM.op_models()
          if name in ("conv2d_bitmap_perchannel", "conv2d_nhwc_hwim", "conv_streamed_dense", "binary_pow")]


# -O2 compiles the fast kernels of runtime/gx_fast.h (vector code scalarised for the M4)
FAST = [(name, (lambda g=g: g), kw, "-O2") for name, g, kw in RM.op_models()
        if name in ("conv_fast_blocks", "fc_kn_wide")]


@pytest.mark.parametrize("tag,make,kw,opt", [(*c, "-Os") for c in CASES] + FAST,
                         ids=[c[0] for c in CASES] + [f"{c[0]}_O2" for c in FAST])
def test_cortex_m4_under_qemu_bit_identical_to_host(tag, make, kw, opt, tmp_path):
    model = RM.build(make(), **kw)
    feeds = RM.feeds(model, 4, samples=2)
    got = firmware(model, feeds, tmp_path, tag, opt)
    host = rh.run(model, feeds)
    assert len(got) == 2
    in_bytes = sum(model.graph.tensors[k].size * 2 for k in model.graph.inputs)
    for s, row in enumerate(got):
        for name in model.graph.outputs:
            off, nbytes = model.plan["tensors"][name]
            want = np.ascontiguousarray(host.outputs[name][s]).astype(
                np.float16 if name in model.fp16_outputs else "<f4").tobytes()
            assert row[off - in_bytes:off - in_bytes + nbytes] == want, (tag, s, name)


def test_cortex_m4_code_size_and_stack(tmp_path):
    depth, path = rh.measure_stack("arm-none-eabi-gcc", M4)
    assert 0 < depth < 4096, path  # constant: no recursion, static frames only (worst_stack checks)
    alone = rh.m4_sizes()
    assert 4096 < alone["text"] <= 16 * 1024 and alone["data"] == 0 and alone["bss"] == 0, alone
    model = RM.build(RM.chain_model())
    header = backend.write(model, str(tmp_path / "m.h"), "c_code")
    both = rh.m4_sizes(header)
    assert both["text"] >= alone["text"] + model.sizes["weight"] and both["bss"] >= model.sizes["data"], both
