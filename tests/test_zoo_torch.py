"""The PyTorch model zoo (tests/zoo_torch_models.py) compiles, and its float IR matches
onnxruntime, in the forms people export: TorchScript exporter at opset 13/17 and the dynamo
exporter at opset 18 (external weights), static and dynamic batch, with COMPRESS /
CONV2D_COMPRESS / FUSE_BN off and on. Each (model, export) pair is exported once; the pairs
are spread over the variants so the file stays fast (the full matrix: run the zoo by hand).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import zoo_torch_models as zoo  # noqa: E402

from gxnpuc import cli, sim  # noqa: E402
from gxnpuc.compiler import compile as compile_model  # noqa: E402
from gxnpuc.config import load  # noqa: E402
from npu_util import config_file  # noqa: E402
from onnx_util import run_ort_first  # noqa: E402

PAIRS = [("dscnn_kws", "ts13"), ("resnet8", "ts13_dyn"), ("mobilenetv2", "ts13"),
         ("autoencoder", "ts13_dyn"), ("bc_resnet", "ts17_dyn"), ("matchboxnet", "ts13"),
         ("tc_resnet", "ts13_dyn"), ("vad_mlp", "ts13"), ("shape_ops", "ts13_dyn"),
         ("norm_acts", "ts13"), ("norm_acts", "ts17_dyn"), ("resize_pool", "ts13_dyn"),
         ("const_ops", "ts13_dyn"), ("embedder", "ts17_dyn"), ("tiny_attention", "ts17_dyn")]
if zoo.dynamo_available():
    PAIRS += [("norm_acts", "dynamo18_dyn"), ("resize_pool", "dynamo18")]
FLAGS = {"off": {"COMPRESS": False, "CONV2D_COMPRESS": False, "FUSE_BN": False},
         "on": {"COMPRESS": True, "CONV2D_COMPRESS": True, "FUSE_BN": True}}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(model, variant) -> (folder, onnx path, input shape); each exported on first use."""
    root, cache = tmp_path_factory.mktemp("zoo_torch"), {}

    def get(name: str, variant: str):
        if (name, variant) not in cache:
            folder = root / f"{name}_{variant}"
            (folder / "out").mkdir(parents=True)
            shape = zoo.MODELS[name][1]
            path = zoo.export(zoo.build(name), shape, str(folder / f"{name}.onnx"), variant)
            cache[(name, variant)] = folder, path, shape
        return cache[(name, variant)]
    return get


def _config(folder, path, flags: str) -> str:
    return config_file(folder / f"{flags}.yaml", {"ONNX_FILE": os.path.basename(path),
                                                  "OUTPUT_FILE": f"out/{flags}.h", **FLAGS[flags]})


@pytest.mark.parametrize("name,variant", PAIRS, ids=[f"{m}-{v}" for m, v in PAIRS])
def test_zoo_model_compiles_and_matches_onnxruntime(exports, name, variant):
    folder, path, shape = exports(name, variant)
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    refs = [run_ort_first(path, x) for x in xs]
    for flags in FLAGS:
        model = compile_model(load(_config(folder, path, flags)))
        assert model.graph.inputs == ["x"] and model.graph.outputs == ["y"]
        for x, ref in zip(xs, refs):
            got = sim.run(model.graph, {"x": x})["y"]
            scale = float(np.abs(ref).max())
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale, err_msg=flags)
        assert any(w.compressed for w in model.weights.values()) == (flags == "on")
        if flags == "on":  # FUSE_BN folded every BatchNorm right behind a conv/Linear (BC-ResNet's
            g = model.graph  # SubSpectralNorm sits behind a reshape: a per-channel scale and shift)
            after = [n.name for n in g.nodes if n.op == "batchnorm"
                     and getattr(g.producer(n.inputs[0]), "op", "") in ("conv", "fc")]
            assert not after


@pytest.mark.parametrize("name,variant", [("norm_acts", "ts17_dyn"), ("resize_pool", "ts13_dyn")])
def test_zoo_model_through_the_cli_with_w_s_e(exports, capsys, name, variant):
    """`gxnpuc -w -s -e random` exits 0 and the float IR agrees with onnxruntime (SNR report)."""
    folder, path, _ = exports(name, variant)
    cfg = _config(folder, path, "on")
    assert cli.main(["-w", "-s", "-e", "random", cfg]) == 0
    out = capsys.readouterr().out
    assert ": [" in out  # -w lines
    assert os.listdir(folder / "out" / "npu_jpgs")
    report = json.loads(next((folder / "out").glob("*.json")).read_text())
    float_rows = [r for r in report["outputs"] if r["mode"] == "float"]
    assert float_rows and all(r["snr_db"] is None or r["snr_db"] > 100 for r in float_rows)


def test_ops_the_zoo_needed_really_appear(exports):
    """The zoo exercises the new lowerings (so a silent export change would be noticed)."""
    folder, path, _ = exports("norm_acts", "ts17_dyn")
    ops = {n.source for n in compile_model(load(_config(folder, path, "off"))).graph.nodes}
    assert {"LayerNormalization", "InstanceNormalization", "Softplus", "Erf"} <= ops
    folder, path, _ = exports("resize_pool", "ts13_dyn")
    graph = compile_model(load(_config(folder, path, "off"))).graph
    assert [n.op for n in graph.nodes].count("upsample") == 2
