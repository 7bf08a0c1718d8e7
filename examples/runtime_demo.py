"""Run a compiled example with the C runtime on the host and compare it with the simulator.

    python examples/runtime_demo.py examples/build/kws_model.h examples/build/kws_inputs.npz

Builds runtime/host/demo.c against the model.h with the system gcc (-std=c99 -O2 -Wall -Wextra
-Werror -ffp-contract=off), runs it on the inputs (struct input after struct input), and
prints how many output values are bit-identical to `gxnpuc`'s simulator (npu mode).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gxnpuc import backend, sim  # noqa: E402
from gxnpuc.runtime_host import CFLAGS, f16_bits  # noqa: E402


def main(header: str, inputs: str) -> int:
    model = backend.read(header)
    g = model.graph
    data = np.load(inputs)
    n = len(data[g.inputs[0]])
    feeds = {k: np.asarray(data[k], np.float32).reshape(n, *g.tensors[k].shape) for k in g.inputs}
    stem = os.path.splitext(header)[0]
    exe, in_bin, out_bin = stem + "_runtime_demo", stem + "_runtime_in.bin", stem + "_runtime_out.bin"
    blob = np.concatenate([feeds[k].reshape(n, -1).astype("<f2") for k in g.inputs], axis=1)
    with open(in_bin, "wb") as fh:
        fh.write(blob.tobytes())
    cmd = ["gcc", *CFLAGS, "-I", os.path.join(ROOT, "runtime"), "-I", os.path.dirname(os.path.abspath(header)),
           f'-DGX_MODEL_H="{os.path.basename(header)}"', os.path.join(ROOT, "runtime", "host", "demo.c"),
           os.path.join(ROOT, "runtime", "gxnpu.c"), "-o", exe]
    print(" ".join(cmd))
    subprocess.run(cmd, check=True)
    subprocess.run([exe, in_bin, out_bin], check=True)
    got = np.fromfile(out_bin, np.uint8).reshape(n, -1)
    want = sim.run_model_batch(model, feeds, "npu")
    same = total = 0
    for name in g.outputs:
        off, nbytes = model.plan["tensors"][name]
        off -= blob.shape[1] * 2  # struct output starts after struct input
        dt = "<f2" if name in model.fp16_outputs else "<f4"
        vals = got[:, off:off + nbytes].copy().view(dt).reshape(want[name].shape)
        same += int(np.sum(f16_bits(vals) == f16_bits(want[name])))
        total += vals.size
    print(f"{same} of {total} output values bit-identical to the simulator (npu mode)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
