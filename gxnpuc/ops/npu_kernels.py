"""npu-mode kernels of the ops that sum: fp32 sums in the order docs/numerics.md defines.

Every sum is one float32 accumulator per output value, starting at +0.0, adding one term per
reduction index in ascending order (`acc = acc + x * w` for dot products), as the C runtime
does. numpy reproduces that order exactly by looping over the reduction index with arrays
vectorised over all outputs and samples (never BLAS, never numpy's pairwise sum), so the
result of a sample does not depend on the batch it runs in. Plain sums over an axis use
np.add.accumulate, which is that same sequential loop inside numpy.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.conv_kernels import windows, out_size, tap_region

F32 = np.float32


def seq_sum(x: np.ndarray, axes, keepdims: bool = False) -> np.ndarray:
    """Sum over `axes` (C order of the reduced axes), term by term from +0.0, in float32."""
    x = np.asarray(x, F32)
    axes = sorted(a % x.ndim for a in (axes if isinstance(axes, (list, tuple)) else [axes]))
    rest = [a for a in range(x.ndim) if a not in axes]
    out_shape = [1 if a in axes else d for a, d in enumerate(x.shape)] if keepdims \
        else [x.shape[a] for a in rest]
    count = int(np.prod([x.shape[a] for a in axes]))
    if count == 0:
        return np.zeros(out_shape, F32)
    terms = np.transpose(x, axes + rest).reshape(count, -1)
    # partial sums t0, t0 + t1, ...: the last one equals the sum from +0.0 except that
    # +0.0 turns an all-(-0) sum into +0.0, which adding +0.0 does here too
    total = np.add.accumulate(terms, axis=0)[-1] + F32(0)
    return total.reshape(out_shape)


def mean(x: np.ndarray, axes, keepdims: bool) -> np.ndarray:
    """seq_sum / n, one correctly rounded division by the float32 count."""
    x = np.asarray(x, F32)
    n = int(np.prod([x.shape[a] for a in (axes if isinstance(axes, (list, tuple)) else [axes])]))
    return seq_sum(x, axes, keepdims) / F32(n)


def fc(x: np.ndarray, w_kn: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """x[..., K] @ w_kn[K, N] (+ bias): acc = acc + x_k * w_k for k ascending, then acc + b."""
    x, w_kn = np.asarray(x, F32), np.asarray(w_kn, F32)
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] > w_kn.shape[1]:  # many rows: accumulate [N, rows] (long inner loops)
        x_kr = np.ascontiguousarray(rows.T)
        acc = np.zeros((w_kn.shape[1], rows.shape[0]), F32)
        tmp = np.empty_like(acc)
        for k in range(w_kn.shape[0]):
            np.multiply(w_kn[k][:, None], x_kr[k], out=tmp)
            np.add(acc, tmp, out=acc)
        acc = np.ascontiguousarray(acc.T)
    else:
        acc = np.zeros((rows.shape[0], w_kn.shape[1]), F32)
        tmp = np.empty_like(acc)
        for k in range(w_kn.shape[0]):
            np.multiply(rows[:, k:k + 1], w_kn[k], out=tmp)
            np.add(acc, tmp, out=acc)
    if bias is not None:
        acc = acc + np.asarray(bias, F32).reshape(-1)
    return acc.reshape(*x.shape[:-1], w_kn.shape[1])


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy matmul semantics (1-D operands, broadcast batch dims), k ascending per output."""
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    a2 = a[None] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    shape = (*np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]), a2.shape[-2], b2.shape[-1])
    acc = np.zeros(shape, F32)
    for k in range(a2.shape[-1]):
        acc = acc + a2[..., :, k:k + 1] * b2[..., k:k + 1, :]
    if b.ndim == 1:
        acc = acc[..., 0]
    if a.ndim == 1:
        acc = acc[..., 0, :] if b.ndim > 1 else acc[..., 0]
    return np.ascontiguousarray(acc)


def conv(x_cf: np.ndarray, w_oi: np.ndarray, bias, strides, dilations, pads, group: int) -> np.ndarray:
    """[n, c, *in] * [c_out, c/group, *k] (+ bias) -> [n, c_out, *out], any group count.

    acc = acc + x * w over the group's input channels ascending, then the kernel taps in C
    order, skipping the taps that fall in the zero padding; then acc + b. With finite
    weights the padding is read as zeros instead (whole, contiguous steps): a product
    0 * w = ±0 leaves acc unchanged, as acc starts at +0.0 and is never -0.
    """
    x_cf, w_oi = np.asarray(x_cf, F32), np.asarray(w_oi, F32)
    r, n, c_out = x_cf.ndim - 2, x_cf.shape[0], w_oi.shape[0]
    if any(pads) and not np.isfinite(w_oi).all():
        acc = _conv_regions(x_cf, w_oi, strides, dilations, pads, group)
    else:
        if any(pads):
            x_cf = np.pad(x_cf, [(0, 0), (0, 0)] + [(pads[i], pads[r + i]) for i in range(r)])
        acc = _conv_whole(x_cf, w_oi, strides, dilations, group)
    acc = np.moveaxis(acc.reshape(c_out, n, *acc.shape[3:]), 0, 1)
    if bias is not None:
        acc = acc + np.asarray(bias, F32).reshape(-1, *[1] * r)
    return acc


