"""`gxnpuc --eval DATA`: how far the compiled model is from the source framework, and why.

Runs the framework (gxnpuc.evaluate.oracle), the float IR and the npu simulation on the same
inputs (gxnpuc.evaluate.runs); compares each output; for every compressed weight measures
its layer's accumulated error and the model output with only that weight compressed; then
names the weight to exclude or clip first (gxnpuc.evaluate.advice). Text, JSON and CSV come
from gxnpuc.evaluate.report.
"""
from __future__ import annotations

import io
import json
import os
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc import numerics, outputs
from gxnpuc.config import display_path
from gxnpuc.evaluate import advice, metrics, oracle
from gxnpuc.evaluate import report as eval_report
from gxnpuc.evaluate import sequence
from gxnpuc.evaluate.rows import LayerRow, OutputRow, Report
from gxnpuc.evaluate.runs import (Runs, compare_output, compressed_weights, first_reader, float_value,
                                  layer_output, output_snrs, outputs_with, progress, sigmoid_inputs, simulate,
                                  stacked)
from gxnpuc.report.files import safe_names
from gxnpuc.report.stats import outer_share, quant_range

if TYPE_CHECKING:
    from gxnpuc.config import Config
    from gxnpuc.model import CompiledModel


def main(cfg: Config, args, model=None) -> int:
    """The --eval entry point: args.eval is an .npz path or `random`; args.dump_dir optional."""
    from gxnpuc import compiler

    model = model if model is not None else compiler.compile(cfg)
    model, feeds, labels, source = sequence.load(args.eval or "random", model)
    report = evaluate(cfg, model, feeds, labels, source, args.dump_dir,
                      runtime=bool(getattr(args, "runtime", False)))
    print(eval_report.text(report))
    if report.steps:
        print(sequence.text(report))
    json_path, csv_path = eval_report.write(report, cfg.output_file)
    print(f"report written: {display_path(json_path)}, {display_path(csv_path)}")
    return 0


def evaluate(cfg: Config, model: CompiledModel, feeds: dict, labels, source: str,
             dump_dir: str | None = None, runtime: bool = False) -> Report:
    """Run everything and return the report (see docs/numerics.md for its fields)."""
    n, weights = len(next(iter(feeds.values()))), compressed_weights(model)
    with progress(n * (4 + len(weights)), "eval") as bar:
        runs = simulate(cfg, model, feeds, bar, keep_all=bool(dump_dir))
        layers = [layer_row(runs, sw, bar) for sw in weights]
    layers.sort(key=lambda r: r.only_snr_db)
    report = Report(os.path.basename(cfg.model_path) or "?", oracle.name(cfg), source, n,
                    float(cfg.eval_snr_threshold_db), list(model.graph.outputs), output_rows(runs, labels),
                    layers, overflow_notes(runs) + probability_notes(runs))
    if sequence.is_unrolled(model.graph):  # a streaming model over steps: SNR per step range
        report.steps = sequence.step_rows(runs)
    report.verdict = advice.verdict(cfg, runs, report, progress)
    if dump_dir:
        report.notes.append(f"intermediate tensors written to {dump(runs, dump_dir)}")
    if runtime:  # the C runtime's rows (gxnpuc/evaluate/runtime.py)
        from gxnpuc.evaluate import runtime as runtime_rows

        runtime_rows.add_rows(report, runs, feeds, labels, dump_dir)
    return report


def output_rows(runs: Runs, labels) -> list[OutputRow]:
    rows = []
    modes = (("float", runs.float_envs), ("npu_fp16", runs.base_envs), ("npu", runs.npu_envs))
    for k in runs.model.graph.outputs:
        ref, shape = runs.ref[k], list(runs.model.graph.tensors[k].shape)
        if labels is not None:  # the framework's own accuracy, for scale
            rows.append(OutputRow(k, "framework", shape, None, None, None, None, metrics.accuracy(ref, labels)))
        for mode, envs in modes:
            rows.append(OutputRow(k, mode, shape, **compare_output(runs.model.graph, k, ref, stacked(envs, k),
                                                                    labels)))
    return rows


