"""What `gxnpuc --tune` shows and writes: the sensitivity and trade-off tables, the plot, and
`<config>.tuned.yaml` (the user's text kept, replaced keys commented out, one appended block
whose every choice carries a comment with its measured effect).
"""
from __future__ import annotations

import math
import os

from gxnpuc import outputs
from gxnpuc.config import write
from gxnpuc.evaluate import fmt_db
from gxnpuc.tables import numbers_table

MARK = "# ==== gxnpuc --tune"  # first line of the appended block; a retune replaces the block
OFF = "# [tune] "  # prefix of the user's lines the block replaces
ALWAYS = ("EXCLUDE_COMPRESS_OPS", "EXCLUDE_CONV2D_COMPRESS_OPS", "WEIGHT_MIN_MAX")  # + the block's own
FAMILY_KEYS = (("fc", "COMPRESS"), ("conv", "CONV2D_COMPRESS"))
_db = fmt_db


# -- text ----------------------------------------------------------------------------------
def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def trade_off_table(result) -> str:
    rows = []
    for k, s in enumerate(result.steps):
        mark = "*" if s is result.chosen else (" " if s.selectable else "i")
        rows.append([f"{mark}{k:>2}", s.label, f"{s.nbytes:,}", _us(s.latency_sram),
                     _us(s.latency_flash), _db(s.snr)])
    return numbers_table(["step", "plan", "weight B", "us SRAM", "us flash", "SNR dB"], rows)


def sensitivity_table(result) -> str:
    cands = result.candidates[result.chosen.path]
    rows = []
    for c in sorted(cands.values(), key=lambda c: _worst(c.default.only)):
        rng = "-" if c.best.clip is None else f"[{c.best.clip[0]:g}, {c.best.clip[1]:g}]"
        rows.append([c.name, c.family, f"{c.default.nbytes:,}", f"{c.fp16.nbytes:,}",
                     _db(_worst(c.default.only)), _db(_worst(c.best.only)), rng, str(c.tried)])
    head = ["weight (most sensitive first)", "kind", "8-bit B", "fp16 B", "alone dB",
            "best range dB", "best range", "ranges"]
    return numbers_table(head, rows)


def _worst(snrs: dict | None) -> float:
    return min(snrs.values()) if snrs else math.nan


def text(result) -> str:
    """The report `gxnpuc --tune` prints."""
    cfg, ch = result.cfg, result.chosen
    lines = [f"gxnpuc --tune: {os.path.basename(cfg.model_path)}: {result.samples} samples from "
             f"{result.source}; target {result.target.text()}",
             f"weights alone (only that weight compressed; {ch.path}; ranges searched by "
             f"TUNE_CLIP_SEARCH: {cfg.tune_clip_search}):", sensitivity_table(result),
             "trade-off (* chosen, i = shown for comparison only; latency: docs/tuning.md cost model):",
             trade_off_table(result),
             f"chosen: {ch.label} ({ch.path}): output SNR {_db(result.snr)} dB, "
             f"{ch.nbytes:,} weight bytes, {_us(ch.latency_sram)} us (SRAM) / "
             f"{_us(ch.latency_flash)} us (flash) per inference; target "
             f"{'met' if result.met else 'NOT met'}; measured again on the compiled tuned config"]
    lines += [f"note: {n}" for n in result.notes + _hints(result)]
    return "\n".join(lines)


def _hints(result) -> list[str]:
    info = [s for s in result.steps if not s.selectable and s.label.startswith("per channel")]
    if not info:
        return []
    s, ch, target = info[0], result.chosen, result.target.snr_db
    near = target is not None and s.snr >= target - 1.0 and s.nbytes < ch.nbytes  # nearly there, cheaper
    if s.snr > ch.snr + 1.0 or near:
        return [f"per-channel ranges alone give {_db(s.snr)} dB at {s.nbytes:,} B (chosen: {_db(ch.snr)} dB "
                f"at {ch.nbytes:,} B); if your runtime reads them, set TUNE_PER_CHANNEL: true and tune again"]
    return []


