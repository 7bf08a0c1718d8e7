"""`gxnpuc --eval DATA`: how far the compiled model is from the source framework, and why.

Runs the framework (gxnpuc.evaluate.oracle), the float IR and the npu simulation on the same
inputs (gxnpuc.evaluate.runs); compares each output; for every compressed weight measures
its layer's accumulated error and the model output with only that weight compressed; then
names the weight to exclude or clip first (gxnpuc.evaluate.advice). Text, JSON and CSV come
from gxnpuc.evaluate.report.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc import numerics
from gxnpuc.config import display_path
from gxnpuc.errors import OutputError
from gxnpuc.evaluate import advice, metrics, oracle
from gxnpuc.evaluate import report as eval_report
from gxnpuc.evaluate.inputs import load_inputs
from gxnpuc.evaluate.rows import LayerRow, OutputRow, Report
from gxnpuc.evaluate.runs import (Runs, compressed_weights, first_reader, float_value, layer_output,
                                  output_snrs, outputs_with, progress, simulate, stacked)
from gxnpuc.report.files import safe_names
from gxnpuc.report.stats import outer_share, quant_range

if TYPE_CHECKING:
    from gxnpuc.config import Config
    from gxnpuc.model import CompiledModel


def main(cfg: Config, args, model=None) -> int:
    """The --eval entry point: args.eval is an .npz path or `random`; args.dump_dir optional."""
    from gxnpuc import compiler

    model = model if model is not None else compiler.compile(cfg)
    feeds, labels, source = load_inputs(args.eval or "random", model.graph)
    report = evaluate(cfg, model, feeds, labels, source, args.dump_dir,
                      runtime=bool(getattr(args, "runtime", False)))
    print(eval_report.text(report))
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
                    layers, overflow_notes(runs))
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
            rows.append(OutputRow(k, mode, shape, **metrics.compare(ref, stacked(envs, k), labels)))
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
    names = runs.overflow
    if not names:
        return []
    return [f"{len(names)} tensor(s) exceed the fp16 range ±{numerics.F16_MAX:g} in float: "
            + ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")]


def dump(runs: Runs, folder: str) -> str:
    """One .npy per tensor per mode ([samples, *shape]) in folder/<mode>/, plus index.json."""
    g = runs.model.graph
    names = list(g.inputs) + [o for n in g.nodes for o in n.outputs]
    files = {k: v[:-4] + ".npy" for k, v in safe_names(names).items()}
    try:
        for mode, envs in (("float", runs.float_envs), ("npu", runs.npu_envs)):
            os.makedirs(os.path.join(folder, mode), exist_ok=True)
            for k in names:
                np.save(os.path.join(folder, mode, files[k]), stacked(envs, k))
        os.makedirs(os.path.join(folder, "framework"), exist_ok=True)
        for k in g.outputs:
            np.save(os.path.join(folder, "framework", files[k]), runs.ref[k])
        with open(os.path.join(folder, "index.json"), "w", encoding="utf-8") as fh:
            json.dump({"files": files, "order": names}, fh, indent=1)
    except OSError as exc:
        raise OutputError(folder, f"cannot write the dump ({exc.strerror or exc})",
                          "a writable folder for --dump-dir") from None
    return folder
