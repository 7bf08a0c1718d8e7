"""Test helpers for the npu simulator and --eval: small ONNX test models built in code with
fixed seeds, and compiling one into a CompiledModel with a config made in code.

`compile_onnx` saves the model and uses compiler.compile.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import onnx
from onnx import TensorProto, helper

from gxnpuc.config import Config
from onnx_util import make_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_kws():
    """The bundled example's builder module (examples/make_kws.py)."""
    spec = importlib.util.spec_from_file_location("make_kws", os.path.join(ROOT, "examples", "make_kws.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def config_file(path, keys: dict) -> str:
    """Write a flat config.yaml (`KEY: value` lines, booleans as true/false); its path."""
    lines = [f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in keys.items()]
    os.makedirs(os.path.join(os.path.dirname(str(path)), "out"), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return str(path)


def make_cfg(model_path: str, out_dir: str, **kw) -> Config:
    kw.setdefault("output_file", os.path.join(out_dir, "model.h"))
    return Config(model_key="ONNX_FILE", model_path=model_path, **kw)


def compile_cfg(cfg: Config):
    from gxnpuc import compiler

    return compiler.compile(cfg)


def compile_onnx(model: onnx.ModelProto, out_dir: str, **kw):
    """(CompiledModel, Config) for a ModelProto saved into out_dir."""
    path = os.path.join(out_dir, "model.onnx")
    onnx.save(model, path)
    cfg = make_cfg(path, out_dir, **kw)
    return compile_cfg(cfg), cfg


# -- test models -------------------------------------------------------------------------------
def _w(rng, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * (scale or np.sqrt(2.0 / fan_in))).astype(np.float32)


def cnn2d(seed: int = 0) -> onnx.ModelProto:
    """Conv-BN-Relu-MaxPool, depthwise Conv-Relu6, GlobalAveragePool, Flatten, Gemm, Softmax."""
    rng = np.random.default_rng(seed)
    c1, c2 = 8, 8
    init = {"c1.w": _w(rng, c1, 3, 3, 3), "c1.b": _w(rng, c1, scale=0.1),
            "bn.s": (1 + 0.1 * rng.standard_normal(c1)).astype(np.float32),
            "bn.b": _w(rng, c1, scale=0.1), "bn.m": _w(rng, c1, scale=0.1),
            "bn.v": (0.5 + rng.random(c1)).astype(np.float32),
            "dw.w": _w(rng, c2, 1, 3, 3), "dw.b": _w(rng, c2, scale=0.1),
            "fc.w": _w(rng, 5, c2), "fc.b": _w(rng, 5, scale=0.1),
            "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn.s", "bn.b", "bn.m", "bn.v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "dw.w", "dw.b"], ["dw"], group=c2, pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["dw", "lo", "hi"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=1)]
    return make_model(nodes, [("x", [1, 3, 16, 16])], [("prob", [1, 5])], init)


def mlp(seed: int = 1, tail_rows: int = 0, tail_scale: float = 40.0) -> onnx.ModelProto:
    """MatMul+Add, LeakyRelu, MatMul+Add, Tanh, Gemm -> logits [1, 10].

    tail_rows > 0 plants a long tail in `fc2.w`: a few outliers of tail_scale x its std in
    the rows that read the last `tail_rows` hidden units, which carry almost no signal
    (their fc1 columns are tiny), so clipping them is cheap and the range they waste is
    costly: the case where clipping beats excluding.
    """
    rng = np.random.default_rng(seed)
    d_in, h1, h2, d_out = 32, 48, 48, 10
    fc1 = _w(rng, d_in, h1)
    fc2 = _w(rng, h1, h2)
    if tail_rows:
        fc1[:, -tail_rows:] *= 1e-3
        fc1_b = _w(rng, h1, scale=0.1)
        fc1_b[-tail_rows:] = 0.0
        idx = rng.choice(h2, tail_rows, replace=False)
        signs = np.sign(rng.standard_normal(tail_rows))
        fc2[np.arange(h1 - tail_rows, h1), idx] = tail_scale * fc2.std() * signs
    init = {"fc1.w": fc1, "fc1.b": fc1_b if tail_rows else _w(rng, h1, scale=0.1), "fc2.w": fc2,
            "fc2.b": _w(rng, h2, scale=0.1), "out.w": _w(rng, d_out, h2), "out.b": _w(rng, d_out, scale=0.1)}
    nodes = [helper.make_node("MatMul", ["x", "fc1.w"], ["m1"]),
             helper.make_node("Add", ["m1", "fc1.b"], ["a1"]),
             helper.make_node("LeakyRelu", ["a1"], ["r1"], alpha=0.1),
             helper.make_node("MatMul", ["r1", "fc2.w"], ["m2"]),
             helper.make_node("Add", ["m2", "fc2.b"], ["a2"]),
             helper.make_node("Tanh", ["a2"], ["t2"]),
             helper.make_node("Gemm", ["t2", "out.w", "out.b"], ["logits"], transB=1)]
    return make_model(nodes, [("x", [1, d_in])], [("logits", [1, d_out])], init)


def two_outputs(seed: int = 2) -> onnx.ModelProto:
    """Conv1d (NCW) -> Sigmoid -> ReduceMean over time, and a second head (Gemm) -> [1, 4]."""
    rng = np.random.default_rng(seed)
    init = {"c.w": _w(rng, 6, 4, 3), "c.b": _w(rng, 6, scale=0.1), "h.w": _w(rng, 6, 4),
            "axes": np.array([2], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "c.w", "c.b"], ["c"], pads=[1, 1]),
             helper.make_node("Sigmoid", ["c"], ["seq"]),
             helper.make_node("ReduceMean", ["seq", "axes"], ["pooled"], keepdims=0),
             helper.make_node("MatMul", ["pooled", "h.w"], ["head"])]
    return make_model(nodes, [("x", [1, 4, 20])], [("seq", [1, 6, 20]), ("head", [1, 4])], init, opset=18)


def single_op(op: str, x_shape, w: np.ndarray, **attrs) -> onnx.ModelProto:
    """One weighted node y = op(x, w) with float32 I/O (shapes inferred by onnx)."""
    node = helper.make_node(op, ["x", "w"], ["y"], **attrs)
    model = make_model([node], [("x", list(x_shape))], [("y", None, TensorProto.FLOAT)], {"w": w})
    return onnx.shape_inference.infer_shapes(model)


def rand_feeds(model_or_graph, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{input: [n, *shape]} standard normal for a CompiledModel's graph."""
    g = getattr(model_or_graph, "graph", model_or_graph)
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((n, *g.tensors[k].shape)).astype(np.float32) for k in g.inputs}
