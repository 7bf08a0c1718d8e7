"""Quantisation ranges for weight compression (SPEC 5): min/max, and the automatic clips
("mse": the range minimising the squared error; "percentile": keep 99.99 % of the values).

Every result is bit-identical to the plain code this replaced (one `mse_range` /
`np.quantile` call per channel, whole-array min/max; kept in tests/compress_reference.py,
compared in tests/test_compress_fast.py). The speed comes from doing all channels in a few
numpy calls, pruning the mse error grid to where its minimum can be, and selecting the tail
order statistics of big tensors instead of partitioning all of them.
"""
from __future__ import annotations

import numpy as np

LEVELS = 255
PERCENTILE_KEEP = 99.99  # "percentile" clip keeps this share of values inside the range
CHANNEL_BLOCK = 128  # channels per mse error grid (pruned to a small box, see _mse_grid)
HIST_VALUES = 1 << 20  # values per mse histogram step
MINMAX_BLOCK = 1 << 17  # values per min/max block: 512 KB of float32, read once from memory
TAIL_MIN_N = 1 << 16  # below this, np.quantile on the whole tensor is already fast


# -- min / max -------------------------------------------------------------------------------
def min_max(w3: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per tensor ([1] each) or per channel ([C] each) min and max of a [pre, C, post] view.

    Both come from one pass over blocks that stay in cache (~25 % faster than two passes).
    A zero result falls back to numpy's whole-array reduction: min(-0.0, +0.0) depends on
    the order of the comparisons, and the sign of a zero lo reaches the output file.
    """
    found = _blockwise(w3, per_channel) if w3.size and w3.flags.c_contiguous else None
    if found is None or not (np.all(found[0]) and np.all(found[1])):
        if not per_channel:
            return np.array([w3.min()], np.float64), np.array([w3.max()], np.float64)
        return w3.min(axis=(0, 2)).astype(np.float64), w3.max(axis=(0, 2)).astype(np.float64)
    return found[0].astype(np.float64).reshape(-1), found[1].astype(np.float64).reshape(-1)


def _blockwise(w3: np.ndarray, per_channel: bool):
    """(min, max) per tensor or per channel, block by block; None for a layout it skips."""
    pre, c, post = w3.shape
    if not per_channel:
        x, axis, rows = w3.reshape(-1), None, MINMAX_BLOCK  # one value a row
    elif pre == 1:
        x, axis, rows = w3.reshape(c, post), 1, max(1, MINMAX_BLOCK // post)  # a channel a row
    else:  # channels across the rows ([K, N] fc): numpy's axis reduction is as fast
        return None
    mins, maxs = [], []
    for a in range(0, x.shape[0], rows):
        block = x[a:a + rows]
        mins.append(block.min(axis=axis))
        maxs.append(block.max(axis=axis))  # the block is still in cache
    if axis == 1:
        return np.concatenate(mins), np.concatenate(maxs)
    return np.min(mins), np.max(maxs)


# -- "mse": the squared-error range search ------------------------------------------------------
def mse_range(x: np.ndarray, bins: int = 512, max_samples: int = 1 << 20,
              bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """The clip range [lo, hi] minimising the weight's squared quantisation error.

    A histogram gives, for every pair of bin edges (lo below the median, hi above), the
    exact clipping error of the values outside plus N_inside * step^2 / 12 of rounding noise.
    Very large tensors are subsampled with a fixed stride (their min/max are kept exactly).
    `bounds` is (x.min(), x.max()) when the caller has them already.
    """
    x = np.asarray(x, np.float32).reshape(-1)
    mn, mx = (float(x.min()), float(x.max())) if bounds is None else (float(bounds[0]), float(bounds[1]))
    if not mx > mn:
        return mn, mx
    lo, hi = mse_ranges(x[None, ::max(1, x.size // max_samples)], np.array([mn]), np.array([mx]), bins)
    return float(lo[0]), float(hi[0])


def mse_ranges(xs: np.ndarray, mn: np.ndarray, mx: np.ndarray, bins: int,
               axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """mse_range for each channel of xs (2-D float32, channels along `axis`, values in the
    order the one-channel search reads them, already subsampled) with its exact min/max
    (float64 [C]), all channels at once: (lo [C], hi [C]) float64.

    A channel whose range is below ~1e-37 (bins / range overflows float32; fp16 cannot
    resolve it anyway) keeps its min/max; the one-channel search used to crash on it.
    """
    lo, hi = mn.astype(np.float64), mx.astype(np.float64)
    with np.errstate(over="ignore", divide="ignore"):
        scale = (bins / (hi - lo)).astype(np.float32)  # as numpy applies the Python float
    live = (hi > lo) & np.isfinite(scale)
    if not live.any():
        return lo, hi
    scale[~live] = 0  # dead channels: every value in bin 0, results dropped below
    c, n = mn.size, xs.shape[1 - axis]
    sums = [np.empty((c, bins)) for _ in range(3)]
    step = max(1, min(HIST_VALUES // max(n, 1), (1 << 23) // bins))  # channel offsets stay exact in float32
    for a in range(0, c, step):
        ch = slice(a, a + step)
        part = xs[ch] if axis == 0 else xs[:, ch]
        for total, block in zip(sums, _histograms(part, lo[ch], scale[ch], bins, axis)):
            total[ch] = block
    for a in range(0, c, CHANNEL_BLOCK):
        ch = slice(a, a + CHANNEL_BLOCK)
        keep = live[ch]
        best = _mse_grid([t[ch] for t in sums], lo[ch], hi[ch], bins)
        lo[ch][keep], hi[ch][keep] = best[0][keep], best[1][keep]
    return lo, hi


def _histograms(xs, mn, scale, bins, axis):
    """[c, bins] count, sum of x and sum of x^2 per bin of each channel, each line what the
    one-channel search computed; bincount adds in memory order, which within a channel is
    the search's order, so the float sums are the same too."""
    c = mn.size
    col = (slice(None), None) if axis == 0 else (None, slice(None))
    t = xs - mn.astype(np.float32)[col]
    t *= scale[col]
    np.minimum(t, bins - 1, out=t)  # min(trunc(t), bins - 1) == trunc(min(t, bins - 1)), t >= 0
    np.trunc(t, out=t)
    t += (np.arange(c, dtype=np.float32) * bins)[col]  # exact: integers below 2^24
    flat = t.astype(np.intp).reshape(-1)
    x64 = xs.astype(np.float64).reshape(-1)
    return [np.bincount(flat, weights=v, minlength=c * bins).reshape(c, bins) for v in (None, x64, x64 * x64)]


def _mse_grid(sums, mn, mx, bins):
    """The (lo edge, hi edge) pair of least error per channel, from the [C, bins] sums of
    1, x and x^2 per bin: the search's error grid, evaluated only where the minimum can be.

    err(i, j) = (below_i + above_j) + noise(i, j) with noise >= 0, so (rounding being
    monotonic) err(i, j) >= below_i + min(above) and >= min(below) + above_j. Rows and
    columns where that bound exceeds U = err(0, half) (no clipping at all) cannot hold the
    minimum; the grid is evaluated on the box of the others, which keeps numpy's first-
    minimum order. On real weights the box is a few percent of the grid.
    """
    c, half = mn.size, bins // 2
    zero = np.zeros((c, 1))
    cum = [np.concatenate([zero, np.cumsum(s, axis=1)], axis=1) for s in sums]  # sums over bins < k
    edges = _linspace_rows(mn, mx, bins + 1)
    lo_e, hi_e = edges[:, :half + 1], edges[:, half:]
    below = cum[2][:, :half + 1] - 2 * lo_e * cum[1][:, :half + 1] + lo_e ** 2 * cum[0][:, :half + 1]
    tot = [s[:, -1:] for s in cum]
    above_s = [t - s[:, half:] for t, s in zip(tot, cum)]  # sums over bins >= k
    above = above_s[2] - 2 * hi_e * above_s[1] + hi_e ** 2 * above_s[0]
    bound = _err_box(lo_e, hi_e, cum[0], below, above, slice(0, 1), slice(half, half + 1))[:, 0, 0]
    rows = np.flatnonzero(((below + above.min(axis=1, keepdims=True)) <= bound[:, None]).any(axis=0))
    cols = np.flatnonzero(((above + below.min(axis=1, keepdims=True)) <= bound[:, None]).any(axis=0))
    i_end, j_start = (rows[-1] + 1, cols[0]) if rows.size and cols.size else (half + 1, 0)
    err = _err_box(lo_e, hi_e, cum[0], below, above, slice(0, i_end), slice(j_start, half + 1))
    i, j = np.divmod(err.reshape(c, -1).argmin(axis=1), half + 1 - j_start)
    pick = np.arange(c)
    return lo_e[pick, i], hi_e[pick, j + j_start]


def _err_box(lo_e, hi_e, cum0, below, above, i: slice, j: slice) -> np.ndarray:
    """err[:, i, j] of the search's grid, each element computed exactly as the search did."""
    half = lo_e.shape[1] - 1
    err = np.subtract(hi_e[:, None, j], lo_e[:, i, None])
    err /= LEVELS
    np.square(err, out=err)
    err *= cum0[:, None, half + j.start:half + j.stop] - cum0[:, i, None]  # values inside, per (lo, hi)
    err /= 12  # the rounding noise
    err += below[:, i, None] + above[:, None, j]  # (below + above) + noise, as the search added
    return err


def _linspace_rows(start: np.ndarray, stop: np.ndarray, num: int) -> np.ndarray:
    """np.linspace(start[k], stop[k], num) for every k, computed as numpy does for a scalar
    pair with a non-zero step: arange * step + start, and the exact stop at the end."""
    step = (stop - start) / (num - 1)
    out = np.arange(num, dtype=np.float64)[None, :] * step[:, None]
    out += start[:, None]
    out[:, -1] = stop
    return out


# -- "percentile": the tails of the value distribution ------------------------------------------
def percentile_q() -> list[float]:
    q = (100 - PERCENTILE_KEEP) / 200
    return [q, 1 - q]


def tail_quantiles(x: np.ndarray) -> tuple[float, float]:
    """np.quantile(x, percentile_q()) exactly, without partitioning all of x.

    The linear-interpolation quantile only reads the order statistics at floor(v) and
    floor(v) + 1, v = (n - 1) * q: a few hundred values at each end of a big tensor. They are
    taken from the values below / above a threshold guessed from a strided sample and then
    checked by counting, and interpolated with numpy's own formula. When the guess fails,
    or an order statistic is a zero (numpy's partition may return either -0.0 or +0.0),
    np.quantile itself runs.
    """
    x = np.asarray(x).reshape(-1)
    n = x.size
    virtual = (n - 1) * np.asarray(percentile_q())
    prev = np.floor(virtual).astype(np.intp)
    if n < TAIL_MIN_N or x.dtype != np.float32 or not (virtual >= 0).all() or not (virtual < n - 1).all():
        return tuple(np.quantile(x, percentile_q()))
    ranks = np.array([prev[0], prev[0] + 1, prev[1], prev[1] + 1])
    stats = _order_stats(x, ranks)
    if stats is None or not np.all(stats):
        return tuple(np.quantile(x, percentile_q()))
    a, b = stats[[0, 2]], stats[[1, 3]]
    gamma = virtual - prev
    diff = b - a  # numpy's _lerp, operation for operation
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe", dtype=np.float64)
    return float(out[0]), float(out[1])


def _order_stats(x: np.ndarray, ranks: np.ndarray) -> np.ndarray | None:
    """The values of sorted(x) at ranks [r0, r0 + 1, r1, r1 + 1] (r0 near 0, r1 near n - 1),
    or None when the sampled thresholds do not bracket them."""
    n = x.size
    need_lo, need_hi = int(ranks[1]) + 1, n - int(ranks[2])  # values needed from each end
    sample = np.sort(x[::max(1, n // TAIL_MIN_N)])
    m = sample.size
    k_lo = min(m - 1, 4 * need_lo * m // n + 16)  # ~4x the expected count, plus slack
    k_hi = max(0, m - 1 - (4 * need_hi * m // n + 16))
    low = x[x <= sample[k_lo]]
    high = x[x >= sample[k_hi]]
    if low.size < need_lo or high.size < need_hi:
        return None
    off = n - high.size  # rank in x of high's rank 0
    lo_vals = np.partition(low, ranks[:2])[ranks[:2]]
    hi_vals = np.partition(high, ranks[2:] - off)[ranks[2:] - off]
    return np.concatenate([lo_vals, hi_vals])


# -- both, on a [pre, C, post] weight view --------------------------------------------------------
def channel_rows(w3: np.ndarray, rows: slice) -> np.ndarray:
    """Channels `rows` of a [pre, C, post] view as [c, pre * post] float32 rows (a copy)."""
    part = w3[:, rows, :]
    return np.ascontiguousarray(part.transpose(1, 0, 2)).reshape(part.shape[1], -1)


def auto_range(w3: np.ndarray, method: str, per_channel: bool,
               bounds: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[C]-shaped (lo, hi) for weight_clip "mse" or "percentile" on a [pre, C, post] view.
    `bounds` is min_max(w3, per_channel) when the caller has it."""
    mn, mx = bounds if bounds is not None else min_max(w3, per_channel)
    if method == "percentile":
        if not per_channel:
            return tuple(np.array([v], np.float64) for v in tail_quantiles(w3))
        return _percentile_channels(w3)
    if not per_channel:
        lo, hi = mse_range(w3, bins=512, bounds=(mn[0], mx[0]))
        return np.array([lo], np.float64), np.array([hi], np.float64)
    return _mse_channels(w3, mn, mx)


def _mse_channels(w3, mn, mx, bins: int = 128, max_samples: int = 1 << 20):
    """The search per channel of a [pre, C, post] view, reading each channel in place when
    one of pre / post is 1 (every real layout), else from a channel-major copy."""
    pre, c, post = w3.shape
    stride = max(1, pre * post // max_samples)
    if post == 1:
        return mse_ranges(w3[::stride, :, 0], mn, mx, bins, axis=1)
    if pre == 1:
        return mse_ranges(w3[0, :, ::stride], mn, mx, bins, axis=0)
    lo, hi = np.empty(c), np.empty(c)
    for a in range(0, c, CHANNEL_BLOCK):
        s = slice(a, a + CHANNEL_BLOCK)
        lo[s], hi[s] = mse_ranges(channel_rows(w3, s)[:, ::stride], mn[s], mx[s], bins)
    return lo, hi


def _percentile_channels(w3):
    """np.quantile per channel; one call over [c, n] rows partitions each row as the
    one-channel call would (same values, same kth), so the results are identical."""
    c = w3.shape[1]
    lo, hi = np.empty(c), np.empty(c)
    step = max(1, (1 << 22) // max(w3.shape[0] * w3.shape[2], 1))
    for a in range(0, c, step):
        s = slice(a, a + step)
        lo[s], hi[s] = np.quantile(channel_rows(w3, s), percentile_q(), axis=1)
    return lo, hi


# -- how a per-tensor range is spent ----------------------------------------------------------
NARROW_CODES = 16  # a typical output channel below this many codes gets a compile-time note


def typical_codes(w3: np.ndarray) -> tuple[float, np.ndarray]:
    """(the codes of one per-tensor 8-bit range that the median output channel spans, each
    channel's width max - min) for a [pre, C, post] view of a weight."""
    lo, hi = min_max(w3, True)
    width = float(hi.max() - lo.min())
    ch = hi - lo
    return (LEVELS * float(np.median(ch)) / width if width > 0 else float(LEVELS)), ch


def narrow_note(name: str, value: np.ndarray, axis: int, channels: int) -> str | None:
    """A compile-time note when a few output channels (along `axis`) stretch a per-tensor
    range so that a typical channel keeps fewer than NARROW_CODES of the 256 codes."""
    shape = np.shape(value)
    if channels < 2:
        return None
    pre = int(np.prod(shape[:axis], dtype=np.int64))
    codes, ch = typical_codes(np.asarray(value, np.float32).reshape(pre, channels, -1))
    if round(codes) >= NARROW_CODES:
        return None
    wide = np.argsort(-ch)[:int(np.count_nonzero(ch >= 0.5 * ch.max()))]
    listed = ", ".join(str(int(c)) for c in wide[:4]) + (" ..." if wide.size > 4 else "")
    return (f"weight {name!r}: compressed per tensor, a typical output channel spans {codes:.0f} of the "
            f"256 codes because output channel(s) {listed} (axis {axis}) are far wider; `gxnpuc -e` "
            f"measures the cost (EXCLUDE_COMPRESS_OPS, or COMPRESS_PER_CHANNEL)")
