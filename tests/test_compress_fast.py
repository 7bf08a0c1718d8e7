"""The fast compression numerics give bit for bit what the plain code they replaced gave.

Oracle: tests/compress_reference.py, the previous implementation verbatim (one mse_range /
np.quantile call per channel, np.rint quantisation, whole-array min/max, fp16 tables). Every
comparison is on bit patterns, so a -0.0 where +0.0 was (which changes lo16 in the output
file) fails. The data plant what breaks fast paths: exact .5 ties, both signed zeros at the
min / at a percentile rank, constant channels, tails a strided sample misses.
"""
from __future__ import annotations

import numpy as np
import pytest

import compress_reference as ref
from gxnpuc import compress as C
from gxnpuc import ranges as R

LAYOUTS = [(60, 7, 1), (1, 9, 40), (5, 6, 7), (300, 1, 1)]  # [pre, C, post]: fc [K, N], OIHW, general, per tensor
KINDS = ["uniform", "normal", "heavy", "ties", "sparse", "const"]


def bits(a) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def assert_same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    np.testing.assert_array_equal(bits(a), bits(b))


def data(kind: str, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if kind == "uniform":
        x = rng.uniform(-0.04, 0.03, n)
    elif kind == "normal":
        x = rng.standard_normal(n) * 0.1
    elif kind == "heavy":
        x = rng.standard_t(1.5, n)
    elif kind == "ties":
        x = rng.integers(-3, 4, n) * 0.25
    elif kind == "sparse":  # mostly zeros of both signs
        x = rng.standard_normal(n) * (rng.random(n) < 0.1)
        x[rng.random(n) < 0.5] *= -1
    else:  # constant channels among ordinary ones
        x = rng.standard_normal(shape)
        x[:, ::2, :] = 0.5
        x = x.reshape(-1)
    return x.reshape(shape).astype(np.float32)


# -- mse ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", LAYOUTS[:3])
def test_mse_per_channel_equals_the_per_channel_loop(kind, shape, monkeypatch):
    monkeypatch.setattr(R, "CHANNEL_BLOCK", 4)  # several grid blocks
    monkeypatch.setattr(R, "HIST_VALUES", 100)  # several histogram blocks
    w3 = data(kind, shape)
    for got, want in zip(R.auto_range(w3, "mse", True), ref.auto_range(w3, "mse", True)):
        assert_same(got, want)


@pytest.mark.parametrize("shape", LAYOUTS[:3])
def test_mse_per_channel_subsampled_channels(shape):
    w3 = data("normal", shape, seed=3)
    mn, mx = ref.min_max(w3, True)
    got = R._mse_channels(w3, mn, mx, max_samples=11)
    for g, want in zip(got, ref.auto_range(w3, "mse", True, max_samples=11)):
        assert_same(g, want)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n, max_samples", [(5000, 1 << 20), (5000, 700), (3, 1 << 20)])
def test_mse_range_per_tensor_and_float64_input(kind, n, max_samples):
    x = data(kind, (n, 1, 1), seed=n).reshape(-1)
    assert_same(R.mse_range(x, max_samples=max_samples), ref.mse_range(x, max_samples=max_samples))
    x64 = x.astype(np.float64) * 1.0001  # eval_advice passes float64 weights
    assert_same(R.mse_range(x64, bins=128), ref.mse_range(x64, bins=128))


def test_mse_range_of_a_subnormal_range_keeps_min_max():
    x = np.array([0, 1e-39, 5e-40, 2e-40], np.float32)  # the one-channel search crashed here
    assert R.mse_range(x, bins=128) == (float(x.min()), float(x.max()))


# -- percentile --------------------------------------------------------------------------------
def planted_zeros(n: int, seed: int) -> np.ndarray:
    """A tensor whose low percentile ranks fall on zeros of both signs (seeds 1 and 7 at
    n = 400000 give -0.0 in np.quantile and +0.0 from a partition of the tail only)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1, n).astype(np.float32)
    nz = rng.integers(50, n // 50) if n > 5000 else n // 10
    x[:nz] = 0.0
    x[:nz][rng.random(nz) < rng.random()] = -0.0
    x[:rng.integers(0, 10)] = -1.0
    return rng.permutation(x)


@pytest.mark.parametrize("n", [1 << 16, 100_003, 400_000])
@pytest.mark.parametrize("kind", ["uniform", "heavy", "ties", "sparse"])
def test_tail_quantiles_equal_np_quantile(n, kind):
    x = data(kind, (n,), seed=n)
    assert_same(np.array(R.tail_quantiles(x)), np.quantile(x, R.percentile_q()))


@pytest.mark.parametrize("seed", [1, 7, 21, 25])
def test_tail_quantiles_on_signed_zeros(seed):
    x = planted_zeros(400_000, seed)
    assert_same(np.array(R.tail_quantiles(x)), np.quantile(x, R.percentile_q()))


def test_tail_quantiles_when_the_sample_misses_the_tails():
    n = 1 << 20
    x = np.ones(n, np.float32)
    stride = n // R.TAIL_MIN_N
    x[::stride] = -np.arange(n // stride, dtype=np.float32)  # the sample holds all the lowest values,
    x[1::stride] = np.arange(n // stride, dtype=np.float32) + 2  # so it overestimates the tail
    prev = np.floor((n - 1) * np.array(R.percentile_q())).astype(int)
    assert R._order_stats(x, np.array([prev[0], prev[0] + 1, prev[1], prev[1] + 1])) is None  # the guess fails
    assert_same(np.array(R.tail_quantiles(x)), np.quantile(x, R.percentile_q()))  # ... and falls back


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", LAYOUTS)
def test_percentile_ranges_equal_the_per_channel_loop(kind, shape):
    w3 = data(kind, shape, seed=5)
    per_channel = shape[1] > 1
    for got, want in zip(R.auto_range(w3, "percentile", per_channel), ref.auto_range(w3, "percentile", per_channel)):
        assert_same(got, want)
    zeros = planted_zeros(int(np.prod(shape)), 9).reshape(shape)
    for got, want in zip(R.auto_range(zeros, "percentile", per_channel),
                         ref.auto_range(zeros, "percentile", per_channel)):
        assert_same(got, want)


# -- min / max -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", LAYOUTS + [(1, 3, 200_000), (400_000, 1, 1)])
def test_min_max_equals_numpy_incl_signed_zeros(kind, shape):
    w3 = data(kind, shape, seed=7)
    for per_channel in (False, True):
        for got, want in zip(R.min_max(w3, per_channel), ref.min_max(w3, per_channel)):
            assert_same(got, want)
    w3 = np.abs(w3)  # min is +0.0 or -0.0 depending on which zero numpy meets first
    w3.reshape(-1)[::3] = -0.0
    for per_channel in (False, True):
        for got, want in zip(R.min_max(w3, per_channel), ref.min_max(w3, per_channel)):
            assert_same(got, want)


def test_min_max_keeps_numpys_choice_between_signed_zeros():
    x = np.linspace(0.5, 1.5, 300_000, dtype=np.float32)
    x[[31796, 295457]], x[[101033, 283514]] = 0.0, -0.0
    w3 = x.reshape(-1, 1, 1)
    assert bits(R._blockwise(w3, False)[0]) != bits(x.min())  # block order picks the other zero ...
    assert_same(R.min_max(w3, False)[0], np.array([x.min()], np.float64))  # ... so it falls back


def test_min_max_propagates_nan():
    w = np.zeros((1, 1, 300_000), np.float32)
    w[0, 0, 200_000] = np.nan
    assert np.isnan(R.min_max(w, False)[0][0]) and np.isnan(R.min_max(w, True)[1][0])


# -- quantize, tables, decode ----------------------------------------------------------------------
def tie_weights(lo: float, hi: float, n: int, seed: int) -> np.ndarray:
    """Values at exact .5 code ties (where rounding must go to even), plus outside values."""
    lo16, st16 = (float(v[0]) for v in ref.fp16_params(lo, hi))
    rng = np.random.default_rng(seed)
    k = rng.integers(-3, 258, n)
    return (np.float32(lo16) + (k + 0.5).astype(np.float32) * np.float32(st16)).astype(np.float32)


@pytest.mark.parametrize("shape, axis", [((300, 7), None), ((300, 7), 1), ((7, 3, 3, 20), 0), ((4, 6, 5), 1),
                                         ((3, 3, 4, 2), 2), ((200_001,), None)])
def test_quantize_equals_rint_quantize(shape, axis):
    rng = np.random.default_rng(11)
    w = rng.standard_normal(shape).astype(np.float32)
    c = 1 if axis is None else int(shape[axis])
    lo = rng.uniform(-2, -0.5, c)
    hi = lo + rng.uniform(0.5, 3, c)
    if c > 2:
        hi[1] = lo[1]  # a flat channel: step 0
    got, want = C.quantize(w, lo, hi, axis), ref.quantize(w, lo, hi, axis)
    for g, r in zip(got, want):
        assert_same(g, r)
    ties = tie_weights(-1.3, 2.1, int(np.prod(shape)), 12).reshape(shape)
    assert_same(C.quantize(ties, -1.3, 2.1)[0], ref.quantize(ties, -1.3, 2.1)[0])


def random_f16(rng, n: int) -> np.ndarray:
    return rng.integers(0, 1 << 16, n).astype(np.uint16).view(np.float16)


def test_exact_table_rounds_to_zero_and_inf_where_fp16_does():
    rng = np.random.default_rng(13)
    lo16, step16 = random_f16(rng, 20000), np.abs(random_f16(rng, 20000))
    ok = np.isfinite(lo16) & np.isfinite(step16)
    table, exact = ref.decode_table(lo16[ok], step16[ok]), C.exact_table(lo16[ok], step16[ok])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(np.abs(exact) < 65520, np.isfinite(table))
    np.testing.assert_array_equal(exact == 0, table == 0)


def test_table_facts_per_channel():
    rng = np.random.default_rng(14)
    step16 = np.abs(random_f16(rng, 4000))
    k = rng.integers(0, 256, step16.size)
    with np.errstate(over="ignore", invalid="ignore"):
        lo16 = (-k * step16.astype(np.float64)).astype(np.float16)
        exact = np.isfinite(step16) & (lo16.astype(np.float64) == -k * step16.astype(np.float64))
    lo16, step16 = lo16[exact][:300], step16[exact][:300]  # every channel has a zero code
    table = ref.decode_table(lo16, step16)
    finite = np.isfinite(table).all(axis=1)
    assert finite.sum() > 100
    got = C.table_facts(lo16[finite], step16[finite])
    assert got[0] and np.array_equal(got[1], ref.zero_codes(table[finite]))
    for lo, step in zip(random_f16(rng, 300), np.abs(random_f16(rng, 300))):
        with np.errstate(all="ignore"):
            one = ref.decode_table([lo], [step])
        finite, zero = C.table_facts([lo], [step])
        assert finite == bool(np.isfinite(one).all())
        want = ref.zero_codes(one)
        assert (zero is None) == (want is None) and (zero is None or np.array_equal(zero, want))


@pytest.mark.parametrize("shape, axis", [((30, 7), None), ((30, 7), 1), ((7, 3, 3, 20), 0), ((4, 6, 5), 1)])
def test_dequantize_equals_the_table_lookup(shape, axis):
    w = data("normal", shape, seed=17)
    sw = C.compress_weight("w", w, "conv", axis, 1 if axis is None else shape[axis])
    want = ref.dequantize(sw.codes, sw.lo_f16, sw.step_f16, sw.axis)
    assert_same(sw.decode(), want)
    assert_same(sw.decode(np.float32), want.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_store_plain_without_clip_equals_clip_then_cast(dtype):
    vals = np.array([65504, 65519.99, -65504, 1e-8, -0.0, 3.3, -7e-6, 6e-8, 3e-8], np.float64).astype(dtype)
    for arr in (vals, vals[:2], vals[2:], np.array(vals[3]), vals.reshape(3, 3).T):
        assert_same(C.store_plain("w", arr, "param").data_f16, ref.store_plain_f16(arr))
    big = np.array([1e5, -70000.0, 65520.0], dtype) if dtype != np.float16 else np.array([np.float16(65504)])
    sw, peak = C._store_plain("w", big, "param")
    assert_same(sw.data_f16, ref.store_plain_f16(big))
    assert peak == float(np.max(np.abs(big)))


@pytest.mark.parametrize("offset, width", [(0.0, 1.0), (1000.3, 0.1), (-3.7, 1e-3), (60000.0, 5000.0), (0.0, 1e-6)])
@pytest.mark.parametrize("axis", [None, 1])
def test_min_max_quantize_skips_the_clip_only_where_rounding_stays_inside(offset, width, axis):
    """With lo/hi the weight's own min/max, lo16 / step16 rounding can still put values half a
    step or more outside 0..255 (a narrow range far from 0); those must saturate as before."""
    rng = np.random.default_rng(19)
    w = (offset + width * rng.random((64, 5))).astype(np.float32)
    lo, hi = ref.min_max(w.reshape(channel3(w.shape, axis)), axis is not None)
    for g, want in zip(C.quantize(w, lo, hi, axis, inside=True), ref.quantize(w, lo, hi, axis)):
        assert_same(g, want)
    sw = C.compress_weight("w", w, "fc", axis, 1 if axis is None else w.shape[axis])
    assert_same(sw.codes, ref.quantize(w, lo, hi, axis)[0])


def channel3(shape, axis):
    return ref.channel_view(shape, axis, 1 if axis is None else shape[axis])
