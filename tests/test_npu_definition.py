"""The npu-mode definition (docs/numerics.md) pinned by a scalar oracle, for every NPU op.

For each op of the registry that runs on the NPU, small seeded fp16-valued inputs go through
the op's device kernel (OpDef.run_npu, vectorised) and through a plain Python loop over
np.float32 scalars that follows the definition literally: one accumulator per output from
+0.0, terms in the defined order, one float32 operation at a time. Both must give the same
float32 bits. Transcendentals call gxnpuc.devmath on one scalar at a time (devmath itself is
pinned by tests/test_devmath.py against runtime/gx_math.h and float64).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from gxnpuc import devmath as dm
from gxnpuc.ir import Node
from gxnpuc.ops import REGISTRY

F = np.float32
RNG = np.random.default_rng(12)


def f16(*shape, scale=1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float16).astype(np.float32)


def node(op: str, **attrs) -> Node:
    return Node("n", op, [], [], attrs)


def same(got, want) -> None:
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert got.shape == want.shape
    bad = got.view(np.uint32) != want.view(np.uint32)
    bad &= ~(np.isnan(got) & np.isnan(want))
    assert not bad.any(), f"{bad.sum()} of {bad.size} differ: {got[bad][:4]} vs {want[bad][:4]}"


# -- dot products -------------------------------------------------------------------------------
def conv_oracle(x, w, b, a):
    """Literal loop: per output, acc over the group's input channels, then taps (C order)."""
    fmt, wfmt, group = a["data_format"], a["w_format"], a["group"]
    first = fmt.startswith("NC")
    r = x.ndim - 2
    xc = x if first else np.moveaxis(x, -1, 1)  # x value lookup only, no arithmetic
    c_in, sizes = xc.shape[1], xc.shape[2:]
    if wfmt.startswith("OI"):
        c_out, kernel = w.shape[0], w.shape[2:]
        wv = lambda co, ci, tap: w[(co, ci) + tap]  # noqa: E731
    elif wfmt.endswith("IM"):
        mult, kernel = w.shape[-1], w.shape[:-2]
        c_out = w.shape[-2] * mult
        wv = lambda co, ci, tap: w[tap + (co // mult, co % mult)]  # noqa: E731
    else:
        c_out, kernel = w.shape[-1], w.shape[:-2]
        wv = lambda co, ci, tap: w[tap + (ci, co)]  # noqa: E731
    cg, og = c_in // group, c_out // group
    s, d, p = a["strides"], a["dilations"], a["pads"]
    out = [(sizes[i] + p[i] + p[r + i] - (kernel[i] - 1) * d[i] - 1) // s[i] + 1 for i in range(r)]
    y = np.zeros((x.shape[0], c_out, *out), np.float32)
    for n, co in itertools.product(range(x.shape[0]), range(c_out)):
        g = co // og
        for o in itertools.product(*map(range, out)):
            acc = F(0)
            for ci in range(cg):
                for tap in itertools.product(*map(range, kernel)):
                    pos = tuple(o[i] * s[i] + tap[i] * d[i] - p[i] for i in range(r))
                    if all(0 <= pos[i] < sizes[i] for i in range(r)):
                        acc = F(acc + F(xc[(n, g * cg + ci) + pos] * wv(co, ci, tap)))
            if b is not None:
                acc = F(acc + b[co])
            y[(n, co) + o] = acc
    return y if first else np.moveaxis(y, 1, -1)


CONVS = [  # (x shape, w shape, attrs)
    ((2, 3, 6, 5), (4, 3, 3, 2), dict(data_format="NCHW", w_format="OIHW", strides=[2, 1],
                                      dilations=[1, 2], pads=[1, 0, 2, 1], group=1)),
    ((1, 4, 7), (6, 2, 3), dict(data_format="NCW", w_format="OIW", strides=[1], dilations=[1],
                                pads=[1, 1], group=2)),
    ((2, 5, 4, 3), (3, 2, 3, 4), dict(data_format="NHWC", w_format="HWIO", strides=[1, 2],
                                      dilations=[1, 1], pads=[1, 1, 1, 0], group=1)),
    ((1, 6, 5, 4), (3, 3, 4, 2), dict(data_format="NHWC", w_format="HWIM", strides=[1, 1],
                                      dilations=[1, 1], pads=[1, 1, 1, 1], group=4)),
    ((2, 3, 5, 5), (3, 1, 3, 3), dict(data_format="NCHW", w_format="OIHW", strides=[1, 1],
                                      dilations=[1, 1], pads=[1, 1, 1, 1], group=3)),
    ((2, 7, 5, 4), (3, 3, 4, 1), dict(data_format="NHWC", w_format="HWIM", strides=[1, 1],
                                      dilations=[2, 1], pads=[2, 1, 2, 1], group=4)),
]


@pytest.mark.parametrize("case", range(len(CONVS)))
@pytest.mark.parametrize("bias", [False, True])
def test_conv(case, bias):
    xs, ws, a = CONVS[case]
    x, w = f16(*xs), f16(*ws)
    c_out = REGISTRY["conv"].infer(node("conv", **a), [xs, ws])[0][1 if a["data_format"].startswith("NC") else -1]
    b = f16(c_out) if bias else None
    got = REGISTRY["conv"].run_npu(node("conv", **a), [x, w] + ([b] if bias else []))[0]
    same(got, conv_oracle(x, w, b, a))


def test_fc():
    x, w, b = f16(2, 3, 7), f16(5, 7), f16(5)
    want = np.zeros((2, 3, 5), np.float32)
    for i, j, o in itertools.product(range(2), range(3), range(5)):
        acc = F(0)
        for k in range(7):
            acc = F(acc + F(x[i, j, k] * w[o, k]))
        want[i, j, o] = F(acc + b[o])
    same(REGISTRY["fc"].run_npu(node("fc", transpose_w=True), [x, w, b])[0], want)
    x2 = f16(40, 6)  # more rows than outputs: the other loop layout
    w2 = f16(6, 3)
    want2 = np.array([[sum_seq(x2[r] * w2[:, o]) for o in range(3)] for r in range(40)], np.float32)
    same(REGISTRY["fc"].run_npu(node("fc", transpose_w=False), [x2, w2])[0], want2)


def sum_seq(terms) -> np.float32:
    acc = F(0)
    for t in np.ravel(terms):
        acc = F(acc + F(t))
    return acc


@pytest.mark.parametrize("sa, sb", [((2, 3, 4), (4, 5)), ((4,), (4, 3)), ((2, 4), (4,)),
                                    ((2, 1, 3, 4), (3, 4, 2))])
def test_matmul(sa, sb):
    a, b = f16(*sa), f16(*sb)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))  # shape only
    a2 = a[None] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    full = np.zeros(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]), np.float32)
    for idx in np.ndindex(*full.shape):
        ai = np.broadcast_to(a2, full.shape[:-2] + a2.shape[-2:])[idx[:-2]]
        bi = np.broadcast_to(b2, full.shape[:-2] + b2.shape[-2:])[idx[:-2]]
        acc = F(0)
        for k in range(a2.shape[-1]):
            acc = F(acc + F(ai[idx[-2], k] * bi[k, idx[-1]]))
        full[idx] = acc
    same(REGISTRY["matmul"].run_npu(node("matmul"), [a, b])[0], full.reshape(want.shape))


