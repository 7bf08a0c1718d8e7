"""A compact, deterministic tag-length-value encoding of plain values (the `cmd` section).

One tag byte, then the payload, all little-endian; dict keys are sorted so equal values give
equal bytes. docs/model-format.md lists the tags; a C runtime can parse it in ~60 lines.
"""
from __future__ import annotations

import struct

import numpy as np

NONE, FALSE, TRUE, INT, FLOAT, STR, LIST, DICT, ARRAY = range(9)
_U32, _I64, _F64 = struct.Struct("<I"), struct.Struct("<q"), struct.Struct("<d")


class DecodeError(ValueError):
    """The bytes are not a valid encoding (truncated or corrupt)."""


def _text(s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")
    return _U32.pack(len(raw)) + raw


def encode(value) -> bytes:
    out: list[bytes] = []
    _enc(value, out)
    return b"".join(out)


def _enc(v, out: list) -> None:
    if v is None:
        out.append(bytes([NONE]))
    elif isinstance(v, (bool, np.bool_)):
        out.append(bytes([TRUE if v else FALSE]))
    elif isinstance(v, (int, np.integer)):
        out.append(bytes([INT]) + _I64.pack(int(v)))
    elif isinstance(v, (float, np.floating)):
        out.append(bytes([FLOAT]) + _F64.pack(float(v)))
    elif isinstance(v, str):
        out.append(bytes([STR]) + _text(v))
    elif isinstance(v, (list, tuple)):
        out.append(bytes([LIST]) + _U32.pack(len(v)))
        for x in v:
            _enc(x, out)
    elif isinstance(v, dict):
        out.append(bytes([DICT]) + _U32.pack(len(v)))
        for k in sorted(v, key=str):
            out.append(_text(str(k)))
            _enc(v[k], out)
    elif isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        out.append(bytes([ARRAY]) + _text(a.dtype.str))
        _enc([int(d) for d in a.shape], out)
        out.append(_U32.pack(a.nbytes) + a.tobytes())
    else:
        raise TypeError(f"cannot encode {type(v).__name__} in the cmd section")


def decode(buf: bytes):
    """The value encoded at the start of buf; trailing bytes are an error."""
    value, pos = _dec(memoryview(buf), 0)
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes")
    return value


def _take(buf, pos: int, n: int):
    if pos + n > len(buf):
        raise DecodeError("truncated")
    return buf[pos:pos + n], pos + n


def _u32(buf, pos):
    b, pos = _take(buf, pos, 4)
    return _U32.unpack(b)[0], pos


def _str(buf, pos):
    n, pos = _u32(buf, pos)
    b, pos = _take(buf, pos, n)
    return bytes(b).decode("utf-8", "surrogatepass"), pos


def _dec(buf, pos: int):
    tag_b, pos = _take(buf, pos, 1)
    tag = tag_b[0]
    if tag in (NONE, FALSE, TRUE):
        return (None, False, True)[tag], pos
    if tag == INT:
        b, pos = _take(buf, pos, 8)
        return _I64.unpack(b)[0], pos
    if tag == FLOAT:
        b, pos = _take(buf, pos, 8)
        return _F64.unpack(b)[0], pos
    if tag == STR:
        return _str(buf, pos)
    if tag == LIST:
        n, pos = _u32(buf, pos)
        items = []
        for _ in range(n):
            x, pos = _dec(buf, pos)
            items.append(x)
        return items, pos
    if tag == DICT:
        n, pos = _u32(buf, pos)
        d = {}
        for _ in range(n):
            k, pos = _str(buf, pos)
            d[k], pos = _dec(buf, pos)
        return d, pos
    if tag == ARRAY:
        dtype, pos = _str(buf, pos)
        shape, pos = _dec(buf, pos)
        n, pos = _u32(buf, pos)
        b, pos = _take(buf, pos, n)
        return np.frombuffer(bytes(b), np.dtype(dtype)).reshape(shape).copy(), pos
    raise DecodeError(f"unknown tag {tag}")
