"""The one-line verdict of `gxnpuc --eval`: which weight to exclude or clip first, measured.

For the worst-ranked compressed weight, a few clip ranges (percentile cuts and the
MSE-optimal range, rounded to pasteable numbers) are compressed with the compiler's own
code and simulated with only that weight compressed. Clipping is advised when it clears the
threshold with a margin (it keeps the 8-bit storage); otherwise excluding is. The advice
carries the exact config line, merged with what the config already has.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc import numerics
from gxnpuc.config import names, write
from gxnpuc.evaluate import report as eval_report
from gxnpuc.evaluate.rows import Report, Verdict
from gxnpuc.evaluate.runs import Runs, output_snrs, outputs_with

if TYPE_CHECKING:
    from gxnpuc.config import Config
    from gxnpuc.ir import Graph
    from gxnpuc.model import CompiledModel

CLIP_PERCENTILES = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)  # % cut from each end of the values
CLIP_MARGIN_DB = 6.0  # clipping is advised when its SNR clears the threshold by this much
CLIP_GAIN_DB = 3.0  # ... and beats leaving the weight as it is by at least this much


def verdict(cfg: Config, runs: Runs, report: Report, progress) -> Verdict:
    thr, layers = report.threshold_db, report.layers
    npu, base = _worst(report, "npu"), _worst(report, "npu_fp16")
    if npu >= thr:
        more = ""
        if layers:
            more = f"; to do better, start with {layers[0].weight} (alone {_db(layers[0].only_snr_db)} dB)"
        return _none(f"npu output SNR {_db(npu)} dB >= {thr:g} dB (EVAL_SNR_THRESHOLD_DB)"
                     f"{_agreement(report)}: no change needed{more}")
    if not layers or layers[0].only_snr_db >= base - 1.0:
        why = ("no weight is compressed" if not layers else
               "no single compressed weight costs more than fp16 itself")
        text = (f"npu output SNR {_db(npu)} dB < {thr:g} dB but {why}: without compression "
                f"the npu gives {_db(base)} dB, the fp16 limit of this model (see notes)")
        if base < thr:
            from gxnpuc.evaluate import causes

            text += "".join(f"; {c}" for c in [causes.fp16_kinds(runs, thr)] if c)
        return _none(text)
    name, only = layers[0].weight, layers[0].only_snr_db
    with progress(len(CLIP_PERCENTILES) + 2, "clip search") as bar:
        best = search_clip(cfg, runs, name, bar)
    head = (f"npu output SNR {_db(npu)} dB < {thr:g} dB{_agreement(report)}; "
            f"worst weight {name} (alone {_db(only)} dB)")
    target = min(thr + CLIP_MARGIN_DB, base - CLIP_GAIN_DB)
    if best is not None and best[2] >= target and best[2] >= only + CLIP_GAIN_DB:
        return _explained(cfg, runs, report, _clip_verdict(cfg, runs, name, best, head))
    line = exclude_line(cfg, name)
    clip_txt = f"; clipping reaches only {_db(best[2])} dB" if best is not None else ""
    return _explained(cfg, runs, report, Verdict(
        "exclude", name, None, base, line,
        f"{head}{clip_txt}: exclude it (alone then {_db(base)} dB, stored as fp16) -> {line}"))


def _explained(cfg: Config, runs: Runs, report: Report, v: Verdict) -> Verdict:
    """v with the measured causes appended (gxnpuc.evaluate.causes): how the weight's range is
    spent, what per-channel ranges would give it, and the other weights that miss the
    threshold alone."""
    from gxnpuc.evaluate import causes

    name = str(v.weight)
    sw = runs.model.weights[name]
    clauses = [causes.spread(runs.model.graph, name, sw.family)]
    pc = causes.per_channel(cfg, runs, name)
    if pc is not None:
        clauses.append(f"per-channel ranges (COMPRESS_PER_CHANNEL: true, not in the vendor format) "
                       f"would give {_db(pc)} dB alone")
    clauses.append(causes.others(cfg, runs, report.layers, report.threshold_db))
    extra = "; ".join(c for c in clauses if c)
    return replace(v, text=f"{v.text}; {extra}") if extra else v


def _clip_verdict(cfg: Config, runs: Runs, name: str, best: tuple, head: str) -> Verdict:
    lo, hi, snr = best
    line = clip_line(cfg, runs.model.graph, name, lo, hi)
    if lo is None:  # the user's own clip is what hurts
        return Verdict("unclip", name, None, snr, line,
                       f"{head}: its WEIGHT_MIN_MAX clip saturates values that matter; remove it "
                       f"(alone then {_db(snr)} dB, still 8-bit) -> {line}")
    return Verdict("clip", name, [lo, hi], snr, line,
                   f"{head}: clip it to [{lo:g}, {hi:g}] (alone then {_db(snr)} dB, still 8-bit) -> {line}")


def _worst(report: Report, mode: str) -> float:
    return min(r.snr_db for r in report.outputs if r.mode == mode and r.snr_db is not None)


def _agreement(report: Report) -> str:
    """", top-1 agrees on 90.6% of samples" when a classifier output disagrees somewhere."""
    rows = [(r.top1_agreement, len([d for d in r.shape[1:] if d != 1]) > 1) for r in report.outputs
            if r.mode == "npu" and r.top1_agreement is not None]
    if not rows or min(rows)[0] >= 1:
        return ""
    worst, per_frame = min(rows)
    return f", top-1 agrees on {worst:.1%} of {'frames' if per_frame else 'samples'}"


def _none(text: str) -> Verdict:
    return Verdict("none", None, None, None, None, text)


def _db(x: float) -> str:
    return eval_report.fmt_db(x)


# -- the clip search --------------------------------------------------------------------------
def round_sig(x: float, digits: int = 3) -> float:
    """A short, pasteable number (3 significant digits)."""
    return float(f"{x:.{digits}g}")


def clip_candidates(w: np.ndarray, mse: bool = True) -> list[tuple[float, float]]:
    """Ranges that cut the tails: symmetric percentile cuts and (mse) the MSE-optimal range,
    rounded to pasteable numbers; only those that cut something, each once."""
    from gxnpuc.ranges import mse_range

    w = np.asarray(w, np.float64).ravel()
    w_min, w_max = float(w.min()), float(w.max())
    pairs = [tuple(np.percentile(w, [p, 100 - p])) for p in CLIP_PERCENTILES]
    if mse:
        pairs.append(mse_range(w))
    out = []
    for lo, hi in pairs:
        lo, hi = round_sig(lo), round_sig(hi)
        if hi > lo and (lo > w_min or hi < w_max) and (lo, hi) not in out:
            out.append((lo, hi))
    return out


def search_clip(cfg: Config, runs: Runs, name: str, bar=None) -> tuple | None:
    """(lo, hi, output SNR with only `name` compressed to [lo, hi]) of the best candidate;
    (None, None, snr) when removing the user's own clip is best."""
    graph = runs.model.graph
    candidates: list[tuple] = list(clip_candidates(np.asarray(graph.tensors[name].data)))
    if clip_keys(cfg, graph, name):
        candidates.append((None, None))  # no clip at all: undo the user's WEIGHT_MIN_MAX
    best = None
    for lo, hi in candidates:
        sw = with_range(cfg, runs.model, name, lo, hi)
        outs = outputs_with(runs, name, numerics.stored_values(sw))
        snr = min(output_snrs(runs, outs).values())
        if best is None or snr > best[2]:
            best = (lo, hi, snr)
        if bar is not None:
            bar.update()
    return best