# -- the tuned config --------------------------------------------------------------------------
def _exclude_comment(result, name: str) -> str:
    step, cands = result.chosen, result.candidates[result.chosen.path]
    c = cands[name]
    extra = c.fp16.nbytes - c.best.nbytes  # every path starts from each weight's best range
    if extra <= 0:
        return (f"fp16 is {-extra:,} B smaller than its 8-bit codes with their range parameters, "
                f"and exact; compressed alone {_db(_worst(c.best.only))} dB")
    s = step
    while s is not None and not (s.changed == name and not s.choice[name].compressed):
        s = s.parent  # walk back to the step that left this weight out
    at = next((k for k, x in enumerate(result.steps) if x is s), None)
    where = f" (step {at})" if at is not None else ""
    effect = f": output SNR {_db(s.before)} -> {_db(s.snr)} dB when left out{where}" if s else ""
    return f"fp16, +{extra:,} B{effect}; compressed alone {_db(_worst(c.best.only))} dB"


def _clip_comment(result, name: str) -> str:
    c = result.candidates[result.chosen.path][name]
    w = result.chosen.choice[name]
    return (f"alone: {result.cfg.weight_clip} range {_db(_worst(c.default.only))} dB -> this range "
            f"{_db(_worst(w.only))} dB")


def block(result) -> tuple[list[str], set[str]]:
    """The appended lines and the top-level keys they set (the user's copies get commented)."""
    step = result.chosen
    keys = set(ALWAYS)
    vendor = result.steps[0]
    lines = [f"{MARK} ({result.target.text()}: {'met' if result.met else 'NOT met'}) ====",
             f"# measured on {result.samples} samples from {result.source}:",
             f"#   this config: output SNR {_db(step.snr)} dB, {step.nbytes:,} weight bytes, est. "
             f"{_us(step.latency_sram)} us (weights in SRAM) / {_us(step.latency_flash)} us (flash)",
             f"#   {vendor.label}: {_db(vendor.snr)} dB, {vendor.nbytes:,} weight bytes",
             f"# Lines above that this block replaces start with '{OFF.strip()}'; `gxnpuc -t` on this",
             "# file retunes it and replaces this block."]
    on = {}
    for fam, key in FAMILY_KEYS:  # always written: a retune drops the previous block's copy
        used = sum(1 for o in step.choice.values() if o.compressed and o.stored.family == fam)
        on[fam] = bool(used)
        keys.add(key)
        lines.append(f"{key}: {str(on[fam]).lower()}  # {used} {fam} weight(s) compressed")
        if not used:  # the effect of leaving each of them in fp16, as EXCLUDE_COMPRESS_OPS shows it
            lines += [f"#   {n}: {_exclude_comment(result, n)}" for n, o in step.choice.items()
                      if o.stored.family == fam]
    keys.add("COMPRESS_PER_CHANNEL")  # the user's copy is commented out; the default is false
    per_channel = step.path.startswith("per channel")
    if per_channel:
        lines.append(f"COMPRESS_PER_CHANNEL: true  # {_path_comment(result)}")
    else:
        lines.append(f"# plan: {_path_comment(result)}")
    lines += _list_block(result, on)
    lines += _output_line(result)
    keys.add("OUTPUT_FILE")
    vendor_lines, vendor_keys = _vendor_note(result, per_channel)
    return lines[:6] + vendor_lines + lines[6:], keys | vendor_keys


def tuned_output(output_file: str) -> str:
    """model.h -> model.tuned.h (model.bin -> model.tuned.bin); a tuned name stays."""
    stem, ext = os.path.splitext(output_file)
    return output_file if stem.endswith(".tuned") else f"{stem}.tuned{ext}"


def _output_line(result) -> list[str]:
    out = tuned_output(result.cfg.output_file)
    rel = os.path.relpath(out, os.path.dirname(os.path.abspath(result.tuned_path)))
    return [f"OUTPUT_FILE: {write.yaml_name(rel.replace(os.sep, '/'))}  # compiling this config leaves "
            f"{os.path.basename(result.cfg.output_file)} as it is"]


def _vendor_note(result, per_channel: bool) -> tuple[list[str], set[str]]:
    """Comment lines saying whether the vendor's gxnpuc can compile this config as tuned; when
    it can, every gxnpuc-only key (each at its default for this plan, or only steering -e/-t)
    is commented out too, so the active keys are all vendor keys."""
    from gxnpuc.config import KEYS

    cfg = result.cfg
    needs = [k for k, on in (("COMPRESS_PER_CHANNEL: true", per_channel),
                             (f"WEIGHT_CLIP: {cfg.weight_clip}", cfg.weight_clip != "minmax"),
                             ("KERAS_ALLOW_LAMBDA: true", cfg.keras_allow_lambda),
                             ("INPUT_VALUES", bool(cfg.input_values)),  # both change the model itself
                             ("STATE_OPS", cfg.state_ops is not None)) if on]
    if needs:
        return [f"# not vendor-clean: this plan needs gxnpuc-only {', '.join(needs)}"], set()
    return (["# vendor-clean: every active key is one the vendor's gxnpuc reads (the plan needs no",
             "# gxnpuc-only key); gxnpuc-only keys above are commented out with '# [tune]'."],
            {k.name for k in KEYS if k.project})


