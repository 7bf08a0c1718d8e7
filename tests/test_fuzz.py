"""Property-based and fuzz tests: generated configs and conv/FC graphs compile, and the float
simulation matches onnxruntime; mutated model bytes and hostile configs end in exit 0 or in the
one-line error, never a traceback or an internal error.

Hypothesis runs derandomized (the same examples every run) with small budgets, so the file
stays within a few tens of seconds on a shared CI machine.
"""
from __future__ import annotations

import os
import re
import tempfile

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from bad_inputs import _model, tf_bytes, tiny_onnx
from gxnpuc import backend, cli, compiler, config, sim
from onnx_util import assert_close, run_ort

LINE = re.compile(r"^gxnpuc: error: \S.*?: .+$")
WEIGHTS = ["conv.weight", "conv.bias", "fc.weight", "fc.bias", "/conv/Conv", "/fc/Gemm"]


def budget(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def run_cli(folder: str, args: list[str], capsys) -> tuple[int, str, str]:
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = cli.main(args)
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_outcome(code: int, out: str, err: str, output: str) -> None:
    """Exit 0 with an output file, or exit 1 with one error line and no output file."""
    assert "Traceback" not in out + err, err
    assert code in (0, 1), (code, err)
    errors = [ln for ln in err.splitlines() if not ln.startswith("gxnpuc: warning: ")]
    if code == 1:
        assert len(errors) == 1 and LINE.match(errors[0]), err
        assert not os.path.exists(output), "a failed run wrote its output"
    else:
        assert errors == [] and os.path.isfile(output), err


# -- configs --------------------------------------------------------------------------------------
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
_RANGE = st.tuples(st.floats(-4, 0, allow_nan=False), st.floats(0.01, 4, allow_nan=False)).map(list)


OPTIONAL = {  # a valid value for every key but the model keys (a test checks none is missing)
    "CORENAME": st.just("GRUS"), "NPU_UNIT": st.just("NPU32"), "OUTPUT_FILE": st.just("out/model.h"),
    "OUTPUT_TYPE": st.sampled_from(["c_code", "raw"]), "INPUT_OPS": st.just({"x": [1, 2, 8, 8]}),
    "INPUT_VALUES": st.just({}),  # the only input fixed would leave nothing to run
    "OUTPUT_OPS": st.sampled_from([["y"], "y"]), "FP16_OUT_OPS": st.sampled_from([["y"], []]),
    "COMPRESS": st.booleans(), "CONV2D_COMPRESS": st.booleans(), "FUSE_BN": st.booleans(),
    "FUSE_BIASADD": st.booleans(), "EXCLUDE_COMPRESS_OPS": st.lists(st.sampled_from(WEIGHTS), max_size=3),
    "EXCLUDE_CONV2D_COMPRESS_OPS": st.sampled_from([[], ["conv.weight"], ["/conv/Conv"]]),
    "WEIGHT_MIN_MAX": st.dictionaries(st.sampled_from(["fc.weight", "conv.weight", "/fc/Gemm"]),
                                      _RANGE, max_size=2),
    "MODEL_INFO": _TEXT, "COMPRESS_PER_CHANNEL": st.booleans(),
    "WEIGHT_CLIP": st.sampled_from(["minmax", "mse", "percentile"]), "KERAS_ALLOW_LAMBDA": st.just(False),
    "EVAL_SNR_THRESHOLD_DB": st.floats(-50, 100), "TUNE_TARGET_SNR_DB": st.none() | st.floats(0, 80),
    "TUNE_MAX_WEIGHT_BYTES": st.none() | st.integers(1, 1 << 20),
    "TUNE_CLIP_SEARCH": st.sampled_from(["output", "weight", "percentile", "none"]),
    "TUNE_PER_CHANNEL": st.booleans(),
}


def test_valid_configs_cover_every_key():
    assert set(OPTIONAL) | set(config.MODEL_KEYS) == {k.name for k in config.KEYS}


@st.composite
def valid_configs(draw) -> dict:
    cfg = {"ONNX_FILE": "model.onnx", "OUTPUT_FILE": "out/model.h"}
    for key in draw(st.lists(st.sampled_from(sorted(OPTIONAL)), unique=True)):
        cfg[key] = draw(OPTIONAL[key])
    return cfg


@budget(80)
@given(valid_configs())
def test_generated_valid_configs_compile(capsys, cfg):
    """Every valid combination compiles, and the written file decodes to the same model_info."""
    with tempfile.TemporaryDirectory() as folder:
        os.mkdir(os.path.join(folder, "out"))
        with open(os.path.join(folder, "model.onnx"), "wb") as fh:
            fh.write(tiny_onnx().SerializeToString())
        with open(os.path.join(folder, "config.yaml"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(cfg, fh, allow_unicode=True)
        code, out, err = run_cli(folder, ["config.yaml"], capsys)
        assert code == 0, (err, cfg)
        model = backend.read(os.path.join(folder, "out", "model.h"))
        assert model.model_info == cfg.get("MODEL_INFO", "")


_SCALARS = st.none() | st.booleans() | st.integers(-3, 1 << 40) | st.floats() | _TEXT
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=8)
_KEYS = st.sampled_from([k.name for k in config.KEYS] + ["MODEL_ENCRYPTED", "SPACE_OPTIMIZATION"]) | _TEXT


@budget(150)
@given(st.dictionaries(_KEYS, _VALUES, max_size=5), st.booleans())
def test_generated_hostile_configs_fail_cleanly(capsys, extra, with_model):
    """Random keys and values on top of a working config: exit 0, or one line and nothing written."""
    with tempfile.TemporaryDirectory() as folder:
        os.mkdir(os.path.join(folder, "out"))
        with open(os.path.join(folder, "model.onnx"), "wb") as fh:
            fh.write(tiny_onnx().SerializeToString())
        cfg = ({"ONNX_FILE": "model.onnx"} if with_model else {}) | {"OUTPUT_FILE": "out/model.h"} | extra
        if extra.get("OUTPUT_FILE") != "out/model.h":
            cfg["OUTPUT_FILE"] = "out/model.h"  # a random OUTPUT_FILE could land anywhere
        with open(os.path.join(folder, "config.yaml"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(cfg, fh, allow_unicode=True)
        code, out, err = run_cli(folder, ["config.yaml"], capsys)
        assert_clean_outcome(code, out, err, os.path.join(folder, "out", "model.h"))


@budget(100)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_random_config_bytes_fail_cleanly(capsys, raw):
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "config.yaml"), "wb") as fh:
            fh.write(raw)
        code, out, err = run_cli(folder, ["config.yaml"], capsys)
        assert_clean_outcome(code, out, err, os.path.join(folder, "model.h"))


# -- graphs ----------------------------------------------------------------------------------------
def _out_size(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


@st.composite
def conv_fc_stacks(draw):
    """A random Conv/BN/activation/pool stack, Flatten, optional Gemm: (model, x shape)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(3, 10)), draw(st.integers(3, 10))
    shape, prev, nodes, inits = (1, c, h, w), "x", [], {}

    def add(op, ins, params=(), **attrs):
        nonlocal prev
        name = f"/l{len(nodes)}/{op}"
        for pname, value in params:
            inits[f"{name}.{pname}"] = value.astype(np.float32)
        nodes.append(helper.make_node(op, [prev, *ins, *(f"{name}.{p}" for p, _ in params)],
                                      [name + "_out"], name=name, **attrs))
        prev = name + "_out"

    for _ in range(draw(st.integers(1, 3))):
        k, s, p = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
        oh, ow = _out_size(shape[2], k, s, p), _out_size(shape[3], k, s, p)
        if min(oh, ow) < 1 or p >= k:
            continue
        depthwise = shape[1] > 1 and draw(st.booleans())
        co, group = (shape[1], shape[1]) if depthwise else (draw(st.integers(1, 6)), 1)
        add("Conv", [], [("weight", rng.standard_normal((co, shape[1] // group, k, k)) * 0.5),
                         ("bias", rng.standard_normal(co))],
            kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=group)
        shape = (1, co, oh, ow)
        if draw(st.booleans()):
            add("BatchNormalization", [], [(n, v) for n, v in (
                ("scale", rng.uniform(0.5, 1.5, co)), ("B", rng.standard_normal(co)),
                ("mean", rng.standard_normal(co) * 0.1), ("var", rng.uniform(0.5, 2, co)))])
        act = draw(st.sampled_from(["Relu", "Sigmoid", "Tanh", None]))
        if act:
            add(act, [])
        if draw(st.booleans()) and min(shape[2:]) >= 2:
            add(draw(st.sampled_from(["MaxPool", "AveragePool"])), [], kernel_shape=[2, 2], strides=[2, 2])
            shape = (1, shape[1], shape[2] // 2, shape[3] // 2)
    add("Flatten", [])
    features = int(np.prod(shape))
    if draw(st.booleans()):
        n_out = draw(st.integers(1, 12))
        add("Gemm", [], [("weight", rng.standard_normal((n_out, features)) * 0.3),
                         ("bias", rng.standard_normal(n_out))], transB=1)
    nodes[-1].output[0] = "y"
    return _model(nodes, [("x", [1, c, h, w])], [("y", None)], inits), (1, c, h, w)


@budget(100)
@given(conv_fc_stacks(), st.booleans(), st.booleans())
def test_generated_graphs_match_onnxruntime(graph, fuse_bn, compress):
    """Compile through the whole pipeline; the float simulation of the result equals onnxruntime."""
    model, x_shape = graph
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as fh:
            fh.write(model.SerializeToString())
        with open(os.path.join(folder, "config.yaml"), "w") as fh:
            fh.write(f"ONNX_FILE: model.onnx\nFUSE_BN: {str(fuse_bn).lower()}\n"
                     f"COMPRESS: {str(compress).lower()}\nCONV2D_COMPRESS: {str(compress).lower()}\n")
        compiled = compiler.compile(config.load(os.path.join(folder, "config.yaml")))
    ours = sim.run_model(compiled, {"x": x}, "float")
    assert_close(ours, run_ort(model, {"x": x}), rtol=1e-4, atol=1e-4)


# -- mutated model bytes ---------------------------------------------------------------------------
@st.composite
def mutations(draw):
    """A truncation, a few bit flips, a splice (a slice copied over another place) or an insertion,
    as positions in [0, 1) of the file so that the example prints short."""
    pos = st.floats(0, 1, exclude_max=True)
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "insert"]))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(pos, st.integers(0, 7)), min_size=1, max_size=4))
    if kind == "truncate":
        return kind, draw(pos)
    return kind, (draw(pos), draw(pos), draw(pos), draw(st.binary(min_size=1, max_size=16)))


def mutate(data: bytes, mutation) -> bytes:
    kind, arg = mutation
    out, n = bytearray(data), len(data)
    if kind == "truncate":
        return bytes(out[:max(1, int(arg * n))])
    if kind == "flip":
        for at, bit in arg:
            out[int(at * n)] ^= 1 << bit
        return bytes(out)
    a, b, at, extra = arg
    a, b, at = sorted((int(a * n), int(b * n))) + [int(at * n)]
    piece = out[a:b] if kind == "splice" else extra
    return bytes(out[:at] + piece + out[at + (len(piece) if kind == "splice" else 0):])


def _run_mutated(capsys, key: str, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(data)
        with open(os.path.join(folder, "config.yaml"), "w") as fh:
            fh.write(f"{key}: {name}\nOUTPUT_FILE: model.h\nCOMPRESS: true\nCONV2D_COMPRESS: true\n")
        code, out, err = run_cli(folder, ["config.yaml"], capsys)
        assert_clean_outcome(code, out, err, os.path.join(folder, "model.h"))


@budget(200)
@given(mutations())
def test_mutated_onnx_fails_cleanly(capsys, mutation):
    _run_mutated(capsys, "ONNX_FILE", "model.onnx", mutate(tiny_onnx().SerializeToString(), mutation))


@budget(100)
@given(mutations())
def test_mutated_frozen_pb_fails_cleanly(capsys, mutation):
    _run_mutated(capsys, "PB_FILE", "model.pb", mutate(tf_bytes("model.pb"), mutation))


@budget(50)
@given(mutations())
def test_mutated_h5_fails_cleanly(capsys, mutation):
    _run_mutated(capsys, "KERAS_FILE", "model.h5", mutate(tf_bytes("model.h5"), mutation))
