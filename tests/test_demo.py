"""The bundled example (examples/make_kws.py + configs/kws_onnx.yaml), as `make demo` runs it.

The model must be valid ONNX that onnxruntime runs with non-degenerate outputs, keep its
planted long tail, lower to an IR whose float simulation matches onnxruntime, and compile
with the example config into -w lines and -s pictures that agree on the same weight set.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnx_util import assert_close, run_ort, to_ir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "kws_onnx.yaml")
COMPRESSED = ["conv1.weight", "dw.weight", "pw.weight", "fc1.weight", "onnx::Gemm_123"]


def _load_example():
    spec = importlib.util.spec_from_file_location("make_kws", os.path.join(ROOT, "examples", "make_kws.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


kws = _load_example()


@pytest.fixture(scope="module")
def model():
    return kws.build_model()


@pytest.fixture(scope="module")
def inputs():
    return kws.make_inputs()


def _init(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_example_shape_and_weights(model):
    onnx.checker.check_model(model, full_check=True)
    dim = model.graph.input[0].type.tensor_type.shape.dim
    assert model.graph.input[0].name == "mfcc" and dim[0].dim_param == "batch"
    assert [d.dim_value for d in dim[1:]] == [40, 98]
    n = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    assert 15_000 <= n <= 60_000
    ops = [node.op_type for node in model.graph.node]
    for chain in ("Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "BatchNormalization", "Gemm"):
        assert chain in ops
    assert next(node for node in model.graph.node if node.name == "/dw/Conv").attribute


def test_long_tail_is_planted(model):
    w = _init(model, "fc1.weight")
    bulk = np.abs(w) < 5 * w.std()
    assert 0 < np.count_nonzero(~bulk) <= 8
    assert np.abs(w).max() > 15 * w[bulk].std()


def test_example_is_deterministic(model):
    assert kws.build_model().SerializeToString() == model.SerializeToString()
    assert np.array_equal(kws.make_inputs(), kws.make_inputs())


def test_onnxruntime_outputs_are_not_degenerate(model, inputs):
    assert inputs.shape == (64, 40, 98) and inputs.dtype == np.float32
    logits = run_ort(model, {"mfcc": inputs})["logits"]
    assert logits.shape == (64, 12) and np.all(np.isfinite(logits))
    assert np.all(logits.std(axis=0) > 0.05)  # every logit reacts to the input
    assert len(set(logits.argmax(axis=1).tolist())) >= 3


def test_float_ir_matches_onnxruntime(model, inputs):
    from gxnpuc import sim

    graph = to_ir(model)  # batch left unknown: the front end sets it to 1
    x = inputs[:8]
    ours = sim.run_batch(graph, {"mfcc": x})
    ref = run_ort(model, {"mfcc": x})
    assert_close({"logits": ours["logits"].reshape(8, 12)}, ref, rtol=1e-5, atol=1e-5)


def test_main_writes_model_and_inputs(tmp_path, model):
    assert kws.main([str(tmp_path)]) == 0
    assert onnx.load(str(tmp_path / "kws.onnx")).SerializeToString() == model.SerializeToString()
    with np.load(tmp_path / "kws_inputs.npz") as npz:
        assert list(npz.keys()) == ["mfcc"] and npz["mfcc"].shape == (64, 40, 98)
    assert kws.main([]) == 2


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory):
    """configs/kws_onnx.yaml and the example, copied to the same relative places in a tmp tree."""
    root = tmp_path_factory.mktemp("demo")
    os.makedirs(root / "configs")
    shutil.copy(CONFIG, root / "configs" / "kws_onnx.yaml")
    assert kws.main([str(root / "examples" / "build")]) == 0
    return str(root / "configs" / "kws_onnx.yaml")


def test_demo_config_compiles_with_w_and_s(demo_config):
    from gxnpuc import compiler, config, report

    cfg = config.load(demo_config)
    assert cfg.compress and cfg.conv2d_compress and cfg.fuse_bn
    model = compiler.compile(cfg)
    lines = report.weight_lines(model)
    assert [line.split(": ")[0] for line in lines] == COMPRESSED
    assert lines[0] == "conv1.weight: [96, 40, 3]" and lines[-1] == "onnx::Gemm_123: [12, 96]"
    paths = report.save_histograms(model, cfg, None)
    assert len(paths) == len(lines)
    assert all(os.path.dirname(p).endswith(os.path.join("examples", "build", "npu_jpgs")) for p in paths)
    text = report.summary(model, cfg)
    assert "kws.onnx" in text and "GRUS" in text and "fits GRUS" in text


def test_demo_flags_remove_families(demo_config):
    import dataclasses

    from gxnpuc import compiler, config, report

    cfg = config.load(demo_config)
    fc_only = report.weight_lines(compiler.compile(dataclasses.replace(cfg, conv2d_compress=False)))
    assert [line.split(": ")[0] for line in fc_only] == ["fc1.weight", "onnx::Gemm_123"]
    conv_only = report.weight_lines(compiler.compile(dataclasses.replace(cfg, compress=False)))
    assert [line.split(": ")[0] for line in conv_only] == COMPRESSED[:3]