def layer_row(runs: Runs, sw, bar) -> LayerRow:
    g = runs.model.graph
    node = g.nodes[first_reader(g, sw.name)]
    out = layer_output(g, sw.name)
    w = float_value(runs.model, sw.name)
    only = output_snrs(runs, outputs_with(runs, sw.name, numerics.stored_values(sw), bar))
    q_lo, q_hi = quant_range(sw)
    half = float(np.max(np.asarray(sw.step_f16, np.float64))) / 2
    return LayerRow(sw.name, [int(d) for d in sw.shape], node.name, out,
                    metrics.snr_db(stacked(runs.float_envs, out), stacked(runs.npu_envs, out)),
                    min(only.values()), only, float(w.min()), float(w.max()), q_lo, q_hi,
                    None if sw.clip is None else [float(sw.clip[0]), float(sw.clip[1])],
                    float(np.mean((w < q_lo - half) | (w > q_hi + half))), outer_share(w))


def overflow_notes(runs: Runs) -> list[str]:
    """Name tensors whose float values exceed the fp16 range (the device saturates to inf)."""
    names, notes = runs.overflow, []
    if names:
        notes.append(f"{len(names)} tensor(s) exceed the fp16 range ±{numerics.F16_MAX:g} in float: "
                     + ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
    if runs.first_nonfinite:
        node = next(n for n in runs.model.graph.nodes if n.name == runs.first_nonfinite)
        fn = node.attrs.get("fn")
        notes.append(f"the npu first gives inf/NaN at {node.op}{f' {fn}' if fn else ''} {node.name!r}, "
                     "where the float IR is finite: a value there or before it left the fp16 range "
                     f"(beyond ±{numerics.F16_MAX:g}, or below {2.0 ** -24:.3g} and so 0, e.g. the input "
                     "of a log or a divisor); the compile notes name constants that fp16 turns to 0")
    return notes


PROBABILITY_GAP_DB = 6.0  # a sigmoid output gets a note when its logits' SNR is this much higher
NEAR_0_1 = 0.05  # ... and its median probability is this close to 0 or 1


def probability_notes(runs: Runs) -> list[str]:
    """For an output made of sigmoid probabilities mostly near 0 or 1, when its logits' SNR is
    PROBABILITY_GAP_DB or more above its own: both, and how often the decision at 0.5 agrees.
    Near 0 (or 1) an error of the logit scales p by a factor, so the SNR of p measures the
    logit's absolute error; the logits are compared npu against float IR."""
    notes = []
    for k in runs.model.graph.outputs:
        logits = sigmoid_inputs(runs.model.graph, k)
        if not logits:
            continue
        z_float, z_npu = (np.stack([np.concatenate([np.ravel(e[i]) for i in logits]) for e in envs])
                          for envs in (runs.float_envs, runs.npu_envs))
        ref, npu = np.asarray(runs.ref[k], np.float64), stacked(runs.npu_envs, k).astype(np.float64)
        snr_p, snr_z = metrics.snr_db(ref, npu), metrics.snr_db(z_float, z_npu)
        if not (snr_z >= snr_p + PROBABILITY_GAP_DB and np.median(np.minimum(ref, 1 - ref)) < NEAR_0_1):
            continue
        agree = float(np.mean((ref > 0.5) == (npu.reshape(ref.shape) > 0.5)))
        notes.append(f"output {k}: sigmoid probabilities in [{ref.min():.3g}, {ref.max():.3g}]; near 0 or 1 "
                     f"their SNR ({eval_report.fmt_db(snr_p)} dB, npu) measures the logits' absolute error "
                     f"(a logit off by 1 scales p near 0 by e); on the logits (the sigmoid inputs, npu vs "
                     f"float IR) npu gives {eval_report.fmt_db(snr_z)} dB; decisions at 0.5 agree on {agree:.1%}")
    return notes


def dump(runs: Runs, folder: str) -> str:
    """One .npy per tensor per mode ([samples, *shape]) in folder/<mode>/, plus index.json."""
    g = runs.model.graph
    names = list(g.inputs) + [o for n in g.nodes for o in n.outputs]
    files = {k: v[:-4] + ".npy" for k, v in safe_names(names).items()}

    def save(sub: str, name: str, arr) -> None:
        buf = io.BytesIO()
        np.save(buf, arr)
        outputs.write(os.path.join(folder, sub, files[name]), buf.getvalue(), own_folder=True)

    for mode, envs in (("float", runs.float_envs), ("npu", runs.npu_envs)):
        for k in names:
            save(mode, k, stacked(envs, k))
    for k in g.outputs:
        save("framework", k, runs.ref[k])
    outputs.write(os.path.join(folder, "index.json"), json.dumps({"files": files, "order": names}, indent=1))
    return folder
