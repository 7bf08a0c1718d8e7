"""`gxnpuc -t/--tune`, built on gxnpuc.evaluate's runs (docs/tuning.md).

planner.py: targets, steps and the greedy plan; sweep.py: every way to store each weight and
its measured effect; costmodel.py: estimated latency; report.py: tables, plot, tuned config.
"""
from gxnpuc.tune.planner import PER_CHANNEL, PER_TENSOR, main, probe_config, tune, tuned_path

__all__ = ["PER_CHANNEL", "PER_TENSOR", "main", "probe_config", "tune", "tuned_path"]
