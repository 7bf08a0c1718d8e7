"""ONNX LSTM / GRU / RNN unrolled into NPU ops, against onnxruntime (float mode, >= 80 dB).

Every direction (forward, reverse, bidirectional), initial states, GRU's two reset forms,
LSTM peepholes, batch-major layout, over sequence lengths 1, 5 and 16; the weights become fc
weights named after the ONNX initializers; a sequence length the model leaves unknown is
refused with the INPUT_OPS line that fixes it.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from gxnpuc.errors import ConfigError
from onnx_util import make_model, run_ort, run_ours, to_ir

pytest.importorskip("onnxruntime")

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def snr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    err = float(np.sum((np.asarray(ours, np.float64) - ref) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(np.asarray(ref, np.float64) ** 2)) / err)


def recurrent_model(op: str, steps: int, direction: str = "forward", states: bool = False,
                    peephole: bool = False, layout: int = 0, batch: int = 2, seed: int = 0, **attrs):
    """One recurrent node with every output; weights named as torch's exporter names them."""
    rng = np.random.default_rng(seed)
    hidden, size, dirs, g = 6, 5, 2 if direction == "bidirectional" else 1, GATES[op]
    inits = {"W": rng.standard_normal((dirs, g * hidden, size)) * 0.5,
             "R": rng.standard_normal((dirs, g * hidden, hidden)) * 0.5,
             "B": rng.standard_normal((dirs, 2 * g * hidden)) * 0.3}
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    x_shape = [batch, steps, size] if layout else [steps, batch, size]
    s_shape = [batch, dirs, hidden] if layout else [dirs, batch, hidden]
    inputs, names = [("x", x_shape)], ["x", "W", "R", "B", ""]
    if states:
        inputs.append(("h0", s_shape))
        names.append("h0")
        if op == "LSTM":
            inputs.append(("c0", s_shape))
            names.append("c0")
    if peephole:
        inits["P"] = (rng.standard_normal((dirs, 3 * hidden)) * 0.3).astype(np.float32)
        names += [""] * (7 - len(names)) + ["P"]
    outs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, name=f"/rnn/{op}", hidden_size=hidden,
                            direction=direction, **({"layout": layout} if layout else {}), **attrs)
    model = make_model([node], inputs, [(o, None) for o in outs], inits, opset=14 if layout else 13)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs}
    return model, feeds


def _oracle(model, feeds, layout: int) -> dict:
    """onnxruntime; the ONNX reference evaluator for batch-major layout (onnxruntime has none)."""
    if not layout:
        return run_ort(model, feeds)
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in model.graph.output]
    return dict(zip(names, ReferenceEvaluator(model).run(None, feeds)))


CASES = [("LSTM", {}), ("LSTM", {"direction": "reverse"}), ("LSTM", {"direction": "bidirectional"}),
         ("LSTM", {"states": True, "peephole": True}), ("LSTM", {"direction": "bidirectional",
                                                                  "states": True, "layout": 1}),
         ("GRU", {}), ("GRU", {"linear_before_reset": 1}),
         ("GRU", {"direction": "bidirectional", "states": True}),
         ("GRU", {"direction": "reverse", "states": True, "linear_before_reset": 1}),
         ("RNN", {}), ("RNN", {"direction": "bidirectional", "states": True})]


@pytest.mark.parametrize("steps", [1, 5, 16])
@pytest.mark.parametrize("op,kw", CASES, ids=[f"{op}-{'-'.join(f'{k}{v}' for k, v in kw.items()) or 'plain'}"
                                              for op, kw in CASES])
def test_matches_onnxruntime(op, kw, steps):
    model, feeds = recurrent_model(op, steps, **kw)
    ours, ref = run_ours(model, feeds), _oracle(model, feeds, kw.get("layout", 0))
    for name in ref:
        assert ours[name].shape == ref[name].shape, name
        assert snr_db(ours[name], ref[name]) >= 80, (name, snr_db(ours[name], ref[name]))


def test_clip_and_activations():
    model, feeds = recurrent_model("LSTM", 5, clip=0.7,
                                   activations=["HardSigmoid", "Tanh", "Softsign"],
                                   activation_alpha=[0.3], activation_beta=[0.4])
    ours, ref = run_ours(model, feeds), run_ort(model, feeds)
    for name in ref:
        assert snr_db(ours[name], ref[name]) >= 80, name


def test_weights_are_fc_weights_named_after_the_initializers():
    model, feeds = recurrent_model("GRU", 5, direction="bidirectional")
    graph = to_ir(model, {k: v.shape for k, v in feeds.items()})
    fc_weights = {n.inputs[1] for n in graph.nodes if n.op == "fc"}
    assert fc_weights == {"W/forward", "W/reverse", "R/forward/zr", "R/forward/h",
                          "R/reverse/zr", "R/reverse/h"}
    assert {n.op for n in graph.nodes} <= {"fc", "binary", "act", "slice", "split", "reshape", "concat"}


def test_unknown_sequence_length_is_refused_with_the_fix():
    model, _ = recurrent_model("LSTM", 5)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "seq"
    model.graph.input[0].type.tensor_type.shape.dim[0].ClearField("dim_value")
    with pytest.raises(ConfigError) as err:
        to_ir(model)
    line = str(err.value)
    assert "input 'x'" in line and "dimension 0 is the sequence length" in line and "'seq'" in line
    assert "INPUT_OPS: {x: [T, 2, 5]}" in line
    graph = to_ir(model, {"x": [7, 2, 5]})  # the fix works
    assert graph.tensors["y"].shape == (7, 1, 2, 6)


def test_padded_batches_are_refused():
    model, feeds = recurrent_model("RNN", 4)
    node = model.graph.node[0]
    node.input[4] = "lens"
    model.graph.initializer.append(helper.make_tensor("lens", TensorProto.INT32, [2], [4, 2]))
    from gxnpuc.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="sequence_lens"):
        to_ir(model, {"x": feeds["x"].shape})
