"""Batched simulation (gxnpuc/batching.py; sim.run_batch, run_samples, run_model_batch) gives
the same bits as one run per sample, in float and npu mode, on models that exercise every
batching rule (ONNX test models, the bundled example, an op zoo, Keras models in TensorFlow
layout); graphs that cannot run batched fall back to one run per sample. Also the speed-ups
batching relies on: the fast fp16 rounding (against numpy's own cast), the skipped no-op
roundings, and decoding a model's constants once. The per-sample path itself is checked
against onnxruntime in tests/test_sim_npu.py; the new conv kernels are checked here too.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
from onnx import helper

from gxnpuc import batching, numerics, sim
from gxnpuc import evaluate as ev
from gxnpuc.config import Config
from gxnpuc.ir import Node
from gxnpuc.ops import activation
from npu_util import cnn2d, compile_cfg, compile_onnx, load_kws, mlp, rand_feeds, two_outputs
from onnx_util import make_model, run_ort, to_ir

MODES = ("float", "npu")


def op_zoo(seed: int = 0):
    """Every batching rule in one ONNX graph: grouped, strided depthwise (multiplier 2) and
    dilated conv, PRelu, broadcast Mul/Add, BatchNorm, Pad, AveragePool (ceil), Slice,
    Concat, Resize, MaxPool, Reshape, MatMul on a rank-3 input (fc), Softmax, Transpose,
    run-time MatMul, Split, ReduceMean over all axes (keepdims), ReduceMax, Gemm to one
    value per sample, Sigmoid."""
    rng = np.random.default_rng(seed)

    def w(*s):
        return (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 1)).astype(np.float32)

    def i64(*v):
        return np.array(v, np.int64)
    init = {"g.w": w(8, 2, 3, 3), "g.b": w(8), "dw.w": w(16, 1, 3, 3), "slope": np.abs(w(16, 1, 1)) * 0.2,
            "d.w": w(8, 16, 3, 3), "bn.s": 1 + 0.1 * w(8), "bn.b": w(8), "bn.m": w(8), "bn.v": 0.5 + np.abs(w(8)),
            "pads": i64(0, 0, 1, 1, 0, 0, 1, 1), "st": i64(0), "en": i64(2), "ax": i64(2),
            "split": i64(6, 10), "scales": np.array([1, 1, 2, 2], np.float32), "shape3": i64(1, 16, 6),
            "fc.w": w(6, 5), "mul.c": w(1, 16, 1, 1), "add.c": w(5), "h.w": w(1, 16), "h.b": w(1)}
    n = helper.make_node
    nodes = [n("Conv", ["x", "g.w", "g.b"], ["g"], group=2, pads=[1, 1, 1, 1]),
             n("Conv", ["g", "dw.w"], ["dw"], group=8, strides=[2, 2], pads=[1, 1, 1, 1]),
             n("PRelu", ["dw", "slope"], ["pr"]),
             n("Mul", ["pr", "mul.c"], ["mu"]),
             n("Conv", ["mu", "d.w"], ["d"], dilations=[2, 2], pads=[2, 2, 2, 2]),
             n("BatchNormalization", ["d", "bn.s", "bn.b", "bn.m", "bn.v"], ["bn"]),
             n("LeakyRelu", ["bn"], ["lr"], alpha=0.1),
             n("Pad", ["lr", "pads"], ["pad"]),
             n("AveragePool", ["pad"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             n("Slice", ["ap", "st", "en", "ax"], ["sl"]),
             n("Concat", ["sl", "sl"], ["cat"], axis=1),
             n("Resize", ["cat", "", "scales"], ["up"], mode="nearest"),
             n("MaxPool", ["up"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Reshape", ["mp", "shape3"], ["r3"]),
             n("MatMul", ["r3", "fc.w"], ["fc"]),
             n("Add", ["fc", "add.c"], ["fa"]),
             n("Softmax", ["fa"], ["sm"], axis=-1),
             n("Transpose", ["r3"], ["r3t"], perm=[0, 2, 1]),
             n("MatMul", ["r3", "r3t"], ["att"]),
             n("Split", ["att", "split"], ["s1", "s2"], axis=2),
             n("ReduceMean", ["s2"], ["allmean"], keepdims=1),
             n("ReduceMax", ["mp"], ["gm"], axes=[2, 3], keepdims=0),
             n("Gemm", ["gm", "h.w", "h.b"], ["h"], transB=1),
             n("Sigmoid", ["h"], ["prob"])]
    outs = [("sm", [1, 16, 5]), ("s1", [1, 16, 6]), ("allmean", [1, 1, 1]), ("prob", [1, 1])]
    return make_model(nodes, [("x", [1, 4, 8, 8])], outs, init, opset=17)


MODELS = {"cnn2d": (cnn2d, {"fuse_bn": True}), "mlp": (mlp, {"compress": True}),
          "two_outputs": (two_outputs, {"compress": True, "conv2d_compress": True}),
          "op_zoo": (op_zoo, {"compress": True, "conv2d_compress": True}),
          "kws_example": (lambda: load_kws().build_model(),
                          {"fuse_bn": True, "compress": True, "conv2d_compress": True,
                           "input_ops": {"mfcc": (1, 40, 98)}})}


@pytest.fixture(scope="module", params=sorted(MODELS))
def compiled(request, tmp_path_factory):
    build, kw = MODELS[request.param]
    proto = build()
    model, _ = compile_onnx(proto, str(tmp_path_factory.mktemp(request.param)), **kw)
    feeds = rand_feeds(model, 11, seed=7)
    if request.param == "kws_example":
        feeds = {"mfcc": load_kws().make_inputs(11)[:, None]}
    return request.param, model, feeds, proto


def same_bits(a, b, what="") -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert (a.dtype, a.shape) == (b.dtype, b.shape), what
    assert a.tobytes() == b.tobytes(), what


def per_sample(model, feeds: dict, mode: str) -> dict:
    n = len(next(iter(feeds.values())))
    return sim.stack([sim.run_model(model, sim.sample(model.graph, feeds, i), mode) for i in range(n)])


# -- batched == one sample at a time ------------------------------------------------------------
def test_every_test_model_runs_batched(compiled):
    name, model, _, _ = compiled
    assert batching.plan(model.graph).ok, batching.plan(model.graph).reason


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk", [4, batching.CHUNK])  # 11 samples: chunks 4+4+3, or one
def test_run_model_batch_is_bit_identical_to_per_sample(compiled, mode, chunk):
    name, model, feeds, _ = compiled
    want = per_sample(model, feeds, mode)
    got = sim.run_model_batch(model, feeds, mode, chunk=chunk)
    assert set(got) == set(want)
    for k in model.graph.outputs:
        same_bits(got[k], want[k], f"{name} {mode} {k}")


def test_float_matches_onnxruntime(compiled):
    """The conv kernels were rewritten for batching: still onnxruntime's float results."""
    name, model, feeds, proto = compiled
    if name == "kws_example":  # compiled with FUSE_BN: checked against ORT in test_sim_npu
        pytest.skip("fused")
    got = sim.run_model_batch(model, feeds, "float")
    for i in range(3):
        ref = run_ort(proto, {k: v[i] for k, v in feeds.items()})
        for k in model.graph.outputs:
            r = np.asarray(ref[k], np.float32).reshape(got[k][i].shape)
            np.testing.assert_allclose(got[k][i], r, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(r).max()))


