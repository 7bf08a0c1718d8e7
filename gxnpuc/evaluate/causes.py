"""Why a compressed weight hurts, measured: the clauses `--eval`'s verdict adds after naming
the worst weight (gxnpuc.evaluate.advice).

- `spread()`: how its 8-bit range is spent. Per tensor, one step serves every output channel;
  when a few channels (or a few values) are far wider than the rest (folded BatchNorm or
  re-parameterised convs, an identity branch merged into a kernel), a typical channel gets a
  handful of the 256 codes. The clause names the channels that stretch the range.
- `per_channel()`: the output SNR with only this weight compressed, per-channel ranges.
- `others()`: the other weights that miss the threshold alone, and the output SNR with all of
  them left in fp16 (one simulation), so that one exclusion is not mistaken for the fix.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc import compress, numerics, sim
from gxnpuc.config import names, write
from gxnpuc.evaluate.runs import Runs, first_reader, output_snrs, outputs_with, stacked
from gxnpuc.ir import Graph

if TYPE_CHECKING:
    from gxnpuc.config import Config
    from gxnpuc.evaluate.rows import LayerRow

TYPICAL_CODES = 64  # a typical channel using fewer codes than this is worth a clause
WIDE_SHARE = 0.5  # channels at least this share of the widest one's width set the range
BULK_PERCENT = 0.1  # % cut from each end for "the bulk" of the values
MAX_LISTED = 4


def _db(x: float) -> str:
    from gxnpuc.evaluate.report import fmt_db

    return fmt_db(x)


def channel_widths(graph: Graph, name: str, family: str) -> tuple[np.ndarray, int]:
    """(max - min per output channel, the channel axis) of weight `name`."""
    w = np.asarray(graph.tensors[name].data, np.float64)
    node = graph.nodes[first_reader(graph, name)]
    axis, channels = compress.channel_axis(family, node, w.shape)
    w3 = w.reshape(compress.channel_view(w.shape, axis, channels))
    return w3.max(axis=(0, 2)) - w3.min(axis=(0, 2)), axis


def spread(graph: Graph, name: str, family: str) -> str | None:
    """The clause on how the range is spent, or None when nothing stands out."""
    w = np.asarray(graph.tensors[name].data, np.float64)
    width = float(w.max() - w.min())
    if w.size < 2 or width <= 0:
        return None
    ch, axis = channel_widths(graph, name, family)
    typical = 255.0 * float(np.median(ch)) / width
    rng = f"[{w.min():.3g}, {w.max():.3g}]"
    if ch.size > 1 and typical < TYPICAL_CODES:
        wide = np.argsort(-ch)[:int(np.count_nonzero(ch >= WIDE_SHARE * ch.max()))]
        listed = ", ".join(str(int(c)) for c in wide[:MAX_LISTED]) + (" ..." if wide.size > MAX_LISTED else "")
        return (f"why: a typical output channel spans {typical:.0f} of the 256 codes, because "
                f"{wide.size} output channel(s) (axis {axis}: {listed}) stretch the range to {rng}")
    lo, hi = np.percentile(w, [BULK_PERCENT, 100 - BULK_PERCENT])
    if hi > lo and width / (hi - lo) >= 4:
        return (f"why: {100 - 2 * BULK_PERCENT:g}% of its values lie in [{lo:.3g}, {hi:.3g}], "
                f"{width / (hi - lo):.0f}x narrower than its range {rng}")
    return None


def per_channel(cfg: Config, runs: Runs, name: str) -> float | None:
    """Output SNR (worst output) with only `name` compressed with per-channel ranges; None
    when the config has them already."""
    if cfg.compress_per_channel:
        return None
    graph = runs.model.graph
    sub = Graph(tensors=graph.tensors, nodes=[n for n in graph.nodes if name in n.inputs])
    resolved = names.resolve(replace(cfg, compress_per_channel=True), graph)
    sw = compress.compress_graph(sub, resolved)[name]
    if not sw.compressed:
        return None
    return min(output_snrs(runs, outputs_with(runs, name, numerics.stored_values(sw))).values())


def others(cfg: Config, runs: Runs, layers: list[LayerRow], threshold: float) -> str | None:
    """The clause on the other weights below the threshold alone, with the measured output SNR
    when every one of them (the first included) is left in fp16; None when there is none."""
    below = [r for r in layers[1:] if r.only_snr_db < threshold]
    if not below:
        return None
    out = [layers[0].weight] + [r.weight for r in below]
    model, g = runs.model, runs.model.graph
    consts = sim.model_consts(model, "npu")
    consts.update({n: runs.base_consts[n] for n in out})
    envs = [sim.finish_outputs(model, e, "npu")
            for e in sim.run_samples(g, runs.samples, consts, cast=numerics.round_f16)]
    snr = min(output_snrs(runs, {k: stacked(envs, k) for k in g.outputs}).values())
    listed = ", ".join(f"{r.weight} ({_db(r.only_snr_db)} dB)" for r in below[:MAX_LISTED])
    more = f" and {len(below) - MAX_LISTED} more" if len(below) > MAX_LISTED else ""
    listed_all = list(cfg.exclude_compress_ops or ()) + [n for n in out if n not in (cfg.exclude_compress_ops or ())]
    extra = sum(2 * model.weights[n].size - model.weights[n].nbytes_stored for n in out)
    return (f"{len(below)} more weight(s) miss {threshold:g} dB alone: {listed}{more}; all "
            f"{len(out)} left in fp16 (+{extra:,} B): {_db(snr)} dB -> "
            f"{write.names_line('EXCLUDE_COMPRESS_OPS', listed_all)}")


# -- the fp16 limit: which op kind's rounding costs most ----------------------------------------------
def kind(node) -> str:
    """conv, fc, binary/add, act/sigmoid, ...: an op and its function."""
    fn = node.attrs.get("fn")
    return f"{node.op}/{fn}" if isinstance(fn, str) else node.op


def fp16_in(runs: Runs, kinds: set[str]) -> list[dict]:
    """Every sample run in float, except that ops of `kinds` run their device kernel on fp16
    constants and round their outputs to fp16 (their own rounding, nothing upstream)."""
    from gxnpuc.ops import REGISTRY

    model, g = runs.model, runs.model.graph
    fl, dev = sim.model_consts(model, "float"), runs.base_consts
    out = []
    for s in runs.samples:
        env = dict(s)
        for node in g.nodes:
            mine = kind(node) in kinds
            consts = dev if mine else fl
            ins: list = [None if not i else env[i] if i in env else consts.get(i, g.tensors[i].data)
                         for i in node.inputs]
            op = REGISTRY[node.op]
            ys = op.run_npu(node, ins) if mine else op.run(node, ins)
            env.update({o: numerics.round_f16(y) if mine else y for o, y in zip(node.outputs, ys)})
        out.append(env)
    return out


def fp16_kinds(runs: Runs, threshold: float, shown: int = 3) -> str | None:
    """The clause naming the op kinds whose fp16 outputs cost most (output SNR with fp16 in that
    kind only, worst first) and, with fp16 in the worst kind, the first tensor that falls
    below the threshold against float (where the rounded values cancel or get amplified)."""
    g = runs.model.graph
    kinds = sorted({kind(n) for n in g.nodes if not numerics.keeps_f16(n)})
    if not kinds:
        return None
    scored = []
    for k in kinds:
        envs = fp16_in(runs, {k})
        snr = min(output_snrs(runs, {o: stacked(envs, o) for o in g.outputs}).values())
        scored.append((snr, k, envs))
    scored.sort(key=lambda t: t[0])
    listed = ", ".join(f"{k} {_db(s)} dB" for s, k, _ in scored[:shown])
    text = f"fp16 in one op kind at a time (the rest float): {listed}"
    worst, envs = scored[0][1], scored[0][2]
    flt = sim.run_samples(g, runs.samples, sim.model_consts(runs.model, "float"), keep=True)
    for node in g.nodes:
        out = node.outputs[0]
        if numerics.is_float(flt[0][out]) and _node_snr(flt, envs, out) < threshold:
            return (f"{text}; with fp16 in {worst} only, the first tensor below {threshold:g} dB against "
                    f"float is the output of {node.name} ({node.op}, "
                    f"{_db(_node_snr(flt, envs, out))} dB): values rounded to fp16's 11 significant "
                    f"bits cancel or are amplified there; rescale so they stay well inside fp16")
    return text


def _node_snr(flt: list[dict], envs: list[dict], name: str) -> float:
    from gxnpuc.evaluate.metrics import snr_db

    return snr_db(stacked(flt, name).astype(np.float64), stacked(envs, name))
