"""ONNX quantised graphs written by onnxruntime.quantization from a small float model
(Conv-Relu-Conv(stride 2)-Relu-Flatten-MatMul-Add): quantize_static in QDQ format (per tensor
and per channel) and QOperator format, and quantize_dynamic (DynamicQuantizeLinear +
ConvInteger / MatMulInteger). gxnpuc dequantises the weights and computes activations in
float keeping each quantisation's saturation (ops/quantized.py), so the float IR is checked
at >= 80 dB against onnxruntime running the same semantics: the QDQ model with each
activation Q->DQ pair replaced by a Clip to its range (onnxruntime still dequantises the
weights itself), and for dynamic quantisation the float model with the dequantised weights.
Against onnxruntime's quantised run itself the float IR must be at least as close as that run
is to the float model (the runtime's own noise floor); both figures are printed.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gxnpuc import sim
from gxnpuc.compiler import compile as compile_model
from gxnpuc.config import load
from onnx_util import make_model, run_ort
from test_recurrent_onnx import snr_db

quant = pytest.importorskip("onnxruntime.quantization")
X_SHAPE = (1, 3, 8, 8)


def _float_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = {"W1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "B1": rng.standard_normal(8) * 0.1,
         "W2": rng.standard_normal((16, 8, 3, 3)) * 0.15, "B2": rng.standard_normal(16) * 0.1,
         "W3": rng.standard_normal((256, 10)) * 0.05, "B3": rng.standard_normal(10) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("MatMul", ["f", "W3"], ["m"]),
             helper.make_node("Add", ["m", "B3"], ["y"])]
    return make_model(nodes, [("x", list(X_SHAPE))], [("y", None)],
                      {k: v.astype(np.float32) for k, v in w.items()}, opset=13)


def _float_model_2() -> onnx.ModelProto:
    """Conv branches through LeakyRelu / Sigmoid, Concat, AveragePool, GlobalAveragePool: the
    com.microsoft QLinear ops of QOperator format."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "W2"], ["c2"]),
             helper.make_node("LeakyRelu", ["c1"], ["l1"], alpha=0.1),
             helper.make_node("Sigmoid", ["c2"], ["s2"]),
             helper.make_node("Concat", ["l1", "s2"], ["cat"], axis=1),
             helper.make_node("AveragePool", ["cat"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["ap"], ["y"])]
    inits = {"W1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "W2": rng.standard_normal((8, 3, 1, 1)) * 0.3}
    return make_model(nodes, [("x", list(X_SHAPE))], [("y", None)],
                      {k: v.astype(np.float32) for k, v in inits.items()}, opset=13)


class _Calibration(quant.CalibrationDataReader):
    def __init__(self):
        rng = np.random.default_rng(1)
        self.items = iter([{"x": rng.standard_normal(X_SHAPE).astype(np.float32)} for _ in range(16)])

    def get_next(self):
        return next(self.items, None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    paths = {"float": str(root / "float.onnx")}
    onnx.save(_float_model(), paths["float"])
    for name, fmt, per_channel in (("qdq", quant.QuantFormat.QDQ, False),
                                   ("qdq_per_channel", quant.QuantFormat.QDQ, True),
                                   ("qoperator", quant.QuantFormat.QOperator, False)):
        paths[name] = str(root / f"{name}.onnx")
        quant.quantize_static(paths["float"], paths[name], _Calibration(), quant_format=fmt,
                              per_channel=per_channel)
    paths["float2"], paths["qoperator2"] = str(root / "float2.onnx"), str(root / "qoperator2.onnx")
    onnx.save(_float_model_2(), paths["float2"])
    quant.quantize_static(paths["float2"], paths["qoperator2"], _Calibration(),
                          quant_format=quant.QuantFormat.QOperator)
    paths["dynamic"] = str(root / "dynamic.onnx")
    quant.quantize_dynamic(paths["float"], paths["dynamic"], op_types_to_quantize=["MatMul", "Conv"])
    return paths


def _ours(path: str, folder, x: np.ndarray):
    cfg = folder / "cfg.yaml"
    cfg.write_text(f"ONNX_FILE: {path}\nOUTPUT_FILE: {folder}/model.h\n")
    model = compile_model(load(str(cfg)))
    return sim.run(model.graph, {"x": x})["y"], model


def _inputs(seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, *X_SHAPE[1:])).astype(np.float32)


def _clip_oracle(path: str) -> onnx.ModelProto:
    """The QDQ model with every activation QuantizeLinear -> DequantizeLinear pair replaced by
    Clip(x, scale*(qmin - zp), scale*(qmax - zp)); weight DequantizeLinear nodes stay."""
    model = onnx.load(path)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes, clipped = [], set()
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            s, z = float(inits[n.input[1]]), inits[n.input[2]]
            lo, hi = (np.iinfo(z.dtype).min, np.iinfo(z.dtype).max)
            bounds = [f"{n.output[0]}_lo", f"{n.output[0]}_hi"]
            g.initializer.extend([numpy_helper.from_array(np.float32((lo - int(z)) * s), bounds[0]),
                                  numpy_helper.from_array(np.float32((hi - int(z)) * s), bounds[1])])
            nodes.append(helper.make_node("Clip", [n.input[0], *bounds], [n.output[0]]))
            clipped.add(n.output[0])
        elif n.op_type == "DequantizeLinear" and n.input[0] in clipped:
            nodes.append(helper.make_node("Identity", [n.input[0]], [n.output[0]]))
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return model


def _qop_oracle(path: str) -> onnx.ModelProto:
    """The QOperator model in float ONNX ops: each QLinear op becomes DequantizeLinear of its
    weight (onnxruntime dequantises), the float op, and a Clip to its output's range."""
    model = onnx.load(path)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes: list = []

    def add(name, value):
        g.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def clip(x, out, s, z):
        s, z = float(inits[s]), inits[z]
        lo, hi = np.iinfo(z.dtype).min, np.iinfo(z.dtype).max
        nodes.append(helper.make_node("Clip", [x, add(out + "_lo", (lo - int(z)) * s),
                                               add(out + "_hi", (hi - int(z)) * s)], [out]))

    for n in g.node:
        i, o = list(n.input), n.output[0]
        if n.op_type == "QuantizeLinear":
            clip(i[0], o, i[1], i[2])
        elif n.op_type == "DequantizeLinear":
            nodes.append(helper.make_node("Identity", [i[0]], [o]))
        elif n.op_type in ("QLinearConv", "QLinearMatMul", "QLinearAdd"):
            nodes.append(helper.make_node("DequantizeLinear", i[3:6], [o + "_w"],
                                          **({"axis": 0} if n.op_type == "QLinearConv" else {})))
            ins = [i[0], o + "_w"]
            if n.op_type == "QLinearConv" and len(i) > 8:
                scale = add(o + "_bs", float(inits[i[1]]) * inits[i[4]].astype(np.float64))
                nodes.append(helper.make_node("DequantizeLinear", [i[8], scale], [o + "_b"]))
                ins.append(o + "_b")
            op = {"QLinearConv": "Conv", "QLinearMatMul": "MatMul", "QLinearAdd": "Add"}[n.op_type]
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            nodes.append(helper.make_node(op, ins, [o + "_f"], **attrs))
            clip(o + "_f", o, i[6], i[7])
        elif n.op_type in _UNARY:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name != "channels_last"}
            nodes.append(helper.make_node(_UNARY[n.op_type], [i[0]], [o + "_f"], **attrs))
            clip(o + "_f", o, i[3], i[4])
        elif n.op_type == "QLinearConcat":
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            nodes.append(helper.make_node("Concat", i[2::3], [o + "_f"], **attrs))
            clip(o + "_f", o, i[0], i[1])
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return model