def _list_block(result, on: dict) -> list[str]:
    choice = result.chosen.choice
    excluded = [n for n, o in choice.items() if not o.compressed and on[o.stored.family]]
    clipped = [n for n, o in choice.items() if o.compressed and o.clip is not None]
    return (write.names_block("EXCLUDE_COMPRESS_OPS", {n: _exclude_comment(result, n) for n in excluded})
            + write.ranges_block("WEIGHT_MIN_MAX", {n: (choice[n].clip, _clip_comment(result, n))
                                                    for n in clipped}))


def _path_comment(result) -> str:
    ch = result.chosen
    others = [s for s in result.steps if s.selectable and s.path != ch.path and result.target.feasible(s)]
    if not others:
        return f"chosen: {_db(ch.snr)} dB at {ch.nbytes:,} B"
    best = max(others, key=lambda s: (s.snr >= (result.target.snr_db or -math.inf), -s.nbytes, s.snr))
    return (f"{ch.path}: {_db(ch.snr)} dB at {ch.nbytes:,} B; best {best.path} plan: "
            f"{_db(best.snr)} dB at {best.nbytes:,} B")


def tuned_text(result) -> str:
    """The user's config with the replaced keys commented out and the tuner's block appended."""
    with open(result.cfg.path, encoding="utf-8-sig") as fh:
        original = fh.read()
    lines, keys = block(result)
    kept = write.comment_out(original, keys, OFF, MARK)
    return kept.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


# -- files --------------------------------------------------------------------------------------
def write_atomic(path: str, data: str | bytes) -> None:
    outputs.write(path, data)  # staged; committed with the run's other outputs


def plot_path(tuned_path: str) -> str:
    """configs/kws.tuned.yaml -> configs/kws.tuned.png"""
    return os.path.splitext(tuned_path)[0] + ".png"


def save_plot(result, path: str) -> str | None:
    """SNR against weight bytes and against latency, one line per path; None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    _panel(axes[0], result, lambda s: s.nbytes, "stored weight bytes")
    _panel(axes[1], result, lambda s: s.latency_flash * 1e6, "est. latency, weights in flash (us)")
    if result.target.max_bytes is not None:
        axes[0].axvline(result.target.max_bytes, color="grey", ls="--", lw=1, label="byte budget")
    fig.suptitle(f"gxnpuc --tune: {os.path.basename(result.cfg.model_path)} ({result.samples} samples)")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())
    return path


def _panel(ax, result, x_of, xlabel: str) -> None:
    finite = [s.snr for s in result.steps if math.isfinite(s.snr)]
    top = (max(finite) if finite else 0.0) + 5.0
    y_of = lambda s: s.snr if math.isfinite(s.snr) else top  # noqa: E731 - "exact" drawn at the top
    for path in dict.fromkeys(s.path for s in result.steps):
        steps = [(k, s) for k, s in enumerate(result.steps) if s.path == path and s.selectable]
        if steps:
            ax.plot([x_of(s) for _, s in steps], [y_of(s) for _, s in steps], "o-", label=path)
            for k, s in steps:
                ax.annotate(str(k), (x_of(s), y_of(s)), textcoords="offset points", xytext=(4, 4), fontsize=7)
    info = [(k, s) for k, s in enumerate(result.steps) if not s.selectable]
    for k, s in info:
        ax.plot([x_of(s)], [y_of(s)], "x", color="black", label="comparison only" if k == info[0][0] else None)
        ax.annotate(str(k), (x_of(s), y_of(s)), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ch = result.chosen
    ax.plot([x_of(ch)], [y_of(ch)], "*", ms=16, color="red", label="chosen")
    if result.target.snr_db is not None:
        ax.axhline(result.target.snr_db, color="red", ls=":", lw=1, label="target SNR")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("output SNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