def test_run_samples_keep_and_resume_match_run(compiled):
    """run_samples == [run(...)] with keep=True, and when resuming from kept envs with a
    swapped weight (what --eval's per-weight sweep and --tune's Measurer do)."""
    name, model, feeds, _ = compiled
    g, cast = model.graph, numerics.round_f16
    consts = sim.model_consts(model, "npu")
    samples = [sim.sample(g, feeds, i) for i in range(len(feeds[g.inputs[0]]))]
    want = [sim.run(g, s, consts, cast=cast, keep=True) for s in samples]
    got = sim.run_samples(g, samples, consts, cast=cast, keep=True, chunk=4)
    for w, r in zip(want, got):
        assert set(w) == set(r)
        for k in w:
            same_bits(r[k], w[k], f"{name} keep {k}")
    weight = next(iter(model.weights))
    start = ev.first_reader(g, weight)
    swapped = {**consts, weight: numerics.round_f16(consts[weight] * 1.25)}
    for keep in (False, True):
        want = [sim.run(g, s, swapped, cast=cast, keep=keep, start=start, env=e) for s, e in zip(samples, got)]
        again = sim.run_samples(g, samples, swapped, cast=cast, keep=keep, start=start, envs=got, chunk=4)
        for w, r in zip(want, again):
            assert set(w) == set(r)
            for k in w:
                same_bits(r[k], w[k], f"{name} resume keep={keep} {k}")


