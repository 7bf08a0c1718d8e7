"""Small IR models for the C runtime tests: one node (or a short chain) per NPU op variant,
built in code with fixed seeds, compiled with the real backend (weights compressed where the
op has conv/fc weights: dense and bitmap, per tensor and per channel).
"""
from __future__ import annotations

import numpy as np

from gxnpuc import backend, state
from gxnpuc.compress import compress_graph
from gxnpuc.config import Config
from gxnpuc.ir import Graph, Node, Tensor
from gxnpuc.ops import REGISTRY


def rand(shape, seed, scale=1.0, sparse=0.0, axis=0):
    """Normal values; with sparse, a zero-skip (bitmap) weight instead: uniform in
    [-1, 127/128] with that fraction zeroed and both bounds in every slice along `axis`
    (step 2^-7 from -1: code 128 decodes to exactly 0.0, so a zero code exists)."""
    rng = np.random.default_rng(seed)
    if not sparse:
        return (rng.standard_normal(shape) * scale).astype(np.float32)
    x = rng.uniform(-1, 127 / 128, shape).astype(np.float32)
    x[rng.random(shape) < sparse] = 0
    v = np.moveaxis(x, axis, 0).reshape(shape[axis], -1)
    v[:, 0], v[:, 1] = -1, 127 / 128
    return np.moveaxis(v.reshape(np.moveaxis(x, axis, 0).shape), 0, axis).copy()


def graph_of(steps, inputs: dict, consts: dict | None = None) -> Graph:
    """steps: [(op, attrs, input names, n_outputs)]; output shapes from the op's infer()."""
    g = Graph(meta={"framework": "onnx"})
    g.tensors = {n: Tensor(n, tuple(s)) for n, s in inputs.items()}
    for n, v in (consts or {}).items():
        g.tensors[n] = Tensor(n, v.shape, "float32", v)
    for k, (op, attrs, ins, n_out) in enumerate(steps):
        outs = [f"t{k}_{j}" for j in range(n_out)]
        node = Node(f"n{k}:{op}", op, list(ins), outs, dict(attrs), op)
        shapes = REGISTRY[op].infer(node, [g.tensors[i].shape if i else None for i in ins])
        for o, s in zip(outs, shapes):
            g.tensors[o] = Tensor(o, tuple(int(d) for d in s))
        g.nodes.append(node)
    g.inputs = list(inputs)
    g.outputs = [o for o in g.nodes[-1].outputs]
    return g


def build(g: Graph, **kw):
    cfg = Config(**{"compress": True, "conv2d_compress": True, **kw})
    return backend.build(g, compress_graph(g, cfg), cfg)


def feeds(model, seed: int, samples: int = 3, scale: float = 2.0) -> dict:
    return {n: rand((samples, *model.graph.tensors[n].shape), seed + k, scale)
            for k, n in enumerate(model.graph.inputs)}


def _conv(name, x, w_shape, attrs, bias=True, sparse=0.0, **kw):
    consts = {"w": rand(w_shape, 11, 0.5, sparse, 0 if attrs["w_format"] in ("OIHW", "OIW") else -1)}
    ins = ["x", "w"]
    if bias:
        consts["b"] = rand((attrs.pop("_bias_n"),), 12) if "_bias_n" in attrs else None
        ins.append("b")
    return name, graph_of([("conv", attrs, ins, 1)], {"x": x}, {k: v for k, v in consts.items() if v is not None}), kw


def _cf(r, **over):
    base = {"data_format": "NCHW" if r == 2 else "NCW", "w_format": "OIHW" if r == 2 else "OIW",
            "strides": [1] * r, "dilations": [1] * r, "pads": [0] * (2 * r), "group": 1}
    return {**base, **over}


