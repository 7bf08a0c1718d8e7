"""Front-end gaps real exports hit (issue 13), each on a model made the way its exporter makes
it: a clamp whose bound is computed at run time (log-mel max(x) - 80 dB), transposed
convolutions, a SavedModel only the TF1 loader reads, stable Keras .h5 input names, an ONNX
If decided by an input fixed in the config, rank-0 inputs, guarded division."""
from __future__ import annotations

import numpy as np
import pytest

from gxnpuc import sim
from gxnpuc.compiler import compile as compile_model
from gxnpuc.config import load
from test_recurrent_onnx import snr_db

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn


def _exporters():
    try:
        import onnxscript  # noqa: F401
        return ["torchscript", "dynamo"]
    except ImportError:
        return ["torchscript"]


def _export(module, shape, folder, exporter: str, name: str = "model") -> str:
    path = str(folder / f"{name}_{exporter}.onnx")
    with torch.no_grad():
        torch.onnx.export(module.eval(), (torch.randn(*shape),), path, input_names=["x"],
                          dynamo=exporter == "dynamo", opset_version=18 if exporter == "dynamo" else 13)
    return path


def _compile_onnx(folder, path: str, extra: str = ""):
    cfg = folder / "cfg.yaml"
    cfg.write_text(f"ONNX_FILE: {path}\nOUTPUT_FILE: {folder}/model.h\n{extra}")
    return compile_model(load(str(cfg)))


def _against_ort(model, path: str, feeds: dict) -> float:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    refs = sess.run(None, feeds)
    outs = sim.run(model.graph, feeds)
    return min(snr_db(outs[name], ref) for name, ref in zip(model.graph.outputs, refs))


class LogMel(nn.Module):
    """The dB conversion of a log-mel front end, clamped to 80 dB below its maximum."""

    def forward(self, x):
        db = 10 * torch.log10(torch.clamp(x, min=1e-10))
        return torch.clamp(db, min=db.max() - 80.0), torch.maximum(db, db.amax(dim=-1, keepdim=True) - 80.0)


@pytest.mark.parametrize("exporter", _exporters())
def test_clamp_to_a_bound_computed_at_run_time(tmp_path, exporter):
    path = _export(LogMel(), (1, 4, 10), tmp_path, exporter)
    model = _compile_onnx(tmp_path, path)
    x = (np.random.default_rng(0).random((1, 4, 10)) ** 8).astype(np.float32)  # 80+ dB of range
    x[0, 0, :3] = 0.0
    assert _against_ort(model, path, {"x": x}) >= 80


class Decoder(nn.Module):
    """An OCR-detection / segmentation decoder: strided, padded, grouped, dilated, 1-D."""

    def __init__(self):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(6, 4, (2, 3), stride=(2, 1), padding=(0, 2), groups=2, dilation=(1, 2))
        self.up3 = nn.ConvTranspose1d(4, 3, 4, stride=3, padding=2)

    def forward(self, x):
        y = self.up2(torch.relu(self.up1(x)))
        return self.up3(y.flatten(2))


@pytest.mark.parametrize("exporter", _exporters())
def test_conv_transpose(tmp_path, exporter):
    torch.manual_seed(0)
    path = _export(Decoder(), (1, 4, 5, 3), tmp_path, exporter)
    model = _compile_onnx(tmp_path, path, "CONV2D_COMPRESS: true\n")
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 3)).astype(np.float32)
    assert _against_ort(model, path, {"x": x}) >= 80
    assert {n.op for n in model.graph.nodes} <= {"conv", "pad", "reshape", "slice", "act"}
    convs = [w for w in model.weights.values() if w.family == "conv"]
    assert len(convs) == 3 and all(w.name.endswith("/conv") for w in convs)


@pytest.mark.parametrize("pads,auto_pad,out", [([0, 0, 0, 0], None, None), ([2, 1, 0, 2], None, None),
                                               (None, "SAME_UPPER", None), (None, None, [11, 8])])
def test_conv_transpose_padding_forms(pads, auto_pad, out):
    from onnx import helper

    from onnx_util import make_model, run_ort, run_ours

    attrs = {"strides": [2, 2], **({"pads": pads} if pads else {}), **({"auto_pad": auto_pad} if auto_pad else {}),
             **({"output_shape": out} if out else {})}
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)], [("x", [1, 3, 5, 4])],
                       [("y", None)], {"w": w})
    feeds = {"x": np.random.default_rng(3).standard_normal((1, 3, 5, 4)).astype(np.float32)}
    assert snr_db(run_ours(model, feeds)["y"], run_ort(model, feeds)["y"]) >= 80


class GuardedDivision(nn.Module):
    """Energy normalisation that guards against an empty frame: where(b == 0, 0, a / b)."""

    def forward(self, x):
        a, b = x[:, :4], torch.relu(x[:, 4:])
        return torch.where(b == 0, torch.zeros_like(a), a / b), torch.where(b != 0, a / b, 0.0)


@pytest.mark.parametrize("exporter", _exporters())
def test_guarded_division(tmp_path, exporter):
    path = _export(GuardedDivision(), (1, 8), tmp_path, exporter)
    model = _compile_onnx(tmp_path, path)
    x = np.random.default_rng(6).standard_normal((1, 8)).astype(np.float32)
    x[0, 5] = -abs(x[0, 5])  # b = relu(x[4:]) has a zero
    assert (np.maximum(x[:, 4:], 0) == 0).any()
    assert _against_ort(model, path, {"x": x}) >= 80
    assert [n.attrs["fn"] for n in model.graph.nodes if n.op == "binary"] == ["div_no_nan"] * 2