_UNARY = {"QLinearSigmoid": "Sigmoid", "QLinearLeakyRelu": "LeakyRelu", "QLinearAveragePool": "AveragePool",
          "QLinearGlobalAveragePool": "GlobalAveragePool"}


def _run_each(model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run_ort(model, {"x": x[i:i + 1]})["y"] for i in range(len(x))])


def _check(name, models, tmp_path, oracle, float_name: str = "float") -> None:
    x = _inputs()
    got = np.concatenate([_ours(models[name], tmp_path, x[i:i + 1])[0] for i in range(len(x))])
    runtime, flt = _run_each(models[name], x), _run_each(models[float_name], x)
    exact, floor, vs_runtime = snr_db(got, oracle), snr_db(runtime, flt), snr_db(got, runtime)
    print(f"{name}: float IR vs same-semantics onnxruntime {exact:.1f} dB; vs quantised onnxruntime "
          f"{vs_runtime:.1f} dB; quantised onnxruntime vs float model (its noise floor) {floor:.1f} dB")
    assert exact >= 80
    assert vs_runtime >= floor


@pytest.mark.parametrize("name", ["qdq", "qdq_per_channel"])
def test_qdq_static(models, tmp_path, name):
    ops = {n.op_type for n in onnx.load(models[name]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "Relu" not in ops  # the quantiser drops Relu
    _check(name, models, tmp_path, _run_each(_clip_oracle(models[name]), _inputs()))


def test_qoperator_static(models, tmp_path):
    """QLinearConv / QLinearMatMul / com.microsoft QLinearAdd, against the same model written in
    float ONNX ops (onnxruntime dequantising the weights)."""
    ops = {n.op_type for n in onnx.load(models["qoperator"]).graph.node}
    assert {"QLinearConv", "QLinearMatMul", "QLinearAdd"} <= ops
    _check("qoperator", models, tmp_path, _run_each(_qop_oracle(models["qoperator"]), _inputs()))


def test_qoperator_com_microsoft_ops(models, tmp_path):
    """QLinearLeakyRelu / QLinearSigmoid / QLinearConcat / QLinearAveragePool /
    QLinearGlobalAveragePool (com.microsoft), against the float-op oracle."""
    ops = {n.op_type for n in onnx.load(models["qoperator2"]).graph.node}
    assert {"QLinearLeakyRelu", "QLinearSigmoid", "QLinearConcat", "QLinearAveragePool",
            "QLinearGlobalAveragePool"} <= ops, ops
    _check("qoperator2", models, tmp_path, _run_each(_qop_oracle(models["qoperator2"]), _inputs()), "float2")


def test_dynamic(models, tmp_path):
    """DynamicQuantizeLinear + ConvInteger / MatMulInteger: the weights become real (the scale
    multiply folded into them), checked against the float model with the dequantised weights."""
    dyn = onnx.load(models["dynamic"])
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= {n.op_type for n in dyn.graph.node}
    inits = {t.name: numpy_helper.to_array(t) for t in dyn.graph.initializer}
    flt = onnx.load(models["float"])
    for t in flt.graph.initializer:
        if t.name.startswith("W"):
            q = inits[f"{t.name}_quantized"].astype(np.float64)
            real = (q - inits[f"{t.name}_zero_point"]) * inits[f"{t.name}_scale"]
            t.CopyFrom(numpy_helper.from_array(real.astype(np.float32), t.name))
    _check("dynamic", models, tmp_path, _run_each(flt, _inputs()))
    _, model = _ours(models["dynamic"], tmp_path, _inputs()[:1])
    assert [n.op for n in model.graph.nodes if n.op == "binary"] == ["binary"] * 3  # the bias adds only


def test_lowerings_emit_only_what_they_declare(models, emitted):
    from gxnpuc.frontend import onnx as onnx_front
    from gxnpuc.ops.base import LOWERING_EMITS, NoNpuOp

    seen = emitted
    for name in ("qdq", "qoperator", "qoperator2", "dynamic"):
        onnx_front.to_ir(models[name])
    assert {t for t, _ in seen} >= {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "com.microsoft.QLinearAdd",
                                    "ConvInteger", "MatMulInteger", "com.microsoft.QLinearConcat",
                                    "com.microsoft.QLinearGlobalAveragePool"}
    for op_type, op in seen:
        declared = LOWERING_EMITS[("onnx", op_type)]
        assert not isinstance(declared, NoNpuOp) and op in declared, (op_type, op, declared)


@pytest.mark.parametrize("zp,output_dtype,lo,hi", [(np.uint8(128), None, -128, 127),
                                                   (None, TensorProto.INT8, -128, 127),
                                                   (None, None, 0, 255), (np.int8(-5), None, -123, 132)])
def test_activation_quantize_keeps_its_saturation(zp, output_dtype, lo, hi):
    """QuantizeLinear -> DequantizeLinear of an activation is a clip to scale * [qmin - zp, qmax - zp]
    (the zero point's type, else opset 21's output_dtype, else uint8), checked in float64."""
    from gxnpuc.frontend.common import FNode, LowerCtx, lower
    from gxnpuc.ops import ONNX_LOWERINGS

    x = np.linspace(-300, 300, 61, dtype=np.float32).reshape(1, 61) * 0.05
    ctx = LowerCtx("onnx")
    ctx.add_input("x", x.shape)
    ctx.add_const("s", np.float32(0.05))
    ins = ["x", "s"]
    if zp is not None:
        ctx.add_const("z", zp)
        ins.append("z")
    attrs = {} if output_dtype is None else {"output_dtype": output_dtype}
    fnodes = [FNode("q", "QuantizeLinear", ins, ["q"], attrs), FNode("y", "DequantizeLinear", ["q", *ins[1:]], ["y"])]
    g = lower(ctx, fnodes, ["y"], ONNX_LOWERINGS)
    want = np.clip(x.astype(np.float64), lo * 0.05, hi * 0.05)
    assert np.max(np.abs(sim.run(g, {"x": x})["y"] - want)) < 1e-6
