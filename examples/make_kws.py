"""Build the bundled keyword-spotting example: examples/make_kws.py OUT_DIR.

Writes OUT_DIR/kws.onnx, a small 1-D CNN laid out exactly as torch.onnx.export (opset 17)
emits it for PyTorch code (Conv1d + BatchNorm1d + ReLU blocks, the `x.view(x.size(0), -1)`
Shape/Gather/Unsqueeze/Concat/Reshape chain, Linear layers as Gemm with transB=1), and
OUT_DIR/kws_inputs.npz with 64 seeded MFCC-like inputs keyed "mfcc" for `gxnpuc --eval`.
Only onnx.helper and numpy are used, with a fixed seed, so every run gives the same bytes.

The PyTorch module this mimics:

    class KWS(nn.Module):                    # input (N, 40 MFCC, 98 frames)
        conv1 = Conv1d(40, 64, 3, padding=1);            bn1 = BatchNorm1d(64)
        dw    = Conv1d(64, 64, 3, padding=2, dilation=2, groups=64); bn2 = BatchNorm1d(64)
        pw    = Conv1d(64, 64, 1);                       bn3 = BatchNorm1d(64)
        pool  = AdaptiveAvgPool1d(1)
        fc1   = Linear(64, 64);  fc2 = Linear(64, 12)    # 12 keywords -> logits
        def forward(self, x):
            x = relu(bn1(conv1(x))); x = relu(bn2(dw(x))); x = relu(bn3(pw(x)))
            x = self.pool(x); x = x.view(x.size(0), -1)
            return fc2(relu(fc1(x)))

fc1.weight is deliberately long-tailed (a few outliers at 60x its std), the weight that
`gxnpuc -s` makes visible and that EXCLUDE_COMPRESS_OPS / WEIGHT_MIN_MAX are for.
"""
from __future__ import annotations

import os
import sys

import numpy as np

SEED = 2024
N_MFCC, N_FRAMES, CH, HIDDEN, N_CLASSES = 40, 98, 96, 96, 12
N_INPUTS = 64
OPSET = 17
EPS = 1e-5


# -- weights that look trained -----------------------------------------------------------
def _kaiming(rng, shape, fan_in, laplace=False):
    """He-scaled weights; Laplacian where trained weights are usually peakier than Gaussian."""
    std = np.sqrt(2.0 / fan_in)
    if laplace:
        return rng.laplace(0.0, std / np.sqrt(2.0), shape).astype(np.float32)
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _plant_outliers(rng, w, count=4, times_std=60.0):
    """A few weights far outside the bulk: the long tail users debug with -s."""
    flat = w.reshape(-1).copy()
    idx = rng.choice(flat.size, count, replace=False)
    flat[idx] = np.sign(rng.standard_normal(count)) * times_std * flat.std()
    return flat.reshape(w.shape).astype(np.float32)


def make_inputs(n=N_INPUTS, seed=SEED + 1):
    """MFCC-like features (N, 40, 98): per-coefficient scale decaying, smooth over time.

    Each sample gets its own spectral envelope (a per-coefficient offset), as different
    words do, so the pooled features and the logits differ from sample to sample.
    """
    rng = np.random.default_rng(seed)
    scale = (8.0 / (1.0 + np.arange(N_MFCC)))[None, :, None]
    envelope = rng.standard_normal((n, N_MFCC, 1))
    noise = rng.standard_normal((n, N_MFCC, N_FRAMES + 2))
    smooth = (noise[..., :-2] + noise[..., 1:-1] + noise[..., 2:]) / np.sqrt(3.0)
    return ((envelope + 0.7 * smooth) * scale).astype(np.float32)


