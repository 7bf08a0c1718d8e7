"""The device math: runtime/gx_math.h (C, built with gcc) and gxnpuc/devmath.py (numpy) give the
same bits, and both are within the stated error of the true function (float64 / scipy).

Inputs: every fp16 value (what an op reads) plus seeded random float32 bit patterns and
random values in each function's useful range. NaN results must agree in being NaN only
(fp16 storage turns every NaN into one canonical NaN).
"""
from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gxnpuc import devmath as dm
from gxnpuc import numerics

ROOT = Path(__file__).resolve().parent.parent
F16_ALL = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)

UNARY = {
    "exp": dm.exp, "expm1": dm.expm1, "log": dm.log, "log1p": dm.log1p, "tanh": dm.tanh,
    "sigmoid": dm.sigmoid, "erf": dm.erf, "erfc": dm.erfc, "sqrt": dm.sqrt, "rsqrt": dm.rsqrt,
    "gelu": dm.gelu, "gelu_tanh": dm.gelu_tanh, "silu": dm.silu, "softplus": dm.softplus,
    "softsign": dm.softsign, "mish": dm.mish, "elu": lambda x: dm.elu(x, 0.7),
    "selu": lambda x: dm.selu(x, 1.6732632, 1.0507010),
    "hard_sigmoid": lambda x: dm.hard_sigmoid(x, 0.2, 0.5), "hard_swish": dm.hard_swish,
}


def _inputs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 2 ** 32, 60000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([F16_ALL, patterns, rng.uniform(-20, 20, 60000).astype(np.float32),
                           np.float32([0.84375, -0.84375, 4, 9, 10.1, 16, -17.5, 88.7, 89, -110,
                                       2.0 ** -126, 2.0 ** -149, np.inf, -np.inf])])


def _build(tmp_path: Path, *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    exe = tmp_path / "gx_math_driver"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-ffp-contract=off", *flags, f"-I{ROOT / 'runtime'}",
                    str(ROOT / "tests" / "devmath_driver.c"), "-o", str(exe)], check=True)
    return exe


def _c_run(exe: Path, fn: str, *operands: np.ndarray) -> np.ndarray:
    data = np.stack([np.asarray(o, np.float32) for o in operands], axis=-1).tobytes()
    out = subprocess.run([str(exe), fn], input=data, capture_output=True, check=True).stdout
    return np.frombuffer(out, np.float32)


def _same_bits(c: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (c.view(np.uint32) == p.view(np.uint32)) | (np.isnan(c) & np.isnan(p))


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("gxmath"))


@pytest.mark.parametrize("fn", sorted(UNARY))
def test_c_and_numpy_agree_bit_for_bit(driver, fn):
    x = _inputs()
    c, p = _c_run(driver, fn, x), UNARY[fn](x)
    bad = ~_same_bits(c, p)
    assert not bad.any(), f"{fn}: {bad.sum()} differ, e.g. x={x[bad][:3]} C={c[bad][:3]} numpy={p[bad][:3]}"


def test_pow_agrees_bit_for_bit(driver):
    rng = np.random.default_rng(1)
    exps = np.float32([0, 0.5, 2, 3, -1, -2, 1.5, -0.5, 0.3333, 2.5, 64, 65, -7, 1e30, np.nan])
    x = np.concatenate([np.tile(F16_ALL[::7], exps.size), rng.uniform(-50, 50, 50000).astype(np.float32)])
    e = np.concatenate([np.repeat(exps, F16_ALL[::7].size), rng.uniform(-8, 8, 50000).astype(np.float32)])
    c, p = _c_run(driver, "pow", x, e), dm.power(x, e)
    bad = ~_same_bits(c, p)
    assert not bad.any(), f"pow: {bad.sum()} differ, e.g. x={x[bad][:3]} e={e[bad][:3]} C={c[bad][:3]}"


def test_fp16_conversions(driver):
    """gx_f16_to_f32 on every code; gx_f32_to_f16 = numpy's cast (NaN canonical) = round_f16."""
    codes = np.arange(65536, dtype=np.uint32).view(np.float32)
    back = _c_run(driver, "from_f16", codes)
    assert _same_bits(back, F16_ALL).all()
    x = _inputs(2)
    with np.errstate(invalid="ignore"):
        halves = x + np.float32(2.0 ** -25)  # odd and tie cases near every fp16 value
    for v in (x, halves, np.float32([65519.99, 65520, -65520, 2.0 ** -25, 2.0 ** -24 * 1.5, 2.0 ** -14])):
        h = _c_run(driver, "to_f16", v).view(np.uint32)
        with np.errstate(over="ignore"):
            want = v.astype(np.float16).view(np.uint16).astype(np.uint32)
        want = np.where(np.isnan(v), 0x7E00, want)
        assert (h == want).all()
        rounded = numerics.round_f16(v).astype(np.float16).view(np.uint16)
        assert (rounded == want).all()


