"""`gxnpuc -s`: one histogram .jpg per compressed weight, in npu_jpgs/ beside the output file.

Each picture shows the weight's values on a linear and a log count axis (the log panel makes
a long tail of a few outliers visible), the 8-bit quantization range, any WEIGHT_MIN_MAX
clip, and in the title the numbers that tell a user whether the range is wasted on outliers.
File names come from weight names made safe: they can never leave the folder.
"""
from __future__ import annotations

import io
import os

import numpy as np

from gxnpuc.errors import OutputError
from gxnpuc.report.files import safe_names
from gxnpuc.report.stats import OUTER, codes_used, outer_share, quant_range

FOLDER = "npu_jpgs"
INDEX = "index.txt"  # "file<TAB>weight name" per line: which picture is which weight
BINS = 128


def jpg_folder(cfg) -> str:
    """npu_jpgs/ next to the output file."""
    return os.path.join(os.path.dirname(os.path.abspath(cfg.output_file)), FOLDER)


def _values(model, sw) -> np.ndarray:
    t = model.graph.tensors.get(sw.name)
    data = t.data if t is not None and t.data is not None else sw.decode()
    return np.asarray(data, dtype=np.float32).ravel()


def _clip(sw) -> tuple[float, float] | None:
    clip = sw.clip  # the range compression was given (WEIGHT_MIN_MAX, or WEIGHT_CLIP's choice)
    return None if clip is None else (float(clip[0]), float(clip[1]))


def _printable(text: str, limit: int = 90) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit // 2 - 2] + "..." + text[-(limit // 2 - 1):]


def title(name, shape, values, sw, folded: str | None = None) -> str:
    """Name and shape; min, max, the range in standard deviations (a long tail makes it large),
    the share of values in the outer 10% of the range, and how many 8-bit codes are in use;
    for a weight FUSE_BN folded a BatchNorm into, a line saying the values are the folded ones."""
    v_min, v_max, std = float(values.min()), float(values.max()), float(values.std())
    spread = f"   range {(v_max - v_min) / std:.1f} std" if std > 0 else ""
    used = codes_used(sw)
    codes = "" if used is None else f"   codes used {used}/256"
    lo, hi = quant_range(sw)
    half = 0.5 * float(np.max(np.asarray(sw.step_f16, dtype=np.float64)))  # still rounds to an end code
    n_sat = int(np.count_nonzero((values < lo - half) | (values > hi + half)))
    sat = f"   saturated {n_sat}" if n_sat and np.size(sw.lo_f16) == 1 else ""  # per tensor only
    fold = (f"\nFUSE_BN: BatchNorm {_printable(folded, 50)} folded in: the values shown, "
            f"which WEIGHT_MIN_MAX applies to") if folded else ""
    return (f"{_printable(name)}  {list(shape)}\n"
            f"min {v_min:.4g}   max {v_max:.4g}{spread}   in outer 10% of range {outer_share(values):.2%}"
            f"{codes}{sat}{fold}")


# -- drawing ----------------------------------------------------------------------------------
def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6), dpi=80)
    FigureCanvasAgg(fig)  # Agg only: no display, no pyplot global state
    return fig


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _panel(ax, counts, edges, marks, log):
    ax.stairs(counts, edges, fill=True, color="#4477aa", baseline=0.5 if log else 0)
    for x, style in marks:
        ax.axvline(x, **style)
    ax.set_xlabel("weight value")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(_null_locator())  # minor log ticks cost more than the plot
        ax.set_ylim(0.5, max(2.0, counts.max() * 2.0))
        ax.set_ylabel("count (log)")
    else:
        ax.set_ylabel("count")


def _marks(values, q_range, clip):
    lo, hi = float(values.min()), float(values.max())
    cut = OUTER * (hi - lo)
    qstyle = {"color": "#cc3311", "linestyle": "--", "linewidth": 1.2}
    cstyle = {"color": "#ee7733", "linestyle": "-", "linewidth": 1.6}
    marks = [(q_range[0], {**qstyle, "label": "8-bit range [lo, hi]"}), (q_range[1], qstyle)]
    if clip is not None:
        marks += [(clip[0], {**cstyle, "label": "WEIGHT_MIN_MAX"}), (clip[1], cstyle)]
    return marks, (lo + cut, hi - cut)


