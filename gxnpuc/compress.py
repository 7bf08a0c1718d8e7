"""Weight compression numerics (SPEC 5): 8-bit asymmetric codes with fp16 lo/step, exactly as
the NPU's decompressor expands them, plus the zero-skip bitmap and the range choices.

Decoding is w' = fp16(lo16 + q * step16). It is computed as a 256-entry table per channel in
float64 (lo16 + q*step16 is exact there: both are multiples of 2^-24 below 2^25), rounded
once to fp16 and indexed by the codes, so it is bit-reproducible and fast.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gxnpuc.errors import ConfigError, ModelError

FP16_MAX = 65504.0
LEVELS = 255  # codes 0..255
CHUNK = 1 << 16  # values per quantisation block: the float32 scratch stays in L2 cache
CLIP_METHODS = ("minmax", "mse", "percentile")
PERCENTILE_KEEP = 99.99  # "percentile" clip keeps this share of values inside the range


@dataclass
class StoredWeight:
    """One constant as it is stored in the output and seen by the device."""
    name: str
    shape: tuple
    family: str  # conv | fc | bias | param
    compressed: bool = False
    codes: np.ndarray | None = None  # uint8 in the weight's shape (compressed only)
    lo_f16: np.ndarray | None = None  # float16, (1,) per tensor or (C,) per channel
    step_f16: np.ndarray | None = None
    axis: int | None = None  # per channel: weight viewed as [prod(shape[:axis]), C, rest]
    packing: str = "fp16"  # dense | bitmap (codes) | fp16 | int32
    data_f16: np.ndarray | None = None  # packing fp16: the values, weight's shape
    data_i32: np.ndarray | None = None  # packing int32: integer constants (rare after folding)
    clip: tuple | None = None  # (lo, hi) asked for (WEIGHT_MIN_MAX or automatic), else None
    range_source: str = ""  # minmax | weight_min_max | mse | percentile (compressed only)
    nnz: int | None = None  # codes that differ from the zero code (when one exists)
    dtype: str = "float32"  # the graph tensor's dtype (restored by the decoder)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def channels(self) -> int:
        return 0 if self.lo_f16 is None else int(self.lo_f16.size)

    def table(self) -> np.ndarray:
        """[C, 256] float16: what each code decodes to, per channel."""
        return decode_table(self.lo_f16, self.step_f16)

    def decode(self) -> np.ndarray:
        """The values the device sees, in the weight's shape (fp16; int32 for integers)."""
        if self.packing == "int32":
            return self.data_i32
        if not self.compressed:
            return self.data_f16
        return dequantize(self.codes, self.lo_f16, self.step_f16, self.axis)

    def zero_codes(self) -> np.ndarray | None:
        """Per channel, the code that decodes to exactly 0.0; None if a channel has none."""
        return zero_codes(self.table())

    @property
    def nbytes_fp32(self) -> int:
        return 4 * self.size

    @property
    def nbytes_stored(self) -> int:
        if self.packing == "int32":
            return 4 * self.size
        if self.packing == "fp16":
            return 2 * self.size
        params = 4 * self.channels  # lo and step, fp16 each
        if self.packing == "bitmap":
            return params + bitmap_nbytes(self.size, self.nnz)
        return params + self.size


