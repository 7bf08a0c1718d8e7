"""SPEC 5 weight compression, checked against a straightforward float64 re-implementation.

The oracle below is written from the SPEC text alone (python floats, numpy float16 scalars),
not from gxnpuc.compress; property tests run both on random weights and ranges.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import helper

from gxnpuc import compress as C
from gxnpuc.config import Config, names
from gxnpuc.errors import ModelError
from onnx_util import make_model, rand, to_ir

settings.register_profile("gxnpuc", max_examples=60, deadline=None)
settings.load_profile("gxnpuc")


# -- the independent oracle -------------------------------------------------------------------
def spec_params(lo: float, hi: float) -> tuple[float, float]:
    return float(np.float16(lo)), float(np.float16((hi - lo) / 255.0))


def spec_exact_x(w: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lo16, step16 = spec_params(lo, hi)
    return (w.astype(np.float64) - lo16) / step16


def spec_codes(w: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lo16, step16 = spec_params(lo, hi)
    if step16 == 0:
        return np.zeros(w.shape, np.int64)
    return np.clip(np.round(spec_exact_x(w, lo, hi)), 0, 255).astype(np.int64)


def spec_decode(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lo16, step16 = spec_params(lo, hi)
    return np.array([np.float16(lo16 + int(k) * step16) for k in np.ravel(q)], np.float16).reshape(np.shape(q))


def fp16_half_ulp(x: float) -> float:
    x = max(abs(x), 2.0 ** -14)
    return 2.0 ** (math.floor(math.log2(x)) - 11)


def spec_bound(lo: float, hi: float, w: np.ndarray) -> np.ndarray:
    """Max |w' - w| for w in [lo, hi]: half a step, the fp16 rounding of lo and of 255 steps,
    and half an fp16 ulp of the decoded value."""
    lo16, step16 = spec_params(lo, hi)
    base = step16 / 2 + abs(lo16 - lo) + 255 * abs(step16 - (hi - lo) / 255)
    top = np.maximum(np.abs(w), max(abs(lo16), abs(lo16 + 255 * step16)))
    return base + np.vectorize(fp16_half_ulp)(top) + 1e-9


def assert_codes_match(codes, w, lo, hi):
    """Equal to the oracle except at exact .5 ties, where float32 vs float64 may pick either side."""
    want = spec_codes(w, lo, hi)
    diff = codes.astype(np.int64) != want
    if diff.any():
        x = spec_exact_x(w, lo, hi)[diff]
        assert np.all(np.abs(np.abs(x - np.floor(x)) - 0.5) < 1e-4), (w[diff], codes[diff], want[diff])
        assert np.all(np.abs(codes[diff].astype(np.int64) - want[diff]) == 1)


# -- strategies -------------------------------------------------------------------------------
finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
weights = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12), elements=finite)
scales = st.sampled_from([1e-6, 1e-3, 0.05, 1.0, 30.0, 1e3])


@st.composite
def scaled_weights(draw):
    w = draw(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=10),
                        elements=st.floats(-1, 1, width=32)))
    return (w * np.float32(draw(scales)) + np.float32(draw(st.floats(-2, 2, width=32)))).astype(np.float32)


# -- SPEC 5 properties ------------------------------------------------------------------------
@given(scaled_weights())
def test_minmax_codes_decode_and_bound(w):
    sw = C.compress_weight("w", w, "fc")
    lo, hi = float(w.min()), float(w.max())
    assert sw.compressed and sw.codes.dtype == np.uint8 and sw.codes.shape == w.shape
    assert_codes_match(sw.codes, w, lo, hi)
    dec = sw.decode()
    assert dec.dtype == np.float16 and dec.shape == w.shape
    np.testing.assert_array_equal(dec, spec_decode(sw.codes, lo, hi))  # bit-exact decoding
    err = np.abs(dec.astype(np.float64) - w)
    assert np.all(err <= spec_bound(lo, hi, w))


@given(weights, st.floats(-1e3, 1e3), st.floats(0, 1e3))
def test_weight_min_max_saturates(w, lo, width):
    hi = lo + width
    sw = C.compress_weight("w", w, "conv", clip=(lo, hi))
    assert sw.range_source == "weight_min_max" and sw.clip == (lo, hi)
    assert_codes_match(sw.codes, w, lo, hi)
    table = spec_decode(np.arange(256), lo, hi)
    lo16, step16 = spec_params(lo, hi)
    dec = sw.decode().astype(np.float64)
    assert np.all(sw.codes[w < lo16 - step16 / 2] == 0)
    assert np.all(sw.codes[w > lo16 + 255.5 * step16] == (255 if step16 else 0))
    assert np.all((dec >= table.min()) & (dec <= table.max()))
    clamped = np.clip(w.astype(np.float64), lo, hi)  # outside values act as the range's ends
    assert np.all(np.abs(dec - clamped) <= spec_bound(lo, hi, clamped))


@given(st.floats(-6e4, 6e4, width=32), hnp.array_shapes(max_dims=3, max_side=5))
def test_constant_weight_decodes_exactly(value, shape):
    w = np.full(shape, value, np.float32)
    sw = C.compress_weight("c", w, "fc")
    assert float(sw.step_f16[0]) == 0.0
    np.testing.assert_array_equal(sw.decode(), np.full(shape, np.float16(value)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("family", ["fc", "bias"])
def test_nan_inf_rejected_naming_the_weight(bad, family):
    w = rand((4, 3))
    w[2, 1] = bad
    with pytest.raises(ModelError, match="'dense/kernel:0'.*NaN or Inf"):
        if family == "fc":
            C.compress_weight("dense/kernel:0", w, family)
        else:
            C.store_plain("dense/kernel:0", w, family)


def test_lo16_above_lo_still_saturates():
    a = np.float16(0.3)
    lo = (float(a) + float(np.nextafter(a, np.float16(1)))) / 2 + 1e-6  # rounds up to the next fp16
    assert float(np.float16(lo)) > lo
    w = np.array([lo - 1.0, lo, lo + 0.5, lo + 1.0, lo + 2.0], np.float32)
    sw = C.compress_weight("w", w, "fc", clip=(lo, lo + 1.0))
    assert sw.codes[0] == 0 and sw.codes[1] == 0 and sw.codes[-1] == 255
    assert_codes_match(sw.codes, w, lo, lo + 1.0)


@given(st.data())
def test_per_channel_matches_oracle_per_slice(data):
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=4, max_side=6))
    axis = data.draw(st.integers(0, len(shape) - 1))
    w = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-50, 50, width=32)))
    sw = C.compress_weight("w", w, "conv", axis=axis, channels=shape[axis])
    assert sw.lo_f16.shape == (shape[axis],) and sw.axis == axis
    dec = sw.decode()
    for k in range(shape[axis]):
        sl = np.take(w, k, axis=axis)
        lo, hi = float(sl.min()), float(sl.max())
        assert_codes_match(np.take(sw.codes, k, axis=axis), sl, lo, hi)
        np.testing.assert_array_equal(np.take(dec, k, axis=axis), spec_decode(np.take(sw.codes, k, axis=axis), lo, hi))


def test_per_channel_hwim_uses_flattened_i_times_m():
    w = rand((3, 3, 4, 2), seed=5)  # TF depthwise: out channel i*M + m
    node = SimpleNamespace(attrs={"w_format": "HWIM"})
    axis, c = C.channel_axis("conv", node, w.shape)
    assert (axis, c) == (2, 8)
    sw = C.compress_weight("dw", w, "conv", axis=axis, channels=c)
    flat = w.reshape(9, 8)
    for ch in range(8):
        lo, hi = float(flat[:, ch].min()), float(flat[:, ch].max())
        np.testing.assert_array_equal(sw.decode().reshape(9, 8)[:, ch],
                                      spec_decode(sw.codes.reshape(9, 8)[:, ch], lo, hi))


@pytest.mark.parametrize("family,attrs,shape,want", [
    ("conv", {"w_format": "OIHW"}, (8, 3, 3, 3), (0, 8)), ("conv", {"w_format": "HWIO"}, (3, 3, 4, 6), (3, 6)),
    ("conv", {"w_format": "OIW"}, (5, 2, 3), (0, 5)), ("conv", {"w_format": "WIO"}, (3, 2, 7), (2, 7)),
    ("fc", {"transpose_w": True}, (10, 4), (0, 10)), ("fc", {}, (4, 10), (1, 10))])
def test_channel_axis(family, attrs, shape, want):
    assert C.channel_axis(family, SimpleNamespace(attrs=attrs), shape) == want


# -- zero-skip bitmap ---------------------------------------------------------------------------
@given(st.data())
def test_bitmap_round_trip(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=9))
    codes = data.draw(hnp.arrays(np.uint8, shape, elements=st.sampled_from([0, 7, 128, 255])))
    axis = data.draw(st.sampled_from([None, 0, len(shape) - 1]))
    c = 1 if axis is None else shape[axis]
    zero = data.draw(hnp.arrays(np.uint8, (c,), elements=st.sampled_from([7, 128])))
    bitmap, kept = C.bitmap_pack(codes, zero, axis)
    zero_full = np.ones(shape, np.uint8) * (zero[0] if axis is None else
                                            np.expand_dims(zero, [d for d in range(len(shape)) if d != axis]))
    assert len(bitmap) == -(-codes.size // 8) and len(kept) == int(np.count_nonzero(codes != zero_full))
    np.testing.assert_array_equal(C.bitmap_unpack(bitmap, kept, shape, zero, axis), codes)


def test_bitmap_chosen_only_where_smaller_and_zeros_stay_zero():
    rng = np.random.default_rng(3)
    w = rng.uniform(-1.28, 1.27, (64, 48)).astype(np.float32)
    sparse = w.copy()
    sparse[rng.random(w.shape) < 0.7] = 0
    sw = C.compress_weight("sparse", sparse, "fc", clip=(-1.28, 1.27))  # 128 * step16 == -lo16 exactly
    assert sw.packing == "bitmap" and sw.nnz == int(np.count_nonzero(sw.decode()))
    assert sw.nbytes_stored == 4 + -(-sparse.size // 8) + sw.nnz < 4 + sparse.size
    assert np.all(sw.decode()[sparse == 0] == 0)
    dense = C.compress_weight("dense", w, "fc", clip=(-1.28, 1.27))
    assert dense.packing == "dense" and dense.nbytes_stored == 4 + w.size


# -- automatic ranges ---------------------------------------------------------------------------
def _mse(sw, w):
    return float(np.mean((sw.decode().astype(np.float64) - w) ** 2))


def test_mse_clip_near_brute_force_optimum_on_heavy_tail():
    w = (np.random.default_rng(0).standard_t(2, (128, 128)) * 0.05).astype(np.float32)
    plain, mse = C.compress_weight("w", w, "fc"), C.compress_weight("w", w, "fc", method="mse")
    assert mse.range_source == "mse" and w.min() <= mse.clip[0] < mse.clip[1] <= w.max()
    grid = [(-a, b) for a in np.geomspace(0.05, -w.min(), 15) for b in np.geomspace(0.05, w.max(), 15)]
    best = min(_mse(C.compress_weight("w", w, "fc", clip=r), w) for r in grid)
    assert _mse(mse, w) < _mse(plain, w) and _mse(mse, w) <= 1.05 * best


def test_percentile_clip_per_channel_keeps_99_99_percent():
    w = rand((8, 2000), seed=2)
    sw = C.compress_weight("w", w, "fc", axis=0, channels=8, method="percentile")
    lo, hi = np.percentile(w, 0.005, axis=1), np.percentile(w, 99.995, axis=1)
    np.testing.assert_array_equal(sw.lo_f16, lo.astype(np.float16))
    np.testing.assert_array_equal(sw.step_f16, ((hi - lo) / 255).astype(np.float16))
    assert np.all(lo > w.min(axis=1)) and np.all(hi < w.max(axis=1))


# -- whole graphs ---------------------------------------------------------------------------------
def _graph():
    nodes = [helper.make_node("Conv", ["x", "conv1/w:0", "conv1.b"], ["c"], pads=[1, 1], name="conv1"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc::w", "fc.b"], ["y"], transB=1, name="fc/Gemm")]
    inits = {"conv1/w:0": rand((4, 2, 3), 1), "conv1.b": rand((4,), 2), "fc::w": rand((5, 24), 3),
             "fc.b": rand((5,), 4)}
    return to_ir(make_model(nodes, [("x", [1, 2, 6])], [("y", [1, 5])], inits))


def _compressed(cfg) -> set[str]:
    g = _graph()
    return {n for n, sw in C.compress_graph(g, names.resolve(cfg, g)).items() if sw.compressed}


def test_flags_and_exclusions_by_weight_or_node_name():
    assert _compressed(Config()) == set()
    assert _compressed(Config(compress=True)) == {"fc::w"}
    assert _compressed(Config(conv2d_compress=True)) == {"conv1/w:0"}
    both = dict(compress=True, conv2d_compress=True)
    assert _compressed(Config(**both)) == {"fc::w", "conv1/w:0"}
    assert _compressed(Config(**both, exclude_compress_ops=("fc::w",))) == {"conv1/w:0"}
    assert _compressed(Config(**both, exclude_compress_ops=("conv1",))) == {"fc::w"}
    assert _compressed(Config(**both, exclude_conv2d_compress_ops=("conv1/w:0",))) == {"fc::w"}
    assert _compressed(Config(**both, exclude_conv2d_compress_ops=("fc/Gemm",))) == {"fc::w", "conv1/w:0"}


def test_graph_stores_biases_fp16_and_applies_ranges_by_node_name():
    cfg = Config(compress=True, conv2d_compress=True, weight_min_max={"fc/Gemm": (-0.5, 0.5)},
                 compress_per_channel=True)
    g = _graph()
    ws = C.compress_graph(g, names.resolve(cfg, g))
    assert ws["conv1.b"].packing == "fp16" and ws["conv1.b"].family == "bias"
    assert ws["fc::w"].clip == (-0.5, 0.5) and ws["fc::w"].axis == 0  # Gemm transB: [N, K]
    assert ws["conv1/w:0"].axis == 0 and ws["conv1/w:0"].channels == 4


def test_graph_rejects_nan_weight():
    g = _graph()
    data = g.tensors["fc::w"].data.copy()
    data[0, 0] = np.nan
    g.tensors["fc::w"].data = data
    with pytest.raises(ModelError, match="fc::w"):
        C.compress_graph(g, Config())


def test_integer_constants_stored_as_int32():
    sw = C.store_plain("idx", np.array([1, 2, 3], np.int64), "param")
    assert sw.packing == "int32" and sw.decode().dtype == np.int32 and sw.nbytes_stored == 12