def conv_models():
    return [
        _conv("conv1d", (1, 6, 20), (8, 6, 3), _cf(1, pads=[1, 1], _bias_n=8)),
        _conv("conv1d_stride_dil", (1, 4, 23), (5, 4, 3), _cf(1, strides=[2], dilations=[2], pads=[2, 1], _bias_n=5)),
        _conv("conv2d_bitmap_perchannel", (2, 3, 9, 8), (6, 3, 3, 3),
              _cf(2, pads=[1, 1, 1, 1], _bias_n=6), sparse=0.85, compress_per_channel=True),
        _conv("conv2d_grouped", (1, 8, 7, 7), (4, 4, 3, 2), _cf(2, group=2, strides=[2, 1], _bias_n=4)),
        _conv("conv2d_depthwise", (1, 6, 8, 8), (6, 1, 3, 3), _cf(2, group=6, pads=[0, 1, 2, 1], _bias_n=6),
              compress_per_channel=True),
        _conv("conv2d_nhwc_hwio", (1, 7, 6, 5), (3, 2, 5, 4),
              {"data_format": "NHWC", "w_format": "HWIO", "strides": [1, 2], "dilations": [1, 1],
               "pads": [1, 0, 1, 1], "group": 1, "_bias_n": 4}, compress_per_channel=True),
        _conv("conv1d_nwc_wio_nobias", (1, 12, 5), (3, 5, 4),
              {"data_format": "NWC", "w_format": "WIO", "strides": [1], "dilations": [2], "pads": [0, 0],
               "group": 1}, bias=False, sparse=0.7),
        _conv("conv2d_nhwc_hwim", (1, 6, 6, 3), (3, 3, 3, 2),
              {"data_format": "NHWC", "w_format": "HWIM", "strides": [1, 1], "dilations": [1, 1],
               "pads": [1, 1, 1, 1], "group": 3, "_bias_n": 6}, compress_per_channel=True),
        _conv("conv_uncompressed", (1, 3, 10), (2, 3, 2), _cf(1, _bias_n=2), compress=False),
        # weights beyond the decompress tile (tmp < their fp16 size): decoded while running
        _conv("conv_streamed_dense", (1, 16, 12), (32, 16, 5), _cf(1, pads=[2, 2], _bias_n=32),
              compress_per_channel=True),
        _conv("conv_streamed_dense_nhwc", (1, 5, 6, 20), (3, 3, 20, 18),
              {"data_format": "NHWC", "w_format": "HWIO", "strides": [1, 1], "dilations": [1, 2],
               "pads": [1, 2, 1, 2], "group": 1, "_bias_n": 18}),
        _conv("conv_streamed_bitmap_nwc", (1, 9, 24), (5, 24, 24),
              {"data_format": "NWC", "w_format": "WIO", "strides": [1], "dilations": [1], "pads": [2, 2],
               "group": 1, "_bias_n": 24}, sparse=0.85, compress_per_channel=True),
        # host fast kernels (runtime/gx_fast.h): 32 + 5 outputs per weight panel, a panel
        # limited by its stack buffer, taps beyond it (plain kernel), depthwise planes with
        # stride / dilation and one too big for its buffer
        _conv("conv_fast_blocks", (1, 8, 6, 5), (37, 8, 3, 3), _cf(2, pads=[1, 1, 1, 1], _bias_n=37)),
        _conv("conv_fast_panel_split", (1, 40, 4, 3), (37, 40, 3, 3), _cf(2, pads=[1, 0, 1, 0], _bias_n=37),
              compress_per_channel=True),
        _conv("conv_fast_many_taps", (1, 64, 7), (3, 64, 9), _cf(1, pads=[4, 4], _bias_n=3)),
        _conv("conv_dw_stride_dil", (1, 4, 9, 9), (4, 1, 3, 3),
              _cf(2, group=4, strides=[2, 2], dilations=[2, 1], pads=[1, 1, 1, 1], _bias_n=4)),
        _conv("conv_dw_big_plane", (1, 1, 66, 64), (1, 1, 3, 3), _cf(2, pads=[1, 1, 1, 1], _bias_n=1)),
        # AVX2 kernels (runtime/gx_avx2.h): NCHW stride-1 convs on the flat padded planes, four
        # outputs (or four depthwise channels) a pass with a tail; pointwise without padding
        _conv("conv_flat_pointwise", (1, 12, 5, 7), (10, 12, 1, 1), _cf(2, _bias_n=10)),
        _conv("conv_flat_pointwise_fp16", (1, 9, 3, 11), (6, 9, 1, 1), _cf(2), bias=False, compress=False),
        _conv("conv_flat_depthwise", (1, 6, 7, 5), (6, 1, 3, 3), _cf(2, group=6, pads=[1, 1, 1, 1], _bias_n=6),
              compress_per_channel=True),
        _conv("conv_flat_groups_dil", (1, 4, 6, 9), (6, 2, 3, 2),
              _cf(2, group=2, dilations=[2, 3], pads=[2, 1, 0, 2], _bias_n=6)),
    ]


def _one(name, op, attrs, shapes: dict, consts=None, n_out=1, **kw):
    ins = list(shapes) + list(consts or {})
    return name, graph_of([(op, attrs, ins, n_out)], shapes, consts), kw


ACT_ATTRS = {"leaky_relu": {"alpha": 0.1}, "clip": {"min": -0.5, "max": 1.25},
             "hard_sigmoid": {"alpha": 0.2, "beta": 0.5},
             "elu": {"alpha": 0.7}, "selu": {}, "pow": {"exponent": 3.0}, "gelu": {"approximate": "none"},
             "silu": {"alpha": 1.0}}