# -- a numpy forward pass, only to give BatchNorm the running statistics of real data -----
def _conv1d(x, w, b, pad, dilation=1, groups=1):
    n, c, t = x.shape
    o, ipg, k = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    t_out = t + 2 * pad - dilation * (k - 1)
    cols = np.stack([xp[:, :, j * dilation:j * dilation + t_out] for j in range(k)], -1)  # n c t k
    cols = cols.reshape(n, groups, c // groups, t_out, k)
    wg = w.reshape(groups, o // groups, ipg, k)
    return np.einsum("ngctk,gock->ngot", cols, wg, optimize=True).reshape(n, o, t_out) + b[None, :, None]


def _calibrated_bn(rng, y, prefix):
    """BN params with trained-looking gamma/beta and running stats measured on y (N, C, T)."""
    c = y.shape[1]
    return {f"{prefix}.weight": (1.0 + 0.1 * rng.standard_normal(c)).astype(np.float32),
            f"{prefix}.bias": (0.1 + 0.1 * rng.standard_normal(c)).astype(np.float32),
            f"{prefix}.running_mean": y.mean(axis=(0, 2)).astype(np.float32),
            f"{prefix}.running_var": y.var(axis=(0, 2)).astype(np.float32)}


def _bn_relu(y, p, prefix):
    g, b = p[f"{prefix}.weight"], p[f"{prefix}.bias"]
    m, v = p[f"{prefix}.running_mean"], p[f"{prefix}.running_var"]
    z = (y - m[:, None]) / np.sqrt(v[:, None] + EPS) * g[:, None] + b[:, None]
    return np.maximum(z, 0)


def make_params(seed=SEED):
    """Every initializer by its PyTorch state_dict name (fc2's weight as the exporter renames it)."""
    rng = np.random.default_rng(seed)
    x = make_inputs(128, seed + 7)  # "training" data for the BN statistics
    p = {"conv1.weight": _kaiming(rng, (CH, N_MFCC, 3), N_MFCC * 3),
         "conv1.bias": (0.05 * rng.standard_normal(CH)).astype(np.float32)}
    y = _conv1d(x, p["conv1.weight"], p["conv1.bias"], pad=1)
    p.update(_calibrated_bn(rng, y, "bn1"))
    y = _bn_relu(y, p, "bn1")
    p["dw.weight"] = _kaiming(rng, (CH, 1, 3), 3, laplace=True)
    p["dw.bias"] = (0.05 * rng.standard_normal(CH)).astype(np.float32)
    y = _conv1d(y, p["dw.weight"], p["dw.bias"], pad=2, dilation=2, groups=CH)
    p.update(_calibrated_bn(rng, y, "bn2"))
    y = _bn_relu(y, p, "bn2")
    p["pw.weight"] = _kaiming(rng, (CH, CH, 1), CH, laplace=True)
    p["pw.bias"] = (0.05 * rng.standard_normal(CH)).astype(np.float32)
    y = _conv1d(y, p["pw.weight"], p["pw.bias"], pad=0)
    p.update(_calibrated_bn(rng, y, "bn3"))
    p["fc1.weight"] = _plant_outliers(rng, _kaiming(rng, (HIDDEN, CH), CH))
    p["fc1.bias"] = (0.05 * rng.standard_normal(HIDDEN)).astype(np.float32)
    p["onnx::Gemm_123"] = _kaiming(rng, (N_CLASSES, HIDDEN), HIDDEN, laplace=True)  # fc2.weight
    p["fc2.bias"] = (0.1 * rng.standard_normal(N_CLASSES)).astype(np.float32)
    return p


# -- the ONNX graph, node for node as torch.onnx.export writes it -------------------------
def _conv_block(helper, x, conv, bn, relu, k, pad, dilation=1, groups=1):
    """/conv/Conv -> /bn/BatchNormalization -> /relu/Relu with PyTorch's tensor names."""
    c_out, r_out = f"/{conv}/Conv_output_0", f"/{relu}/Relu_output_0"
    bn_out = f"/{bn}/BatchNormalization_output_0"
    return [
        helper.make_node("Conv", [x, f"{conv}.weight", f"{conv}.bias"], [c_out], name=f"/{conv}/Conv",
                         dilations=[dilation], group=groups, kernel_shape=[k], pads=[pad, pad], strides=[1]),
        helper.make_node("BatchNormalization", [c_out, f"{bn}.weight", f"{bn}.bias", f"{bn}.running_mean",
                                                f"{bn}.running_var"], [bn_out],
                         name=f"/{bn}/BatchNormalization", epsilon=EPS, momentum=0.9),
        helper.make_node("Relu", [bn_out], [r_out], name=f"/{relu}/Relu"),
    ], r_out


def _flatten_chain(helper, numpy_helper, x):
    """x.view(x.size(0), -1): the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain."""
    def const(name, value):
        t = numpy_helper.from_array(np.array(value, dtype=np.int64), f"{name}_output_0")
        return helper.make_node("Constant", [], [f"{name}_output_0"], name=name, value=t)
    return [
        helper.make_node("Shape", [x], ["/Shape_output_0"], name="/Shape"),
        const("/Constant", 0),
        helper.make_node("Gather", ["/Shape_output_0", "/Constant_output_0"], ["/Gather_output_0"],
                         name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["/Gather_output_0", "onnx::Unsqueeze_57"], ["/Unsqueeze_output_0"],
                         name="/Unsqueeze"),
        const("/Constant_1", [-1]),
        helper.make_node("Concat", ["/Unsqueeze_output_0", "/Constant_1_output_0"], ["/Concat_output_0"],
                         name="/Concat", axis=0),
        helper.make_node("Reshape", [x, "/Concat_output_0"], ["/Reshape_output_0"], name="/Reshape"),
    ], "/Reshape_output_0"


def build_model(seed=SEED):
    """The KWS network as an onnx.ModelProto (checked)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    params = make_params(seed)
    nodes = []
    for conv, bn, relu, k, pad, dil, groups in (("conv1", "bn1", "relu1", 3, 1, 1, 1),
                                                ("dw", "bn2", "relu2", 3, 2, 2, CH),
                                                ("pw", "bn3", "relu3", 1, 0, 1, 1)):
        block, x = _conv_block(helper, nodes[-1].output[0] if nodes else "mfcc", conv, bn, relu,
                               k, pad, dil, groups)
        nodes += block
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["/pool/GlobalAveragePool_output_0"],
                                  name="/pool/GlobalAveragePool"))
    chain, x = _flatten_chain(helper, numpy_helper, "/pool/GlobalAveragePool_output_0")
    nodes += chain
    nodes += [
        helper.make_node("Gemm", [x, "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"], name="/fc1/Gemm",
                         alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu4/Relu_output_0"], name="/relu4/Relu"),
        helper.make_node("Gemm", ["/relu4/Relu_output_0", "onnx::Gemm_123", "fc2.bias"], ["logits"],
                         name="/fc2/Gemm", alpha=1.0, beta=1.0, transB=1),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "onnx::Unsqueeze_57"))
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("mfcc", TensorProto.FLOAT, ["batch", N_MFCC, N_FRAMES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pytorch", producer_version="2.3.0", ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv=None) -> int:
    import onnx

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python examples/make_kws.py OUT_DIR", file=sys.stderr)
        return 2
    out_dir = argv[0]
    os.makedirs(out_dir, exist_ok=True)
    model = build_model()
    onnx.save(model, os.path.join(out_dir, "kws.onnx"))
    np.savez(os.path.join(out_dir, "kws_inputs.npz"), mfcc=make_inputs())
    n_weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"wrote {os.path.join(out_dir, 'kws.onnx')} ({len(model.graph.node)} nodes, "
          f"{n_weights} parameters with the BatchNorm statistics) and "
          f"{os.path.join(out_dir, 'kws_inputs.npz')} ({N_INPUTS} inputs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
