"""What the user reads and sees after a compile: summary.py (the summary, `-w`, `-v`, `-m`,
`-L`) and hist.py (the `-s` histograms). Reports only read what the stages recorded."""
from gxnpuc.report.hist import save_histograms
from gxnpuc.report.summary import (folded_lines, list_ops, mem_table, op_table, summary, weight_lines,
                                   weight_stats)

__all__ = ["folded_lines", "list_ops", "mem_table", "op_table", "save_histograms", "summary", "weight_lines",
           "weight_stats"]
