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
