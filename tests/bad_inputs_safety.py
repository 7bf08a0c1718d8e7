"""Catalogue rows of issue 11: data never destroyed, nothing touched outside the outputs,
bounded work, validated models, typed errors. Appended to bad_inputs.CASES / FILES.

Rows with `bomb=True` would take gigabytes or minutes if a bound broke: test_bad_input runs
them in a child process under resource limits (tests/test_safety.py), not in-process.
"""
from __future__ import annotations

import functools
import io
import os
import stat
import tempfile
import zipfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bad_inputs import BASE, Case, _bytes, _npz, _rand, saved_model, tiny_onnx

_O = "Outputs: nothing lost, nothing touched outside"
_B = "Bounded reading and work"
_V = "Models the ONNX checker or the op semantics reject"
_T = "Names, ranges and data"


def _c(group, id, cause, fix, config, *expect, **kw) -> Case:
    return Case(id, group, cause, fix, config, tuple(expect), **kw)


def _out(path: str) -> str:
    return f"ONNX_FILE: model.onnx\nOUTPUT_FILE: {path}\n"


def _onnx(name: str) -> str:
    return f"ONNX_FILE: {name}\nOUTPUT_FILE: out/model.h\n"


def _alias_bomb() -> str:
    text = "ONNX_FILE: model.onnx\nOUTPUT_FILE: out/model.h\na0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text.replace("a8: &a8", "OUTPUT_TYPE: &a8")


LONG = "m" * 246 + ".h"  # 248 bytes: model.h fits, its .eval.json (255 + 3) cannot

