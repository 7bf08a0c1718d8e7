"""The npu-mode numeric rules: what a GX8002-class NPU computes, as small pure functions.

The simulator's npu mode (sim.run_model(..., mode="npu")) is these storage rules applied around
each op's device kernel (OpDef.run_npu: fp32 in the defined operation order, with the math of
gxnpuc/devmath.py); docs/numerics.md explains each rule and defines every kernel.
"""
from __future__ import annotations

import numpy as np

F16_MAX = float(np.finfo(np.float16).max)  # 65504: larger magnitudes overflow to inf


def is_float(x) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


F16_MIN_NORMAL = np.float32(2.0 ** -14)  # below it fp16 is subnormal (fixed step 2**-24)
_F16_MAX_BITS = int(np.float32(F16_MAX).view(np.uint32))
_F16_MIN_NORMAL_BITS = int(F16_MIN_NORMAL.view(np.uint32))
_FAST_MIN_SIZE = 4096  # smaller tensors take the plain cast (its overhead is lower)


def round_f16(x: np.ndarray) -> np.ndarray:
    """Round to the nearest fp16 value (IEEE round-to-nearest-even), kept as float32.

    Activations live in fp16 on the device (every NaN stored as the one canonical NaN
    0x7E00, as runtime/gx_math.h's gx_f32_to_f16 does). Non-float tensors (shape or index
    values that only fold-time ops produce) pass unchanged.
    """
    if not is_float(x):
        return x
    x = np.asarray(x)
    if x.dtype == np.float32 and x.size >= _FAST_MIN_SIZE:
        return _round_f16_bits(x)
    with np.errstate(over="ignore"):  # overflow to inf is what fp16 storage does
        y = x.astype(np.float16).astype(np.float32)
    return _canonical_nan(y)


def _canonical_nan(y: np.ndarray) -> np.ndarray:
    nan = np.isnan(y)
    if nan.any():
        y = np.where(nan, np.float32(np.nan), y)
    return y


def _round_f16_bits(x: np.ndarray) -> np.ndarray:
    """round_f16 of float32 x, bit for bit, ~4x faster than numpy's software fp16 cast
    (checked against it on all 2**32 float32 values).

    In fp16's normal range, rounding to fp16 is rounding the float32 significand to 11 bits:
    add half an fp16 unit minus one (plus one more when the kept part is odd: ties to even)
    to the bits and clear the 13 low ones; a carry moves into the exponent correctly. Values
    in fp16's subnormal range, beyond 65504 (-> inf), inf and NaN take the exact cast.
    """
    x = np.ascontiguousarray(x)  # y below comes out C-ordered; the fix-ups index both flat
    b = x.view(np.uint32)
    r = b >> 13
    r &= 1
    r += 0xFFF
    r += b
    r &= np.uint32(0xFFFFE000)
    y = r.view(np.float32)
    mag = b & np.uint32(0x7FFFFFFF)  # |x| as bits: ordered like the values, NaN above inf
    big = mag.max() > _F16_MAX_BITS
    mag -= 1  # zero wraps to the top: below the bound are the non-zero fp16 subnormals
    low = _F16_MIN_NORMAL_BITS - 1
    if big or mag.min() < low:  # usual: a few tiny values, found in one pass
        odd = mag < low
        if big:
            odd |= (mag >= _F16_MAX_BITS) & (mag != np.uint32(0xFFFFFFFF))
        idx = np.flatnonzero(odd)
        with np.errstate(over="ignore"):
            y.reshape(-1)[idx] = _canonical_nan(x.reshape(-1)[idx].astype(np.float16).astype(np.float32))
    return y


def keeps_f16(node) -> bool:
    """True when rounding node's outputs to fp16 is the identity, given fp16 inputs
    (callers check that every input is an already-rounded activation, not a constant): the
    op's rule, OpDef.keeps_f16 (data movement, ReLU, max pool, ...)."""
    from gxnpuc.ops import REGISTRY

    return REGISTRY[node.op].keeps_f16(node)


def stored_values(stored) -> np.ndarray:
    """The weight as the device sees it (StoredWeight.decode(), fp16), as float32 for kernels."""
    return np.asarray(stored.decode()).astype(np.float32)


def is_compressed(stored) -> bool:
    """Whether a StoredWeight holds 8-bit codes (as opposed to plain fp16)."""
    flag = getattr(stored, "compressed", None)
    if flag is not None:
        return bool(flag)
    return getattr(stored, "codes", None) is not None


def device_consts(graph, weights: dict) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph as the device holds it.

    A constant with a StoredWeight (every weight, bias and parameter an op reads) takes its
    decoded value: compressed ones dequantized exactly as SPEC 5, the rest fp16. Any other
    float constant is rounded to fp16 (the device has no other float format).
    """
    out = {}
    for name, t in graph.tensors.items():
        if name in weights:
            out[name] = stored_values(weights[name])
        elif t.is_const:
            out[name] = round_f16(t.data)
    return out


def float_consts(graph, weights: dict) -> dict[str, np.ndarray]:
    """Constants for float mode: the graph's own float values; decoded ones where a model
    read back from a file carries no float copy."""
    return {name: stored_values(sw) for name, sw in weights.items()
            if name in graph.tensors and not graph.tensors[name].is_const}


def output_value(y: np.ndarray, fp16: bool) -> np.ndarray:
    """A graph output as the host reads it: fp16 for FP16_OUT_OPS, otherwise fp32 (exact)."""
    if not is_float(y):
        return y
    return np.asarray(y).astype(np.float16 if fp16 else np.float32)


def overflows(x: np.ndarray) -> bool:
    """True when a float tensor holds values beyond the fp16 range (or already inf/NaN)."""
    if not is_float(x) or np.size(x) == 0:
        return False
    return not bool(np.all(np.abs(x) <= F16_MAX))


def finite(x) -> bool:
    """False when a float tensor holds inf or NaN."""
    return not is_float(x) or np.size(x) == 0 or bool(np.all(np.isfinite(x)))


F16_TINY = 2.0 ** -25  # magnitudes up to this round to 0 in fp16 (the smallest subnormal is 2**-24)


def range_notes(graph, name: str, peak: float) -> list[str]:
    """What fp16 storage does to a float constant stored uncompressed, from its largest
    magnitude `peak`: beyond 65504 it saturates; when even the largest rounds to 0 (an epsilon
    such as 1e-10 in log(x + eps) or x / (y + eps)) the constant is 0 on the NPU, so the guard
    it was there for is gone."""
    if peak > F16_MAX:
        return [f"weight {name!r}: values up to {peak:.4g} exceed the fp16 range and saturate "
                f"to +-{F16_MAX:g} on the NPU"]
    if 0 < peak <= F16_TINY:
        readers = [f"{n.op} {n.name!r}" for n in graph.nodes if name in n.inputs][:2]
        return [f"constant {name!r} ({peak:.3g}) is below the smallest fp16 "
                f"({2.0 ** -24:.3g}) and is 0 on the NPU" + (f" (read by {', '.join(readers)})" if readers else "")
                + ": an epsilon that guards a log, division or sqrt no longer does; where the values "
                "it guards underflow too, the npu gives inf/NaN"]
    return []
