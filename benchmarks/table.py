"""The benchmark's one table: rows in long format (section, model, item, metric, value, unit,
baseline, ratio), printed as text, saved as CSV / JSON / Markdown, and plotted.

Every figure carries its unit and the baseline its ratio divides by, so the numbers mean
something on a noisy shared machine: the ratio is measured in the same run as its baseline.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, fields

SECTIONS = ("import", "compile", "compression", "memory", "simulator", "accuracy", "scaling")


@dataclass
class Row:
    section: str  # one of SECTIONS
    model: str  # benchmark model ("kws", "digits", "mlp", "mlp x4", ...) or "-"
    item: str  # tool or setting, e.g. "gxnpuc (ONNX)", "TFLite dynamic-range"
    metric: str  # e.g. "wall time", "output SNR", "weight bytes"
    value: float | None
    unit: str  # s | ms | GB/s | dB | bytes | % | x fp32 weight bytes ...
    baseline: str = ""  # what `ratio` divides by ("" when the value is its own figure)
    ratio: float | None = None  # value / baseline value (dimensionless)
    note: str = ""


COLUMNS = [f.name for f in fields(Row)]


def fmt_value(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if unit == "bytes":
        return f"{int(x):,}"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    if ax >= 0.01 or ax == 0:
        return f"{x:.3g}" if ax < 10 else f"{x:.2f}"
    return f"{x:.2e}"


def fmt_ratio(r: float | None) -> str:
    return "" if r is None or (isinstance(r, float) and math.isnan(r)) else f"{r:.3g}x"


def cells(row: Row) -> list[str]:
    return [row.section, row.model, row.item, row.metric, fmt_value(row.value, row.unit), row.unit,
            fmt_ratio(row.ratio), row.baseline, row.note]


HEADERS = ["section", "model", "item", "metric", "value", "unit", "ratio", "baseline (ratio = value / it)", "note"]


def text(rows: list[Row]) -> str:
    """A fixed-width table, a rule between sections."""
    from gxnpuc.tables import table_lines

    lines = table_lines(HEADERS, [cells(r) for r in rows])
    out = lines[:2]
    for k, (r, line) in enumerate(zip(rows, lines[2:])):
        if k and r.section != rows[k - 1].section:
            out.append("")
        out.append(line)
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    esc = [[c.replace("|", "\\|") for c in cells(r)] for r in rows]
    head = "| " + " | ".join(HEADERS) + " |\n|" + "---|" * len(HEADERS) + "\n"
    return head + "\n".join("| " + " | ".join(c) + " |" for c in esc)


def accuracy_markdown(rows: list[Row]) -> str:
    """The accuracy section pivoted: one line per (model, setting)."""
    acc = [r for r in rows if r.section == "accuracy"]
    keys = list(dict.fromkeys((r.model, r.item) for r in acc))
    get = {(r.model, r.item, r.metric): r for r in acc}
    out = ["| model | setting | weight bytes | x fp32 bytes | output SNR (dB) | test accuracy |",
           "|---|---|---|---|---|---|"]
    for model, item in keys:
        b, s, a = (get.get((model, item, m)) for m in ("weight bytes", "output SNR", "test accuracy"))
        out.append(f"| {model} | {item} | {fmt_value(b.value, 'bytes') if b else ''} | "
                   f"{fmt_ratio(b.ratio) if b else ''} | {fmt_value(s.value) if s else ''} | "
                   f"{fmt_value(a.value) + ' %' if a else ''} |")
    return "\n".join(out)


def save(rows: list[Row], meta: dict, folder: str) -> dict[str, str]:
    """bench.csv, bench.json (rows + machine), bench.md, bench.png in folder; their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {k: os.path.join(folder, f"bench.{k}") for k in ("csv", "json", "md", "png")}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(asdict(r) for r in rows)
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "rows": [asdict(r) for r in rows]}, fh, indent=1)
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(markdown(rows) + "\n\n" + accuracy_markdown(rows) + "\n")
    from benchmarks import plot

    plot.save(rows, paths["png"])
    return paths
