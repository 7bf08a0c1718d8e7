"""The device's fp32 math in numpy: the same algorithms as runtime/gx_math.h, operation for operation.

Every function takes float32 arrays and uses only float32 + - * / (numpy never fuses a
multiply-add), correctly rounded sqrt, comparisons, exact conversions and bit operations, in
the order the C header uses, so both give the same bits (tests/test_devmath.py compiles the
header and checks every fp16 input of each unary function plus random float32 inputs).
Branches of the C code become np.where over lanes that computed every branch. NaN bits are
not part of the definition (fp16 storage makes every NaN one canonical NaN).
docs/numerics.md states each algorithm and its measured accuracy.
"""
from __future__ import annotations

import numpy as np

F = np.float32
_U = np.uint32

LOG2E = F(float.fromhex("0x1.715476p+0"))
LN2_HI = F(float.fromhex("0x1.62e4p-1"))
LN2_LO = F(float.fromhex("0x1.7f7d1cp-20"))
ROUND = F(float.fromhex("0x1.8p+23"))  # adding and subtracting it rounds to an integer (RNE)
SQRT1_2 = F(float.fromhex("0x1.6a09e6p-1"))
SQRT2_PI = F(float.fromhex("0x1.988454p-1"))
GELU_C = F(float.fromhex("0x1.6e4e26p-5"))  # 0.044715


def _c(*hexes: str) -> tuple:
    return tuple(F(float.fromhex(h)) for h in hexes)


EXP_P = _c("0x1.6c37ecp-10", "0x1.120afcp-7", "0x1.5555eap-5", "0x1.5554dep-3", "0x1.0p-1")
LOG_Q = _c("0x1.ddcce2p-3", "0x1.245c4ep-2", "0x1.9999ecp-2", "0x1.555556p-1")
ERF_Q = _c("0x1.75047cp-14", "-0x1.b0d948p-11", "0x1.55746ap-8", "-0x1.b81eb8p-6",
           "0x1.ce2eb8p-4", "-0x1.812746p-2", "0x1.06eba8p-3")
ERFC_F = _c("-0x1.43d368p-5", "0x1.89a4cep-4", "0x1.cd48eap-6", "-0x1.079f6ap-2",
            "0x1.4674fcp-3", "0x1.bd4844p-8", "0x1.986712p-3", "0x1.f0431ep-3",
            "0x1.216fa6p-2", "0x1.20d31ap-2", "0x1.4881e6p-20")
NAN, INF = F(np.nan), F(np.inf)


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32, order="C").view(_U)  # (keeps 0-d arrays 0-d)


def _float(b: np.ndarray) -> np.ndarray:
    return np.asarray(b, dtype=_U, order="C").view(np.float32)


def _abs(x: np.ndarray) -> np.ndarray:
    return _float(_bits(x) & _U(0x7FFFFFFF))


def _copysign(mag: np.ndarray, sign_of: np.ndarray) -> np.ndarray:
    return _float((_bits(mag) & _U(0x7FFFFFFF)) | (_bits(sign_of) & _U(0x80000000)))


def _horner(coeffs: tuple, t: np.ndarray) -> np.ndarray:
    p = np.full_like(t, coeffs[0])
    for c in coeffs[1:]:
        p = p * t + c
    return p


def _pow2i(k: np.ndarray) -> np.ndarray:
    return _float((k + 127).astype(_U) << _U(23))