def test_skipped_roundings_change_nothing(compiled):
    """sim.run skips round_f16 after ops that only move or select fp16 values; rounding
    them anyway (round_moves=True) gives the same bits."""
    name, model, feeds, _ = compiled
    g, consts = model.graph, sim.model_consts(model, "npu")
    x = sim.sample(g, feeds, 0)
    fast = sim.run(g, x, consts, cast=numerics.round_f16, keep=True)
    slow = sim.run(g, x, consts, cast=numerics.round_f16, keep=True, round_moves=True)
    for k in slow:
        same_bits(fast[k], slow[k], f"{name} {k}")


# -- TensorFlow layout (NHWC / NWC, HWIO / HWIM weights) ------------------------------------------
@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    pytest.importorskip("tensorflow")
    import tf_models

    out = {}
    for build in (tf_models.ds_cnn, tf_models.tdnn_kws, tf_models.streaming):
        model = build()
        folder = str(tmp_path_factory.mktemp(model.name))
        path = os.path.join(folder, f"{model.name}.keras")
        model.save(path)
        cfg = Config(model_key="KERAS_FILE", model_path=path, output_file=os.path.join(folder, "model.h"),
                     compress=True, conv2d_compress=True)
        out[model.name] = compile_cfg(cfg)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_tensorflow_layout_models_batch_bit_identically(keras_models, mode):
    for name, model in keras_models.items():
        assert batching.plan(model.graph).ok, (name, batching.plan(model.graph).reason)
        feeds = rand_feeds(model, 6, seed=2)
        want, got = per_sample(model, feeds, mode), sim.run_model_batch(model, feeds, mode, chunk=4)
        for k in model.graph.outputs:
            same_bits(got[k], want[k], f"{name} {mode} {k}")


# -- graphs that must not run batched ------------------------------------------------------------
def _merges_batch():
    """x [1, 4, 6] -> Reshape [4, 6] (batch merged into rows) -> MatMul -> Reshape [1, 20]."""
    rng = np.random.default_rng(3)
    init = {"s2": np.array([4, 6], np.int64), "w": rng.standard_normal((6, 5)).astype(np.float32),
            "s3": np.array([1, 20], np.int64)}
    nodes = [helper.make_node("Reshape", ["x", "s2"], ["rows"], name="merge"),
             helper.make_node("MatMul", ["rows", "w"], ["m"]),
             helper.make_node("Reshape", ["m", "s3"], ["y"])]
    return make_model(nodes, [("x", [1, 4, 6])], [("y", [1, 20])], init)


def _reduces_everything():
    """ReduceMean over all axes without keepdims: one scalar per sample."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["y"], name="scalar", keepdims=0)]
    return make_model(nodes, [("x", [1, 3, 5])], [("y", [])])


def _moves_axis_0():
    """Transpose [1, 3, 5] -> [3, 1, 5]: the batch axis moves inward."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="swap", perm=[1, 0, 2]),
             helper.make_node("Sigmoid", ["t"], ["y"])]
    return make_model(nodes, [("x", [1, 3, 5])], [("y", [3, 1, 5])])


@pytest.mark.parametrize("build, node", [(_merges_batch, "merge"), (_reduces_everything, "scalar"),
                                         (_moves_axis_0, "swap")])
