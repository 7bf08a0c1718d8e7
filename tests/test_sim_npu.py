"""The simulator's npu mode against independent references.

- float IR vs onnxruntime >= 80 dB and npu (nothing compressed) >= 50 dB on every test model;
- single weighted ops: npu == fp16(onnxruntime on fp16-rounded inputs and weights), with a
  compressed weight decoded by the SPEC 5 formula written out here, not by gxnpuc;
- FP16_OUT_OPS dtype, fp16 overflow, resuming a run from a cached env;
- decoding the written file (c_code and raw) simulates bit-identically to the in-memory model.
"""
from __future__ import annotations

import numpy as np
import pytest

from gxnpuc import numerics, sim
from gxnpuc.evaluate import oracle
from gxnpuc.evaluate import snr_db
from npu_util import (cnn2d, compile_onnx, load_kws, mlp, rand_feeds, single_op,
                      two_outputs)
from onnx_util import make_model, run_ort

MODELS = {"cnn2d": (cnn2d, {"fuse_bn": True}), "mlp": (mlp, {}), "two_outputs": (two_outputs, {}),
          "kws": (lambda: load_kws().build_model(), {"fuse_bn": True, "input_ops": {"mfcc": (1, 40, 98)}})}


@pytest.fixture(scope="module", params=sorted(MODELS))
def compiled(request, tmp_path_factory):
    build, kw = MODELS[request.param]
    model, cfg = compile_onnx(build(), str(tmp_path_factory.mktemp(request.param)), **kw)
    feeds = rand_feeds(model, 8, seed=3)
    if request.param == "kws":
        feeds = {"mfcc": load_kws().make_inputs(8)[:, None]}
    return model, cfg, feeds, oracle.run(cfg, model.graph, feeds)


def test_float_ir_matches_onnxruntime_80db(compiled):
    model, cfg, feeds, ref = compiled
    out = sim.run_model_batch(model, feeds, "float")
    for name in model.graph.outputs:
        assert snr_db(ref[name], out[name]) >= 80, name


def test_npu_uncompressed_reaches_fp16_limit_50db(compiled):
    model, cfg, feeds, ref = compiled
    assert not any(numerics.is_compressed(sw) for sw in model.weights.values())
    out = sim.run_model_batch(model, feeds, "npu")
    for name in model.graph.outputs:
        assert out[name].dtype == np.float32
        snr = snr_db(ref[name], out[name])
        assert 50 <= snr < 120, (name, snr)  # below 120: fp16 rounding really happened


# -- single ops against fp16-rounded onnxruntime -------------------------------------------------
def spec5_decode(w: np.ndarray) -> np.ndarray:
    """SPEC 5 per-tensor min/max quantisation, written independently of gxnpuc.compress."""
    lo16 = np.float16(w.min())
    step16 = np.float16((np.float64(w.max()) - np.float64(w.min())) / 255)
    q = np.clip(np.round((w.astype(np.float32) - np.float32(lo16)) / np.float32(step16)), 0, 255)
    return (np.float64(lo16) + q * np.float64(step16)).astype(np.float16)