# -- other sums --------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axes, keep", [([1], 1), ([0, 2], 0), ([1, 2], 1)])
def test_reduce(fn, axes, keep):
    x = f16(3, 4, 5)
    x[0, 0, 0] = -0.0
    rest = [a for a in range(3) if a not in axes]
    moved = np.transpose(x, axes + rest).reshape(-1, int(np.prod([x.shape[a] for a in rest])))
    n = moved.shape[0]
    vals = []
    for col in moved.T:
        if fn in ("sum", "mean"):
            s = sum_seq(col)
            vals.append(F(s / F(n)) if fn == "mean" else s)
        else:
            vals.append(col.max() if fn == "max" else col.min())
    shape = [1 if a in axes else d for a, d in enumerate(x.shape)] if keep else [x.shape[a] for a in rest]
    got = REGISTRY["reduce"].run_npu(node("reduce", fn=fn, axes=axes, keepdims=keep), [x])[0]
    same(got, np.array(vals, np.float32).reshape(shape))


def test_sum_of_negative_zeros_is_positive_zero():
    x = np.full((2, 6), -0.0, np.float32)
    got = REGISTRY["reduce"].run_npu(node("reduce", fn="sum", axes=[1], keepdims=0), [x])[0]
    assert not np.signbit(got).any()