# -- the SPEC 5 formula ----------------------------------------------------------------------
def fp16_params(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """(lo16, step16) as float16 arrays: step = (hi - lo) / 255 in float64, both rounded once."""
    lo = np.atleast_1d(np.asarray(lo, np.float64))
    hi = np.atleast_1d(np.asarray(hi, np.float64))
    with np.errstate(over="ignore"):
        return lo.astype(np.float16), ((hi - lo) / LEVELS).astype(np.float16)


def decode_table(lo_f16: np.ndarray, step_f16: np.ndarray) -> np.ndarray:
    """[C, 256] float16 = fp16(lo16 + q*step16), exact in float64 then rounded once."""
    q = np.arange(LEVELS + 1, dtype=np.float64)
    lo = np.asarray(lo_f16, np.float16).astype(np.float64).reshape(-1, 1)
    step = np.asarray(step_f16, np.float16).astype(np.float64).reshape(-1, 1)
    with np.errstate(over="ignore"):
        return (lo + q * step).astype(np.float16)


def channel_view(shape: tuple, axis: int | None, channels: int) -> tuple[int, int, int]:
    """(pre, C, post): the weight seen as [prod(shape[:axis]), C, rest] (per tensor: [n, 1, 1]).

    C may span several dims (TF depthwise HWIM: out channel = i*M + m, axis 2, C = I*M).
    """
    n = int(np.prod(shape, dtype=np.int64))
    if axis is None:
        return n, 1, 1
    pre = int(np.prod(shape[:axis], dtype=np.int64))
    return pre, channels, n // max(pre * channels, 1)


def _blocks(pre: int, c: int, post: int):
    """Index tuples into the [pre, C, post] view, each ~CHUNK values, and the lo/step slice."""
    if pre > 1 or c == 1:
        rows = max(1, CHUNK // max(c * post, 1))
        for a in range(0, pre, rows):
            yield (slice(a, a + rows), slice(None)), slice(None)
    else:  # one row: split along the channels
        rows = max(1, CHUNK // max(post, 1))
        for a in range(0, c, rows):
            yield (slice(None), slice(a, a + rows)), slice(a, a + rows)


def quantize(w: np.ndarray, lo, hi, axis: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes uint8 in w's shape, lo_f16, step_f16): q = clip(round((w - lo16) / step16), 0, 255).

    lo/hi are scalars (per tensor) or arrays of C values (per channel along `axis`). Values
    outside [lo16, lo16 + 255*step16] saturate to code 0 / 255. step16 == 0 (constant
    weight, or a range too narrow for fp16) gives code 0, which decodes to lo16.
    """
    w = np.asarray(w, np.float32)
    lo16, step16 = fp16_params(lo, hi)
    pre, c, post = channel_view(w.shape, axis, lo16.size)
    w3 = w.reshape(pre, c, post)
    codes = np.empty(w.shape, np.uint8)
    c3 = codes.reshape(pre, c, post)
    lo32 = lo16.astype(np.float32).reshape(1, c, 1)
    flat = step16 == 0
    st32 = np.where(flat, np.float16(1), step16).astype(np.float32).reshape(1, c, 1)
    for idx, ch in _blocks(pre, c, post):
        t = np.subtract(w3[idx], lo32[:, ch], dtype=np.float32)
        np.divide(t, st32[:, ch], out=t)
        np.rint(t, out=t)
        np.clip(t, 0, LEVELS, out=t)
        c3[idx] = t
    if flat.any():
        c3[:, flat, :] = 0
    return codes, lo16, step16


def dequantize(codes: np.ndarray, lo_f16, step_f16, axis: int | None = None) -> np.ndarray:
    """fp16(lo16 + q*step16) in the codes' shape, bit-exact (see the module docstring)."""
    table = decode_table(lo_f16, step_f16)
    if table.shape[0] == 1:
        return table[0][codes]
    pre, c, post = channel_view(codes.shape, axis, table.shape[0])
    ch = np.arange(c).reshape(1, c, 1)
    return table[ch, codes.reshape(pre, c, post)].reshape(codes.shape)


# -- zero-skip bitmap -------------------------------------------------------------------------
def zero_codes(table: np.ndarray) -> np.ndarray | None:
    """Per channel, the lowest code whose value is exactly 0.0, or None if a channel has none."""
    is_zero = table == 0
    if not is_zero.any(axis=1).all():
        return None
    return is_zero.argmax(axis=1).astype(np.uint8)


def bitmap_nbytes(n: int, nnz: int) -> int:
    """A bit per value (1 = code stored), then the nnz stored codes."""
    return -(-n // 8) + int(nnz)


def _zero_per_value(shape, axis, zero: np.ndarray) -> np.ndarray:
    pre, c, post = channel_view(shape, axis, zero.size)
    return zero.reshape(1, c, 1) if c > 1 else zero.reshape(1, 1, 1)


def bitmap_pack(codes: np.ndarray, zero: np.ndarray, axis: int | None) -> tuple[bytes, bytes]:
    """(bitmap, kept codes): bit i (LSB first in byte i//8) is set where code i != its zero code."""
    pre, c, post = channel_view(codes.shape, axis, zero.size)
    keep = (codes.reshape(pre, c, post) != _zero_per_value(codes.shape, axis, zero)).reshape(-1)
    return np.packbits(keep, bitorder="little").tobytes(), codes.reshape(-1)[keep].tobytes()


def bitmap_unpack(bitmap: bytes, kept: bytes, shape: tuple, zero: np.ndarray, axis: int | None) -> np.ndarray:
    """Inverse of bitmap_pack: the dense uint8 codes in `shape`."""
    n = int(np.prod(shape, dtype=np.int64))
    keep = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=n, bitorder="little").astype(bool)
    pre, c, post = channel_view(shape, axis, zero.size)
    codes = np.broadcast_to(_zero_per_value(shape, axis, zero), (pre, c, post)).reshape(-1).copy()
    codes[keep] = np.frombuffer(kept, np.uint8)
    return codes.reshape(shape)


def choose_packing(codes: np.ndarray, lo_f16, step_f16, axis) -> tuple[str, int | None]:
    """("bitmap", nnz) where the bitmap is smaller than dense codes, else ("dense", nnz or None)."""
    zero = zero_codes(decode_table(lo_f16, step_f16))
    if zero is None or codes.size == 0:
        return "dense", None
    pre, c, post = channel_view(codes.shape, axis, zero.size)
    z = _zero_per_value(codes.shape, axis, zero)
    nnz = int(codes.size - np.count_nonzero(codes.reshape(pre, c, post) == z))
    return ("bitmap" if bitmap_nbytes(codes.size, nnz) < codes.size else "dense"), nnz


# -- ranges -----------------------------------------------------------------------------------
def min_max(w3: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per tensor ([1] each) or per channel ([C] each) min and max of a [pre, C, post] view."""
    if not per_channel:
        return np.array([w3.min()], np.float64), np.array([w3.max()], np.float64)
    return w3.min(axis=(0, 2)).astype(np.float64), w3.max(axis=(0, 2)).astype(np.float64)


def mse_range(x: np.ndarray, bins: int = 512, max_samples: int = 1 << 20) -> tuple[float, float]:
    """The clip range [lo, hi] minimising the weight's squared quantisation error.

    A histogram gives, for every pair of bin edges (lo below the median, hi above), the
    exact clipping error of the values outside plus N_inside * step^2 / 12 of rounding noise.
    Very large tensors are subsampled with a fixed stride (their min/max are kept exactly).
    """
    x = np.asarray(x, np.float32).reshape(-1)
    mn, mx = float(x.min()), float(x.max())
    if not mx > mn:
        return mn, mx
    x = x[::max(1, x.size // max_samples)]
    edges = np.linspace(mn, mx, bins + 1)
    idx = np.minimum(((x - mn) * (bins / (mx - mn))).astype(np.int64), bins - 1)
    x64 = x.astype(np.float64)
    s0, s1, s2 = (np.bincount(idx, weights=v, minlength=bins) for v in (None, x64, x64 * x64))
    cum = [np.concatenate([[0.0], np.cumsum(s)]) for s in (s0, s1, s2)]  # sums over bins < k
    half = bins // 2
    lo_e, hi_e = edges[:half + 1], edges[half:]
    below = cum[2][:half + 1] - 2 * lo_e * cum[1][:half + 1] + lo_e ** 2 * cum[0][:half + 1]
    tot = [c[-1] for c in cum]
    above_s = [t - c[half:] for t, c in zip(tot, cum)]  # sums over bins >= k
    above = above_s[2] - 2 * hi_e * above_s[1] + hi_e ** 2 * above_s[0]
    inside = cum[0][half:][None, :] - cum[0][:half + 1][:, None]
    noise = inside * ((hi_e[None, :] - lo_e[:, None]) / LEVELS) ** 2 / 12
    err = below[:, None] + above[None, :] + noise
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(lo_e[i]), float(hi_e[j])


def auto_range(w3: np.ndarray, method: str, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """[C]-shaped (lo, hi) for weight_clip "mse" or "percentile" on a [pre, C, post] view."""
    q = (100 - PERCENTILE_KEEP) / 200
    parts = [w3] if not per_channel else [w3[:, k, :] for k in range(w3.shape[1])]
    if method == "percentile":
        pairs = [tuple(np.quantile(p, [q, 1 - q])) for p in parts]
    else:
        pairs = [mse_range(p, bins=512 if not per_channel else 128) for p in parts]
    lo, hi = (np.array(v, np.float64) for v in zip(*pairs))
    return lo, hi


# -- whole graphs -----------------------------------------------------------------------------
def check_finite(name: str, lo: np.ndarray, hi: np.ndarray) -> None:
    """min/max propagate NaN and show Inf, so they are enough to reject bad weights."""
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ModelError(f"weight {name!r}", "contains NaN or Inf values",
                         "every weight must be a finite number; check the exported model")


def store_plain(name: str, value: np.ndarray, family: str) -> StoredWeight:
    """An uncompressed constant: fp16 (saturated to +-65504), or int32 for integers/bools."""
    arr = np.asarray(value)
    base = dict(name=name, shape=tuple(int(d) for d in arr.shape), family=family, dtype=arr.dtype.name)
    if not np.issubdtype(arr.dtype, np.floating):
        return StoredWeight(**{**base, "family": "param"}, packing="int32", data_i32=arr.astype(np.int32))
    if arr.size:
        check_finite(name, np.array([arr.min()]), np.array([arr.max()]))
    with np.errstate(over="ignore"):
        f16 = np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)
    return StoredWeight(**base, packing="fp16", data_f16=f16)


def compress_weight(name: str, value: np.ndarray, family: str, axis: int | None = None,
                    channels: int = 1, clip: tuple | None = None, method: str = "minmax") -> StoredWeight:
    """Quantise one weight. axis/channels select per-channel ranges; clip is a fixed [lo, hi]
    (WEIGHT_MIN_MAX) that wins over `method` (minmax | mse | percentile)."""
    if np.size(value) == 0:
        return store_plain(name, value, family)
    w = np.asarray(value, np.float32)
    per_channel = axis is not None
    w3 = w.reshape(channel_view(w.shape, axis, channels))
    lo, hi = min_max(w3, per_channel)
    check_finite(name, lo, hi)
    source = "minmax"
    if clip is not None:
        c_lo, c_hi = float(clip[0]), float(clip[1])
        lo, hi = (np.full_like(lo, c_lo), np.full_like(hi, c_hi)) if not per_channel else \
            (np.clip(lo, c_lo, c_hi), np.clip(hi, c_lo, c_hi))
        source = "weight_min_max"
    elif method != "minmax" and w.size:
        lo, hi = auto_range(w3, method, per_channel)
        source = method
    codes, lo16, step16 = quantize(w, lo, hi, axis)
    if not np.all(np.isfinite(decode_table(lo16, step16))):
        raise ModelError(f"weight {name!r}", f"range [{lo.min():g}, {hi.max():g}] exceeds fp16",
                         "compressed values must lie within +-65504: exclude it or set WEIGHT_MIN_MAX")
    packing, nnz = choose_packing(codes, lo16, step16, axis)
    asked = None if source == "minmax" else (float(lo.min()), float(hi.max()))  # widest if per channel
    if clip is not None:
        asked = (float(clip[0]), float(clip[1]))
    return StoredWeight(name, tuple(w.shape), family, True, codes, lo16, step16, axis, packing,
                        clip=asked, range_source=source, nnz=nnz, dtype=np.asarray(value).dtype.name)


def channel_axis(family: str, node, shape: tuple) -> tuple[int, int]:
    """(axis, C) of the output channels of a conv/fc weight, for per-channel ranges."""
    nd = len(shape)
    if family == "fc":
        axis = 0 if node.attrs.get("transpose_w") else nd - 1
        return axis, int(shape[axis])
    fmt = str(node.attrs.get("w_format", "OIHW"))
    if fmt.endswith("IM") and nd >= 2:  # TF depthwise: out channel = i*M + m
        return nd - 2, int(shape[-2]) * int(shape[-1])
    axis = nd - 1 if fmt.endswith("IO") else 0
    return axis, int(shape[axis])


def _lookup(table, keys: list[str]):
    return next((table[k] for k in keys if k in table), None)


def _wants_compression(family: str, keys: set[str], cfg) -> bool:
    if family == "fc":
        on = cfg.compress
    elif family == "conv":
        on = cfg.conv2d_compress and not keys & set(cfg.exclude_conv2d_compress_ops)
    else:
        return False
    return bool(on) and not keys & set(cfg.exclude_compress_ops)


def _slots(graph) -> dict[str, tuple[str, object, list[str]]]:
    """tensor -> (family, first node with that role, names of every consuming node)."""
    out: dict[str, list] = {}
    for node, idx, fam in graph.weight_slots():
        name = node.inputs[idx]
        entry = out.setdefault(name, [fam, node, []])
        if node.name not in entry[2]:
            entry[2].append(node.name)
        if entry[0] not in ("conv", "fc") and fam in ("conv", "fc"):
            entry[0], entry[1] = fam, node  # a compressible role wins for a shared constant
    return {k: tuple(v) for k, v in out.items()}


def _note_fp16_overflow(graph, name: str, value) -> None:
    """fp16 holds magnitudes up to 65504; tell the user when a stored weight saturates."""
    arr = np.asarray(value)
    if arr.size and np.issubdtype(arr.dtype, np.floating):
        peak = float(np.max(np.abs(arr)))
        if peak > FP16_MAX:
            graph.meta.setdefault("notes", []).append(
                f"weight {name!r}: values up to {peak:.4g} exceed the fp16 range and saturate "
                f"to +-{FP16_MAX:g} on the NPU")


def compress_graph(graph, cfg) -> dict[str, "StoredWeight"]:
    """A StoredWeight for every constant input of every node, in graph order (SPEC 5).

    Names in EXCLUDE_* / WEIGHT_MIN_MAX may be the weight's name or a consuming node's name.
    """
    method = getattr(cfg, "weight_clip", "minmax") or "minmax"
    if method not in CLIP_METHODS:
        raise ConfigError("WEIGHT_CLIP", f"unknown method {method!r}", " | ".join(CLIP_METHODS))
    out = {}
    for name, (family, node, consumers) in _slots(graph).items():
        value = graph.tensors[name].data
        keys = [name, *consumers]
        floating = np.issubdtype(np.asarray(value).dtype, np.floating)
        if not (floating and value.size and _wants_compression(family, set(keys), cfg)):
            out[name] = store_plain(name, value, family)
            _note_fp16_overflow(graph, name, value)
            continue
        clip = _lookup(cfg.weight_min_max, keys)
        if clip is not None and not float(clip[0]) <= float(clip[1]):
            raise ConfigError(f"WEIGHT_MIN_MAX {name!r}", f"min {clip[0]} > max {clip[1]}", "[min, max]")
        axis, ch = channel_axis(family, node, value.shape) if cfg.compress_per_channel else (None, 1)
        out[name] = compress_weight(name, value, family, axis, ch, clip, method)
    return out