def test_software_sqrt_is_correctly_rounded(tmp_path):
    """The exact integer sqrt of gx_math.h (used without an FPU instruction) = numpy's sqrt."""
    exe = _build(tmp_path, "-DGX_MATH_SOFT_SQRT")
    x = _inputs(3)
    assert _same_bits(_c_run(exe, "sqrt", x), dm.sqrt(x)).all()  # numpy: IEEE sqrt


# -- accuracy against float64 ------------------------------------------------------------------
def _ulps(y: np.ndarray, ref: np.ndarray, floor: float = 2.0 ** -100) -> float:
    """Max |y - ref| in float32 units in the last place of ref, over |ref| >= floor."""
    ok = np.isfinite(ref) & (np.abs(ref) >= floor) & (np.abs(ref) < 3.4e38)
    spacing = np.spacing(np.abs(ref[ok]).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(y[ok].astype(np.float64) - ref[ok]) / spacing))


def _refs():
    from scipy import special

    c = math.sqrt(2 / math.pi)
    return {  # fn: (float64 reference, range of random inputs, max ulp measured, rounded up)
        "exp": (np.exp, (-87, 88), 1.1), "expm1": (np.expm1, (-20, 20), 1.7),
        "log": (np.log, (1e-30, 1e30), 0.8), "log1p": (np.log1p, (-0.99, 100), 2.3),
        "tanh": (np.tanh, (-10, 10), 2.2), "sigmoid": (special.expit, (-80, 80), 2.4),
        "erf": (special.erf, (-5, 5), 1.7), "erfc": (special.erfc, (-5, 10), 5.2),
        "gelu": (lambda v: v * special.ndtr(v), (-10, 10), 150),
        "gelu_tanh": (lambda v: v * special.expit(2 * c * (v + 0.044715 * v ** 3)), (-10, 10), 180),
        "silu": (lambda v: v * special.expit(v), (-80, 80), 2.3),
        "softplus": (lambda v: np.logaddexp(0, v), (-80, 80), 2.6),
        "mish": (lambda v: v * np.tanh(np.logaddexp(0, v)), (-80, 80), 4.5),
        "rsqrt": (lambda v: 1 / np.sqrt(v), (1e-20, 1e20), 1.5),
    }


@pytest.mark.parametrize("fn", ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "erfc",
                                "gelu", "gelu_tanh", "silu", "softplus", "mish", "rsqrt"])
def test_accuracy_against_float64(fn):
    pytest.importorskip("scipy")
    ref, (lo, hi), bound = _refs()[fn]
    x = np.concatenate([F16_ALL[np.isfinite(F16_ALL)],
                        np.random.default_rng(4).uniform(lo, hi, 200000).astype(np.float32)])
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
        got = UNARY[fn](x)
    err = _ulps(got, want)
    assert err <= bound, f"{fn}: {err:.2f} ulp"
    # what the device stores: the correctly rounded fp16 value for all but a handful of inputs
    finite = np.isfinite(F16_ALL)
    with np.errstate(all="ignore"):
        mine = UNARY[fn](F16_ALL[finite]).astype(np.float16)
        best = ref(F16_ALL[finite].astype(np.float64)).astype(np.float16)
    wrong = int(np.sum((mine != best) & ~(np.isnan(mine) & np.isnan(best))))
    assert wrong <= 10, f"{fn}: {wrong} fp16 results not correctly rounded"


@pytest.mark.parametrize("e, bound", [(3.0, 1.3), (-1.0, 0.5), (1.5, 26), (-0.5, 4.5), (0.3333, 5.5), (2.5, 36)])
def test_pow_accuracy(e, bound):
    x = np.concatenate([F16_ALL[F16_ALL > 0], np.random.default_rng(5).uniform(0.01, 100, 100000).astype(np.float32)])
    with np.errstate(all="ignore"):
        want = x.astype(np.float64) ** np.float64(np.float32(e))
    keep = want < 65504
    assert _ulps(dm.power(x, e)[keep], want[keep]) <= bound