def with_range(cfg: Config, model: CompiledModel, name: str, lo: float | None, hi: float | None):
    """The StoredWeight of `name` compressed with WEIGHT_MIN_MAX [lo, hi] (None: no clip):
    the compiler's own compress_graph on the config the pasted line gives."""
    from gxnpuc import compress

    ranges = ranges_with(cfg, model.graph, name, lo, hi)
    resolved = names.resolve(replace(cfg, weight_min_max=ranges), model.graph)
    return compress.compress_graph(model.graph, resolved)[name]


# -- config lines -----------------------------------------------------------------------------
def clip_keys(cfg: Config, graph: Graph, name: str) -> list[str]:
    """The WEIGHT_MIN_MAX keys that set this weight's range (config.names decides)."""
    return names.keys_for(cfg, graph, "WEIGHT_MIN_MAX", name)


def ranges_with(cfg: Config, graph: Graph, name: str, lo: float | None, hi: float | None) -> dict:
    """The config's WEIGHT_MIN_MAX with this weight's entry replaced by [lo, hi] (or removed)."""
    drop = set(clip_keys(cfg, graph, name))
    ranges: dict[str, list] = {k: [_num(v[0]), _num(v[1])] for k, v in dict(cfg.weight_min_max or {}).items()
                               if k not in drop}
    if lo is not None:
        ranges[name] = [lo, hi]
    return ranges


def clip_line(cfg: Config, graph: Graph, name: str, lo: float | None, hi: float | None) -> str:
    """`WEIGHT_MIN_MAX: {...}` to replace the config's key, other entries kept. Names are JSON
    strings (YAML double-quoted scalars); numbers read back exactly."""
    return write.ranges_line("WEIGHT_MIN_MAX", ranges_with(cfg, graph, name, lo, hi))


def exclude_line(cfg: Config, name: str) -> str:
    """`EXCLUDE_COMPRESS_OPS: [...]` with the config's existing names plus this one."""
    listed = list(cfg.exclude_compress_ops or ())
    if name not in listed:
        listed.append(name)
    return write.names_line("EXCLUDE_COMPRESS_OPS", listed)


def _num(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else 0.0
