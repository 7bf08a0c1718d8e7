"""`gxnpuc --eval`: the accuracy report, and the runs `--tune` builds on.

The public API (tune and the tests use nothing else):
- inputs: load_inputs(data, graph, samples, seed), RANDOM_SAMPLES
- runs: simulate(cfg, model, feeds, bar) -> Runs; outputs_with(runs, weight, values);
  output_snrs(runs, outs); stacked(envs, name); first_reader(graph, name);
  compressed_weights(model); progress(total, desc)
- metrics: snr_db, compare, accuracy; text: fmt_db
- clip ranges: clip_candidates(w, mse), round_sig
- the report: evaluate(cfg, model, feeds, labels, source) and main(cfg, args, model), the
  `--eval` entry point.

Modules: inputs.py, runs.py (the engine), oracle.py (the source framework), metrics.py,
advice.py (the verdict and the clip search), accuracy.py (the report), report.py (its text
and files).
"""
from gxnpuc.evaluate.accuracy import evaluate, main
from gxnpuc.evaluate.advice import clip_candidates, round_sig
from gxnpuc.evaluate.inputs import RANDOM_SAMPLES, load_inputs
from gxnpuc.evaluate.metrics import accuracy, compare, snr_db
from gxnpuc.evaluate.report import fmt_db
from gxnpuc.evaluate.runs import (Runs, compressed_weights, first_reader, output_snrs, outputs_with,
                                  progress, simulate, stacked)

__all__ = ["RANDOM_SAMPLES", "Runs", "accuracy", "clip_candidates", "compare", "compressed_weights",
           "evaluate", "first_reader", "fmt_db", "load_inputs", "main", "output_snrs", "outputs_with",
           "progress", "round_sig", "simulate", "snr_db", "stacked"]
