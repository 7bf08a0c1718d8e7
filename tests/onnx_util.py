"""Test helpers: build small ONNX models in code and run them through gxnpuc and onnxruntime.

`make_model` builds a model from onnx.helper nodes; `run_both` lowers it with the ONNX front
end, runs the float simulator and onnxruntime on the same feeds; `assert_close` compares with
a tolerance relative to the reference's scale.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gxnpuc import sim
from gxnpuc.frontend import onnx as onnx_front


def _value_info(v, default_type=TensorProto.FLOAT):
    """A ValueInfoProto from itself, (name, shape) or (name, shape, elem_type); shape may be None."""
    if isinstance(v, onnx.ValueInfoProto):
        return v
    if isinstance(v, str):
        return helper.make_tensor_value_info(v, default_type, None)
    name, shape, *rest = v
    return helper.make_tensor_value_info(name, rest[0] if rest else default_type, shape)


def _initializer(name, value):
    if isinstance(value, onnx.TensorProto):
        return value
    return numpy_helper.from_array(np.asarray(value), name)


def make_model(nodes, inputs, outputs, initializers=None, opset: int = 17) -> onnx.ModelProto:
    """A ModelProto, checked when its output shapes are known (given or inferred).

    inputs/outputs: ValueInfoProto, name, or (name, shape[, elem_type]); shape None = infer.

    initializers: dict name -> numpy array, or a list of TensorProto.
    """
    inits = initializers or {}
    if isinstance(inits, dict):
        inits = [_initializer(k, v) for k, v in inits.items()]
    opsets = [helper.make_opsetid("", opset)]
    try:
        ir_version = helper.find_min_ir_version_for(opsets)
    except ValueError:  # opsets older than the helper's table
        ir_version = 3
    ins = [_value_info(v) for v in inputs]
    if ir_version < 4:  # before IR 4 every initializer must also be a graph input
        ins += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits]
    graph = helper.make_graph(list(nodes), "test", ins, [_value_info(v) for v in outputs], list(inits))
    model = helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)
    model = onnx.shape_inference.infer_shapes(model)  # fills outputs given without a shape
    if all(o.type.tensor_type.HasField("shape") for o in model.graph.output):
        onnx.checker.check_model(model)  # the checker needs output shapes; bad-input tests lack them
    return model


def to_ir(model: onnx.ModelProto, input_shapes=None, outputs=None):
    """Lower a ModelProto through the real front end (which reads files)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        return onnx_front.to_ir(path, input_shapes, outputs)


def run_ours(model: onnx.ModelProto, feeds: dict) -> dict:
    graph = to_ir(model, {k: np.shape(v) for k, v in feeds.items()})
    return sim.run(graph, feeds)


def ort_session(model):
    """An onnxruntime session (one thread: the test machine is shared) for a ModelProto or a path."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def run_ort(model, feeds: dict) -> dict:
    """Every output by name, for a ModelProto or a model file."""
    sess = ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def run_ort_first(model, x: np.ndarray) -> np.ndarray:
    """The first output, x fed to the first input."""
    sess = ort_session(model)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def run_reference(model: onnx.ModelProto, feeds: dict) -> dict:
    """The ONNX reference evaluator: the oracle where onnxruntime lacks a variant."""
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(model)
    return dict(zip(sess.output_names, sess.run(None, feeds)))


def run_both(model: onnx.ModelProto, feeds: dict) -> tuple[dict, dict]:
    """(gxnpuc float simulator outputs, onnxruntime outputs), both keyed by output name."""
    return run_ours(model, feeds), run_ort(model, feeds)


def assert_close(ours: dict, ref: dict, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """Every reference output matches in shape, and in value within atol*scale + rtol*|ref|."""
    assert set(ref) <= set(ours), (sorted(ours), sorted(ref))
    for name, want in ref.items():
        got = np.asarray(ours[name])
        want = np.asarray(want)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=atol * scale, err_msg=name)


def check_against_ort(model: onnx.ModelProto, feeds: dict, rtol=1e-5, atol=1e-5,
                      oracle: str = "ort") -> dict:
    """Our outputs vs onnxruntime (oracle="ort") or the reference evaluator ("ref"); returns ours."""
    ours = run_ours(model, feeds)
    ref = run_ort(model, feeds) if oracle == "ort" else run_reference(model, feeds)
    assert_close(ours, ref, rtol, atol)
    return ours


def rand(shape, seed: int = 0, scale: float = 1.0, dtype=np.float32) -> np.ndarray:
    """A fixed-seed normal array."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