def test_unbatchable_graph_falls_back_to_per_sample(build, node, monkeypatch):
    """The lowered graphs (before the passes, which may rewrite them) cannot run batched:
    run_batch says why and runs one sample at a time, with the same results."""
    graph = to_ir(build())
    p = batching.plan(graph)
    assert not p.ok and repr(node) in p.reason and "batch axis" in p.reason
    feeds = rand_feeds(graph, 5, seed=1)
    for cast in (None, numerics.round_f16):
        want = sim.stack([sim.run(graph, sim.sample(graph, feeds, i), cast=cast) for i in range(5)])
        calls = []
        real = sim.run
        monkeypatch.setattr(sim, "run", lambda g, f, *a, **k: calls.append(g) or real(g, f, *a, **k))
        got = sim.run_batch(graph, feeds, cast=cast)
        monkeypatch.undo()
        assert len(calls) == 5 and all(g is graph for g in calls)  # one run per sample
        for k in graph.outputs:
            same_bits(got[k], want[k], k)


# -- the pieces ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", sorted(activation.FUNCS))
def test_activation_kernels_do_not_depend_on_the_batch(fn):
    """Element-wise kernels give each sample the same bits alone or in a batch, also for one
    value per sample (numpy picks its loops by length and stride)."""
    rng = np.random.default_rng(5)
    attrs = {"fn": fn, "exponent": 1.5} if fn == "pow" else {"fn": fn}
    op = activation.Act()
    for k in (1, 7, 4099):
        x = (rng.standard_normal((9, k)) * 3).astype(np.float32)
        if fn in ("sqrt", "rsqrt", "log", "pow"):
            x = np.abs(x)
        node = Node("a", "act", ["x"], ["y"], attrs)
        batched = op.run(node, [x])[0]
        for i in range(len(x)):
            same_bits(batched[i:i + 1], op.run(node, [x[i:i + 1]])[0], f"{fn} k={k} row {i}")


def test_relu_fast_path_is_numpy_maximum():
    x = np.tile(np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, -1, 1, -1e-40, 1e-40], np.float32), 1000)
    same_bits(activation.FUNCS["relu"](x, {}), np.maximum(x, 0))


def test_fast_round_f16_equals_numpys_cast():
    """numerics.round_f16 on large float32 tensors takes a bit-level path; it must give the
    bits of x.astype(float16).astype(float32) (checked here on edge cases and random values
    over the whole float32 range; all 2**32 inputs were checked once when it was written)."""
    f16 = np.finfo(np.float16)
    edges = [0.0, -0.0, 65504, 65519.996, 65520, 65536, 1e30, np.inf, -np.inf, np.nan,
             float(f16.smallest_normal), float(f16.smallest_subnormal), 2.0 ** -25, 3 * 2.0 ** -26,
             2.0 ** -14 - 2.0 ** -30, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1e-45, 3.4e38]
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([np.array(edges, np.float32), -np.array(edges, np.float32), bits.view(np.float32),
                        (rng.standard_normal(50_000) * 10.0 ** rng.integers(-9, 6, 50_000)).astype(np.float32)])
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).astype(np.float32)
    for view in (slice(None), slice(None, None, 3)):  # contiguous, strided
        got, ref = numerics.round_f16(x[view]), want[view]
        nan = np.isnan(ref)
        assert np.array_equal(np.isnan(got), nan)
        assert np.array_equal(got[~nan].view(np.uint32), ref[~nan].view(np.uint32))


def test_model_consts_are_decoded_once(monkeypatch, tmp_path):
    model, _ = compile_onnx(mlp(), str(tmp_path), compress=True)
    calls = []
    real = numerics.device_consts
    monkeypatch.setattr(numerics, "device_consts", lambda g, w: calls.append(1) or real(g, w))
    first = sim.model_consts(model, "npu")
    first["fc1.w"] = None  # the caller's dict: the cache must not see this
    again = sim.model_consts(model, "npu")
    assert len(calls) == 1 and again["fc1.w"] is not None
    model.weights["fc1.w"] = copy.copy(model.weights["fc1.w"])
    sim.model_consts(model, "npu")
    assert len(calls) == 2  # a new weight object: decoded again