ROWS = [
    # -- family 1: outputs ------------------------------------------------------------------------
    _c(_O, "output-is-eval-data", "OUTPUT_FILE names the -e data file", "a different OUTPUT_FILE",
       _out("data.npz"), "data.npz", "a file this run reads", files=("model.onnx", "data.npz"),
       args=("-e", "data.npz")),
    _c(_O, "output-is-external-weights", "OUTPUT_FILE names the model's external weight file",
       "a different OUTPUT_FILE", "ONNX_FILE: ext.onnx\nOUTPUT_FILE: ext.onnx.data\n", "ext.onnx.data",
       "a file this run reads", files=("ext.onnx", "ext.onnx.data")),
    _c(_O, "output-hard-link-to-model", "OUTPUT_FILE is a hard link to the model", "a different OUTPUT_FILE",
       _out("out/model.h"), "out/model.h", "is the model itself",
       files=("model.onnx", "out/model.h=hardlink:model.onnx")),
    _c(_O, "tune-over-model", "the model is named config.tuned.yaml and `gxnpuc -t config.yaml` would write "
       "the tuned config over it", "rename the model", "ONNX_FILE: config.tuned.yaml\nOUTPUT_FILE: out/model.h\n",
       "config.tuned.yaml", "a file this run reads", files=("config.tuned.yaml",), args=("-t",)),
    _c(_O, "output-fifo", "OUTPUT_FILE is a FIFO (named pipe)", "a regular file path", _out("out/pipe.h"),
       "out/pipe.h", "FIFO", "replaces only regular files", files=("model.onnx", "out/pipe.h=fifo")),
    _c(_O, "output-device", "OUTPUT_FILE is a device node (a copy of /dev/full)", "a regular file path",
       _out("out/full.h"), "out/full.h", "character device", files=("model.onnx", "out/full.h=devfull")),
    _c(_O, "output-symlink", "OUTPUT_FILE is a symbolic link to another file", "name the file itself",
       _out("out/link.h"), "out/link.h", "symbolic link",
       files=("model.onnx", "victim.txt", "out/link.h=symlink:../victim.txt")),
    _c(_O, "jpgs-symlink", "out/npu_jpgs is a symbolic link to another folder holding an index.txt (-s)",
       "remove the link; gxnpuc makes npu_jpgs itself", BASE + "COMPRESS: true\n", "out/npu_jpgs",
       "symbolic link", files=("model.onnx", "elsewhere/index.txt", "elsewhere/keep.jpg",
                               "out/npu_jpgs=symlink:../elsewhere"), args=("-s",), stdout_ok=True),
    _c(_O, "eval-dump-dir-is-file", "--dump-dir names a file (the run fails after compiling)",
       "a folder path", BASE, "a_file", "not a folder", files=("model.onnx", "a_file"),
       args=("-e", "random", "--dump-dir", "a_file"), old_output=True, stdout_ok=True),
    _c(_O, "eval-ort-refuses", "onnxruntime cannot run the model in -e (after compiling)",
       "a model onnxruntime runs, or compile without -e", _onnx("int.onnx"), "int.onnx",
       "onnxruntime cannot", files=("int.onnx",), args=("-e", "random"), old_output=True, stdout_ok=True),
    _c(_O, "output-name-too-long", f"a {len(LONG)}-byte OUTPUT_FILE name with -e (the report name is longer "
       "than a file name may be)", "a shorter name", _out(f"out/{LONG}"), "eval.json", "at most",
       args=("-e", "random")),
    # -- family 2: bounded reading ----------------------------------------------------------------
    _c(_B, "onnx-fifo", "ONNX_FILE is a FIFO (reading would block forever)", "the model file",
       _onnx("pipe.onnx"), "config.yaml:1: ONNX_FILE", "FIFO", files=("pipe.onnx=fifo",)),
    _c(_B, "onnx-dev-zero", "ONNX_FILE: /dev/zero (endless bytes)", "the model file", _onnx("/dev/zero"),
       "config.yaml:1: ONNX_FILE", "character device", files=()),
    _c(_B, "pb-dev-zero", "PB_FILE: /dev/zero", "the frozen .pb file",
       "PB_FILE: /dev/zero\nOUTPUT_FILE: out/model.h\n", "config.yaml:1: PB_FILE", "character device", files=()),
    _c(_B, "saved-model-fifo", "a FIFO inside the SAVED_MODEL_DIR folder", "the files TensorFlow saved",
       "SAVED_MODEL_DIR: sm\nOUTPUT_FILE: out/model.h\n", "config.yaml:1: SAVED_MODEL_DIR", "FIFO",
       files=("sm/saved_model.pb", "sm/variables/variables.index=fifo")),
    _c(_B, "config-fifo", "the config is a FIFO", "a config file, or pipe it into `gxnpuc -`", None,
       "pipe.yaml", "not a regular file", files=("model.onnx", "pipe.yaml=fifo"), target="pipe.yaml"),
    _c(_B, "config-dev-zero", "the config is /dev/zero", "a config file", None, "/dev/zero",
       "not a regular file", target="/dev/zero"),
    _c(_B, "eval-dev-zero", "-e /dev/zero", "an .npz file", BASE, "/dev/zero", "character device",
       args=("-e", "/dev/zero")),
    _c(_B, "eval-fifo", "-e names a FIFO", "an .npz file", BASE, "pipe.npz", "FIFO",
       files=("model.onnx", "pipe.npz=fifo"), args=("-e", "pipe.npz")),
    _c(_B, "eval-zip-bomb", "-e data: a 0.3 MB .npz that inflates to 300 MB", "real input arrays",
       BASE, "bomb.npz", "inflate to", files=("model.onnx", "bomb.npz"), args=("-e", "bomb.npz"), bomb=True),
    _c(_B, "eval-lying-header", "-e data: an .npy header claiming 10^12 values", "np.savez output", BASE,
       "lying.npz: x.npy", "header says shape", files=("model.onnx", "lying.npz"), args=("-e", "lying.npz"),
       bomb=True),
    _c(_B, "yaml-alias-bomb", "a 520-byte config whose OUTPUT_TYPE is a YAML alias bomb (9^9 values)",
       "no alias chains", _alias_bomb(), "config.yaml", "more than 100,000 YAML values", bomb=True),
    _c(_B, "yaml-deep-lists", "5000 nested `[` in the config", "flat YAML", BASE + "OUTPUT_OPS: "
       + "[" * 5000 + "]" * 5000 + "\n", "config.yaml:3", "nested more than 16 levels", bomb=True),
    _c(_B, "yaml-deep-maps", "3000 nested maps in the config", "flat YAML", BASE + "MODEL_INFO: "
       + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "config.yaml:3", "nested more than 16 levels", bomb=True),
    _c(_B, "const-of-shape-huge", "a 200-byte model with ConstantOfShape [1, 10^9]", "realistic shapes",
       _onnx("cos.onnx"), "cos.onnx", "1,000,000,000 elements", "208 KB", files=("cos.onnx",), bomb=True),
    _c(_B, "expand-huge", "Expand of an input to [10^7, 4]", "realistic shapes", _onnx("expand.onnx"),
       "expand.onnx", "40,000,000 elements", files=("expand.onnx",), bomb=True),
    _c(_B, "tile-huge", "Tile of a constant by [10^7, 1]", "realistic shapes", _onnx("tile.onnx"),
       "tile.onnx", "40,000,000 elements", files=("tile.onnx",), bomb=True),
    _c(_B, "pad-huge", "Pad by 10^9 (a tensor past 4 GiB)", "realistic pads", _onnx("pad.onnx"),
       "pad.onnx", "elements per tensor", files=("pad.onnx",), bomb=True),
    _c(_B, "plan-past-4gib", "70 outputs of 2^24 values each (buffers past 4 GiB)", "realistic outputs",
       _onnx("big.onnx"), "big.onnx", "4 GiB", files=("big.onnx",), bomb=True),
    # -- family 4: validation ---------------------------------------------------------------------
    _c(_V, "transpose-repeated-axis", "Transpose perm [0, 0]", "a permutation", _onnx("perm.onnx"),
       "perm.onnx", "not a permutation", files=("perm.onnx",)),
    _c(_V, "input-string", "a STRING input", "float inputs", _onnx("string.onnx"), "input 'x'", "STRING",
       files=("string.onnx",)),
    _c(_V, "input-complex", "a COMPLEX64 input", "real inputs", _onnx("complex.onnx"), "input 'x'",
       "COMPLEX64", files=("complex.onnx",)),
    _c(_V, "input-unknown-rank", "an input without any shape", "INPUT_OPS", _onnx("rank.onnx"),
       "input 'x'", "rank", files=("rank.onnx",)),
    _c(_V, "input-zero-dim", "an input with a declared 0 dimension", "the real shape", _onnx("zerodim.onnx"),
       "input 'x'", "declared 0", files=("zerodim.onnx",)),
    _c(_V, "input-empty-name", "an input named \"\"", "named inputs", _onnx("noname.onnx"), "noname.onnx",
       "empty name", files=("noname.onnx",)),
    _c(_V, "no-outputs", "a graph with nodes but no outputs", "declare the outputs", _onnx("noout.onnx"),
       "noout.onnx", "no outputs", files=("noout.onnx",)),
    _c(_V, "attr-string-pads", "a Conv `pads` attribute given as the string \"1111\"", "INTS",
       _onnx("pads.onnx"), "pads.onnx: node 'Conv_0' [Conv]", "STRING", files=("pads.onnx",)),
    _c(_V, "opset-99", "opset 99", "the opset the exporter supports", _onnx("opset99.onnx"), "opset 99",
       files=("opset99.onnx",)),
    _c(_V, "opset-missing", "no opset import", "export again", _onnx("noopset.onnx"), "no ONNX opset",
       files=("noopset.onnx",)),
    _c(_V, "ir-version-99", "IR version 99", "save with a released onnx", _onnx("ir99.onnx"),
       "IR version 99", files=("ir99.onnx",)),
    _c(_V, "output-zero-size", "an output of shape [1, 0]", "outputs with values", _onnx("zero.onnx"),
       "output 'y'", "[1, 0]", files=("zero.onnx",)),
    _c(_V, "sparse-initializer", "a sparse initializer", "dense initializers", _onnx("sparse.onnx"),
       "sparse initializer", files=("sparse.onnx",)),
    _c(_V, "constant-external-elsewhere", "a Constant's external data exists only in the working folder, "
       "not beside the model", "keep it beside the .onnx", _onnx("sub/const.onnx"), "sub/const.onnx",
       "w.bin", files=("sub/const.onnx", "w.bin")),
    _c(_V, "pb-is-saved-model-graph", "a SavedModel's saved_model.pb, renamed, as PB_FILE",
       "SAVED_MODEL_DIR", "PB_FILE: graph.pb\nOUTPUT_FILE: out/model.h\n", "graph.pb",
       "graph of a SavedModel", "SAVED_MODEL_DIR", files=("graph.pb",)),
    # -- names, ranges and data -------------------------------------------------------------------
    _c(_T, "output-ops-weight", "OUTPUT_OPS names a weight", "a computed tensor",
       BASE + "OUTPUT_OPS: [fc.weight]\n", "config.yaml:3: OUTPUT_OPS", "a constant"),
    _c(_T, "input-ops-twice", "the same name twice in INPUT_OPS", "once",
       BASE + "INPUT_OPS:\n  x: [1, 2, 8, 8]\n  x: [1, 2, 8, 8]\n", "config.yaml:5: INPUT_OPS", "given twice"),
    _c(_T, "range-twice", "the same weight twice in WEIGHT_MIN_MAX", "once", BASE + "COMPRESS: true\n"
       "WEIGHT_MIN_MAX:\n  fc.weight: [-1, 1]\n  fc.weight: [-2, 2]\n", "config.yaml:6: WEIGHT_MIN_MAX",
       "given twice"),
    _c(_T, "range-weight-and-op", "a weight and its consuming op given different ranges", "one range",
       BASE + "COMPRESS: true\nWEIGHT_MIN_MAX:\n  fc.weight: [-1, 1]\n  /fc/Gemm: [-2, 2]\n",
       "WEIGHT_MIN_MAX", "both set weight 'fc.weight'"),
    _c(_T, "range-step-zero", "`fc.weight: [0, 1.0e-30]` (its step is 0 in fp16)", "a wider range",
       BASE + "COMPRESS: true\nWEIGHT_MIN_MAX:\n  fc.weight: [0, 1.0e-30]\n", "config.yaml:5: WEIGHT_MIN_MAX",
       "too narrow"),
    _c(_T, "range-huge-integer", "a 400-digit integer in a range", "a finite number",
       BASE + "COMPRESS: true\nWEIGHT_MIN_MAX:\n  fc.weight: [-1, " + "9" * 400 + "]\n",
       "config.yaml:5: WEIGHT_MIN_MAX", "finite"),
    _c(_T, "range-exponent-text", "`[-1.0e3, 1.0e3]` (YAML reads it as text)", "1.0e+3 or 1000.0",
       BASE + "COMPRESS: true\nWEIGHT_MIN_MAX:\n  fc.weight: [-1.0e3, 1.0e3]\n",
       "config.yaml:5: WEIGHT_MIN_MAX", "read as text"),
    _c(_T, "eval-complex", "-e data of complex numbers", "real arrays", BASE, "complex.npz: x",
       "complex", files=("model.onnx", "complex.npz"), args=("-e", "complex.npz")),
]


