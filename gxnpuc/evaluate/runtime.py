"""`gxnpuc -e DATA --runtime`: the C runtime's row of the accuracy report.

The runtime (runtime/gxnpu.c, built with the system gcc) runs the compiled model on the same
samples; each output gets a row with "mode": "runtime" (the usual metrics against the
framework) plus "bit_identical_to_npu" and "max_ulp_to_npu" against the simulator's npu mode.
With --dump-dir, every tensor the runtime computed goes to <dir>/runtime/ (same file names
as the other modes) and report["runtime"] names the first op where runtime and simulator differ.
"""
from __future__ import annotations

import os

import numpy as np

from dataclasses import dataclass

from gxnpuc import runtime_host as rh
from gxnpuc.errors import OutputError
from gxnpuc.evaluate import metrics
from gxnpuc.evaluate.rows import OutputRow, Report
from gxnpuc.evaluate.runs import Runs, stacked


@dataclass
class RuntimeRow(OutputRow):
    """An output row of mode "runtime", plus its distance to the simulator's npu mode."""
    bit_identical_to_npu: bool
    max_ulp_to_npu: int  # fp16 units in the last place


def add_rows(report: Report, runs: Runs, feeds: dict, labels, dump_dir: str | None) -> None:
    """Run the runtime on feeds and insert its rows into report (after each output's npu row)."""
    model = runs.model
    res = rh.run(model, feeds, dump=bool(dump_dir))
    if res.status:
        report.notes.append(f"the C runtime refused the model (status {res.status})")
        return
    rows: list[OutputRow] = []
    for row in report.outputs:
        rows.append(row)
        k = row.output
        if row.mode != "npu" or k not in res.outputs:
            continue
        ulp = rh.ulp_distance(res.outputs[k], stacked(runs.npu_envs, k))
        worst = int(ulp.max(initial=0))
        rows.append(RuntimeRow(k, "runtime", row.shape,
                               **metrics.compare(runs.ref[k], np.asarray(res.outputs[k], np.float32), labels),
                               bit_identical_to_npu=worst == 0, max_ulp_to_npu=worst))
    report.outputs = rows
    if dump_dir:
        report.runtime = per_op(model, res, runs)
        first = report.runtime["first_diff_op"]
        report.notes.append("runtime vs simulator (npu): every op's outputs bit-identical" if first is None
                            else f"runtime vs simulator (npu): first op that differs: {first}")
        _dump(model, res, dump_dir)


def per_op(model, res, runs: Runs) -> dict:
    ops, first = [], None
    for node in model.graph.nodes:
        worst = max(int(rh.ulp_distance(res.tensors[o], stacked(runs.npu_envs, o)).max(initial=0))
                    for o in node.outputs)
        ops.append({"op": node.name, "type": node.op, "bit_identical_to_npu": worst == 0,
                    "max_ulp_to_npu": worst})
        if worst and first is None:
            first = node.name
    return {"first_diff_op": first, "ops": ops}


def _dump(model, res, folder: str) -> None:
    from gxnpuc.report.files import safe_names

    g = model.graph
    names = list(g.inputs) + [o for n in g.nodes for o in n.outputs]
    files = {k: v[:-4] + ".npy" for k, v in safe_names(names).items()}
    try:
        os.makedirs(os.path.join(folder, "runtime"), exist_ok=True)
        for k in res.tensors:
            np.save(os.path.join(folder, "runtime", files[k]), res.tensors[k])
    except OSError as exc:
        raise OutputError(folder, f"cannot write the dump ({exc.strerror or exc})",
                          "a writable folder for --dump-dir") from None
