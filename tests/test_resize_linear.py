"""Linear up-sampling by integer factors (ops/resize.py: blends of shifted copies, one axis at
a time): ONNX Resize mode linear in each coordinate mode it covers and PyTorch's bilinear
F.interpolate / nn.Upsample (align_corners=False) against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from gxnpuc import sim
from gxnpuc.compiler import compile as compile_model
from gxnpuc.config import load
from onnx_util import make_model, rand, run_ort, run_ours
from test_recurrent_onnx import snr_db


@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "asymmetric"])
@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_onnx_resize_linear(ctm, by):
    x = rand((1, 2, 3, 4), 1)
    inputs = ["x", "", "s"] if by == "scales" else ["x", "", "", "s"]
    target = np.array([1, 1, 2, 3], np.float32) if by == "scales" else np.array([1, 2, 6, 12], np.int64)
    node = helper.make_node("Resize", inputs, ["y"], mode="linear", coordinate_transformation_mode=ctm)
    model = make_model([node], [("x", [1, 2, 3, 4])], [("y", None)], {"s": target}, opset=13)
    ours, ref = run_ours(model, {"x": x})["y"], run_ort(model, {"x": x})["y"]
    assert ours.shape == ref.shape == (1, 2, 6, 12)
    assert snr_db(ours, ref) >= 80


def test_torch_bilinear_upsampling(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.up = nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2, mode="bilinear")

        def forward(self, x):
            y = self.up(self.conv(x))
            return y + nn.functional.interpolate(y, scale_factor=2, mode="bilinear")[..., ::2, ::2]
    path = str(tmp_path / "up.onnx")
    with torch.no_grad():
        torch.onnx.export(Net().eval(), (torch.randn(1, 3, 5, 6),), path, input_names=["x"], opset_version=13,
                          dynamo=False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"ONNX_FILE: {path}\nOUTPUT_FILE: {tmp_path}/model.h\n")
    model = compile_model(load(str(cfg)))
    x = rand((1, 3, 5, 6), 2)
    want = run_ort(path, {"x": x})
    got = sim.run(model.graph, {"x": x})
    for name, ref in want.items():
        print(f"torch bilinear upsampling {name}: {snr_db(got[name], ref):.1f} dB")
        assert snr_db(got[name], ref) >= 80
