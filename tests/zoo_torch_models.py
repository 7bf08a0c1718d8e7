"""PyTorch models of the kinds people put on a GX8002-class chip, small and with fixed seeds,
plus `export()` that writes one in the forms people export (TorchScript or dynamo exporter,
opset, static or dynamic batch). Used by tests/test_zoo_torch.py and by hand as a zoo runner.

Every model is randomly initialised (BatchNorm statistics too) so that nothing is an
identity by accident; shapes are tiny so that export and compilation take seconds.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from zoo_torch_ops import ConstOps, Embedder, NormActs, ResizePool, ShapeOps, TinyAttention


def _bn(c: int, dims: int = 2) -> nn.Module:
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims](c)


class DsCnnKws(nn.Module):
    """MLPerf-Tiny DS-CNN keyword spotter: conv stem, depthwise-separable blocks, AvgPool2d
    over the whole map, Dropout, Linear (channels cut from 64 to 16)."""

    def __init__(self, c: int = 16, blocks: int = 2, classes: int = 12):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, (10, 4), stride=2, padding=(5, 1)), _bn(c), nn.ReLU())
        layers = []
        for _ in range(blocks):
            layers += [nn.Conv2d(c, c, 3, padding=1, groups=c), _bn(c), nn.ReLU(),
                       nn.Conv2d(c, c, 1), _bn(c), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.drop, self.pool = nn.Dropout(0.4), nn.AvgPool2d((13, 5))
        self.fc = nn.Linear(c, classes)

    def forward(self, x):  # x [N, 1, 25, 10] (frames, MFCC)
        x = self.pool(self.drop(self.body(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), _bn(c_out)
        self.c2, self.b2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), _bn(c_out)
        self.short = nn.Sequential() if stride == 1 and c_in == c_out else \
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _bn(c_out))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.short(x))


class ResNet8(nn.Module):
    """MLPerf-Tiny ResNet-8 (CIFAR): stem, three residual stages, global pool, Linear."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), _bn(8), nn.ReLU())
        self.stages = nn.Sequential(_ResBlock(8, 8, 1), _ResBlock(8, 16, 2), _ResBlock(16, 16, 2))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):  # x [N, 3, 12, 12]
        x = self.stages(self.stem(x))
        x = F.avg_pool2d(x, x.shape[-1])
        return self.fc(x.view(x.size(0), -1))


class _InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 4):
        super().__init__()
        h = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, h, 1, bias=False), _bn(h), nn.ReLU6(inplace=True),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), _bn(h), nn.ReLU6(inplace=True),
            nn.Conv2d(h, c_out, 1, bias=False), _bn(c_out))

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Tiny(nn.Module):
    """MobileNetV2 (torchvision layout): stem, inverted residuals with ReLU6 and depthwise
    convs, a residual add, adaptive average pool, dropout, Linear."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), _bn(8), nn.ReLU6(inplace=True),
            _InvertedResidual(8, 8, 1), _InvertedResidual(8, 12, 2), _InvertedResidual(12, 12, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(12, classes))

    def forward(self, x):  # x [N, 3, 16, 16]
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class DenseAutoencoder(nn.Module):
    """MLPerf-Tiny anomaly detection: Linear + BatchNorm1d + ReLU encoder/decoder."""

    def __init__(self, n_in: int = 64, h: int = 32, z: int = 8):
        super().__init__()
        dims = [n_in, h, h, z, h, h]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.body, self.out = nn.Sequential(*layers), nn.Linear(h, n_in)

    def forward(self, x):  # x [N, 64]
        return self.out(self.body(x))


class _SubSpectralNorm(nn.Module):
    """BC-ResNet's SubSpectralNorm: BatchNorm over frequency sub-bands via reshapes."""

    def __init__(self, c: int, bands: int):
        super().__init__()
        self.bands, self.bn = bands, nn.BatchNorm2d(c * bands)

    def forward(self, x):
        n, c, f, t = x.size()
        x = self.bn(x.view(n, c * self.bands, f // self.bands, t))
        return x.view(n, c, f, t)


class _BcBlock(nn.Module):
    """BC-ResNet normal block: frequency-depthwise conv + SSN, mean over frequency, temporal
    depthwise conv + BN + SiLU, pointwise conv, broadcast residual over frequency."""

    def __init__(self, c: int):
        super().__init__()
        self.f2 = nn.Sequential(nn.Conv2d(c, c, (3, 1), padding=(1, 0), groups=c, bias=False),
                                _SubSpectralNorm(c, 2))
        self.f1 = nn.Sequential(nn.Conv2d(c, c, (1, 3), padding=(0, 1), groups=c, bias=False),
                                _bn(c), nn.SiLU(), nn.Conv2d(c, c, 1, bias=False), nn.Dropout2d(0.1))

    def forward(self, x):
        aux = self.f2(x)
        y = self.f1(aux.mean(2, keepdim=True))
        return F.relu(x + aux + y)


class BcResNet(nn.Module):
    """BC-ResNet-style KWS on [N, 1, F, T] log-mels."""

    def __init__(self, c: int = 8, classes: int = 6):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 5, stride=(2, 1), padding=2)
        self.blocks = nn.Sequential(_BcBlock(c), _BcBlock(c))
        self.head = nn.Conv2d(c, classes, 1)

    def forward(self, x):  # x [N, 1, 16, 20]
        x = self.blocks(self.stem(x))
        x = self.head(x.mean(2, keepdim=True))
        return x.mean(-1).squeeze(-1)


class _MatchboxBlock(nn.Module):
    """MatchboxNet/QuartzNet: repeated 1-D time-channel separable convs, residual 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, k: int, repeat: int = 2):
        super().__init__()
        layers, c = [], c_in
        for r in range(repeat):
            layers += [nn.Conv1d(c, c, k, padding=k // 2, groups=c, bias=False),
                       nn.Conv1d(c, c_out, 1, bias=False), _bn(c_out, 1)]
            if r < repeat - 1:
                layers += [nn.ReLU(), nn.Dropout(0.1)]
            c = c_out
        self.body = nn.Sequential(*layers)
        self.res = nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), _bn(c_out, 1))

    def forward(self, x):
        return F.relu(self.body(x) + self.res(x))


class MatchboxNet(nn.Module):
    """MatchboxNet 3x1x... on [N, 20 MFCC, T]: prologue, blocks, dilated epilogue, avg pool."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.pro = nn.Sequential(nn.Conv1d(20, 20, 11, stride=2, padding=5, groups=20, bias=False),
                                 nn.Conv1d(20, 16, 1, bias=False), _bn(16, 1), nn.ReLU())
        self.blocks = nn.Sequential(_MatchboxBlock(16, 16, 5), _MatchboxBlock(16, 12, 7))
        self.epi = nn.Sequential(nn.Conv1d(12, 12, 5, dilation=2, padding=4, bias=False),
                                 _bn(12, 1), nn.ReLU(), nn.Conv1d(12, classes, 1))

    def forward(self, x):  # x [N, 20, 24]
        return F.adaptive_avg_pool1d(self.epi(self.blocks(self.pro(x))), 1).squeeze(-1)


