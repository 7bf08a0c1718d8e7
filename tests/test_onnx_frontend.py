"""The ONNX reader: external weight files, unknown dimensions, names kept, OUTPUT_OPS cuts."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gxnpuc import sim
from gxnpuc.errors import ConfigError, ModelError, UnsupportedOpError
from gxnpuc.frontend.onnx import to_ir


def _fc_model(batch="N", feat=8):
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((feat, 4)).astype(np.float32), "fc.weight")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, feat])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    node = helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")
    graph = helper.make_graph([node], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_external_data_beside_the_model_is_read(tmp_path):
    model = _fc_model()
    w_ref = numpy_helper.to_array(model.graph.initializer[0])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    assert (tmp_path / "m.onnx.data").exists()
    g = to_ir(str(path))
    np.testing.assert_array_equal(g.const("fc.weight"), w_ref)
    x = np.ones((1, 8), np.float32)
    np.testing.assert_allclose(sim.run(g, {"x": x})["y"], x @ w_ref, rtol=1e-6)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(32, np.float32).tobytes())
    inner = tmp_path / "models"
    inner.mkdir()
    model = _fc_model()
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../secret.bin")
    path = inner / "m.onnx"
    onnx.save_model(model, path)
    with pytest.raises(ModelError, match="external weight data"):
        to_ir(str(path))


def test_missing_external_data_is_one_error(tmp_path):
    model = _fc_model()
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True,
                    location="m.onnx.data", size_threshold=0)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelError, match="keep the .onnx.data file"):
        to_ir(str(tmp_path / "m.onnx"))


def test_unknown_batch_becomes_one_with_a_note(tmp_path):
    onnx.save_model(_fc_model(), tmp_path / "m.onnx")
    g = to_ir(str(tmp_path / "m.onnx"))
    assert g.tensors["x"].shape == (1, 8)
    assert any("batch" in note for note in g.meta["notes"])


def test_unknown_inner_dimension_needs_input_ops(tmp_path):
    model = _fc_model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "feat"
    onnx.save_model(model, tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match=r"INPUT_OPS: \{x: \[1, \.\.\.\]\}"):
        to_ir(str(tmp_path / "m.onnx"))
    g = to_ir(str(tmp_path / "m.onnx"), input_shapes={"x": (2, 8)})
    assert g.tensors["y"].shape == (2, 4)


def test_output_ops_cut_away_an_unsupported_tail(tmp_path):
    model = _fc_model(batch=1)
    lstm_like = helper.make_node("Unique", ["y"], ["u"], name="tail")
    model.graph.node.append(lstm_like)
    model.graph.output.append(helper.make_tensor_value_info("u", TensorProto.FLOAT, None))
    onnx.save_model(model, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedOpError, match=r"tail \[Unique\]"):
        to_ir(str(tmp_path / "m.onnx"))
    g = to_ir(str(tmp_path / "m.onnx"), outputs=["y"])
    assert g.outputs == ["y"] and [n.op for n in g.nodes] == ["fc"]


def test_every_unsupported_node_is_listed_at_once(tmp_path):
    model = _fc_model(batch=1)
    model.graph.node.extend([helper.make_node("Unique", ["y"], ["u1"], name="first"),
                             helper.make_node("Det", ["y"], ["u2"], name="second")])
    model.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                               for n in ("u1", "u2")])
    onnx.save_model(model, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedOpError) as err:
        to_ir(str(tmp_path / "m.onnx"))
    assert [i[0] for i in err.value.items] == ["first", "second"]


def test_input_that_nothing_produces_is_named(tmp_path):
    model = _fc_model(batch=1)
    model.graph.node.append(helper.make_node("Relu", ["ghost"], ["r"], name="reader"))
    model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    onnx.save_model(model, tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"node 'reader' \[Relu\].*reads 'ghost'"):
        to_ir(str(tmp_path / "m.onnx"))


def test_weights_beyond_fp16_are_noted(tmp_path):
    from gxnpuc.compiler import compile as compile_model
    from gxnpuc.config import Config

    model = _fc_model(batch=1)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(
        np.full((8, 4), 1e5, np.float32), "fc.weight"))
    onnx.save_model(model, tmp_path / "m.onnx")
    cfg = Config(model_path=str(tmp_path / "m.onnx"), output_file=str(tmp_path / "m.h"))
    notes = compile_model(cfg).graph.meta["notes"]
    assert any("fc.weight" in n and "fp16 range" in n for n in notes)


def test_tensor_written_twice_is_refused(tmp_path):
    model = _fc_model(batch=1)
    model.graph.node.append(helper.make_node("Relu", ["x"], ["y"], name="second_writer"))
    onnx.save_model(model, tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"second_writer.*writes 'y'.*'/fc/MatMul' already"):
        to_ir(str(tmp_path / "m.onnx"))


def test_unsupported_ops_behind_an_unsupported_op_are_listed_too(tmp_path):
    model = _fc_model(batch=1)
    model.graph.node.extend([helper.make_node("Unique", ["y"], ["u"], name="first"),
                             helper.make_node("ArgMax", ["u"], ["a"], name="behind", axis=1)])
    model.graph.output.append(helper.make_tensor_value_info("a", TensorProto.INT64, None))
    path = str(tmp_path / "m.onnx")
    onnx.save_model(model, path)
    with pytest.raises(UnsupportedOpError) as err:
        to_ir(path)
    assert [i[:2] for i in err.value.items] == [("first", "Unique"), ("behind", "ArgMax")]
    assert err.value.where == path
