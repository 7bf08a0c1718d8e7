"""Numbers and text of the --eval report: SNR/cosine/error metrics, the printed tables, and
the JSON and CSV files written beside the output file.

gxnpuc/evaluate/runs.py gathers the runs; everything here is pure (arrays in, numbers/text out).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np

from gxnpuc.errors import OutputError


# -- metrics ------------------------------------------------------------------------------
def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """10*log10(sum(ref^2) / sum((ref - x)^2)) in float64; inf when x equals ref exactly."""
    ref = np.asarray(ref, np.float64)
    err = ref - np.asarray(x, np.float64).reshape(ref.shape)
    noise = float(np.sum(err * err)) if np.all(np.isfinite(err)) else math.inf
    signal = float(np.sum(ref * ref))
    if noise == 0.0:
        return math.inf
    if signal == 0.0 or math.isinf(noise):
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(ref: np.ndarray, x: np.ndarray) -> float:
    a = np.asarray(ref, np.float64).ravel()
    b = np.asarray(x, np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0 or not math.isfinite(nb):
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def max_abs_err(ref: np.ndarray, x: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(ref - np.asarray(x, np.float64).reshape(ref.shape)), initial=0.0))


def class_scores(y: np.ndarray) -> np.ndarray | None:
    """[samples, classes], or [samples, frames, classes] for a per-frame classifier, when y
    ([samples, *shape]) is a classifier output, else None.

    A classifier output has one axis of two or more entries once size-1 axes are dropped; a
    per-frame one (phone posteriors [1, 11, 65]) has more, and classes on its last axis.
    """
    y = np.asarray(y)
    per_sample = [d for d in y.shape[1:] if d != 1]
    if len(per_sample) == 1 and per_sample[0] >= 2:
        return y.reshape(len(y), per_sample[0])
    if len(per_sample) > 1 and y.shape[-1] >= 2:
        return y.reshape(len(y), -1, y.shape[-1])
    return None


def top1(y: np.ndarray) -> np.ndarray | None:
    """The arg-max class: [samples], or [samples, frames] for a per-frame classifier."""
    scores = class_scores(y)
    return None if scores is None else np.argmax(scores.astype(np.float64), axis=-1)


def compare(ref: np.ndarray, x: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """One row of the per-output table: x against the framework's ref (both [samples, ...]);
    top-1 agreement and accuracy count every frame of a per-frame classifier."""
    row = {"snr_db": snr_db(ref, x), "cosine": cosine(ref, x), "max_abs_err": max_abs_err(ref, x),
           "top1_agreement": None, "accuracy": None}
    t_ref, t_x = top1(ref), top1(x)
    if t_ref is not None:
        row["top1_agreement"] = float(np.mean(t_ref == t_x))
        row["accuracy"] = accuracy(x, labels)
    return row


def accuracy(y: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Share of samples (of frames, with per-frame labels [samples, frames]) classified right;
    None without labels or when their shape does not fit the output."""
    t = top1(y)
    if t is None or labels is None or np.shape(labels) != t.shape:
        return None
    return float(np.mean(t == labels))


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


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Aligned columns; the first column left-aligned, the rest right-aligned."""
    cells = [headers] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


MODE_LABELS = {"framework": "framework", "float": "float IR", "npu_fp16": "npu, no compression",
               "npu": "npu (as compiled)"}


def output_tables(report: dict) -> list[str]:
    out = []
    for name in report["output_names"]:
        rows = [r for r in report["outputs"] if r["output"] == name]
        body = [[MODE_LABELS.get(r["mode"], r["mode"]), _fmt(r["snr_db"], "db"), _fmt(r["cosine"], "cos"),
                 _fmt(r["max_abs_err"], "num"), _fmt(r["top1_agreement"], "pct"), _fmt(r["accuracy"], "pct")]
                for r in rows]
        out.append(f"output {name} {rows[0]['shape']}, against {report['framework']}:")
        out.append(table(["", "SNR dB", "cosine", "max abs err", "top-1 agree", "accuracy"], body))
    return out


def layer_table(report: dict) -> str:
    rows = []
    for r in report["layers"]:
        rows.append([r["weight"], "x".join(map(str, r["shape"])), fmt_db(r["layer_snr_db"]),
                     fmt_db(r["only_snr_db"]), f"[{r['w_min']:.3g}, {r['w_max']:.3g}]",
                     f"[{r['q_lo']:.3g}, {r['q_hi']:.3g}]", _fmt(r["clipped_share"], "pct"),
                     _fmt(r["tail_share"], "pct")])
    head = ["weight (worst first)", "shape", "layer SNR dB", "only-this out SNR dB", "range",
            "8-bit range", "clipped", "outer 10%"]
    return table(head, rows)


def text(report: dict) -> str:
    """The report as printed by `gxnpuc --eval`."""
    lines = [f"gxnpuc --eval: {report['model']}: {report['samples']} samples from {report['data']}, "
             f"framework {report['framework']}"]
    lines += output_tables(report)
    if report["layers"]:
        lines.append("compressed weights: layer SNR = that layer's output, npu vs float IR, error "
                     "accumulated; only-this = model output with only this weight compressed")
        lines.append(layer_table(report))
    else:
        lines.append("no compressed weights (COMPRESS / CONV2D_COMPRESS are off or excluded)")
    lines += [f"note: {n}" for n in report["notes"]]
    lines.append(f"verdict: {report['verdict']['text']}")
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


def csv_rows(report: dict) -> list[dict]:
    rows = [{"section": "output", "name": r["output"], **r} for r in report["outputs"]]
    for r in report["layers"]:
        clip = r.get("clip") or (None, None)
        rows.append({"section": "layer", "name": r["weight"], "mode": "npu", **r,
                     "clip_lo": clip[0], "clip_hi": clip[1]})
    for r in rows:
        r["shape"] = "x".join(map(str, r["shape"]))
    return [{k: _clean(r.get(k)) for k in CSV_COLUMNS} for r in rows]


def report_paths(output_file: str) -> tuple[str, str]:
    """<output stem>.eval.json and .eval.csv beside the output file."""
    stem = os.path.splitext(os.path.abspath(output_file))[0]
    return stem + ".eval.json", stem + ".eval.csv"


def write(report: dict, output_file: str) -> tuple[str, str]:
    """Write the JSON and CSV files atomically; return their paths."""
    json_path, csv_path = report_paths(output_file)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    body = json.dumps(_clean(report), indent=1, allow_nan=False) + "\n"
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