@pytest.mark.parametrize("attrs", [
    dict(kind="avg", data_format="NCHW", kernel=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], count_include_pad=0),
    dict(kind="avg", data_format="NCHW", kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
         count_include_pad=1, ceil_mode=1),
    dict(kind="avg", data_format="NHWC", kernel=[5, 4], strides=[1, 1], pads=[0, 0, 0, 0], count_include_pad=0),
    dict(kind="max", data_format="NCW", kernel=[3], strides=[2], pads=[1, 1], count_include_pad=0),
])
def test_pool(attrs):
    first = attrs["data_format"].startswith("NC")
    r = len(attrs["kernel"])
    x = f16(2, 3, 5, 4) if r == 2 and first else (f16(2, 5, 4, 3) if r == 2 else f16(2, 3, 7))
    nd = node("pool", **attrs)
    yshape = REGISTRY["pool"].infer(nd, [x.shape])[0]
    xc = x if first else np.moveaxis(x, -1, 1)
    yc = np.zeros(yshape if first else (yshape[0], yshape[-1], *yshape[1:-1]), np.float32)
    k, s, p, sizes = attrs["kernel"], attrs["strides"], attrs["pads"], xc.shape[2:]
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1 if first else -1])):
        for o in itertools.product(*map(range, yc.shape[2:])):
            acc, best, count = F(0), F(-np.inf), 0
            for tap in itertools.product(*map(range, k)):
                pos = tuple(o[i] * s[i] + tap[i] - p[i] for i in range(r))
                inside = all(0 <= pos[i] < sizes[i] for i in range(r))
                padded = all(-p[i] <= pos[i] < sizes[i] + p[r + i] for i in range(r))
                count += inside or (padded and attrs["count_include_pad"])
                if inside:
                    v = xc[(n, c) + pos]
                    acc, best = F(acc + v), max(best, v)
            yc[(n, c) + o] = best if attrs["kind"] == "max" else F(acc / F(count))
    want = yc if first else np.moveaxis(yc, 1, -1)
    same(REGISTRY["pool"].run_npu(nd, [x])[0], want)


@pytest.mark.parametrize("log", [False, True])
def test_softmax(log):
    x = f16(3, 6, scale=4)
    want = np.zeros_like(x)
    for i in range(3):
        m = x[i].max()
        z = [F(v - m) for v in x[i]]
        e = [dm.exp(F(v))[()] for v in z]
        s = sum_seq(e)
        want[i] = [F(zj - dm.log(s)[()]) if log else F(ej / s) for zj, ej in zip(z, e)]
    same(REGISTRY["softmax"].run_npu(node("softmax", axis=1, log=log), [x])[0], want)


def test_batchnorm():
    x = f16(2, 3, 4)
    scale, bias, mean, var = f16(3), f16(3), f16(3), np.abs(f16(3)) + F(0.5)
    want = np.zeros_like(x)
    for n, c, i in itertools.product(range(2), range(3), range(4)):
        mul = F(scale[c] / np.sqrt(F(var[c] + F(1e-3))))
        add = F(bias[c] - F(mean[c] * mul))
        want[n, c, i] = F(F(x[n, c, i] * mul) + add)
    got = REGISTRY["batchnorm"].run_npu(node("batchnorm", epsilon=1e-3, axis=1), [x, scale, bias, mean, var])[0]
    same(got, want)