def _reduce(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, r): x = n ln2 + r, n = x log2(e) rounded to nearest even."""
    n = (x * LOG2E + ROUND) - ROUND
    return n, (x - n * LN2_HI) - n * LN2_LO


def exp(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        xc = np.where(x > F(89), F(89), x)
        xc = np.where(xc < F(-110), F(-110), xc)
        xc = np.where(x != x, F(0), xc)
        n, r = _reduce(xc)
        y = F(1) + (r + (r * r) * _horner(EXP_P, r))
        k, k1 = n.astype(np.int32), (n * F(0.5)).astype(np.int32)
        y = (y * _pow2i(k1)) * _pow2i(k - k1)
    return np.where(x != x, x, y)


def expm1(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        xc = np.where((x > F(16)) | (x < F(-17.5)) | (x != x), F(0), x)
        n, r = _reduce(xc)
        em = r + (r * r) * _horner(EXP_P, r)
        s = _pow2i(n.astype(np.int32))
        y = np.where(n == F(0), em, s * em + (s - F(1)))
        y = np.where(x < F(-17.5), F(-1), y)
        y = np.where(x > F(16), exp(x) - F(1), y)
    return np.where(x != x, x, y)


def log(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        tiny = x < F(2.0 ** -126)
        xs = np.where(tiny, x * F(2.0 ** 23), x)
        b = _bits(xs)
        e = (b >> _U(23)).astype(np.int32) - 127 - np.where(tiny, 23, 0).astype(np.int32)
        m = b & _U(0x7FFFFF)
        up = m > _U(0x3504F3)
        f = _float(m | np.where(up, _U(0x3F000000), _U(0x3F800000))) - F(1)
        dk = (e + up).astype(np.float32)
        s = f / (F(2) + f)
        z = s * s
        big_r = z * _horner(LOG_Q, z)
        hfsq = (F(0.5) * f) * f
        y = dk * LN2_HI + (f - (hfsq - (s * (hfsq + big_r) + dk * LN2_LO)))
    y = np.where(x == INF, x, y)
    y = np.where(x == F(0), -INF, y)
    y = np.where(x < F(0), NAN, y)
    return np.where(x != x, x, y)


def log1p(y) -> np.ndarray:
    y = _f32(y)
    with np.errstate(all="ignore"):
        u = F(1) + y
        r = log(u) * (y / (u - F(1)))
    r = np.where(u == INF, u, r)
    return np.where(u == F(1), y, r)


def tanh(x) -> np.ndarray:
    x = _f32(x)
    a = _abs(x)
    with np.errstate(all="ignore"):
        t = expm1(F(2) * np.where(a > F(9), F(0), a))
        y = np.where(a > F(9), F(1), t / (t + F(2)))
    return np.where(x != x, x, _copysign(y, x))


def sigmoid(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return F(1) / (F(1) + exp(-x))


def _erf_small(x: np.ndarray) -> np.ndarray:
    return x + x * _horner(ERF_Q, x * x)


def _erfc_big(a: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        t = F(1) / (F(1) + F(0.5) * a)
        big_f = _horner(ERFC_F, t)
        ah = _float(_bits(a) & _U(0xFFFFF000))
        y = (exp(-(ah * ah)) * exp(-((a - ah) * (a + ah)))) * big_f
    return np.where(a >= F(10.1), F(0), y)


def erf(x) -> np.ndarray:
    x = _f32(x)
    a = _abs(x)
    with np.errstate(all="ignore"):
        mid = _copysign(F(1) - _erfc_big(a), x)
        y = np.where(a >= F(4), _copysign(np.ones_like(x), x), mid)
        y = np.where(a < F(0.84375), _erf_small(x), y)
    return np.where(x != x, x, y)


def erfc(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        big = _erfc_big(_abs(x))
        y = np.where(x > F(0), big, F(2) - big)
        y = np.where((x > F(-0.84375)) & (x < F(0.84375)), F(1) - _erf_small(x), y)
    return np.where(x != x, x, y)


def sqrt(x) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.sqrt(_f32(x))  # correctly rounded, as the C FPU instruction


def rsqrt(x) -> np.ndarray:
    with np.errstate(all="ignore"):
        return F(1) / sqrt(x)


def gelu(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return (F(0.5) * x) * erfc(-(x * SQRT1_2))


def gelu_tanh(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        v = SQRT2_PI * (x + GELU_C * ((x * x) * x))
        return x / (F(1) + exp(F(-2) * v))


def silu(x, alpha=1.0) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return x / (F(1) + exp(-(F(alpha) * x)))


def softplus(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return np.where(x > F(0), x + log1p(exp(-x)), log1p(exp(x)))


def softsign(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return x / (F(1) + _abs(x))


def mish(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return x * tanh(softplus(x))


def elu(x, alpha=1.0) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return np.where(x > F(0), x, F(alpha) * expm1(x))


def selu(x, alpha, gamma) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return F(gamma) * np.where(x > F(0), x, F(alpha) * expm1(x))


def _clip01(v: np.ndarray) -> np.ndarray:
    return np.where(v < F(0), F(0), np.where(v > F(1), F(1), v))


def hard_sigmoid(x, alpha, beta) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return _clip01(x * F(alpha) + F(beta))


def hard_swish(x) -> np.ndarray:
    x = _f32(x)
    with np.errstate(all="ignore"):
        return x * _clip01(x / F(6) + F(0.5))


def power(x, e) -> np.ndarray:
    """x ** e element-wise (broadcasting), gx_powf: see runtime/gx_math.h."""
    x, e = np.broadcast_arrays(_f32(x), _f32(e))
    ae = _abs(e)
    with np.errstate(all="ignore"):
        small = (ae <= F(64)) & (np.trunc(ae) == ae)
        k = np.where(small, ae, F(0)).astype(np.int32)
        r, b = np.ones_like(x), x
        for bit in range(7):
            r = np.where((k >> bit) & 1 == 1, r * b, r)
            b = b * b
        r = np.where(e < F(0), F(1) / r, r)
        y = exp(e * log(_abs(x)))
        odd_int = (ae < F(2.0 ** 24)) & (np.trunc(ae) == ae)
        parity = np.where(odd_int, ae, F(0)).astype(np.int32) & 1
        neg = np.where(ae >= F(2.0 ** 24), y, np.where(~odd_int, NAN, np.where(parity == 1, -y, y)))
        y = np.where(x < F(0), neg, y)
        y = np.where(small, r, y)
        y = np.where((x != x) | (e != e), NAN, y)
        y = np.where(e == F(0.5), sqrt(x), y)
    return np.where(e == F(0), F(1), y)
