"""Real PyTorch networks exported with torch.onnx.export (both exporters) compile end to end.

This is the model users actually bring: names like `/conv1/Conv` and `onnx::Gemm_12`,
Shape/Gather/Concat chains from `x.view(x.size(0), -1)`, BatchNorm, depthwise convs. Each
model compiles with COMPRESS and CONV2D_COMPRESS on; the float IR matches onnxruntime; `-w`
and `-s` name the same weights; turning a flag off removes that family from both.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn

from gxnpuc import cli, sim  # noqa: E402
from gxnpuc.compiler import compile as compile_model  # noqa: E402
from gxnpuc.config import load  # noqa: E402
from npu_util import config_file  # noqa: E402
from onnx_util import run_ort_first  # noqa: E402


class Tdnn(nn.Module):
    """Keyword spotter: Conv1d TDNN with BatchNorm, dilation, time pooling, two Linears."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(20, 32, 3), nn.BatchNorm1d(32)
        self.conv2, self.bn2 = nn.Conv1d(32, 32, 3, dilation=2, groups=32), nn.BatchNorm1d(32)
        self.conv3 = nn.Conv1d(32, 48, 1)
        self.fc1, self.fc2 = nn.Linear(48, 32), nn.Linear(32, 6)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.conv3(x)).mean(dim=-1)
        x = torch.relu(self.fc1(x.view(x.size(0), -1)))
        return self.fc2(x)


class DsCnn(nn.Module):
    """DS-CNN: conv, depthwise-separable blocks with ReLU6, global average pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, (5, 3), stride=(2, 1), padding=(2, 1)),
                                  nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16),
                                nn.ReLU6(), nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24),
                                nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        x = self.pool(self.dw(self.stem(x)))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=-1)


class SmallCnn(nn.Module):
    """Vision CNN with max pooling, PReLU, LeakyReLU, and a flatten before the classifier."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2)
        self.act1, self.act2 = nn.PReLU(8), nn.LeakyReLU(0.1)
        self.fc = nn.Linear(8 * 3 * 3, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.act1(self.c1(x)), 2)
        x = self.act2(self.c2(x))
        return self.fc(x.reshape(x.shape[0], -1))


class Mlp(nn.Module):
    """Voice-activity MLP with sigmoid/tanh gates and a residual add."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(40, 64), nn.Linear(64, 64), nn.Linear(64, 2)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = h + torch.sigmoid(self.b(h)) * h
        return self.c(h)


MODELS = {"tdnn": (Tdnn, (1, 20, 30)), "dscnn": (DsCnn, (1, 1, 20, 10)),
          "cnn": (SmallCnn, (1, 3, 14, 14)), "mlp": (Mlp, (1, 40))}


def _exporters():
    kinds = ["torchscript"]
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        kinds.append("dynamo")
    except ImportError:
        pass
    return kinds


def _trained(model: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial statistics, as a trained network has."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=[(m, e) for m in MODELS for e in _exporters()],
                ids=lambda p: f"{p[0]}-{p[1]}")
def exported(request, tmp_path_factory):
    name, exporter = request.param
    cls, shape = MODELS[name]
    torch.manual_seed(0)
    model = _trained(cls())
    folder = tmp_path_factory.mktemp(f"{name}_{exporter}")
    path = str(folder / f"{name}.onnx")
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["y"],
                          dynamo=exporter == "dynamo", opset_version=18 if exporter == "dynamo" else 13)
    return folder, path, shape


def _config(folder, path, **keys) -> str:
    return config_file(folder / f"cfg_{abs(hash(tuple(keys.items())))}.yaml",
                       {"ONNX_FILE": os.path.basename(path), "OUTPUT_FILE": "out/model.h", **keys})


@pytest.mark.parametrize("fuse_bn", [False, True])
def test_float_ir_matches_onnxruntime(exported, fuse_bn):
    folder, path, shape = exported
    cfg = load(_config(folder, path, COMPRESS=True, CONV2D_COMPRESS=True, FUSE_BN=fuse_bn))
    model = compile_model(cfg)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal(shape).astype(np.float32)
        ours = sim.run(model.graph, {model.graph.inputs[0]: x})[model.graph.outputs[0]]
        ref = run_ort_first(path, x)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    if fuse_bn:
        assert not [n for n in model.graph.nodes if n.op == "batchnorm"]


def _weights_and_hists(capsys, cfg_path):
    assert cli.main(["-w", "-s", cfg_path]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^(\S.*): \[([\d, ]+)\]$", out, re.M)
    hist_dir = os.path.join(os.path.dirname(cfg_path), "out", "npu_jpgs")
    hists = sorted(f for f in os.listdir(hist_dir) if f.endswith(".jpg")) if os.path.isdir(hist_dir) else []
    return [n for n, _ in listed], hists


@pytest.mark.parametrize("compress,conv", [(True, True), (True, False), (False, True)])
def test_w_and_s_agree_and_flags_select_families(exported, capsys, compress, conv):
    folder, path, _ = exported
    cfg_path = _config(folder, path, COMPRESS=compress, CONV2D_COMPRESS=conv, FUSE_BN=True)
    for old in (folder / "out" / "npu_jpgs").glob("*") if (folder / "out" / "npu_jpgs").exists() else ():
        old.unlink()
    names, hists = _weights_and_hists(capsys, cfg_path)
    model = compile_model(load(cfg_path))
    family = {w.name: w.family for w in model.weights.values()}
    assert names or not any(f == ("fc" if compress else "conv") for f in family.values())
    assert len(names) == len(set(names)) == len(hists)
    assert {family[n] for n in names} == {f for f, on in (("fc", compress), ("conv", conv)) if on
                                          and any(v == f for v in family.values())}
    expected = [n for n, w in model.weights.items() if w.compressed]
    assert sorted(names) == sorted(expected)