# -- element-wise --------------------------------------------------------------------------------
BINARY = {"add": lambda a, b: F(a + b), "sub": lambda a, b: F(a - b), "mul": lambda a, b: F(a * b),
          "div": lambda a, b: F(a / b), "max": lambda a, b: max(a, b), "min": lambda a, b: min(a, b),
          "squared_difference": lambda a, b: F(F(a - b) * F(a - b)),
          "pow": lambda a, b: dm.power(F(a), F(b))[()]}


@pytest.mark.parametrize("fn", sorted(BINARY))
def test_binary(fn):
    a, b = f16(2, 3, 4), f16(3, 1)
    if fn == "pow":
        a = np.abs(a)
    bb = np.broadcast_to(b, a.shape)
    want = np.array([BINARY[fn](u, v) for u, v in zip(a.ravel(), bb.ravel())], np.float32).reshape(a.shape)
    with np.errstate(all="ignore"):
        same(REGISTRY["binary"].run_npu(node("binary", fn=fn), [a, b])[0], want)


def test_prelu():
    x, slope = f16(2, 3, 4), f16(3, 1)
    s = np.broadcast_to(slope, x.shape)
    want = np.array([v if v >= 0 else F(v * k) for v, k in zip(x.ravel(), s.ravel())], np.float32)
    same(REGISTRY["prelu"].run_npu(node("prelu"), [x, slope])[0], want.reshape(x.shape))


