"""`gxnpuc --eval`: the accuracy report, and the runs `--tune` builds on.

runs.py: inputs, the simulated runs and the report; oracle.py: the source framework;
report.py: metrics, text, JSON/CSV; advice.py: the verdict.
"""
from gxnpuc.evaluate.runs import load_inputs, main

__all__ = ["load_inputs", "main"]