def op_models():
    from gxnpuc.ops.activation import FUNCS as ACT_FUNCS
    from gxnpuc.ops.elementwise import NPU_FNS

    out = conv_models()
    out += [
        _one("fc_transposed_bitmap", "fc", {"transpose_w": True}, {"x": (2, 24)},
             {"w": rand((10, 24), 3, 0.3, 0.8), "b": rand((10,), 4)}, compress_per_channel=True),
        _one("fc_streamed_bitmap", "fc", {"transpose_w": True}, {"x": (2, 64)},
             {"w": rand((80, 64), 8, 0.3, 0.85), "b": rand((80,), 9)}, compress_per_channel=True),
        _one("fc_kn_streamed_dense", "fc", {"transpose_w": False}, {"x": (3, 64)},
             {"w": rand((64, 48), 10, 0.3), "b": rand((48,), 11)}),
        _one("fc_kn_dense", "fc", {"transpose_w": False}, {"x": (1, 3, 16)}, {"w": rand((16, 7), 5, 0.3)}),
        _one("fc_kn_wide", "fc", {"transpose_w": False}, {"x": (2, 40)}, {"w": rand((40, 37), 7, 0.3)}),
        _one("fc_kn_perchannel", "fc", {"transpose_w": False}, {"x": (1, 16)},
             {"w": rand((16, 9), 6, 0.3), "b": rand((9,), 1)}, compress_per_channel=True),
        # AVX2 fc kernels (runtime/gx_avx2.h): [N, K] in 8 x 8 blocks with output and k tails, one
        # range or one per output beyond the decompress tile, fp16; [K, N] one range per output
        _one("fc_nk_dense", "fc", {"transpose_w": True}, {"x": (2, 21)},
             {"w": rand((19, 21), 12, 0.3), "b": rand((19,), 2)}),
        _one("fc_nk_perchannel_streamed", "fc", {"transpose_w": True}, {"x": (1, 72)},
             {"w": rand((40, 72), 13, 0.3), "b": rand((40,), 3)}, compress_per_channel=True),
        _one("fc_nk_fp16", "fc", {"transpose_w": True}, {"x": (1, 17)}, {"w": rand((11, 17), 14, 0.3)}, compress=False),
        _one("fc_kn_perchannel_streamed", "fc", {"transpose_w": False}, {"x": (2, 64)},
             {"w": rand((64, 41), 15, 0.3), "b": rand((41,), 4)}, compress_per_channel=True),
        _one("matmul_batched_bcast", "matmul", {}, {"a": (2, 1, 3, 5), "b": (3, 5, 4)}),
        _one("matmul_1d_left", "matmul", {}, {"a": (5,), "b": (2, 5, 3)}),
        _one("matmul_const_right_1d", "matmul", {}, {"a": (4, 6)}, {"w": rand((6,), 9)}),
        _one("batchnorm", "batchnorm", {"epsilon": 1e-3, "axis": 1}, {"x": (1, 4, 5, 3)},
             {"s": rand((4,), 1), "bb": rand((4,), 2), "m": rand((4,), 3), "v": np.abs(rand((4,), 4)) + 0.5}),
        _one("prelu", "prelu", {}, {"x": (1, 4, 6)}, {"slope": rand((4, 1), 5, 0.2)}),
        _one("softmax_last", "softmax", {"axis": 2, "log": False}, {"x": (2, 3, 10)}),
        _one("softmax_mid_log", "softmax", {"axis": 1, "log": True}, {"x": (2, 7, 3)}),
        _one("maxpool2d_pads_ceil", "pool", {"kind": "max", "data_format": "NCHW", "kernel": [3, 2], "strides": [2, 2],
                                               "pads": [1, 0, 1, 1], "ceil_mode": 1}, {"x": (1, 3, 8, 7)}),
        _one("avgpool2d_count_pad_dil", "pool", {"kind": "avg", "data_format": "NHWC", "kernel": [3, 3],
                                                   "strides": [1, 2],
                                                   "pads": [1, 1, 1, 1], "dilations": [1, 2], "count_include_pad": 1},
             {"x": (1, 7, 9, 2)}),
        _one("avgpool1d_nopad_count", "pool", {"kind": "avg", "data_format": "NCW", "kernel": [3], "strides": [2],
                                                 "pads": [1, 1], "count_include_pad": 0}, {"x": (2, 3, 11)}),
        _one("global_avgpool", "pool", {"kind": "avg", "data_format": "NCW", "kernel": [30], "strides": [1],
                                         "pads": [0, 0]}, {"x": (1, 4, 30)}),
        _one("reshape", "reshape", {"shape": [2, 12]}, {"x": (1, 4, 6)}),
        _one("transpose", "transpose", {"perm": [0, 2, 3, 1]}, {"x": (1, 3, 4, 5)}),
        _one("concat", "concat", {"axis": 1}, {"a": (2, 3, 4), "b": (2, 1, 4), "c": (2, 2, 4)}),
        _one("split", "split", {"axis": 2, "sizes": [1, 4, 2]}, {"x": (2, 3, 7)}, n_out=3),
        _one("slice_neg_step", "slice", {"starts": [0, 5, 1], "ends": [2, -1, 6], "steps": [1, -2, 2]},
             {"x": (2, 6, 7)}),
        _one("pad_constant_crop", "pad", {"pads": [0, 2, -1, 0, -1, 3], "mode": "constant", "value": 0.75},
             {"x": (1, 4, 6)}),
        _one("pad_reflect", "pad", {"pads": [0, 2, 1, 0, 1, 3], "mode": "reflect"}, {"x": (1, 4, 6)}),
        _one("pad_edge", "pad", {"pads": [0, 0, 2, 0, 3, 1], "mode": "edge"}, {"x": (1, 4, 6)}),
        _one("cast", "cast", {"to": "float32"}, {"x": (3, 5)}),
        _one("upsample", "upsample", {"scales": [1, 1, 2, 3]}, {"x": (1, 2, 3, 2)}),
        _one("identity", "identity", {}, {"x": (4, 5)}),
    ]
    for fn in ("mean", "sum", "max", "min"):
        out.append(_one(f"reduce_{fn}", "reduce", {"fn": fn, "axes": [1, 3], "keepdims": 1}, {"x": (2, 5, 3, 4)}))
    out.append(_one("reduce_all", "reduce", {"fn": "mean", "axes": [0, 1, 2], "keepdims": 0}, {"x": (1, 40, 20)}))
    for fn in NPU_FNS:
        a, b = {"a": (2, 3, 4)}, {"b": (3, 1)}
        if fn == "pow":
            out.append(_one("binary_pow", "binary", {"fn": fn}, a, {"e": np.array([[2.0], [0.5], [1.3]], np.float32)}))
        else:
            out.append(_one(f"binary_{fn}", "binary", {"fn": fn}, {**a, **b}))
    for fn in ACT_FUNCS:
        out.append(_one(f"act_{fn}", "act", {"fn": fn, **ACT_ATTRS.get(fn, {})}, {"x": (2, 50)}))
    out.append(_one("act_gelu_tanh", "act", {"fn": "gelu", "approximate": "tanh"}, {"x": (2, 50)}))
    return out