def f16_ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in fp16 units in the last place (same-sign finite values)."""
    ia = np.asarray(a, np.float16).view(np.int16).astype(np.int32)
    ib = np.asarray(b, np.float16).view(np.int16).astype(np.int32)
    return np.abs(ia - ib)


SINGLE = {
    "conv2d": ("Conv", (1, 4, 9, 9), (6, 4, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "conv1d_depthwise": ("Conv", (1, 6, 30), (6, 1, 5), {"group": 6, "pads": [2, 2]}),
    "matmul": ("MatMul", (1, 40), (40, 24), {}),
}


@pytest.mark.parametrize("compress", [False, True], ids=["fp16", "compressed"])
@pytest.mark.parametrize("case", sorted(SINGLE))
def test_single_op_npu_equals_fp16_reference(case, compress, tmp_path):
    op, x_shape, w_shape, attrs = SINGLE[case]
    rng = np.random.default_rng(7)
    w = (rng.standard_normal(w_shape) * 0.3).astype(np.float32)
    x = (rng.standard_normal(x_shape) * 2).astype(np.float32)
    model, _ = compile_onnx(single_op(op, x_shape, w, **attrs), str(tmp_path),
                            compress=compress, conv2d_compress=compress)
    assert numerics.is_compressed(model.weights["w"]) == compress
    w_dev = spec5_decode(w) if compress else w.astype(np.float16)
    ref_model = single_op(op, x_shape, w_dev.astype(np.float32), **attrs)
    want = run_ort(ref_model, {"x": x.astype(np.float16).astype(np.float32)})["y"].astype(np.float16)
    got = sim.run_model(model, {"x": x}, "npu")["y"]
    assert got.dtype == np.float32 and got.shape == want.shape
    ulps = f16_ulps(got.astype(np.float16), want)
    assert ulps.max() <= 1 and np.mean(ulps == 0) >= 0.98, (ulps.max(), np.mean(ulps == 0))


def test_fp16_out_ops_and_overflow(tmp_path):
    from onnx import helper

    nodes = [helper.make_node("Mul", ["x", "k"], ["big"]), helper.make_node("Relu", ["x"], ["small"])]
    onnx_model = make_model(nodes, [("x", [1, 4])], [("big", [1, 4]), ("small", [1, 4])],
                            {"k": np.array([1000.0], np.float32)})
    model, _ = compile_onnx(onnx_model, str(tmp_path), fp16_out_ops=("small",))
    x = np.array([[0.1, -3.0, 100.0, 1 / 3]], np.float32)
    out = sim.run_model(model, {"x": x}, "npu")
    assert out["small"].dtype == np.float16 and out["big"].dtype == np.float32
    np.testing.assert_array_equal(out["small"], np.maximum(x, 0).astype(np.float16))
    assert np.isinf(out["big"][0, 2])  # 1e5 does not fit fp16
    assert out["big"][0, 0] == np.float32(np.float16(np.float16(0.1) * np.float32(1000)))
    flt = sim.run_model(model, {"x": x}, "float")
    np.testing.assert_allclose(flt["big"], x * 1000, rtol=1e-6)


def test_resume_from_cached_env_equals_full_run(tmp_path):
    model, _ = compile_onnx(mlp(), str(tmp_path), compress=True)
    feeds = {k: v[0] for k, v in rand_feeds(model, 1).items()}
    base = sim.model_consts(model, "npu")
    env = sim.run(model.graph, feeds, base, cast=numerics.round_f16, keep=True)
    swapped = {**base, "fc2.w": numerics.round_f16(base["fc2.w"] * 1.5)}
    start = next(k for k, n in enumerate(model.graph.nodes) if "fc2.w" in n.inputs)
    assert start > 0
    full = sim.run(model.graph, feeds, swapped, cast=numerics.round_f16)
    resumed = sim.run(model.graph, feeds, swapped, cast=numerics.round_f16, start=start, env=env)
    unchanged = sim.run(model.graph, feeds, base, cast=numerics.round_f16)
    np.testing.assert_array_equal(full["logits"], resumed["logits"])
    assert not np.array_equal(full["logits"], unchanged["logits"])


def test_unknown_mode_is_a_user_error(tmp_path):
    from gxnpuc.errors import GxnpucError

    model, _ = compile_onnx(mlp(), str(tmp_path))
    with pytest.raises(GxnpucError, match="unknown mode"):
        sim.run_model(model, rand_feeds(model, 1), "int8")


# -- from the written file ---------------------------------------------------------------------
@pytest.mark.parametrize("out_type", ["c_code", "raw"])
def test_decoded_file_simulates_bit_identically(out_type, tmp_path):
    from gxnpuc import backend

    model, cfg = compile_onnx(cnn2d(), str(tmp_path), fuse_bn=True, compress=True,
                              conv2d_compress=True, fp16_out_ops=("prob",), output_type=out_type)
    path = str(tmp_path / ("model.h" if out_type == "c_code" else "model.npu"))
    backend.write(model, path, out_type)
    decoded = backend.read(path)
    feeds = rand_feeds(model, 4, seed=11)
    for i in range(4):
        one = sim.sample(model.graph, feeds, i)
        want = sim.run_model(model, one, "npu")
        got = sim.run_file(path, one, "npu")
        again = sim.run_model(decoded, one, "npu")
        for name in model.graph.outputs:
            assert got[name].dtype == want[name].dtype == again[name].dtype
            assert got[name].tobytes() == want[name].tobytes() == again[name].tobytes(), name