def _clip(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


ACT = {  # fn: (attrs, scalar definition)
    "relu": ({}, lambda v: max(v, F(0))),
    "leaky_relu": ({"alpha": 0.1}, lambda v: v if v >= 0 else F(v * F(0.1))),
    "clip": ({"min": -0.5, "max": 1.5}, lambda v: _clip(v, F(-0.5), F(1.5))),
    "sigmoid": ({}, lambda v: F(F(1) / F(F(1) + dm.exp(-v)[()]))),
    "tanh": ({}, lambda v: dm.tanh(v)[()]),
    "hard_sigmoid": ({"alpha": 0.3, "beta": 0.4}, lambda v: _clip(F(F(v * F(0.3)) + F(0.4)), F(0), F(1))),
    "hard_swish": ({}, lambda v: F(v * _clip(F(F(v / F(6)) + F(0.5)), F(0), F(1)))),
    "elu": ({"alpha": 0.7}, lambda v: v if v > 0 else F(F(0.7) * dm.expm1(v)[()])),
    "selu": ({"alpha": 1.5, "gamma": 1.1}, lambda v: F(F(1.1) * (v if v > 0 else F(F(1.5) * dm.expm1(v)[()])))),
    "abs": ({}, lambda v: abs(v)),
    "neg": ({}, lambda v: -v),
    "sqrt": ({}, lambda v: np.sqrt(v)),
    "rsqrt": ({}, lambda v: F(F(1) / np.sqrt(v))),
    "reciprocal": ({}, lambda v: F(F(1) / v)),
    "exp": ({}, lambda v: dm.exp(v)[()]),
    "log": ({}, lambda v: dm.log(v)[()]),
    "square": ({}, lambda v: F(v * v)),
    "pow": ({"exponent": 1.7}, lambda v: dm.power(v, F(1.7))[()]),
    "erf": ({}, lambda v: dm.erf(v)[()]),
    "erfc": ({}, lambda v: dm.erfc(v)[()]),
    "gelu": ({}, lambda v: F(F(F(0.5) * v) * dm.erfc(-F(v * dm.SQRT1_2))[()])),
    "silu": ({"alpha": 1.0}, lambda v: F(v / F(F(1) + dm.exp(-F(F(1) * v))[()]))),
    "softplus": ({}, lambda v: dm.softplus(v)[()]),
    "softsign": ({}, lambda v: F(v / F(F(1) + abs(v)))),
    "mish": ({}, lambda v: F(v * dm.tanh(dm.softplus(v))[()])),
}


def test_every_activation_has_a_case():
    from gxnpuc.ops.activation import FUNCS

    assert set(FUNCS) == set(ACT)


@pytest.mark.parametrize("fn", sorted(ACT))
def test_act(fn):
    attrs, scalar = ACT[fn]
    x = f16(4, 6, scale=3)
    if fn in ("sqrt", "rsqrt", "log", "pow"):
        x = np.abs(x)
    with np.errstate(all="ignore"):
        want = np.array([scalar(v) for v in x.ravel()], np.float32).reshape(x.shape)
        same(REGISTRY["act"].run_npu(node("act", fn=fn, **attrs), [x])[0], want)


def test_gelu_tanh_form():
    x = f16(50, scale=3)
    c, k = dm.SQRT2_PI, dm.GELU_C
    want = [F(v / F(F(1) + dm.exp(F(F(-2) * F(c * F(v + F(k * F(F(v * v) * v))))))[()])) for v in x]
    same(REGISTRY["act"].run_npu(node("act", fn="gelu", approximate="tanh"), [x])[0], np.array(want, np.float32))


# -- ops that only move values ---------------------------------------------------------------------
MOVES = {  # op: (attrs, inputs, independent numpy expression of the moved values)
    "reshape": ({"shape": [4, 6]}, [f16(2, 3, 4)], lambda x: x.ravel().reshape(4, 6)),
    "transpose": ({"perm": [2, 0, 1]}, [f16(2, 3, 4)], lambda x: np.einsum("abc->cab", x)),
    "concat": ({"axis": 1}, [f16(2, 3), f16(2, 2)], lambda a, b: np.hstack([a, b])),
    "split": ({"axis": 0, "sizes": [1, 2]}, [f16(3, 2)], lambda x: x[:1]),
    "slice": ({"starts": [1, 0], "ends": [3, 4], "steps": [1, 2]}, [f16(4, 4)], lambda x: x[[1, 2]][:, [0, 2]]),
    "cast": ({"to": "float32"}, [f16(3)], lambda x: x.copy()),
    "identity": ({}, [f16(3)], lambda x: x.copy()),
    "upsample": ({"scales": [1, 2, 3]}, [f16(1, 2, 2)], lambda x: np.kron(x, np.ones((1, 2, 3), np.float32))),
    "pad": ({"pads": [0, 1, 0, 2], "mode": "constant", "value": 0.5}, [f16(2, 2)],
            lambda x: np.hstack([np.full((2, 1), 0.5, np.float32), x, np.full((2, 2), 0.5, np.float32)])),
}


@pytest.mark.parametrize("op", sorted(MOVES))
def test_moves(op):
    attrs, xs, want = MOVES[op]
    same(REGISTRY[op].run_npu(node(op, **attrs), xs)[0], want(*xs))


def test_every_npu_op_is_pinned():
    """The registry drives the list: a new NPU op needs an oracle case here."""
    pinned = {"conv", "fc", "matmul", "reduce", "pool", "softmax", "batchnorm", "binary", "prelu",
              "act"} | set(MOVES)
    assert {name for name, op in REGISTRY.items() if op.npu} <= pinned


def test_conv_skips_padding_taps():
    """Taps in the zero padding are skipped, not added as 0 * w (which an inf weight shows)."""
    xs, ws, a = CONVS[0]
    x, w = f16(*xs), f16(*ws)
    w[1, 2, 0, 1] = np.inf
    with np.errstate(invalid="ignore"):
        got = REGISTRY["conv"].run_npu(node("conv", **a), [x, w])[0]
        want = conv_oracle(x, w, None, a)
    assert not np.isnan(want).all()
    same(got, want)


def test_outputs_are_contiguous():
    """Kernels hand back C-ordered arrays (callers view their bytes), whatever loop layout."""
    outs = [REGISTRY["fc"].run_npu(node("fc", transpose_w=False), [f16(40, 6), f16(6, 3)])[0],
            REGISTRY["matmul"].run_npu(node("matmul"), [f16(4,), f16(2, 4, 3)])[0],
            REGISTRY["conv"].run_npu(node("conv", **CONVS[2][2]), [f16(*CONVS[2][0]), f16(*CONVS[2][1])])[0]]
    assert all(y.flags.c_contiguous for y in outs)
