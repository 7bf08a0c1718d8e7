"""`gxnpuc -L -f PT`: what a PyTorch model exported to ONNX may contain, and whether it compiles.

PyTorch models come in through `torch.onnx.export` (ONNX_FILE). PYTORCH_LAYERS says which ONNX
op types each common PyTorch layer exports to (checked by tests/test_vendor.py, which exports
every row with torch.onnx.export); whether each compiles, and to which NPU ops, is read from
the ONNX lowering table, never written here.
"""
from __future__ import annotations

INTRO = ("PyTorch models come in through torch.onnx.export: export the model to .onnx (eval mode, "
         "fixed input shape) and give it as ONNX_FILE; these are the ONNX ops its layers become.")

# PyTorch layer / function -> ONNX op types torch.onnx.export writes for it (opset 13-17)
PYTORCH_LAYERS: dict[str, tuple[str, ...]] = {
    "nn.Conv1d, nn.Conv2d": ("Conv",),
    "nn.ConvTranspose1d, nn.ConvTranspose2d": ("ConvTranspose",),
    "nn.Linear (2-D input)": ("Gemm",),
    "nn.Linear (3-D input, per frame)": ("MatMul", "Add"),
    "nn.BatchNorm1d, nn.BatchNorm2d (after a non-conv)": ("BatchNormalization",),
    "nn.LayerNorm": ("LayerNormalization",),
    "nn.ReLU": ("Relu",),
    "nn.ReLU6, torch.clamp": ("Clip",),
    "nn.LeakyReLU": ("LeakyRelu",),
    "nn.PReLU": ("PRelu",),
    "nn.ELU": ("Elu",),
    "nn.Sigmoid": ("Sigmoid",),
    "nn.Tanh": ("Tanh",),
    "nn.Hardswish": ("HardSwish",),
    "nn.GELU": ("Erf", "Mul", "Add", "Div"),
    "nn.SiLU": ("Sigmoid", "Mul"),
    "nn.Softmax": ("Softmax",),
    "nn.LogSoftmax": ("LogSoftmax",),
    "nn.MaxPool1d, nn.MaxPool2d": ("MaxPool",),
    "nn.AvgPool1d, nn.AvgPool2d": ("AveragePool",),
    "nn.AdaptiveAvgPool2d(1)": ("GlobalAveragePool",),
    "nn.Upsample (nearest)": ("Resize",),
    "nn.ZeroPad2d, F.pad": ("Pad",),
    "torch.flatten": ("Flatten",),
    "x.view / x.reshape": ("Reshape",),
    "x.transpose / x.permute": ("Transpose",),
    "torch.cat": ("Concat",),
    "x + y, x * y, x - y, x / y": ("Add", "Mul", "Sub", "Div"),
    "x.mean(dim)": ("ReduceMean",),
    "nn.LSTM": ("LSTM",),
    "nn.GRU": ("GRU",),
}


def rows(lowering_row) -> list[list[str]]:
    """[PyTorch layer, ONNX ops, NPU ops (or why not)] for every row; lowering_row(framework,
    op type) gives [op, npu ops or "-", summary, constraints] from the lowering table."""
    from gxnpuc.ops import ONNX_LOWERINGS

    out = []
    for layer, ops in PYTORCH_LAYERS.items():
        npu = []
        for op in ops:
            if op not in ONNX_LOWERINGS:
                npu.append(f"{op}: not supported")
                continue
            row = lowering_row("onnx", op)
            npu.append(row[1] if row[1] != "-" else f"{op}: {row[2]}")
        out.append([layer, ", ".join(ops), "; ".join(dict.fromkeys(npu))])
    return out
