"""PyTorch LSTM/GRU/RNN exported with both exporters compile through the CLI, match
onnxruntime in float mode (>= 80 dB), and their weights are compressed fc weights that
`-w` lists and `-s` draws."""
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
from test_recurrent_onnx import snr_db  # noqa: E402


class Speech(nn.Module):
    """A voice-activity / keyword model: bidirectional LSTM, GRU, tanh RNN, Linear head."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 12, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(24, 10, batch_first=True)
        self.rnn = nn.RNN(10, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        y, _ = self.rnn(y.transpose(0, 1))
        return self.fc(y[-1])


def _exporters():
    try:
        import onnxscript  # noqa: F401
        return ["torchscript", "dynamo"]
    except ImportError:
        return ["torchscript"]


@pytest.fixture(scope="module", params=_exporters())
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    model = Speech().eval()
    folder = tmp_path_factory.mktemp(request.param)
    path = str(folder / "speech.onnx")
    x = torch.randn(1, 7, 8)
    kw = {"dynamo": False, "opset_version": 13, "dynamic_axes": {"x": {1: "T"}}} \
        if request.param == "torchscript" else {"dynamo": True, "opset_version": 18}
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["y"], **kw)
    (folder / "out").mkdir()
    return request.param, folder, path


def _config(folder, steps: int, **keys) -> str:
    lines = ["ONNX_FILE: speech.onnx", "OUTPUT_FILE: out/model.h", f"INPUT_OPS: {{x: [1, {steps}, 8]}}"]
    lines += [f"{k}: {v}" for k, v in keys.items()]
    cfg = folder / f"cfg_{steps}.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return str(cfg)


def test_float_ir_matches_onnxruntime(exported):
    kind, folder, path = exported
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for steps in ([1, 5, 16] if kind == "torchscript" else [7]):  # the dynamo export is static
        model = compile_model(load(_config(folder, steps, COMPRESS="true")))
        x = rng.standard_normal((1, steps, 8)).astype(np.float32)
        ours = sim.run(model.graph, {"x": x})[model.graph.outputs[0]]
        assert snr_db(ours, sess.run(None, {"x": x})[0]) >= 80, steps


def test_cli_compiles_and_lists_the_recurrent_weights(exported, capsys):
    kind, folder, path = exported
    cfg = _config(folder, 7, COMPRESS="true")
    assert cli.main([cfg]) == 0
    assert os.path.getsize(folder / "out" / "model.h") > 0
    assert cli.main(["-w", "-s", cfg]) == 0
    listed = re.findall(r"^(\S.*): \[([\d, ]+)\]$", capsys.readouterr().out, re.M)
    names = [n for n, _ in listed]
    # per direction the input and the recurrent weight of each layer, named after the initializer
    import onnx

    inits = {t.name for t in onnx.load(path).graph.initializer}
    recurrent = [n for n in names if n.endswith(("/forward", "/reverse"))]
    assert {n.rsplit("/", 1)[0] for n in recurrent} <= inits
    # LSTM 2 directions x (W, R); GRU (torch's: linear_before_reset) W, R; RNN W, R (the
    # dynamo exporter unrolls nn.RNN itself into MatMul/Add/Tanh)
    assert len(recurrent) == 4 + 2 + (2 if kind == "torchscript" else 0), names
    hists = [f for f in os.listdir(folder / "out" / "npu_jpgs") if f.endswith(".jpg")]
    assert len(hists) == len(names)