def draw(path: str, name: str, shape, values: np.ndarray, sw, clip, folded: str | None = None) -> None:
    """Render one weight's picture to path (written atomically)."""
    q_range = quant_range(sw)
    marks, inner = _marks(values, q_range, clip)
    xs = [float(values.min()), float(values.max()), *q_range, *(clip or ())]
    lo, hi = min(xs), max(xs)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=BINS, range=(lo, hi))
    pad = 0.04 * (hi - lo)  # so lines at the very ends of the range stay visible
    fig = _figure()
    axes = fig.subplots(1, 2)
    for ax, log in zip(axes, (False, True)):
        ax.axvspan(float(values.min()), inner[0], color="#e4e4e4", zorder=0)
        ax.axvspan(inner[1], float(values.max()), color="#e4e4e4", zorder=0, label="outer 10% of [min, max]")
        _panel(ax, counts, edges, marks, log)
        ax.set_xlim(lo - pad, hi + pad)
    axes[1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title(name, shape, values, sw, folded), fontsize=10, parse_math=False)
    # fixed margins: tight_layout would cost more than the drawing itself
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.15, top=0.74 if folded else 0.80, wspace=0.22)
    buf = io.BytesIO()
    fig.savefig(buf, format="jpg", pil_kwargs={"quality": 85, "optimize": True})
    write_atomic(path, buf.getvalue())


def write_atomic(path: str, data: bytes) -> None:
    """Write via a fresh temporary file and rename: never through a planted symlink."""
    tmp = path + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


# -- the -s entry point -------------------------------------------------------------------------
def _read_index(folder: str) -> list[tuple[str, str, str]]:
    """(file, escaped weight name, owning output file) per line; the owner is "" in old indexes."""
    index = os.path.join(folder, INDEX)
    if not os.path.isfile(index):
        return []
    with open(index, encoding="utf-8", errors="replace") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh if "\t" in line]
    return [(r[0], r[1], r[2] if len(r) > 2 else "") for r in rows]


def _clean_previous(folder: str, rows: list, keep: set[str], owner: str) -> None:
    """Remove pictures this output's last run wrote for weights no longer compressed; pictures
    of other models that share the folder are left alone."""
    for fname, _, who in rows:
        if who in (owner, "") and fname not in keep and fname == os.path.basename(fname) \
                and fname.endswith(".jpg"):
            path = os.path.join(folder, fname)
            if os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)


def _write_index(folder: str, rows: list, files: dict[str, str], owner: str) -> None:
    others = [r for r in rows if r[2] not in (owner, "") and r[0] not in files.values()]
    mine = [(fname, name.encode("unicode_escape").decode("ascii"), owner) for name, fname in files.items()]
    lines = ["\t".join(r) + "\n" for r in others + mine]
    write_atomic(os.path.join(folder, INDEX), "".join(lines).encode("ascii", "backslashreplace"))


def save_histograms(model, cfg, folder: str | None = None) -> list[str]:
    """Write one .jpg per compressed weight; return their paths in -w order."""
    folder = folder or jpg_folder(cfg)
    weights = model.compressed_weights()
    files = safe_names([sw.name for sw in weights])
    try:
        os.makedirs(folder, exist_ok=True)
        owner = os.path.basename(cfg.output_file)
        rows = _read_index(folder)
        _clean_previous(folder, rows, set(files.values()), owner)
        paths = []
        for sw in weights:
            path = os.path.join(folder, files[sw.name])
            draw(path, sw.name, sw.shape, _values(model, sw), sw, _clip(sw),
                 model.graph.meta.get("folded", {}).get(sw.name))
            paths.append(path)
        _write_index(folder, rows, files, owner)
    except OSError as exc:
        raise OutputError(folder, f"cannot write histograms ({exc.strerror or exc})",
                          "a writable folder next to OUTPUT_FILE") from None
    return paths
