"""An ONNX If decided by an input the config fixes (INPUT_VALUES), as voice-activity detectors
branch on their sample-rate input `sr` (a rank-0 int64): the taken branch is compiled and
matches onnxruntime; without the fixed value the If is refused with the fix; rank-0 float
inputs stay inputs."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc import cli, sim
from gxnpuc.compiler import compile as compile_model
from gxnpuc.config import load
from onnx_util import make_model, run_ort
from test_recurrent_onnx import snr_db

pytest.importorskip("onnxruntime")


def vad_model():
    """x [1, 8], sr (int64 scalar), gain (float scalar): If sr == 16000 then 16 kHz head else 8 kHz."""
    def branch(tag: str, seed: int):
        w = helper.make_tensor(f"{tag}.weight", TensorProto.FLOAT, [8, 4],
                               np.random.default_rng(seed).standard_normal(32).astype(np.float32))
        nodes = [helper.make_node("MatMul", ["scaled", f"{tag}.weight"], [f"{tag}_mm"], name=f"/{tag}/MatMul"),
                 helper.make_node("Sigmoid", [f"{tag}_mm"], [f"{tag}_out"], name=f"/{tag}/Sigmoid")]
        return helper.make_graph(nodes, tag, [], [helper.make_tensor_value_info(f"{tag}_out", TensorProto.FLOAT,
                                                                                [1, 4])], [w])

    nodes = [helper.make_node("Mul", ["x", "gain"], ["scaled"], name="/Mul"),
             helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="/Equal"),
             helper.make_node("If", ["is16k"], ["prob"], name="/If", then_branch=branch("head16k", 1),
                              else_branch=branch("head8k", 2))]
    return make_model(nodes, [("x", [1, 8]), ("sr", [], TensorProto.INT64), ("gain", [])],
                      [("prob", [1, 4])], {"sr16k": np.array(16000, np.int64)})


@pytest.mark.parametrize("sr", [16000, 8000])
def test_if_on_a_fixed_sample_rate(tmp_path, sr):
    import onnx

    model = vad_model()
    onnx.save(model, str(tmp_path / "vad.onnx"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"ONNX_FILE: vad.onnx\nOUTPUT_FILE: model.h\nCOMPRESS: true\nINPUT_VALUES: {{sr: {sr}}}\n")
    compiled = compile_model(load(str(cfg)))
    assert compiled.graph.inputs == ["x", "gain"]  # gain: a rank-0 float input stays an input
    feeds = {"x": np.random.default_rng(5).standard_normal((1, 8)).astype(np.float32),
             "gain": np.array(0.7, np.float32)}
    ours = sim.run(compiled.graph, feeds)["prob"]
    ref = run_ort(model, {**feeds, "sr": np.array(sr, np.int64)})["prob"]
    assert snr_db(ours, ref) >= 80
    assert [w.name for w in compiled.weights.values() if w.family == "fc"] == \
        ["head16k.weight" if sr == 16000 else "head8k.weight"]
    assert cli.main([str(cfg)]) == 0


def test_if_on_a_runtime_value_says_how_to_fix_it(tmp_path, capsys):
    import onnx

    onnx.save(vad_model(), str(tmp_path / "vad.onnx"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("ONNX_FILE: vad.onnx\nOUTPUT_FILE: model.h\n")
    assert cli.main([str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "/If [If]" in err and "INPUT_VALUES: {sr: 16000}" in err and len(err.splitlines()) == 1
