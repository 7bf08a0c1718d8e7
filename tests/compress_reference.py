"""The straightforward implementations the fast compression and header code replaced, kept
verbatim as oracles: tests/test_compress_fast.py checks the fast code bit for bit against
them (they were in turn checked against the SPEC 5 oracle of tests/test_compress.py).
"""
from __future__ import annotations

import re

import numpy as np

LEVELS = 255
FP16_MAX = 65504.0
CHUNK = 1 << 16
PERCENTILE_KEEP = 99.99


# -- gxnpuc/compress.py before the speed work ---------------------------------------------------
def fp16_params(lo, hi):
    lo = np.atleast_1d(np.asarray(lo, np.float64))
    hi = np.atleast_1d(np.asarray(hi, np.float64))
    with np.errstate(over="ignore"):
        return lo.astype(np.float16), ((hi - lo) / LEVELS).astype(np.float16)


def channel_view(shape, axis, channels):
    n = int(np.prod(shape, dtype=np.int64))
    if axis is None:
        return n, 1, 1
    pre = int(np.prod(shape[:axis], dtype=np.int64))
    return pre, channels, n // max(pre * channels, 1)


def _blocks(pre, c, post):
    if pre > 1 or c == 1:
        rows = max(1, CHUNK // max(c * post, 1))
        for a in range(0, pre, rows):
            yield (slice(a, a + rows), slice(None)), slice(None)
    else:
        rows = max(1, CHUNK // max(post, 1))
        for a in range(0, c, rows):
            yield (slice(None), slice(a, a + rows)), slice(a, a + rows)


def quantize(w, lo, hi, axis=None):
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


def decode_table(lo_f16, step_f16):
    q = np.arange(LEVELS + 1, dtype=np.float64)
    lo = np.asarray(lo_f16, np.float16).astype(np.float64).reshape(-1, 1)
    step = np.asarray(step_f16, np.float16).astype(np.float64).reshape(-1, 1)
    with np.errstate(over="ignore"):
        return (lo + q * step).astype(np.float16)


def dequantize(codes, lo_f16, step_f16, axis=None):
    table = decode_table(lo_f16, step_f16)
    if table.shape[0] == 1:
        return table[0][codes]
    pre, c, post = channel_view(codes.shape, axis, table.shape[0])
    ch = np.arange(c).reshape(1, c, 1)
    return table[ch, codes.reshape(pre, c, post)].reshape(codes.shape)


def zero_codes(table):
    is_zero = table == 0
    if not is_zero.any(axis=1).all():
        return None
    return is_zero.argmax(axis=1).astype(np.uint8)


def min_max(w3, per_channel):
    if not per_channel:
        return np.array([w3.min()], np.float64), np.array([w3.max()], np.float64)
    return w3.min(axis=(0, 2)).astype(np.float64), w3.max(axis=(0, 2)).astype(np.float64)


def mse_range(x, bins=512, max_samples=1 << 20):
    x = np.asarray(x, np.float32).reshape(-1)
    mn, mx = float(x.min()), float(x.max())
    if not mx > mn:
        return mn, mx
    x = x[::max(1, x.size // max_samples)]
    edges = np.linspace(mn, mx, bins + 1)
    idx = np.minimum(((x - mn) * (bins / (mx - mn))).astype(np.int64), bins - 1)
    x64 = x.astype(np.float64)
    s0, s1, s2 = (np.bincount(idx, weights=v, minlength=bins) for v in (None, x64, x64 * x64))
    cum = [np.concatenate([[0.0], np.cumsum(s)]) for s in (s0, s1, s2)]
    half = bins // 2
    lo_e, hi_e = edges[:half + 1], edges[half:]
    below = cum[2][:half + 1] - 2 * lo_e * cum[1][:half + 1] + lo_e ** 2 * cum[0][:half + 1]
    tot = [c[-1] for c in cum]
    above_s = [t - c[half:] for t, c in zip(tot, cum)]
    above = above_s[2] - 2 * hi_e * above_s[1] + hi_e ** 2 * above_s[0]
    inside = cum[0][half:][None, :] - cum[0][:half + 1][:, None]
    noise = inside * ((hi_e[None, :] - lo_e[:, None]) / LEVELS) ** 2 / 12
    err = below[:, None] + above[None, :] + noise
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(lo_e[i]), float(hi_e[j])


def auto_range(w3, method, per_channel, max_samples=1 << 20):
    q = (100 - PERCENTILE_KEEP) / 200
    parts = [w3] if not per_channel else [w3[:, k, :] for k in range(w3.shape[1])]
    if method == "percentile":
        pairs = [tuple(np.quantile(p, [q, 1 - q])) for p in parts]
    else:
        pairs = [mse_range(p, bins=512 if not per_channel else 128, max_samples=max_samples) for p in parts]
    lo, hi = (np.array(v, np.float64) for v in zip(*pairs))
    return lo, hi


def store_plain_f16(arr):
    arr = np.asarray(arr)
    with np.errstate(over="ignore"):
        return np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)


# -- gxnpuc/backend/c_header.py before the speed work ----------------------------------------------
_HEX = np.array([f"0x{i:02x},".encode() for i in range(256)], dtype="S5")
_HEXVAL = np.full(256, 255, np.uint8)
_HEXVAL[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_HEXVAL[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_ARR_HEAD = re.compile(r"const unsigned char (\w+)\[(\d+)\][^=\n]*= \{\n")


def hex_rows(blob, rows_per_chunk=1 << 14):
    arr = np.frombuffer(blob, np.uint8)
    step = rows_per_chunk * 16
    for start in range(0, len(arr), step):
        part = arr[start:start + step]
        full = len(part) // 16 * 16
        rows = _HEX[part[:full]].view(np.uint8).reshape(-1, 80)
        text = np.hstack([rows, np.full((len(rows), 1), 10, np.uint8)]).tobytes()
        tail = _HEX[part[full:]].tobytes() + b"\n" if full < len(part) else b""
        yield (text + tail).decode("ascii")


def array_bytes(body: str) -> bytes:
    raw = np.frombuffer(body.replace("\n", "").encode("latin-1"), np.uint8)
    if raw.size % 5 == 0:
        cells = raw.reshape(-1, 5)
        hi, lo = _HEXVAL[cells[:, 2]], _HEXVAL[cells[:, 3]]
        if (np.all(cells[:, 0] == ord("0")) and np.all(cells[:, 1] == ord("x"))
                and np.all(cells[:, 4] == ord(",")) and np.all((hi | lo) < 16)):
            return ((hi << 4) | lo).tobytes()
    return bytes(int(h, 16) for h in re.findall(r"0[xX]([0-9a-fA-F]{1,2})", body))


def arrays(text: str) -> dict:
    out, pos = {}, 0
    while (i := text.find("const unsigned char ", pos)) >= 0:
        m = _ARR_HEAD.match(text, i)
        end = text.find("};", m.end()) if m else -1
        if end < 0:
            pos = i + 1
            continue
        out[m.group(1)] = text[m.end():end]
        pos = end
    return out


# -- gxnpuc/backend sections / container before the speed work ------------------------------------
def weight_payload(sw) -> list:
    from gxnpuc.compress import bitmap_pack

    if sw.packing == "int32":
        return [np.asarray(sw.data_i32, "<i4").tobytes()]
    if sw.packing == "fp16":
        return [np.asarray(sw.data_f16, "<f2").tobytes()]
    head = [np.asarray(sw.lo_f16, "<f2").tobytes(), np.asarray(sw.step_f16, "<f2").tobytes()]
    if sw.packing == "bitmap":
        table = decode_table(sw.lo_f16, sw.step_f16)
        return head + list(bitmap_pack(sw.codes, zero_codes(table), sw.axis))
    return head + [np.ascontiguousarray(sw.codes, np.uint8).tobytes()]


def pack_weights(names, weights, alignment):
    parts, layout, off = [], {}, 0
    for name in names:
        payload = weight_payload(weights[name])
        nbytes = sum(len(p) for p in payload)
        layout[name] = (off, nbytes)
        pad = -(-nbytes // alignment) * alignment - nbytes
        parts += payload + [b"\0" * pad]
        off += nbytes + pad
    return b"".join(parts), layout


def container_pack(sec) -> bytes:
    import struct
    import zlib

    from gxnpuc.backend import tlv
    from gxnpuc.backend.container import ALIGN, CRC_AT, ENTRY, HEADER, MAGIC, TAGS
    from gxnpuc.backend.sections import FORMAT_VERSION

    def align(n, a):
        return -(-int(n) // a) * a
    info = tlv.encode(sec.info)
    table_end = HEADER.size + ENTRY.size * len(TAGS)
    header_size = align(table_end + len(info), ALIGN)
    stored = [sec.cmd, sec.weight, sec.ops, sec.debug]  # format 2: debug stored last
    entries, body, off = [], [], header_size
    for tag, blob in zip(TAGS[:3] + TAGS[5:], stored):
        entries.append(ENTRY.pack(tag, off, len(blob), 1))
        padded = bytes(blob) + b"\0" * (align(len(blob), ALIGN) - len(blob))
        body.append(padded)
        off += len(padded)
    entries[3:3] = [ENTRY.pack(TAGS[3], 0, sec.data_size, 0), ENTRY.pack(TAGS[4], 0, sec.tmp_size, 0)]
    head = HEADER.pack(MAGIC, FORMAT_VERSION, header_size, 0, len(TAGS), table_end, len(info))
    pre = head + b"".join(entries) + info
    blob = bytearray(pre + b"\0" * (header_size - len(pre)) + b"".join(body))
    struct.pack_into("<I", blob, CRC_AT, zlib.crc32(blob))
    return bytes(blob)
