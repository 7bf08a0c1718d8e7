"""Text and files of the --eval report: the printed tables, and the JSON and CSV files
written beside the output file (the numbers come from gxnpuc/evaluate/metrics.py)."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict

import numpy as np

from gxnpuc.errors import OutputError
from gxnpuc.evaluate.rows import Report
from gxnpuc.tables import numbers_table


# -- text ---------------------------------------------------------------------------------
def fmt_db(x) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "exact" if x > 0 else "-inf"
    return f"{x:.1f}"


def _fmt(x, kind: str) -> str:
    if x is None:
        return "-"
    if kind == "db":
        return fmt_db(x)
    if kind == "pct":
        return f"{x:.1%}"
    if kind == "cos":
        return f"{x:.6f}"
    return f"{x:.3g}"


MODE_LABELS = {"framework": "framework", "float": "float IR", "npu_fp16": "npu, no compression",
               "npu": "npu (as compiled)"}


def output_tables(report: Report) -> list[str]:
    out = []
    for name in report.output_names:
        rows = [r for r in report.outputs if r.output == name]
        body = [[MODE_LABELS.get(r.mode, r.mode), _fmt(r.snr_db, "db"), _fmt(r.cosine, "cos"),
                 _fmt(r.max_abs_err, "num"), _fmt(r.top1_agreement, "pct"), _fmt(r.accuracy, "pct")]
                for r in rows]
        out.append(f"output {name} {rows[0].shape}, against {report.framework}:")
        out.append(numbers_table(["", "SNR dB", "cosine", "max abs err", "top-1 agree", "accuracy"], body))
    return out


def layer_table(report: Report) -> str:
    rows = []
    for r in report.layers:
        rows.append([r.weight, "x".join(map(str, r.shape)), fmt_db(r.layer_snr_db),
                     fmt_db(r.only_snr_db), f"[{r.w_min:.3g}, {r.w_max:.3g}]",
                     f"[{r.q_lo:.3g}, {r.q_hi:.3g}]", _fmt(r.clipped_share, "pct"),
                     _fmt(r.tail_share, "pct")])
    head = ["weight (worst first)", "shape", "layer SNR dB", "only-this out SNR dB", "range",
            "8-bit range", "clipped", "outer 10%"]
    return numbers_table(head, rows)


def text(report: Report) -> str:
    """The report as printed by `gxnpuc --eval`."""
    lines = [f"gxnpuc --eval: {report.model}: {report.samples} samples from {report.data}, "
             f"framework {report.framework}"]
    lines += output_tables(report)
    if report.layers:
        lines.append("compressed weights: layer SNR = that layer's output, npu vs float IR, error "
                     "accumulated; only-this = model output with only this weight compressed")
        lines.append(layer_table(report))
    else:
        lines.append("no compressed weights (COMPRESS / CONV2D_COMPRESS are off or excluded)")
    lines += [f"note: {n}" for n in report.notes]
    lines.append(f"verdict: {report.verdict.text if report.verdict else '-'}")
    return "\n".join(lines)


# -- files --------------------------------------------------------------------------------
def _clean(x):
    """JSON-safe: inf -> "inf"/"-inf", NaN -> null, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        if math.isnan(x):
            return None
        return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, np.integer):
        return int(x)
    return x


CSV_COLUMNS = ["section", "name", "mode", "snr_db", "cosine", "max_abs_err", "top1_agreement",
               "accuracy", "shape", "layer", "layer_snr_db", "only_snr_db", "w_min", "w_max",
               "q_lo", "q_hi", "clip_lo", "clip_hi", "clipped_share", "tail_share"]


def csv_rows(report: Report) -> list[dict]:
    rows = [{"section": "output", "name": o.output, **asdict(o)} for o in report.outputs]
    for w in report.layers:
        clip = w.clip or (None, None)
        rows.append({"section": "layer", "name": w.weight, "mode": "npu", **asdict(w),
                     "clip_lo": clip[0], "clip_hi": clip[1]})
    for r in rows:
        r["shape"] = "x".join(map(str, r["shape"]))
    return [{k: _clean(r.get(k)) for k in CSV_COLUMNS} for r in rows]


def report_paths(output_file: str) -> tuple[str, str]:
    """<output stem>.eval.json and .eval.csv beside the output file."""
    stem = os.path.splitext(os.path.abspath(output_file))[0]
    return stem + ".eval.json", stem + ".eval.csv"


def write(report: Report, output_file: str) -> tuple[str, str]:
    """Write the JSON and CSV files atomically; return their paths."""
    json_path, csv_path = report_paths(output_file)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    body = json.dumps(_clean(report.as_dict()), indent=1, allow_nan=False) + "\n"
    for path, data in ((json_path, body), (csv_path, buf.getvalue())):
        _atomic_write(path, data)
    return json_path, csv_path


def _atomic_write(path: str, data: str) -> None:
    tmp = path + ".tmp"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(path, f"cannot write the eval report ({exc.strerror or exc})",
                          "a writable folder next to OUTPUT_FILE") from None