_COLS_MAX = 1 << 23  # floats of one im2col block (32 MB)


def _conv_whole(xp: np.ndarray, w_oi: np.ndarray, strides, dilations, group: int) -> np.ndarray:
    """The sum over every tap of the (padded) input: [group, og, n, *out]. The terms of
    a block of input channels are gathered first (im2col, ordered by reduction index), so
    each step is one multiply and one add over contiguous [group, og, n, *out] arrays."""
    r, n, c_out, cg = xp.ndim - 2, xp.shape[0], w_oi.shape[0], w_oi.shape[1]
    kernel, og = w_oi.shape[2:], c_out // group
    win = windows(xp, kernel, strides, dilations, 2)  # [n, c, *out, *kernel]
    out = win.shape[2:2 + r]
    taps = int(np.prod(kernel))
    # terms [cg, *kernel, group, n, *out] and weights [cg, *kernel, group, og]: index ci, tap
    terms = win.reshape(n, group, cg, *out, *kernel)
    terms = np.transpose(terms, (2, *range(3 + r, 3 + 2 * r), 1, 0, *range(3, 3 + r)))
    w_k = np.transpose(w_oi.reshape(group, og, cg, *kernel), (2, *range(3, 3 + r), 0, 1))
    w_k = w_k.reshape(cg * taps, group, og, *[1] * (r + 1))
    acc = np.zeros((group, og, n, *out), F32)
    tmp = np.empty_like(acc)
    block = max(1, _COLS_MAX // max(1, taps * group * n * int(np.prod(out))))
    for c0 in range(0, cg, block):
        cols = np.ascontiguousarray(terms[c0:c0 + block]).reshape(-1, group, 1, n, *out)
        for k, col in enumerate(cols, c0 * taps):
            np.multiply(w_k[k], col, out=tmp)
            np.add(acc, tmp, out=acc)
    return acc


def _conv_regions(x_cf: np.ndarray, w_oi: np.ndarray, strides, dilations, pads, group: int) -> np.ndarray:
    """The sum over the taps inside the input only, region by region: [group, og, n, *out]."""
    r, n, c_out, cg = x_cf.ndim - 2, x_cf.shape[0], w_oi.shape[0], w_oi.shape[1]
    kernel, og, sizes = w_oi.shape[2:], c_out // group, x_cf.shape[2:]
    out = [out_size(sizes[i], kernel[i], strides[i], dilations[i], pads[i], pads[r + i]) for i in range(r)]
    xg = x_cf.reshape(n, group, cg, *sizes).swapaxes(0, 1)  # [group, n, cg, *in]
    wg = w_oi.reshape(group, og, cg, *kernel)
    acc = np.zeros((group, og, n, *out), F32)
    tmp = np.empty_like(acc)
    every = (slice(None),) * 3
    for ci in range(cg):
        for tap in np.ndindex(*kernel):
            region = tap_region(tap, sizes, out, strides, dilations, pads)
            if region is None:  # the tap reads only padding for every output
                continue
            src, dst = region
            xs = np.ascontiguousarray(xg[(slice(None), slice(None), ci, *src)])[:, None]
            ws = wg[(slice(None), slice(None), ci, *tap)].reshape(group, og, *[1] * (r + 1))
            part, into = tmp[(*every, *dst)], acc[(*every, *dst)]
            np.multiply(ws, xs, out=part)
            np.add(into, part, out=into)
    return acc


def avg_pool_sum(x: np.ndarray, taps, lo_pads, hi_pads, strides, dilations, out, axes) -> np.ndarray:
    """Window sums of average pooling: acc = acc + v over the kernel taps in C order from +0
    (pixels in the padding are zeros: the same as skipping them)."""
    x = np.asarray(x, F32)
    widths = [(0, 0)] * x.ndim
    for i, ax in enumerate(axes):
        widths[ax] = (lo_pads[i], hi_pads[i])
    xp = np.pad(x, widths) if any(map(any, widths)) else x
    shape = list(x.shape)
    for ax, o in zip(axes, out):
        shape[ax] = o
    acc = np.zeros(shape, F32)
    for tap in np.ndindex(*taps):
        sl = [slice(None)] * x.ndim
        for i, ax in enumerate(axes):
            start = tap[i] * dilations[i]
            sl[ax] = slice(start, start + (out[i] - 1) * strides[i] + 1, strides[i])
        acc = acc + xp[tuple(sl)]
    return acc