def test_eval_simulates_in_batches(tmp_path, monkeypatch):
    """--eval's runs go through the batched path: far fewer graph runs than samples."""
    model, cfg = compile_onnx(two_outputs(), str(tmp_path), compress=True, conv2d_compress=True)
    feeds = rand_feeds(model, 12, seed=4)
    graphs = []
    real = sim.run
    monkeypatch.setattr(sim, "run", lambda g, f, *a, **k: graphs.append(g) or real(g, f, *a, **k))
    rep = ev.evaluate(cfg, model, feeds, None, "test")
    assert rep.samples == 12 and len(rep.layers) == 2
    assert len(graphs) >= 3 + 2 and all(g is not model.graph for g in graphs)  # all 12 at once


@pytest.mark.parametrize("kernel, dil, pads", [((3, 3), (1, 1), (1, 1, 1, 1)), ((5, 3), (2, 1), (4, 1, 4, 1)),
                                               ((3,), (2,), (2, 2))])
def test_depthwise_paths_agree_and_keep_inf_local(kernel, dil, pads):
    """Stride-1 'same' depthwise takes a flat path (weight 0 where a tap would cross an image
    edge; channels-first or -last), which needs finite inputs; a sample holding inf sends the batch through the
    per-region path. Both give the other samples the same values, and the inf sample its
    zero-padded result (inf spreads only where the kernel reaches it)."""
    from gxnpuc.ops.conv_kernels import depthwise_channels_last, depthwise_flat

    rng = np.random.default_rng(6)
    sizes, c = (7, 5)[:len(kernel)], 4
    x = rng.standard_normal((3, *sizes, c)).astype(np.float32)
    w = rng.standard_normal((*kernel, 1, c)).astype(np.float32)
    ones = [1] * len(kernel)
    flat = depthwise_channels_last(x[1:], w, ones, list(dil), list(pads))
    first = depthwise_flat(np.moveaxis(x[1:], -1, 1), w, ones, list(dil), list(pads), first=True)
    np.testing.assert_array_equal(np.moveaxis(first, 1, -1), flat)  # channels-first: same sums
    x[(0,) + (2,) * len(kernel) + (1,)] = np.inf
    regions = depthwise_channels_last(x, w, ones, list(dil), list(pads))
    np.testing.assert_array_equal(regions[1:], flat)
    r = len(kernel)
    xp = np.pad(x[0], [(p, q) for p, q in zip(pads[:r], pads[r:])] + [(0, 0)])
    ref = sum(xp[tuple(slice(t * d, t * d + s) for t, d, s in zip(tap, dil, sizes))] * w[tap][0]
              for tap in np.ndindex(*kernel))
    np.testing.assert_allclose(regions[0], ref, rtol=1e-5, atol=1e-6)
    assert np.isinf(regions[0]).any() and not np.isnan(regions[0]).any()


def test_constant_output_is_repeated_per_sample():
    """A graph output that no sample changes (a constant) comes back once per sample, as
    stacking batch-1 runs gives it."""
    from gxnpuc.ir import Graph, Tensor

    g = Graph({"x": Tensor("x", (1, 3)), "y": Tensor("y", (1, 3)),
               "k": Tensor("k", (2,), data=np.array([1.5, -2.0], np.float32))},
              [Node("r", "act", ["x"], ["y"], {"fn": "relu"})], ["x"], ["y", "k"])
    feeds = {"x": np.random.default_rng(0).standard_normal((5, 1, 3)).astype(np.float32)}
    want = sim.stack([sim.run(g, sim.sample(g, feeds, i)) for i in range(5)])
    got = sim.run_batch(g, feeds, chunk=2)
    for k in ("y", "k"):
        same_bits(got[k], want[k], k)
    got["k"][0] = 0  # an array of its own, as np.stack gives


def test_every_npu_op_has_its_own_batch_rule():
    """A new op without OpDef.batch would silently make the simulator run one sample at a time."""
    from gxnpuc.ops import REGISTRY
    from gxnpuc.ops.base import OpDef

    missing = [name for name, op in REGISTRY.items() if op.npu and type(op).batch is OpDef.batch]
    assert not missing, f"ops without a batch rule (OpDef.batch): {missing}"