# -- the files the rows need ----------------------------------------------------------------------
_VI = helper.make_tensor_value_info


def _graph_model(nodes, inputs, outputs, inits=(), opsets=(("", 17),), ir=8, sparse=()):
    g = helper.make_graph(nodes, "safety", inputs, outputs, list(inits))
    g.sparse_initializer.extend(sparse)
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], ir_version=ir)


def _x(t=TensorProto.FLOAT, shape=(1, 4), name="x"):
    return _VI(name, t, list(shape) if shape is not None else None)


def _y():
    return _VI("y", TensorProto.FLOAT, None)


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _one(op, extra_inits=(), x=None, **attrs):
    inputs = ["x"] + [t.name for t in extra_inits]
    return _graph_model([helper.make_node(op, inputs, ["y"], **attrs)], [x or _x()], [_y()], extra_inits)


def _pads_string():
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    node.attribute.append(helper.make_attribute("pads", "1111"))
    return _graph_model([node], [_x(shape=(1, 1, 8, 8))], [_y()],
                        [numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")])


def _const_of_shape():
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    return _graph_model([helper.make_node("ConstantOfShape", ["s"], ["c"], value=value),
                         helper.make_node("Add", ["c", "x"], ["y"])], [_x()], [_y()], [_i64("s", [1, 10 ** 9])])


def _tile_const():
    return _graph_model([helper.make_node("Tile", ["w", "s"], ["t"]), helper.make_node("Add", ["x", "t"], ["y"])],
                        [_x()], [_y()], [numpy_helper.from_array(np.ones((1, 4), np.float32), "w"),
                                         _i64("s", [10 ** 7, 1])])


def _many_outputs(n: int):
    nodes = [helper.make_node("Relu" if i % 2 else "Sigmoid", ["x"], [f"y{i}"]) for i in range(n)]
    return _graph_model(nodes, [_x(shape=(1, 1 << 24))], [_VI(f"y{i}", TensorProto.FLOAT, None) for i in range(n)])


def _sparse():
    sp = helper.make_sparse_tensor(numpy_helper.from_array(np.ones(2, np.float32), "sw"), _i64("si", [0, 3]), [4])
    return _graph_model([helper.make_node("Add", ["x", "sw"], ["y"])], [_x()], [_y()], sparse=[sp])


def _external(stem: str, location: str, constant: bool):
    """(model bytes, weight bytes): a [4] float weight kept in an external file."""
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=k, value=v)
    w.ClearField("raw_data")
    if constant:
        m = _graph_model([helper.make_node("Constant", [], ["w"], value=w), helper.make_node("Add", ["x", "w"], ["y"])],
                         [_x()], [_y()])
    else:
        m = _graph_model([helper.make_node("Add", ["x", "w"], ["y"])], [_x()], [_y()], [w])
    return m.SerializeToString(), np.arange(4, dtype=np.float32).tobytes()


@functools.lru_cache(maxsize=1)
def _saved_model_graph() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        saved_model(os.path.join(tmp, "sm"))
        with open(os.path.join(tmp, "sm", "saved_model.pb"), "rb") as fh:
            return fh.read()


def _zip_bomb(path: str) -> None:
    """x.npy of 300 MB of zeros, deflated to ~0.3 MB, written in pieces (never 300 MB in memory)."""
    from numpy.lib import format as npy

    n = 300 << 18  # float32 values: 300 MB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("x.npy", "w", force_zip64=True) as fh:
        npy.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n // 128, 1, 2, 8, 8)})
        chunk = bytes(1 << 20)
        for _ in range(n * 4 // len(chunk)):
            fh.write(chunk)


def _lying(path: str) -> None:
    from numpy.lib import format as npy

    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12 // 128, 1, 2, 8, 8)})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + bytes(64))


def _special(spec: str, path: str, folder: str) -> None:
    """`name=fifo`, `name=devfull`, `name=symlink:target`, `name=hardlink:file` entries."""
    kind, _, arg = spec.partition(":")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devfull":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            import pytest

            pytest.skip("making a device node needs root")
    elif kind == "symlink":
        os.symlink(arg, path)
    elif kind == "hardlink":
        os.link(os.path.join(folder, arg), path)


def _file(data: bytes):
    return _bytes(lambda: data)


FILES = {
    "data.npz": _npz(x=_rand((2, 1, 2, 8, 8), 7)),
    "complex.npz": _npz(x=(_rand((2, 1, 2, 8, 8), 8) + 1j).astype(np.complex64)),
    "bomb.npz": _zip_bomb, "lying.npz": _lying,
    "victim.txt": _file(b"a file gxnpuc must never touch\n"),
    "elsewhere/index.txt": _file(b"keep.jpg\tfc.weight\tmodel.h\n"),
    "elsewhere/keep.jpg": _file(b"someone else's picture\n"),
    "config.tuned.yaml": _bytes(lambda: tiny_onnx().SerializeToString()),
    "int.onnx": _bytes(lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_x(TensorProto.INT64)],
                                            [_VI("y", TensorProto.INT64, None)]).SerializeToString()),
    "cos.onnx": _bytes(lambda: _const_of_shape().SerializeToString()),
    "expand.onnx": _bytes(lambda: _one("Expand", [_i64("s", [10 ** 7, 4])]).SerializeToString()),
    "tile.onnx": _bytes(lambda: _tile_const().SerializeToString()),
    "pad.onnx": _bytes(lambda: _one("Pad", [_i64("s", [0, 0, 0, 10 ** 9])]).SerializeToString()),
    "perm.onnx": _bytes(lambda: _one("Transpose", perm=[0, 0]).SerializeToString()),
    "string.onnx": _bytes(lambda: _one("Identity", x=_x(TensorProto.STRING)).SerializeToString()),
    "complex.onnx": _bytes(lambda: _one("Relu", x=_x(TensorProto.COMPLEX64)).SerializeToString()),
    "rank.onnx": _bytes(lambda: _one("Relu", x=_x(shape=None)).SerializeToString()),
    "zerodim.onnx": _bytes(lambda: _one("Relu", x=_x(shape=(1, 0))).SerializeToString()),
    "noname.onnx": _bytes(lambda: _graph_model([helper.make_node("Relu", [""], ["y"])], [_x(name="")],
                                               [_y()]).SerializeToString()),
    "noout.onnx": _bytes(lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_x()],
                                              []).SerializeToString()),
    "pads.onnx": _bytes(lambda: _pads_string().SerializeToString()),
    "opset99.onnx": _bytes(lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_y()],
                                                opsets=(("", 99),)).SerializeToString()),
    "noopset.onnx": _bytes(lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_y()],
                                                opsets=()).SerializeToString()),
    "ir99.onnx": _bytes(lambda: _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_y()],
                                             ir=99).SerializeToString()),
    "zero.onnx": _bytes(lambda: _one("Slice", [_i64("a", [2]), _i64("b", [2]), _i64("c", [1])]).SerializeToString()),
    "sm/saved_model.pb": _bytes(lambda: b"\x08\x01"),  # the folder check runs before any parsing
    "sparse.onnx": _bytes(lambda: _sparse().SerializeToString()),
    "big.onnx": _bytes(lambda: _many_outputs(70).SerializeToString()),
    "ext.onnx": _bytes(lambda: _external("ext", "ext.onnx.data", False)[0]),
    "ext.onnx.data": _bytes(lambda: _external("ext", "ext.onnx.data", False)[1]),
    "sub/const.onnx": _bytes(lambda: _external("const", "w.bin", True)[0]),
    "w.bin": _bytes(lambda: _external("const", "w.bin", True)[1]),
    "graph.pb": _bytes(_saved_model_graph),
}
TF_FILES = {"graph.pb"}


