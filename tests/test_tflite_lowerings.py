"""TFLite lowerings the converter rarely writes (SQUEEZE, SELECT_V2, RELU_0_TO_1, SOFTMAX with
beta, MIRROR_PAD SYMMETRIC by one), comparisons / logic / rounding / fills, and refusals
(Convolution2DTransposeBias without its options, SYMMETRIC by two),
fed through the shared lowering walk as FNodes and checked against float64 numpy."""
from __future__ import annotations

import numpy as np
import pytest

from gxnpuc import sim
from gxnpuc.errors import UnsupportedOpError
from gxnpuc.frontend.common import FNode, LowerCtx, lower
from gxnpuc.ops import TFLITE_LOWERINGS

X = np.random.default_rng(0).standard_normal((1, 3, 4, 2)).astype(np.float32)


def run_one(op_type: str, attrs: dict, consts: dict | None = None, extra_inputs=()):
    ctx = LowerCtx("tflite")
    ctx.add_input("x", X.shape)
    for name, value in (consts or {}).items():
        ctx.add_const(name, value)
    fn = FNode("y", op_type, ["x", *extra_inputs], ["y"], dict(attrs))
    g = lower(ctx, [fn], ["y"], TFLITE_LOWERINGS)
    return sim.run(g, {"x": X})["y"]


def close(got, want) -> None:
    want = np.asarray(want, np.float64)
    assert np.asarray(got).shape == want.shape
    assert np.max(np.abs(np.asarray(got, np.float64) - want)) <= 1e-6 * max(np.max(np.abs(want)), 1)


def lower_graph(fnodes, consts: dict, x_shape=X.shape):
    ctx = LowerCtx("tflite")
    ctx.add_input("x", x_shape)
    for name, value in consts.items():
        ctx.add_const(name, value)
    return lower(ctx, fnodes, [fnodes[-1].outputs[0]], TFLITE_LOWERINGS)


def test_squeeze_and_strided_slice_shrink():
    got = run_one("STRIDED_SLICE", {"shrink_axis_mask": 2}, {"b": np.array([0, 0, 0, 0], np.int32),
                  "e": np.array([1, 1, 4, 2], np.int32), "s": np.array([1, 1, 1, 1], np.int32)},
                  ("b", "e", "s"))
    close(got, X[:, 0])
    x1 = X[:, :1]
    g = lower_graph([FNode("y", "SQUEEZE", ["x"], ["y"], {"squeeze_dims": [1]})], {}, x1.shape)
    close(sim.run(g, {"x": x1})["y"], x1.reshape(1, 4, 2))


def test_select_v2_constant_condition():
    cond = np.random.default_rng(1).random(X.shape) < 0.5
    other = np.full(X.shape, 2.0, np.float32)
    g = lower_graph([FNode("y", "SELECT_V2", ["c", "x", "o"], ["y"], {})], {"c": cond, "o": other})
    close(sim.run(g, {"x": X})["y"], np.where(cond, X, other))


def test_relu_0_to_1_and_softmax_beta():
    close(run_one("RELU_0_TO_1", {}), np.clip(X.astype(np.float64), 0, 1))
    z = 2.5 * X.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    close(run_one("SOFTMAX", {"beta": 2.5}), e / e.sum(-1, keepdims=True))


def test_mirror_pad_symmetric_by_one_is_edge():
    pads = np.array([[0, 0], [1, 1], [1, 0], [0, 0]], np.int32)
    got = run_one("MIRROR_PAD", {"mode": "SYMMETRIC"}, {"p": pads}, ("p",))
    close(got, np.pad(X, [(0, 0), (1, 1), (1, 0), (0, 0)], mode="symmetric"))


def test_refusals_are_listed_together():
    ctx = LowerCtx("tflite")
    ctx.add_input("x", X.shape)
    ctx.add_const("p", np.array([[0, 0], [2, 2], [0, 0], [0, 0]], np.int32))
    ctx.add_const("size", np.array([5, 8], np.int32))  # 3 -> 5 rows: not an integer factor
    fnodes = [FNode("a", "MIRROR_PAD", ["x", "p"], ["a"], {"mode": "SYMMETRIC"}),
              FNode("b", "Convolution2DTransposeBias", ["x"], ["b"], {}),
              FNode("c", "RESIZE_BILINEAR", ["x", "size"], ["c"], {})]
    with pytest.raises(UnsupportedOpError) as err:
        lower(ctx, fnodes, ["a", "b", "c"], TFLITE_LOWERINGS)
    assert [op for _, op, _ in err.value.items] == ["MIRROR_PAD", "Convolution2DTransposeBias",
                                                     "RESIZE_BILINEAR"]
    assert "12 bytes of options" in err.value.items[1][2]


def test_compare_logic_round_fill_fold_as_numpy():
    """EQUAL ... LOGICAL_NOT, FLOOR / CEIL / ROUND (half to even), ZEROS_LIKE / ONES_LIKE, FILL
    and BROADCAST_TO fold on constants exactly as numpy computes them."""
    rng = np.random.default_rng(3)
    a = np.round(rng.standard_normal((2, 3)) * 2) / 2  # ties for ROUND, equal entries for EQUAL
    b = np.round(rng.standard_normal((1, 3)) * 2) / 2
    consts = {"a": a.astype(np.float32), "b": b.astype(np.float32), "p": a > 0, "q": b < 0,
              "dims": np.array([2, 2], np.int32), "v": np.array(1.5, np.float32),
              "shape": np.array([4, 2, 3], np.int32)}
    cases = {"EQUAL": ("ab", a == b), "NOT_EQUAL": ("ab", a != b), "LESS": ("ab", a < b),
             "LESS_EQUAL": ("ab", a <= b), "GREATER": ("ab", a > b), "GREATER_EQUAL": ("ab", a >= b),
             "LOGICAL_AND": ("pq", (a > 0) & (b < 0)), "LOGICAL_OR": ("pq", (a > 0) | (b < 0)),
             "LOGICAL_NOT": ("p", ~(a > 0)), "FLOOR": ("a", np.floor(a)), "CEIL": ("a", np.ceil(a)),
             "ROUND": ("a", np.round(a)), "ZEROS_LIKE": ("a", np.zeros_like(a)),
             "ONES_LIKE": ("a", np.ones_like(a)), "FILL": (["dims", "v"], np.full((2, 2), 1.5)),
             "BROADCAST_TO": (["a", "shape"], np.broadcast_to(a, (4, 2, 3)))}
    for op, (ins, want) in cases.items():
        ctx = LowerCtx("tflite")
        for name, value in consts.items():
            ctx.add_const(name, value)
        ctx.table = TFLITE_LOWERINGS
        assert ctx.lower_nodes([FNode("y", op, list(ins), ["y"], {})]), ctx.unsupported
        got = ctx.const("y")
        assert got is not None and got.shape == want.shape and np.array_equal(got, want), op


def test_broadcast_to_of_a_runtime_tensor():
    g = lower_graph([FNode("y", "BROADCAST_TO", ["x", "s"], ["y"], {})],
                    {"s": np.array([2, 3, 4, 2], np.int32)})
    close(sim.run(g, {"x": X})["y"], np.broadcast_to(X, (2, 3, 4, 2)))
