"""The conv kernels: im2col + one GEMM per sample, per-tap products for depthwise.

Activations come channels-last (or channels-first for ONNX's plain convolutions) with
tap-major weights from `conv.taps_weight`. Split from conv.py, which keeps the op, its
shape rules and its lowerings.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def out_size(size: int, k: int, s: int, d: int, pad_begin: int, pad_end: int, ceil: bool = False) -> int:
    """Output length of a sliding window; ceil=True is pooling's ceil_mode (PyTorch/ORT rule:
    a window that would start past the input and its begin padding is dropped)."""
    span = size + pad_begin + pad_end - ((k - 1) * d + 1)
    n = (-(-span // s) if ceil else span // s) + 1
    if ceil and (n - 1) * s >= size + pad_begin:
        n -= 1
    return n


# -- kernel --------------------------------------------------------------------------------
# Each sample goes through the same float operations whatever the batch size (one GEMM per
# sample, element-wise taps), so the simulator's batched runs (gxnpuc/batching.py) are
# bit-identical to batch-1 runs.
def _pad_spatial(x: np.ndarray, pads: list[int], first: int = 1) -> np.ndarray:
    """Zero-pad the spatial axes, which start at axis `first` (1: channels-last, 2: -first)."""
    r = len(pads) // 2
    if not any(pads):
        return x
    shape, inner = list(x.shape), [slice(None)] * x.ndim
    for i in range(r):
        shape[first + i] += pads[i] + pads[r + i]
        inner[first + i] = slice(pads[i], pads[i] + x.shape[first + i])
    xp = np.zeros(shape, x.dtype)
    xp[tuple(inner)] = x
    return xp


def windows(xp: np.ndarray, kernel, strides, dilations, first: int = 1) -> np.ndarray:
    """View of every strided, dilated window: [n, *out, c, *kernel] of channels-last xp
    (first=1) or [n, c, *out, *kernel] of channels-first xp (first=2)."""
    r = len(kernel)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    v = sliding_window_view(xp, eff, axis=tuple(range(first, first + r)))
    every = slice(None)
    return v[((every,) * first + tuple(slice(None, None, s) for s in strides)
              + (every,) * (xp.ndim - first - r) + tuple(slice(None, None, d) for d in dilations))]


def tap_region(tap, sizes, out, strides, dilations, pads):
    """(input slices, output slices) of the output pixels whose input pixel under kernel tap
    `tap` lies inside the input (the others read zero padding); None when there are none."""
    src, dst, r = [], [], len(sizes)
    for i in range(r):
        off, s = tap[i] * dilations[i] - pads[i], strides[i]  # input index = o * s + off
        lo, hi = max(0, -(off // s)), min(out[i] - 1, (sizes[i] - 1 - off) // s)
        if hi < lo:
            return None
        src.append(slice(lo * s + off, hi * s + off + 1, s))
        dst.append(slice(lo, hi + 1))
    return src, dst


def depthwise_channels_last(x_cl: np.ndarray, w_taps: np.ndarray, strides, dilations, pads) -> np.ndarray:
    """[n, *in, c] * [*k, 1, c*mult] -> [n, *out, c*mult] (out channel i*mult + m): one
    multiply-add per kernel tap over the output pixels it reaches (padding adds nothing),
    starting from a tap that reaches them all. No padded copy and no im2col."""
    flat = depthwise_flat(x_cl, w_taps, strides, dilations, pads, first=False)
    if flat is not None:
        return flat
    r, c = x_cl.ndim - 2, x_cl.shape[-1]
    kernel, sizes, mult = w_taps.shape[:r], x_cl.shape[1:-1], w_taps.shape[-1] // c
    out = [out_size(sizes[i], kernel[i], strides[i], dilations[i], pads[i], pads[r + i]) for i in range(r)]
    x_cl, w_tc = np.ascontiguousarray(x_cl), w_taps.reshape(-1, c, mult)
    if mult == 1:  # weights repeated along the last spatial axis: long inner loops in numpy
        x_v, w_v = x_cl, np.broadcast_to(w_tc.reshape(-1, 1, c), (len(w_tc), out[-1], c)).copy()
    else:
        x_v, w_v = x_cl[..., None], w_tc
    terms = []
    for k, tap in enumerate(np.ndindex(*kernel)):
        reg = tap_region(tap, sizes, out, strides, dilations, pads)
        if reg:
            src, dst = reg
            whole = all(d.stop - d.start == o for d, o in zip(dst, out))
            w = w_v[k][:dst[-1].stop - dst[-1].start] if mult == 1 else w_v[k]
            terms.append((not whole, x_v[(slice(None), *src)], w, (slice(None), *dst)))
    shape = (x_cl.shape[0], *out, c) + ((mult,) * (mult > 1))
    y = _sum_of_products(shape, np.result_type(x_cl, w_taps), terms)
    return y.reshape(*y.shape[:r + 1], c * mult)


def depthwise_flat(x: np.ndarray, w_taps: np.ndarray, strides, dilations, pads, first: bool,
                   in_order: bool = False):
    """Stride-1 'same' depthwise (multiplier 1) of finite x, [n, c, *in] (first) or [n, *in, c],
    on each flattened sample: a tap is one shift of the whole sample, and the pixels it would
    pull across an image edge get weight 0 (x * 0 = 0 as x is finite): the per-region sums,
    with long inner loops and no layout change. None where that does not apply.
    in_order=True (npu mode, finite weights): acc = acc + x * w from +0.0 over the taps in C
    order; the zero-weight products across an edge add ±0, which leaves acc unchanged."""
    r = x.ndim - 2
    c, sizes = (x.shape[1], x.shape[2:]) if first else (x.shape[-1], x.shape[1:-1])
    kernel = w_taps.shape[:r]
    same = all(out_size(sizes[i], kernel[i], 1, dilations[i], pads[i], pads[r + i]) == sizes[i]
               for i in range(r))
    if w_taps.shape[-1] != c or max(strides) > 1 or not same or not np.isfinite(x.max() + x.min()):
        return None
    if in_order and not np.isfinite(w_taps).all():
        return None
    x, dtype, n = np.ascontiguousarray(x), np.result_type(x, w_taps), x.shape[0]
    size, pitch = x[0].size, np.cumprod((1,) + sizes[:0:-1])[::-1] * (1 if first else c)
    flat, w_tc, grid = x.reshape(n, size), w_taps.reshape(-1, c), np.indices(sizes)
    terms = []
    for k, tap in enumerate(np.ndindex(*kernel)):
        shift = [t * d - p for t, d, p in zip(tap, dilations, pads)]
        inside = np.logical_and.reduce([(g + s >= 0) & (g + s < m) for g, s, m in zip(grid, shift, sizes)])
        off = int(np.dot(shift, pitch))
        lo, hi = max(0, -off), min(size, size - off)
        if inside.any():
            tile = inside[None] * w_tc[k].reshape(-1, *[1] * r) if first else inside[..., None] * w_tc[k]
            tile = tile.astype(dtype).reshape(-1)[lo:hi]
            terms.append((not inside.all(), flat[:, lo + off:hi + off], tile, (slice(None), slice(lo, hi))))
    if in_order:
        terms = [(True, *t[1:]) for t in terms]  # no term starts the sum: acc starts at +0.0
    return _sum_of_products((n, size), dtype, terms).reshape(x.shape)


def _sum_of_products(shape, dtype, terms) -> np.ndarray:
    """Sum of v * w over terms (partial, v, w, dst): each product adds into output region dst.
    The first whole term (partial False) starts the sum; the others add in their order."""
    first = next((t for t in terms if not t[0]), None)
    acc = np.multiply(first[1], first[2], dtype=dtype) if first else np.zeros(shape, dtype)
    tmp = np.empty_like(acc)
    for t in terms:
        if t is not first:
            part = tmp[t[3]]
            np.multiply(t[1], t[2], out=part)
            acc[t[3]] += part
    return acc


def conv_channels_first(x: np.ndarray, w_oi: np.ndarray, strides, dilations, pads) -> np.ndarray:
    """[n, c, *in] * [c_out, c, *k] -> [n, c_out, *out], group 1: im2col [c*taps, pixels] and
    one GEMM per sample, [c_out, c*taps] @ [c*taps, pixels]; no layout change in or out."""
    r, n, c_out, kernel = x.ndim - 2, x.shape[0], w_oi.shape[0], w_oi.shape[2:]
    if all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(pads):
        out, cols = x.shape[2:], x.reshape(n, x.shape[1], -1)  # pointwise: x is the matrix
    else:
        win = windows(_pad_spatial(x, pads, 2), kernel, strides, dilations, 2)
        out = win.shape[2:2 + r]
        cols = np.moveaxis(win, tuple(range(2, 2 + r)), tuple(range(2 + r, 2 + 2 * r)))
        cols = cols.reshape(n, -1, int(np.prod(out)))
    return np.matmul(w_oi.reshape(c_out, -1), cols).reshape(n, c_out, *out)


def conv_channels_last(x_cl: np.ndarray, w_taps: np.ndarray, strides, dilations, pads,
                       group: int) -> np.ndarray:
    """[n, *in, c] * [*k, c/group, c_out] -> [n, *out, c_out] (zero padding)."""
    r = x_cl.ndim - 2
    kernel, cg, c_out = w_taps.shape[:r], w_taps.shape[r], w_taps.shape[r + 1]
    if group > 1 and cg == 1:
        return depthwise_channels_last(x_cl, w_taps, strides, dilations, pads)
    win = windows(_pad_spatial(x_cl, pads), kernel, strides, dilations)
    n, out = win.shape[0], win.shape[1:r + 1]
    if group == 1:  # im2col with channels innermost (contiguous in x), then one GEMM per sample
        cols = np.moveaxis(win, r + 1, -1).reshape(n, -1, int(np.prod(kernel)) * cg)
        return np.matmul(cols, w_taps.reshape(-1, c_out)).reshape(n, *out, c_out)
    # grouped: one GEMM per sample and group, [n, g, pixels, taps*cg] @ [g, taps*cg, c_out/g]
    og, taps = c_out // group, int(np.prod(kernel))
    cols = win.reshape(n, *out, group, cg, *kernel)
    cols = np.moveaxis(cols, (r + 1, r + 2), (1, -1)).reshape(n, group, -1, taps * cg)
    w_g = w_taps.reshape(taps, cg, group, og).transpose(2, 0, 1, 3).reshape(group, taps * cg, og)
    y = np.matmul(cols, w_g)  # [n, g, pixels, og]
    return np.moveaxis(y, 1, -2).reshape(n, *out, c_out)
