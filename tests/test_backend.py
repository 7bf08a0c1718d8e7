"""Backend: memory plan, both output formats, the decoder, determinism, atomic writes, gcc.

Round trips compare the decoded model with the in-memory one field by field, and the npu
simulation of both bit for bit. Models are built in code (gxnpuc.ir by hand, onnx.helper).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from gxnpuc import backend, sim
from gxnpuc.backend import c_header, plan, tlv
from gxnpuc.compress import compress_graph
from gxnpuc.config import Config, names
from gxnpuc.errors import ConfigError, ModelError, OutputError
from gxnpuc.ir import Graph, Node, Tensor
from onnx_util import make_model, rand, to_ir

NASTY_INFO = 'kws v2 */ /* "quoted" \\ back\nslash ??/ trigraph ü 日本 \x00 end'
TYPES = ("c_code", "raw")


def act_chain(names=("x", "a/1", "a:2", "a.3", "y"), fns=("relu", "sigmoid", "tanh", "abs")) -> Graph:
    g = Graph(meta={"framework": "onnx", "source": "/abs/path/ignored.onnx"})
    g.tensors = {n: Tensor(n, (1, 8, 5)) for n in names}
    g.nodes = [Node(f"n{k}", "act", [names[k]], [names[k + 1]], {"fn": fn}, "Relu") for k, fn in enumerate(fns)]
    g.inputs, g.outputs = [names[0]], [names[-1]]
    return g


def conv_fc_graph():
    nodes = [helper.make_node("Conv", ["in:0", "tdnn1.affine/conv1d/w", "tdnn1.b"], ["c"], pads=[1, 1],
                              name="tdnn1/Conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc::w", "fc.b"], ["logits"], transB=1, name="fc/Gemm"),
             helper.make_node("Sigmoid", ["logits"], ["int"], name="sig")]
    rng = np.random.default_rng(7)
    sparse = rand((6, 48), 3)
    sparse[rng.random(sparse.shape) < 0.8] = 0
    inits = {"tdnn1.affine/conv1d/w": rand((4, 3, 3), 1), "tdnn1.b": rand((4,), 2), "fc::w": sparse,
             "fc.b": rand((6,), 4)}
    return to_ir(make_model(nodes, [("in:0", [1, 3, 12])], [("logits", [1, 6]), ("int", [1, 6])], inits))


def build(graph=None, **kw):
    cfg = Config(**{"compress": True, "conv2d_compress": True, "model_info": NASTY_INFO, **kw})
    graph = graph if graph is not None else conv_fc_graph()
    return backend.build(graph, compress_graph(graph, cfg), cfg)


def feeds(model, seed=0):
    return {n: rand(model.graph.tensors[n].shape, seed) for n in model.graph.inputs}


# -- comparing models -------------------------------------------------------------------------
def assert_same_weights(a: dict, b: dict):
    assert list(a) == list(b) or set(a) == set(b)
    for name, x in a.items():
        y = b[name]
        for f in ("name", "shape", "family", "compressed", "axis", "packing", "clip", "range_source", "nnz", "dtype"):
            assert getattr(x, f) == getattr(y, f), (name, f)
        for f in ("codes", "lo_f16", "step_f16", "data_f16", "data_i32"):
            u, v = getattr(x, f), getattr(y, f)
            assert (u is None) == (v is None), (name, f)
            if u is not None:
                assert u.dtype == v.dtype and np.array_equal(u, v), (name, f)


def assert_same_model(a, b):
    ga, gb = a.graph, b.graph
    assert ga.inputs == gb.inputs and ga.outputs == gb.outputs
    assert list(ga.tensors) == list(gb.tensors)
    for name, t in ga.tensors.items():
        assert (t.shape, t.dtype, t.is_const) == (gb.tensors[name].shape, gb.tensors[name].dtype,
                                                 gb.tensors[name].is_const), name
    assert [(n.name, n.op, n.source, n.inputs, n.outputs) for n in ga.nodes] == \
           [(n.name, n.op, n.source, n.inputs, n.outputs) for n in gb.nodes]
    for na, nb in zip(ga.nodes, gb.nodes):
        assert tlv.encode(na.attrs) == tlv.encode(nb.attrs), na.name  # equal up to tuple/list
    assert_same_weights(a.weights, b.weights)
    for f in ("fp16_outputs", "model_info", "npu_unit", "corename", "source_hash", "build_time", "sizes"):
        assert getattr(a, f) == getattr(b, f), f
    assert a.plan["tensors"] == b.plan["tensors"] and a.plan["region"] == b.plan["region"]


@pytest.mark.parametrize("output_type", TYPES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_round_trip_same_model_and_bit_identical_sim(tmp_path, output_type, per_channel):
    model = build(compress_per_channel=per_channel, fp16_out_ops=("int",))
    assert {sw.packing for sw in model.weights.values()} >= {"fp16", "dense"}
    path = backend.write(model, str(tmp_path / "model.out"), output_type)
    back = backend.read(path)
    assert_same_model(model, back)
    for seed in range(3):
        x = feeds(model, seed)
        want, got = sim.run_model(model, x, "npu"), sim.run_model(back, x, "npu")
        for name in model.graph.outputs:
            assert want[name].dtype == got[name].dtype and np.array_equal(want[name], got[name]), name
    assert back.fp16_outputs == ("int",) and sim.run_model(back, x, "npu")["int"].dtype == np.float16


def test_both_formats_decode_to_the_same_model(tmp_path):
    model = build(weight_min_max={"fc::w": (-1.28, 1.27)})
    assert model.weights["fc::w"].packing == "bitmap"  # sparse weight, zero exactly representable
    a = backend.read(backend.write(model, str(tmp_path / "m.h"), "c_code"))
    b = backend.read(backend.write(model, str(tmp_path / "m.npu"), "raw"))
    assert_same_model(a, b)
    assert a.model_info == NASTY_INFO and a.graph.meta.get("source") is None


def test_act_only_graph_has_no_weights_and_reuses_buffers(tmp_path):
    model = build(act_chain())
    assert model.weights == {} and model.sizes["weight"] == 0 and model.sizes["tmp"] == 0
    # three intermediates of 80 bytes live two at a time -> two 80-byte slots
    assert model.sizes["data"] == 2 * plan.align(40 * 2, 16)
    back = backend.read(backend.write(model, str(tmp_path / "m.h"), "c_code"))
    assert_same_model(model, back)


def test_sizes_add_up():
    model = build()
    s = model.sizes
    assert s["npu_size"] == s["cmd"] + s["weight"] + s["ops"] + s["data"] + s["tmp"]
    assert s["total_size"] == s["npu_size"] + s["io"]
    assert s["io"] == 36 * 2 + 6 * 4 + 6 * 4  # fp16 input, two fp32 outputs
    assert model.plan["fits_target"] and s["limit"] == 160 * 1024


# -- memory plan -----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 30), st.integers(0, 8)), min_size=1, max_size=25))
def test_place_never_overlaps_live_buffers(items):
    sizes = {f"t{k}": s for k, (s, _, _) in enumerate(items)}
    live = {f"t{k}": (a, a + d) for k, (_, a, d) in enumerate(items)}
    offsets, top = plan.place(sizes, live, 16)
    for a in sizes:
        assert offsets[a] % 16 == 0 and offsets[a] + sizes[a] <= top
        for b in sizes:
            if a < b and live[a][0] <= live[b][1] and live[b][0] <= live[a][1]:
                assert offsets[a] + sizes[a] <= offsets[b] or offsets[b] + sizes[b] <= offsets[a]
    assert top >= plan.peak_live(sizes, live)


# -- determinism -------------------------------------------------------------------------------
@pytest.mark.parametrize("output_type", TYPES)
def test_same_input_same_bytes_with_source_date_epoch(tmp_path, monkeypatch, output_type):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    one = backend.write(build(), str(tmp_path / "a"), output_type)
    two = backend.write(build(), str(tmp_path / "b"), output_type)
    with open(one, "rb") as f1, open(two, "rb") as f2:
        assert f1.read() == f2.read()
    assert backend.read(one).build_time == 1700000000


def test_bad_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        build()


# -- atomic writes -------------------------------------------------------------------------------
def test_failure_mid_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = str(tmp_path / "model.h")
    backend.write(build(act_chain()), path, "c_code")
    before = open(path, "rb").read()
    real = c_header.hex_rows

    def failing(blob):
        yield from real(blob)
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(c_header, "hex_rows", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        backend.write(build(), path, "c_code")
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["model.h"]


def test_os_error_becomes_output_error_without_temp(tmp_path, monkeypatch):
    def no_rename(a, b):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OutputError, match="No space left"):
        backend.write(build(), str(tmp_path / "m.npu"), "raw")
    assert os.listdir(tmp_path) == []


def test_bad_output_type_and_folder_target(tmp_path):
    with pytest.raises(ConfigError, match="OUTPUT_TYPE"):
        backend.write(build(), str(tmp_path / "m"), "onnx")
    with pytest.raises(OutputError, match="folder"):
        backend.write(build(), str(tmp_path), "raw")
    assert os.listdir(tmp_path) == []


# -- decoding bad files ----------------------------------------------------------------------------
def test_corrupt_or_foreign_files_are_model_errors(tmp_path):
    path = backend.write(build(), str(tmp_path / "m.npu"), "raw")
    blob = bytearray(open(path, "rb").read())
    for broken in (blob[:40], blob[:-5], blob[:100] + bytes([blob[100] ^ 1]) + blob[101:]):
        (tmp_path / "bad.npu").write_bytes(bytes(broken))
        with pytest.raises(ModelError, match="not a valid gxnpuc model"):
            backend.read(str(tmp_path / "bad.npu"))
    (tmp_path / "x.h").write_text("int main(void) { return 0; }\n")
    with pytest.raises(ModelError, match="not a valid gxnpuc model"):
        backend.read(str(tmp_path / "x.h"))
    with pytest.raises(ModelError, match="cannot read"):
        backend.read(str(tmp_path / "missing.h"))


# -- the C header --------------------------------------------------------------------------------
@given(st.text())
def test_c_string_round_trip(text):
    lit = c_header.c_string(text)
    assert lit.isascii() and "?" not in lit[1:-1] and "\n" not in lit and "*/" not in lit.replace("\\", "")
    assert c_header.c_unstring(lit[1:-1]) == text


def test_c_identifiers_valid_and_unique():
    taken: set[str] = set()
    names = ["a/b:0", "a.b::0", "0conv", "int", "__x", "_Y", "", "a_b_0", "a/b:0"]
    ids = [c_header.c_identifier(n, taken) for n in names]
    assert len(set(ids)) == len(ids)
    for i in ids:
        assert i.isidentifier() and not i[0].isdigit() and i not in c_header.C_KEYWORDS
        assert not i.startswith("__") and not (i[0] == "_" and i[1:2].isupper())


GCC = shutil.which("gcc")


@pytest.mark.skipif(GCC is None, reason="gcc not installed")
@pytest.mark.parametrize("which", ["weights", "act_only"])
def test_header_compiles_with_gcc_and_struct_sizes_match(tmp_path, which):
    names = ("input", "int", "a/1", "a.1", "0out")  # C keyword, clashes after sanitising, digit first
    model = build() if which == "weights" else build(act_chain(names))
    backend.write(model, str(tmp_path / "model.h"), "c_code")
    check = tmp_path / "check.c"
    check.write_text('#include "model.h"\n'
                     f"typedef char io_ok[(sizeof(struct in_out) == {model.sizes['io']}) ? 1 : -1];\n"
                     f"typedef char cmd_ok[(sizeof(cmd_content) == {max(model.sizes['cmd'], 1)}) ? 1 : -1];\n")
    for src in ("model.h", "check.c"):
        res = subprocess.run([GCC, "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-c", src, "-o", src + ".o"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr


@pytest.mark.skipif(GCC is None, reason="gcc not installed")
def test_header_included_by_two_files_links_with_one_working_memory(tmp_path):
    backend.write(build(), str(tmp_path / "model.h"), "c_code")
    (tmp_path / "a.c").write_text('#include "model.h"\nunsigned char *other(void);\n'
                                  "int main(void) { return other() == data_content ? 0 : 3; }\n")
    (tmp_path / "b.c").write_text('#include "model.h"\n'
                                  "unsigned char *other(void) { return data_content; }\n")
    res = subprocess.run([GCC, "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "a.c", "b.c",
                          "-o", "app"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert subprocess.run([str(tmp_path / "app")], timeout=30).returncode == 0  # one data_content


def test_fp16_outputs_by_tensor_node_or_colon0_name():
    g = conv_fc_graph()
    assert names.fp16_outputs(g, ["int"]) == ("int",)
    assert names.fp16_outputs(g, ["int:0"]) == ("int",)
    assert names.fp16_outputs(g, ["sig", "fc/Gemm"]) == ("logits", "int")
    assert names.fp16_outputs(g, []) == ()


def test_full_pipeline_records_source_hash(tmp_path, monkeypatch):
    import hashlib

    import onnx

    from gxnpuc import compiler

    nodes = [helper.make_node("MatMul", ["x", "dense/kernel:0"], ["y"], name="dense/MatMul")]
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, [("x", [1, 16])], [("y", [1, 4])], {"dense/kernel:0": rand((16, 4), 5)}), path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    cfg = Config(model_path=str(path), output_file=str(tmp_path / "model.h"), compress=True)
    model = compiler.compile(cfg)
    back = backend.read(backend.write(model, cfg.output_file, "c_code"))
    assert back.source_hash == hashlib.sha256(path.read_bytes()).hexdigest() and back.build_time == 1
    assert back.weights["dense/kernel:0"].compressed
    x = {"x": rand((1, 16), 1)}
    assert np.array_equal(sim.run_model(model, x, "npu")["y"], sim.run_model(back, x, "npu")["y"])