# -- running a row in a child under resource limits ---------------------------------------------
LIMIT_BYTES = 2 << 30  # address space: a net only (the interpreter maps ~650 MB of it before any work)
LIMIT_SECONDS = 60  # CPU seconds; a bound that holds needs 1-3
PEAK_BYTES = 500 << 20  # what a row may really use (peak resident memory of the child)


# The child sets its own limits, then runs the CLI; at exit it writes its peak resident memory
# (VmHWM, which starts afresh at exec, unlike ru_maxrss, which counts the forked test process).
_CHILD = """
import atexit, os, resource, sys
for res, n in ((resource.RLIMIT_AS, {as_}), (resource.RLIMIT_CPU, {cpu})):
    resource.setrlimit(res, (n, n))
def peak():
    with open("/proc/self/status") as fh, open(os.environ["GXNPUC_TEST_PEAK"], "w") as out:
        out.write(next(line.split()[1] for line in fh if line.startswith("VmHWM:")))
atexit.register(peak)
from gxnpuc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_limited(case: Case, folder: str) -> tuple[int, str, str, int]:
    """(exit status, stdout, stderr, peak resident bytes) of the CLI for a staged row, run in
    `folder` in a child that sets RLIMIT_AS and RLIMIT_CPU on itself, killed after 4 minutes
    of waiting (a blocked read uses no CPU): a broken bound fails the row, not the machine."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GXNPUC_DEBUG", "TF_CPP_MIN_LOG_LEVEL")}
    with tempfile.TemporaryDirectory() as tmp:
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", GXNPUC_TEST_PEAK=os.path.join(tmp, "peak"))
        code = _CHILD.format(as_=LIMIT_BYTES, cpu=LIMIT_SECONDS)
        proc = subprocess.run([sys.executable, "-c", code, *case.args, case.target], cwd=folder, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=4 * LIMIT_SECONDS)
        with open(env["GXNPUC_TEST_PEAK"]) as fh:
            peak_kb = int(fh.read())
    return proc.returncode, proc.stdout, proc.stderr, peak_kb * 1024
