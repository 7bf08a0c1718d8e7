"""`gxnpuc -e DATA --runtime`: the C runtime's row of the accuracy report.

The runtime (runtime/gxnpu.c, built with the system gcc) runs the compiled model on the same
samples; each output gets a row with "mode": "runtime" (the usual metrics against the
framework) plus "bit_identical_to_npu" and "max_ulp_to_npu" against the simulator's npu mode.
With --dump-dir, every tensor the runtime computed goes to <dir>/runtime/ (same file names
as the other modes) and report["runtime"] names the first op where runtime and simulator differ.
A streaming model (state pairs) runs over the sequence's steps with its state carried the way
a firmware carries it (vendor layout); its ops are then named `<node>@<step>`.
"""
from __future__ import annotations

import io
import os

import numpy as np

from dataclasses import dataclass

from gxnpuc import outputs, state
from gxnpuc import runtime_host as rh
from gxnpuc.evaluate import sequence
from gxnpuc.evaluate.rows import OutputRow, Report
from gxnpuc.evaluate.runs import Runs, compare_output, stacked


@dataclass
class RuntimeRow(OutputRow):
    """An output row of mode "runtime", plus its distance to the simulator's npu mode."""
    bit_identical_to_npu: bool
    max_ulp_to_npu: int  # fp16 units in the last place


def add_rows(report: Report, runs: Runs, feeds: dict, labels, dump_dir: str | None) -> None:
    """Run the runtime on feeds and insert its rows into report (after each output's npu row)."""
    model = runs.model
    res = _run(model, feeds, bool(dump_dir))
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
        x = np.asarray(res.outputs[k], np.float32)
        rows.append(RuntimeRow(k, "runtime", row.shape, **compare_output(model.graph, k, runs.ref[k], x, labels),
                               bit_identical_to_npu=worst == 0, max_ulp_to_npu=worst))
    report.outputs = rows
    if report.steps:  # a streaming model: the runtime's row per step range, after each npu row
        rt = {k: sequence.step_row(runs, k, "runtime", np.asarray(v, np.float32)) for k, v in res.outputs.items()}
        report.steps = [r for row in report.steps
                        for r in ([row, rt[row["output"]]] if row["mode"] == "npu" and row["output"] in rt else [row])]
    if dump_dir:
        report.runtime = per_op(model, res, runs)
        first = report.runtime["first_diff_op"]
        report.notes.append("runtime vs simulator (npu): every op's outputs bit-identical" if first is None
                            else f"runtime vs simulator (npu): first op that differs: {first}")
        _dump(model, res, dump_dir)


def _run(model, feeds: dict, dump: bool) -> rh.RunResult:
    """The runtime's outputs (and tensors) named as the evaluated graph names them. A streaming
    model runs its one-step model over the steps as a firmware does (rh.run_sequence: two
    buffers, the state outputs written into the next one), renamed to the unrolled graph."""
    if not sequence.is_unrolled(model.graph):
        return rh.run(model, feeds, dump=dump)
    step, u = sequence.step_model(model), model.graph
    steps = u.meta[sequence.META]["steps"]
    kept = set(state.pairs_of(step.graph).values())
    state0 = {i: feeds[i] for i in step.graph.inputs if i in kept}
    per_step = {i: np.stack([feeds[f"{i}@{t}"] for t in range(steps)], axis=1)
                for i in step.graph.inputs if i not in kept}
    res = rh.run_sequence(step, state0, per_step, dump)
    if res.status:
        return res
    return rh.RunResult({o: v.reshape(len(v), *u.tensors[o].shape) for o, v in res.outputs.items()},
                        {f"{k}@{t}": v[:, t] for k, v in res.tensors.items() for t in range(steps)})


def per_op(model, res, runs: Runs) -> dict:
    """Per node: bit-identical to the npu simulation? (a streaming model: per node and step,
    named `node@step`; the nodes that only stack the steps for the report are not the runtime's)."""
    ops, first = [], None
    for node in model.graph.nodes:
        if not all(o in res.tensors for o in node.outputs):
            continue
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
    for k in res.tensors:
        buf = io.BytesIO()
        np.save(buf, res.tensors[k])
        outputs.write(os.path.join(folder, "runtime", files[k]), buf.getvalue(), own_folder=True)