def chain_model():
    """A conv -> relu -> pool -> reshape -> fc -> softmax chain with fp16 and fp32 outputs."""
    g = graph_of([("conv", _cf(1, pads=[1, 1]), ["x", "w", "b"], 1), ("act", {"fn": "relu"}, ["t0_0"], 1),
                  ("pool", {"kind": "max", "data_format": "NCW", "kernel": [2], "strides": [2], "pads": [0, 0]},
                   ["t1_0"], 1),
                  ("reshape", {"shape": [1, 40]}, ["t2_0"], 1), ("fc", {"transpose_w": True}, ["t3_0", "fw", "fb"], 1),
                  ("softmax", {"axis": 1}, ["t4_0"], 1)],
                 {"x": (1, 3, 16)}, {"w": rand((5, 3, 3), 1, 0.5), "b": rand((5,), 2), "fw": rand((6, 40), 3, 0.2, 0.6),
                                     "fb": rand((6,), 4)})
    g.outputs = ["t5_0", "t1_0"]
    return g


def streaming_model():
    """Two state pairs (STATE_OPS, vendor layout): s' = 0.5 s + x and c' = tanh(c + y) with
    y = fc(s') an fp32 output read again; z = fc(s) reads the state input after s' is written
    (in place, gx_run would have overwritten it). struct in_out: x, s, c | y, z; output_offset 12."""
    g = graph_of([("binary", {"fn": "mul"}, ["s", "half"], 1), ("binary", {"fn": "add"}, ["t0_0", "x"], 1),
                  ("fc", {"transpose_w": False}, ["t1_0", "w", "b"], 1), ("binary", {"fn": "add"}, ["c", "t2_0"], 1),
                  ("act", {"fn": "tanh"}, ["t3_0"], 1), ("fc", {"transpose_w": False}, ["s", "w2"], 1)],
                 {"x": (1, 6), "s": (1, 6), "c": (1, 4)},
                 {"half": np.array([0.5], np.float32), "w": rand((6, 4), 21, 0.4), "b": rand((4,), 22),
                  "w2": rand((6, 3), 23, 0.4)})
    g.outputs = ["t2_0", "t1_0", "t5_0", "t4_0"]
    cfg = state.apply(Config(compress=True, state_ops={"t1_0": "s", "t4_0": "c"}), g)
    return backend.build(g, compress_graph(g, cfg), cfg)


def npu_ops() -> set:
    return {k for k, v in REGISTRY.items() if v.npu}