class _TcBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv1d(c_in, c_out, 9, stride, 4, bias=False), _bn(c_out, 1)
        self.c2, self.b2 = nn.Conv1d(c_out, c_out, 9, 1, 4, bias=False), _bn(c_out, 1)
        self.short = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), _bn(c_out, 1)) \
            if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.short(x))


class TcResNet8(nn.Module):
    """TC-ResNet8: Conv1d over time with MFCCs as channels; input [N, T, 40] transposed."""

    def __init__(self, classes: int = 12):
        super().__init__()
        self.stem = nn.Conv1d(40, 16, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(_TcBlock(16, 24, 2), _TcBlock(24, 32, 2), _TcBlock(32, 32, 1))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):  # x [N, 24, 40]
        x = self.blocks(self.stem(x.transpose(1, 2)))
        x = F.avg_pool1d(x, x.shape[-1]).squeeze(-1)
        return F.softmax(self.fc(x), dim=-1)


class VadMlp(nn.Module):
    """Frame-stacked VAD: [N, 5 frames, 24 bands] -> flatten -> MLP -> speech probability."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(120, 32), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())

    def forward(self, x):  # x [N, 5, 24]
        return self.net(x)


# name -> (class, input shape with batch 1)
MODELS = {
    "dscnn_kws": (DsCnnKws, (1, 1, 25, 10)),
    "resnet8": (ResNet8, (1, 3, 12, 12)),
    "mobilenetv2": (MobileNetV2Tiny, (1, 3, 16, 16)),
    "autoencoder": (DenseAutoencoder, (1, 64)),
    "bc_resnet": (BcResNet, (1, 1, 16, 20)),
    "matchboxnet": (MatchboxNet, (1, 20, 24)),
    "tc_resnet": (TcResNet8, (1, 24, 40)),
    "vad_mlp": (VadMlp, (1, 5, 24)),
    "shape_ops": (ShapeOps, (1, 4, 8, 6)),
    "norm_acts": (NormActs, (1, 3, 6, 6)),
    "resize_pool": (ResizePool, (1, 2, 6, 6)),
    "const_ops": (ConstOps, (1, 6, 10)),
    "embedder": (Embedder, (1, 1, 8, 10)),
    "tiny_attention": (TinyAttention, (1, 6, 10)),
}

# export variant -> (dynamo, opset, dynamic batch)
VARIANTS = {
    "ts13": (False, 13, False), "ts13_dyn": (False, 13, True), "ts17_dyn": (False, 17, True),
    "dynamo18": (True, 18, False), "dynamo18_dyn": (True, 18, True),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """The model in eval mode with random weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    model = MODELS[name][0]()
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            n = m.weight.numel()
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def export(model: nn.Module, shape: tuple, path: str, variant: str) -> str:
    """torch.onnx.export as users call it; returns path. Input `x`, output `y`."""
    import warnings

    dynamo, opset, dynamic = VARIANTS[variant]
    x = torch.randn(*shape)
    kw: dict = {"input_names": ["x"], "output_names": ["y"], "opset_version": opset, "dynamo": dynamo,
                "verbose": False}
    if dynamic and dynamo:
        kw["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=64)},)
        x = torch.randn(2, *shape[1:])  # torch.export specialises a batch of 1
    elif dynamic:
        kw["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with warnings.catch_warnings():  # as users call it: no torch.no_grad() (MHA's fast path
        # has no TorchScript export)
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, **kw)
    return path


def dynamo_available() -> bool:
    """The dynamo exporter needs onnxscript."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True
