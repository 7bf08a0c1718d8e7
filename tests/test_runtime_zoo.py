"""The C runtime on the real PyTorch and Keras zoo models the other tests build: compiled with
COMPRESS / CONV2D_COMPRESS / FUSE_BN on, run on seeded inputs, every output and every
intermediate tensor compared with the simulator's npu mode as fp16 bits.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from gxnpuc import runtime_host as rh
from gxnpuc.compiler import compile as compile_model
from gxnpuc.config import load
from test_runtime import AWAITING_NUMERICS_ULPS

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on PATH")
TORCH = ("dscnn_kws", "resnet8", "mobilenetv2", "autoencoder", "bc_resnet", "matchboxnet", "tc_resnet",
         "vad_mlp", "shape_ops", "norm_acts", "resize_pool", "const_ops", "embedder", "tiny_attention")
KERAS = ("ds_cnn_kws", "separable_1d", "plumbing", "norm_acts")


def _compile(folder, key: str, path: str):
    cfg = folder / "c.yaml"
    cfg.write_text(f"{key}: {os.path.basename(path)}\nOUTPUT_FILE: out.h\nCOMPRESS: true\n"
                   "CONV2D_COMPRESS: true\nFUSE_BN: true\n")
    return compile_model(load(str(cfg)))


def _check(model, seed: int):
    g = model.graph
    rng = np.random.default_rng(seed)
    feeds = {k: rng.standard_normal((2, *g.tensors[k].shape)).astype(np.float32) for k in g.inputs}
    c, _ = rh.compare(model, feeds)
    worst = max(u for *_, u in c.per_node)
    assert worst <= AWAITING_NUMERICS_ULPS, c.per_node
    if AWAITING_NUMERICS_ULPS == 0:
        assert c.first_diff is None and all(ok for ok, _ in c.outputs.values())


@pytest.mark.parametrize("name", TORCH)
def test_torch_zoo_model_runtime_matches_simulator(name, tmp_path):
    pytest.importorskip("torch")
    import zoo_torch_models as zoo

    variant = "ts17_dyn" if name in ("tiny_attention", "embedder") else "ts13"  # attention: opset >= 14
    path = zoo.export(zoo.build(name), zoo.MODELS[name][1], str(tmp_path / "m.onnx"), variant)
    _check(_compile(tmp_path, "ONNX_FILE", path), 3)


@pytest.mark.parametrize("name", KERAS)
def test_keras_zoo_model_runtime_matches_simulator(name, tmp_path):
    pytest.importorskip("tensorflow")
    import zoo_keras_models as zk

    model = zk.build(name)
    path = str(tmp_path / "m.keras")
    model.save(path)
    _check(_compile(tmp_path, "KERAS_FILE", path), 4)
