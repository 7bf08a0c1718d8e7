"""Weight compression numerics (SPEC 5): 8-bit asymmetric codes with fp16 lo/step, exactly as
the NPU's decompressor expands them, plus the zero-skip bitmap and the range choices.

Decoding is w' = fp16(lo16 + q * step16). It is computed as a 256-entry table per channel in
float64 (lo16 + q*step16 is exact there: both are multiples of 2^-24 below 2^25), rounded
once to fp16 and indexed by the codes, so it is bit-reproducible and fast.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gxnpuc.errors import ModelError
from gxnpuc import numerics
from gxnpuc.numerics import F16_MAX
from gxnpuc.ranges import PERCENTILE_KEEP, auto_range, min_max, mse_range, narrow_note  # noqa: F401 (API)

FP16_MAX = 65504.0
LEVELS = 255  # codes 0..255
CHUNK = 1 << 17  # values per quantisation block: its float32 scratch (512 KB) stays in the L2 cache
# t + 1.5 * 2^23 rounds t in [0, 2^22) to the nearest integer, ties to even (as np.rint does),
# and leaves that integer in the low mantissa bits: the code is the low byte of the float32.
ROUND_MAGIC = np.float32(1.5 * 2 ** 23)


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

    def decode(self, dtype=None) -> np.ndarray:
        """The values the device sees, in the weight's shape (fp16; int32 for integers).
        dtype (e.g. float32) converts float values exactly, faster than decode().astype()."""
        if self.packing == "int32":
            return self.data_i32
        if not self.compressed:
            return self.data_f16 if dtype is None else self.data_f16.astype(dtype)
        return dequantize(self.codes, self.lo_f16, self.step_f16, self.axis, dtype or np.float16)

    def zero_codes(self) -> np.ndarray | None:
        """Per channel, the code that decodes to exactly 0.0; None if a channel has none."""
        return table_facts(self.lo_f16, self.step_f16)[1]

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
def fit_fp16(lo16: np.ndarray, step16: np.ndarray) -> np.ndarray:
    """hi whose fp16 step keeps lo16 + 255*step16 within +-65504: a range inside fp16 whose step
    rounded up (w in [-65504, 65504]) loses one fp16 ulp of step; its top values saturate."""
    top = lo16.astype(np.float64) + LEVELS * step16.astype(np.float64)
    step = np.where(top > F16_MAX, np.nextafter(step16, np.float16(0)), step16)
    return lo16.astype(np.float64) + LEVELS * step.astype(np.float64)


def fp16_params(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """(lo16, step16) as float16 arrays: step = (hi - lo) / 255 in float64, both rounded once."""
    lo = np.atleast_1d(np.asarray(lo, np.float64))
    hi = np.atleast_1d(np.asarray(hi, np.float64))
    with np.errstate(over="ignore"):
        return lo.astype(np.float16), ((hi - lo) / LEVELS).astype(np.float16)


def decode_table(lo_f16: np.ndarray, step_f16: np.ndarray) -> np.ndarray:
    """[C, 256] float16 = fp16(lo16 + q*step16), exact in float64 then rounded once."""
    with np.errstate(over="ignore"):
        return exact_table(lo_f16, step_f16).astype(np.float16)


def exact_table(lo_f16: np.ndarray, step_f16: np.ndarray) -> np.ndarray:
    """[C, 256] float64 lo16 + q*step16 before the rounding to fp16 (exact: multiples of
    2^-24 below 2^26). It rounds to fp16 zero only where it is 0, to inf where |v| >= 65520."""
    q = np.arange(LEVELS + 1, dtype=np.float64)
    lo = np.asarray(lo_f16, np.float16).astype(np.float64).reshape(-1, 1)
    step = np.asarray(step_f16, np.float16).astype(np.float64).reshape(-1, 1)
    with np.errstate(invalid="ignore"):
        return lo + q * step


def table_facts(lo_f16, step_f16) -> tuple[bool, np.ndarray | None]:
    """(every code decodes to a finite fp16, zero_codes(decode_table(...))) without rounding
    the whole table to fp16."""
    v = exact_table(lo_f16, step_f16)
    with np.errstate(invalid="ignore"):
        finite = bool(np.all(np.abs(v) < FP16_MAX + 16))  # 65520 is where fp16 rounds to inf
    return finite, zero_codes(v)


def channel_view(shape: tuple, axis: int | None, channels: int) -> tuple[int, int, int]:
    """(pre, C, post): the weight seen as [prod(shape[:axis]), C, rest] (per tensor: [n, 1, 1]).

    C may span several dims (TF depthwise HWIM: out channel = i*M + m, axis 2, C = I*M).
    """
    n = int(np.prod(shape, dtype=np.int64))
    if axis is None:
        return n, 1, 1
    pre = int(np.prod(shape[:axis], dtype=np.int64))
    return pre, channels, n // max(pre * channels, 1)


def _rows_view(x3: np.ndarray, a: np.ndarray, b: np.ndarray):
    """x3 [pre, C, post] with the fewest dims (numpy's loops are much faster on 1-D / 2-D
    arrays than with unit dims), two per-channel [C] vectors shaped to broadcast against it,
    and whether those follow its first axis (then slice them with it)."""
    pre, c, post = x3.shape
    if c == 1:
        return x3.reshape(-1), a.reshape(()), b.reshape(()), False
    if post == 1:
        return x3.reshape(pre, c), a.reshape(1, c), b.reshape(1, c), False
    if pre == 1:
        return x3.reshape(c, post), a.reshape(c, 1), b.reshape(c, 1), True
    return x3, a.reshape(1, c, 1), b.reshape(1, c, 1), False


def quantize(w: np.ndarray, lo, hi, axis: int | None = None,
             inside: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes uint8 in w's shape, lo_f16, step_f16): q = clip(round((w - lo16) / step16), 0, 255).

    lo/hi are scalars (per tensor) or arrays of C values (per channel along `axis`). Values
    outside [lo16, lo16 + 255*step16] saturate to code 0 / 255. step16 == 0 (constant
    weight, or a range too narrow for fp16) gives code 0, which decodes to lo16.
    inside: every value lies in [lo, hi] (they are its min/max); the clip is then skipped
    where no value can round outside 0..255.
    """
    w = np.asarray(w, np.float32)
    lo16, step16 = fp16_params(lo, hi)
    pre, c, post = channel_view(w.shape, axis, lo16.size)
    codes = np.empty(w.shape, np.uint8)
    flat = step16 == 0
    st32 = np.where(flat, np.float16(1), step16).astype(np.float32)
    src, lo_b, st_b, by_row = _rows_view(w.reshape(pre, c, post), lo16.astype(np.float32), st32)
    dst = codes.reshape(src.shape)
    rows = max(1, CHUNK // max(src[0].size, 1)) if src.ndim > 1 else CHUNK
    scratch = np.empty(min(rows * (src[0].size if src.ndim > 1 else 1), src.size), np.float32)
    clip = not (inside and _rounds_inside(lo, hi, lo16.astype(np.float32), st32, flat))
    for a in range(0, src.shape[0], rows):
        part = src[a:a + rows]
        lo_p, st_p = (lo_b[a:a + rows], st_b[a:a + rows]) if by_row else (lo_b, st_b)
        t = np.subtract(part, lo_p, out=scratch[:part.size].reshape(part.shape), dtype=np.float32)
        np.divide(t, st_p, out=t)
        if clip:
            np.clip(t, 0, LEVELS, out=t)  # clip, then round: the same as round, then clip
        np.add(t, ROUND_MAGIC, out=t)
        dst[a:a + rows] = t.view(np.uint32)  # the integer cast keeps the low byte: the code
    if flat.any():
        codes.reshape(pre, c, post)[:, flat, :] = 0
    return codes, lo16, step16


def _rounds_inside(lo, hi, lo32: np.ndarray, st32: np.ndarray, flat: np.ndarray) -> bool:
    """Whether every w in [lo, hi] (per channel) gives t = (w - lo16) / step16 in
    [-0.5, 255.5), so that round(t) is already a code. t is monotonic in w (float32 subtract
    and divide by a positive step), so its ends are enough; flat channels are zeroed anyway."""
    ends = np.stack([np.broadcast_to(np.asarray(v, np.float64), lo32.shape) for v in (lo, hi)]).astype(np.float32)
    t = np.subtract(ends, lo32, dtype=np.float32)
    np.divide(t, st32, out=t)
    ok = (t[0] >= -0.5) & (t[1] < LEVELS + 0.5)
    return bool(np.all(ok | flat))


def dequantize(codes: np.ndarray, lo_f16, step_f16, axis: int | None = None, dtype=np.float16) -> np.ndarray:
    """fp16(lo16 + q*step16) in the codes' shape, bit-exact (see the module docstring);
    dtype float32 gives the same values converted exactly, without an fp16 array between."""
    table = decode_table(lo_f16, step_f16).astype(dtype, copy=False)
    if table.shape[0] == 1:
        return np.take(table[0], codes)
    pre, c, post = channel_view(codes.shape, axis, table.shape[0])
    offsets = np.arange(c, dtype=np.int32) * (LEVELS + 1)  # code q of channel k: table entry k*256 + q
    src, offsets, _, by_row = _rows_view(codes.reshape(pre, c, post), offsets, offsets)
    out = np.empty(src.shape, table.dtype)
    rows = max(1, CHUNK // max(src[0].size, 1))
    for a in range(0, src.shape[0], rows):
        idx = np.add(src[a:a + rows], offsets[a:a + rows] if by_row else offsets, dtype=np.int32)
        np.take(table.reshape(-1), idx, out=out[a:a + rows])
    return out.reshape(codes.shape)


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
    return packing_for(codes, table_facts(lo_f16, step_f16)[1], axis)


def packing_for(codes: np.ndarray, zero: np.ndarray | None, axis) -> tuple[str, int | None]:
    """choose_packing, given the zero code of each channel (None: some channel has none)."""
    if zero is None or codes.size == 0:
        return "dense", None
    pre, c, post = channel_view(codes.shape, axis, zero.size)
    z = _zero_per_value(codes.shape, axis, zero)
    nnz = int(codes.size - np.count_nonzero(codes.reshape(pre, c, post) == z))
    return ("bitmap" if bitmap_nbytes(codes.size, nnz) < codes.size else "dense"), nnz


# -- whole graphs -----------------------------------------------------------------------------
def check_finite(name: str, lo: np.ndarray, hi: np.ndarray) -> None:
    """min/max propagate NaN and show Inf, so they are enough to reject bad weights."""
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ModelError(f"weight {name!r}", "contains NaN or Inf values",
                         "every weight must be a finite number; check the exported model")


def store_plain(name: str, value: np.ndarray, family: str) -> StoredWeight:
    """An uncompressed constant: fp16 (saturated to +-65504), or int32 for integers/bools."""
    return _store_plain(name, value, family)[0]


def _store_plain(name: str, value, family: str) -> tuple[StoredWeight, float]:
    """store_plain, and the largest magnitude of a float constant (0.0 otherwise)."""
    arr = np.asarray(value)
    base = dict(name=name, shape=tuple(int(d) for d in arr.shape), family=family, dtype=arr.dtype.name)
    if not np.issubdtype(arr.dtype, np.floating):
        return StoredWeight(**{**base, "family": "param"}, packing="int32", data_i32=arr.astype(np.int32)), 0.0
    mn, mx = (arr.min(), arr.max()) if arr.size else (0.0, 0.0)
    check_finite(name, np.array([mn]), np.array([mx]))
    if arr.ndim and -FP16_MAX <= mn and mx <= FP16_MAX:  # nothing to saturate: skip the clip pass
        f16 = arr.astype(np.float16)
    else:
        with np.errstate(over="ignore"):
            f16 = np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)
    return StoredWeight(**base, packing="fp16", data_f16=f16), max(-float(mn), float(mx))


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
        lo, hi = auto_range(w3, method, per_channel, (lo, hi))
        source = method
    codes, lo16, step16 = quantize(w, lo, hi, axis, inside=source == "minmax")
    finite, zero = table_facts(lo16, step16)
    if not finite and max(np.abs(lo).max(), np.abs(hi).max()) <= F16_MAX:  # e.g. exactly +-65504
        hi = fit_fp16(lo16, step16)
        codes, lo16, step16 = quantize(w, lo, hi, axis)
        finite, zero = table_facts(lo16, step16)
    if not finite:
        raise ModelError(f"weight {name!r}", f"range [{lo.min():g}, {hi.max():g}] exceeds fp16",
                         "compressed values must lie within +-65504: exclude it or set WEIGHT_MIN_MAX")
    packing, nnz = packing_for(codes, zero, axis)
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


def _wants_compression(family: str, name: str, cfg) -> bool:
    if family == "fc":
        on = cfg.compress
    elif family == "conv":
        on = cfg.conv2d_compress and name not in cfg.exclude_conv2d_compress_ops
    else:
        return False
    return bool(on) and name not in cfg.exclude_compress_ops


def _slots(graph) -> dict[str, tuple[str, object]]:
    """tensor -> (family, first node with that role)."""
    out: dict[str, tuple] = {}
    for node, idx, fam in graph.weight_slots():
        name = node.inputs[idx]
        entry = out.setdefault(name, (fam, node))
        if entry[0] not in ("conv", "fc") and fam in ("conv", "fc"):
            out[name] = (fam, node)  # a compressible role wins for a shared constant
    return out


def _note(graph, text: str | None) -> None:
    notes = graph.meta.setdefault("notes", [])
    if text and text not in notes:  # compress_graph runs again on the same graph (eval, tune)
        notes.append(text)


def compress_graph(graph, cfg) -> dict[str, "StoredWeight"]:
    """A StoredWeight for every constant input of every node, in graph order (SPEC 5).

    cfg is resolved (gxnpuc.config.names.resolve): EXCLUDE_* and WEIGHT_MIN_MAX name weight
    tensors only, and its values were validated when the config was loaded.
    """
    out = {}
    for name, (family, node) in _slots(graph).items():
        value = graph.tensors[name].data
        floating = np.issubdtype(np.asarray(value).dtype, np.floating)
        if not (floating and value.size and _wants_compression(family, name, cfg)):
            out[name], peak = _store_plain(name, value, family)
            for text in numerics.range_notes(graph, name, peak):
                _note(graph, text)
            continue
        clip = cfg.weight_min_max.get(name)
        axis, ch = channel_axis(family, node, value.shape) if cfg.compress_per_channel else (None, 1)
        out[name] = compress_weight(name, value, family, axis, ch, clip, cfg.weight_clip)
        if axis is None and clip is None:  # a per-tensor range a few channels stretch
            _note(graph, narrow_note(name, value, *channel_axis(family, node, value.shape)))
    return out

