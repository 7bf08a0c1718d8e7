"""config.load (SPEC 3) and the name check (names.py): every key, every kind of bad value,
paths relative to the config file, names resolved against a real lowered ONNX model.

Models are tiny PyTorch-style ONNX graphs built in code with onnx.helper.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper

from gxnpuc import config
from gxnpuc.config import names
from gxnpuc.errors import ConfigError
from gxnpuc.frontend import load as frontend_load
from onnx_util import make_model, rand

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model() -> onnx.ModelProto:
    """x[batch,2,10] -> Conv1d -> Relu -> Flatten -> Gemm(fc) -> MatMul(Transpose(proj)) -> y."""
    inits = {"conv.weight": rand((3, 2, 3), 1), "conv.bias": rand((3,), 2),
             "fc.weight": rand((6, 24), 3), "fc.bias": rand((6,), 4), "proj.weight": rand((5, 6), 5)}
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["/conv/Conv_output_0"], name="/conv/Conv"),
        helper.make_node("Relu", ["/conv/Conv_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("Flatten", ["/relu/Relu_output_0"], ["/flat/Flatten_output_0"], name="/flat/Flatten"),
        helper.make_node("Gemm", ["/flat/Flatten_output_0", "fc.weight", "fc.bias"], ["/fc/Gemm_output_0"],
                         name="/fc/Gemm", transB=1),
        helper.make_node("Transpose", ["proj.weight"], ["/proj/Transpose_output_0"], name="/proj/Transpose"),
        helper.make_node("MatMul", ["/fc/Gemm_output_0", "/proj/Transpose_output_0"], ["y"], name="/proj/MatMul"),
    ]
    return make_model(nodes, [("x", ["batch", 2, 10])], [("y", ["batch", 5])], inits)


@pytest.fixture
def proj(workdir):
    """The working folder, with model.onnx; write(text) writes config.yaml there, returns its path."""
    onnx.save(tiny_model(), str(workdir.dir / "model.onnx"))

    def write(text: str, name: str = "config.yaml") -> str:
        return str(workdir.dir / workdir(text, name, dedent=True))
    write.dir = workdir.dir
    return write


def load_error(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return info.value


# -- good configs ---------------------------------------------------------------------------------
def test_minimal_config_gets_every_default(proj):
    cfg = config.load(proj("ONNX_FILE: model.onnx\n"))
    assert cfg.model_key == "ONNX_FILE" and cfg.model_path == str(proj.dir / "model.onnx")
    assert cfg.output_file == str(proj.dir / "model.h")
    for key in config.KEYS:
        if key.name not in config.MODEL_KEYS + ("OUTPUT_FILE",):
            assert getattr(cfg, key.attr) == key.default, key.name
    assert cfg.warnings == ()


def test_every_key_parsed(proj):
    (proj.dir / "out").mkdir()
    cfg = config.load(proj("""\
        CORENAME: GRUS
        ONNX_FILE: model.onnx
        OUTPUT_FILE: out/m.bin
        OUTPUT_TYPE: raw
        NPU_UNIT: NPU32
        INPUT_OPS: {x: [1, 2, 10]}
        OUTPUT_OPS: [y]
        FP16_OUT_OPS: y            # one name without brackets
        COMPRESS: true
        CONV2D_COMPRESS: yes
        FUSE_BN: on
        FUSE_BIASADD: false
        EXCLUDE_COMPRESS_OPS: [fc.weight, 123]
        EXCLUDE_CONV2D_COMPRESS_OPS: [conv.weight]
        WEIGHT_MIN_MAX:
          fc.weight: [-1, 0.5]
        MODEL_INFO: 2024
        COMPRESS_PER_CHANNEL: true
        WEIGHT_CLIP: mse
        KERAS_ALLOW_LAMBDA: false
        EVAL_SNR_THRESHOLD_DB: 25
        TUNE_TARGET_SNR_DB: 30.5
        TUNE_MAX_WEIGHT_BYTES: 4096
        """))
    assert cfg.output_file == str(proj.dir / "out" / "m.bin") and cfg.output_type == "raw"
    assert cfg.input_ops == {"x": (1, 2, 10)} and cfg.output_ops == ("y",) and cfg.fp16_out_ops == ("y",)
    assert (cfg.compress, cfg.conv2d_compress, cfg.fuse_bn, cfg.fuse_biasadd) == (True, True, True, False)
    assert cfg.exclude_compress_ops == ("fc.weight", "123")  # names are text as written
    assert cfg.weight_min_max == {"fc.weight": (-1.0, 0.5)} and cfg.model_info == "2024"
    assert cfg.compress_per_channel and cfg.weight_clip == "mse" and cfg.eval_snr_threshold_db == 25.0
    assert cfg.tune_target_snr_db == 30.5 and cfg.tune_max_weight_bytes == 4096
    assert cfg.lines[("WEIGHT_MIN_MAX", "fc.weight")] == 16 and cfg.lines["OUTPUT_OPS"] == 7


def test_paths_are_relative_to_the_config_not_the_cwd(proj, tmp_path, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    path = proj("ONNX_FILE: ../model.onnx\nOUTPUT_FILE: ../model.h\n", "configs/c.yaml")
    monkeypatch.chdir("/")
    cfg = config.load(path)
    assert cfg.model_path == str(tmp_path / "model.onnx") and cfg.output_file == str(tmp_path / "model.h")


def test_empty_value_takes_the_default(proj):
    cfg = config.load(proj("ONNX_FILE: model.onnx\nOUTPUT_OPS:\nCOMPRESS: null\n"))
    assert cfg.output_ops == () and cfg.compress is False


def test_other_core_keys_load_with_a_warning(proj):
    cfg = config.load(proj("ONNX_FILE: model.onnx\nSPACE_OPTIMIZATION: 1\nMODEL_ENCRYPTED: false\n"))
    assert len(cfg.warnings) == 1
    assert "config.yaml:2: SPACE_OPTIMIZATION has no effect on GRUS" in cfg.warnings[0]


def test_docs_config_md_is_generated_from_the_table():
    with open(os.path.join(ROOT, "docs", "config.md"), encoding="utf-8") as f:
        on_disk = f.read()
    assert config.markdown() in on_disk, "regenerate: python -m gxnpuc.config docs/config.md"
    for key in config.KEYS:
        assert f"`{key.name}`" in on_disk


# -- bad configs: one ConfigError each, naming file, line and key -----------------------------------
BAD = {
    "yaml_syntax": ("ONNX_FILE: model.onnx\nOUTPUT_OPS: [y\n", "config.yaml:3:1", "YAML syntax error"),
    "tab_indent": ("ONNX_FILE: model.onnx\n\tCOMPRESS: true\n", "config.yaml:2:1", "YAML syntax error"),
    "not_a_map": ("- ONNX_FILE\n- model.onnx\n", "config.yaml", "not a map"),
    "empty": ("# nothing\n", "config.yaml", "empty"),
    "unknown_key": ("ONNX_FILE: model.onnx\nCOMPRES: true\n", "config.yaml:2: COMPRES", "did you mean COMPRESS?"),
    "lower_case_key": ("onnx_file: model.onnx\n", "config.yaml:1: onnx_file", "did you mean ONNX_FILE?"),
    "duplicate_key": ("ONNX_FILE: model.onnx\nCOMPRESS: true\nCOMPRESS: false\n", "config.yaml:3: COMPRESS",
                      "given twice (also on line 2)"),
    "bool_as_int": ("ONNX_FILE: model.onnx\nCOMPRESS: 1\n", "config.yaml:2: COMPRESS", "true | false"),
    "bool_as_string": ("ONNX_FILE: model.onnx\nFUSE_BN: 'true'\n", "config.yaml:2: FUSE_BN", "true | false"),
    "shape_zero": ("ONNX_FILE: model.onnx\nINPUT_OPS: {x: [1, 0, 10]}\n", "config.yaml:2: INPUT_OPS",
                   "positive integers"),
    "shape_negative": ("ONNX_FILE: model.onnx\nINPUT_OPS:\n  x: [-1, 2, 10]\n", "config.yaml:3: INPUT_OPS",
                       "positive integers"),
    "shape_float": ("ONNX_FILE: model.onnx\nINPUT_OPS: {x: [1, 2.5]}\n", "config.yaml:2: INPUT_OPS",
                    "positive integers"),
    "shape_not_map": ("ONNX_FILE: model.onnx\nINPUT_OPS: [x]\n", "config.yaml:2: INPUT_OPS", "map of name"),
    "names_not_list": ("ONNX_FILE: model.onnx\nOUTPUT_OPS: {y: 1}\n", "config.yaml:2: OUTPUT_OPS", "list of names"),
    "nested_name": ("ONNX_FILE: model.onnx\nEXCLUDE_COMPRESS_OPS: [[a]]\n", "config.yaml:2: EXCLUDE_COMPRESS_OPS",
                    "expected a name"),
    "minmax_reversed": ("ONNX_FILE: model.onnx\nWEIGHT_MIN_MAX: {fc.weight: [1, -1]}\n",
                        "config.yaml:2: WEIGHT_MIN_MAX", "min 1 >= max -1"),
    "minmax_equal": ("ONNX_FILE: model.onnx\nWEIGHT_MIN_MAX: {fc.weight: [0.5, 0.5]}\n",
                     "config.yaml:2: WEIGHT_MIN_MAX", "min < max"),
    "minmax_text": ("ONNX_FILE: model.onnx\nWEIGHT_MIN_MAX: {fc.weight: [a, 1]}\n",
                    "config.yaml:2: WEIGHT_MIN_MAX", "two finite numbers"),
    "minmax_three": ("ONNX_FILE: model.onnx\nWEIGHT_MIN_MAX: {fc.weight: [0, 1, 2]}\n",
                     "config.yaml:2: WEIGHT_MIN_MAX", "two finite numbers"),
    "minmax_nan": ("ONNX_FILE: model.onnx\nWEIGHT_MIN_MAX: {fc.weight: [.nan, 1]}\n",
                   "config.yaml:2: WEIGHT_MIN_MAX", "two finite numbers"),
    "core_other": ("CORENAME: LEO\nONNX_FILE: model.onnx\n", "config.yaml:1: CORENAME", "not supported"),
    "core_case": ("CORENAME: grus\nONNX_FILE: model.onnx\n", "config.yaml:1: CORENAME", "did you mean GRUS?"),
    "npu_unit": ("ONNX_FILE: model.onnx\nNPU_UNIT: NPU64\n", "config.yaml:2: NPU_UNIT", "NPU32"),
    "output_type": ("ONNX_FILE: model.onnx\nOUTPUT_TYPE: C_code\n", "config.yaml:2: OUTPUT_TYPE",
                    "did you mean c_code?"),
    "weight_clip": ("ONNX_FILE: model.onnx\nWEIGHT_CLIP: kl\n", "config.yaml:2: WEIGHT_CLIP", "minmax | mse"),
    "snr_text": ("ONNX_FILE: model.onnx\nEVAL_SNR_THRESHOLD_DB: high\n", "config.yaml:2: EVAL_SNR_THRESHOLD_DB",
                 "a finite number"),
    "bytes_negative": ("ONNX_FILE: model.onnx\nTUNE_MAX_WEIGHT_BYTES: -5\n",
                       "config.yaml:2: TUNE_MAX_WEIGHT_BYTES", "positive integer"),
    "model_info_list": ("ONNX_FILE: model.onnx\nMODEL_INFO: [a]\n", "config.yaml:2: MODEL_INFO", "expected text"),
    "encrypted": ("ONNX_FILE: model.onnx\nMODEL_ENCRYPTED: true\n", "config.yaml:2: MODEL_ENCRYPTED",
                  "not supported"),
    "no_model": ("COMPRESS: true\n", "config.yaml", "one of PB_FILE"),
    "two_models": ("ONNX_FILE: model.onnx\nPB_FILE: model.onnx\n", "config.yaml:2: PB_FILE", "several models"),
    "model_missing": ("ONNX_FILE: nothere.onnx\n", "config.yaml:1: ONNX_FILE", "no such file"),
    "model_is_folder": ("ONNX_FILE: .\n", "config.yaml:1: ONNX_FILE", "is a folder"),
    "saved_model_is_file": ("SAVED_MODEL_DIR: model.onnx\n", "config.yaml:1: SAVED_MODEL_DIR", "is a file"),
    "saved_model_empty_dir": ("SAVED_MODEL_DIR: .\n", "config.yaml:1: SAVED_MODEL_DIR", "no saved_model.pb"),
    "keras_not_keras": ("KERAS_FILE: model.onnx\n", "config.yaml:1: KERAS_FILE", "not a Keras file"),
    "onnx_is_keras": ("ONNX_FILE: fake.h5\n", "config.yaml:1: ONNX_FILE", "use KERAS_FILE"),
    "model_empty_file": ("ONNX_FILE: empty.onnx\n", "config.yaml:1: ONNX_FILE", "is empty"),
    "model_path_number": ("ONNX_FILE: 12\n", "config.yaml:1: ONNX_FILE", "no such file"),
    "output_is_model": ("ONNX_FILE: model.onnx\nOUTPUT_FILE: ./model.onnx\n", "config.yaml:2: OUTPUT_FILE",
                        "is the model itself"),
    "output_is_config": ("ONNX_FILE: model.onnx\nOUTPUT_FILE: config.yaml\n", "config.yaml:2: OUTPUT_FILE",
                         "is the config file itself"),
    "output_folder_missing": ("ONNX_FILE: model.onnx\nOUTPUT_FILE: nodir/model.h\n", "config.yaml:2: OUTPUT_FILE",
                              "does not exist"),
    "output_is_folder": ("ONNX_FILE: model.onnx\nOUTPUT_FILE: .\n", "config.yaml:2: OUTPUT_FILE", "is a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_located_error(proj, case):
    text, where, what = BAD[case]
    (proj.dir / "empty.onnx").write_bytes(b"")
    (proj.dir / "fake.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(8))
    err = load_error(proj(text))
    line = err.line()
    assert line.startswith(where) or (where == "config.yaml" and line.startswith("config.yaml: ")), line
    assert what in line and "\n" not in line


@pytest.mark.parametrize("key", [k.name for k in config.KEYS])
def test_every_key_rejects_a_wrong_type(proj, key):
    model = "" if key in config.MODEL_KEYS else "ONNX_FILE: model.onnx\n"
    err = load_error(proj(f"{model}{key}: [[1], {{a: 2}}]\n"))
    assert err.line().startswith(f"config.yaml:{1 + bool(model)}: {key}: "), err.line()


def test_output_folder_not_writable(proj, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(proj.dir) else real(p, mode))
    assert "is not writable" in load_error(proj("ONNX_FILE: model.onnx\n")).line()


def test_not_utf8_and_huge_configs(proj):
    path = proj("")
    with open(path, "wb") as f:
        f.write(b"ONNX_FILE: \xff\xfe\n")
    assert "not UTF-8" in load_error(path).line()
    with open(path, "w") as f:
        f.write("# " + "x" * config.MAX_CONFIG_BYTES)
    assert "larger than" in load_error(path).line()


def test_yaml_tags_never_construct_objects(proj):
    err = load_error(proj("ONNX_FILE: !!python/object/apply:os.system ['echo hacked']\n"))
    assert "config.yaml" in err.line()


def test_config_is_a_folder_or_missing(tmp_path):
    assert "is a folder" in load_error(str(tmp_path)).line()
    assert "cannot be read" in load_error(str(tmp_path / "nope.yaml")).line()


# -- names resolved against the lowered model ---------------------------------------------------
@pytest.fixture
def graph(proj):
    cfg = config.load(proj("ONNX_FILE: model.onnx\n"))
    return frontend_load(cfg)


def test_weight_for_weight_node_folded_and_tf_spelling(graph):
    assert names.weight_for(graph, "fc.weight") == ["fc.weight"]
    assert names.weight_for(graph, "/fc/Gemm") == ["fc.weight"]  # the consumer's compressible weight
    assert names.weight_for(graph, "/conv/Conv") == ["conv.weight"]
    assert names.weight_for(graph, "fc.weight:0") == ["fc.weight"]
    folded = names.weight_for(graph, "proj.weight")  # folded away by the Transpose
    assert folded == ["/proj/Transpose_output_0"] and graph.tensors[folded[0]].shape == (6, 5)
    assert names.weight_for(graph, "/proj/Transpose") == folded
    assert names.weight_for(graph, "/relu/Relu") == [] and names.weight_for(graph, "nothing") == []


def _check(proj, graph, body: str):
    cfg = config.load(proj("ONNX_FILE: model.onnx\n" + body))
    names.check(cfg, graph)
    return cfg


def test_check_accepts_every_kind_of_name(proj, graph):
    _check(proj, graph, "EXCLUDE_COMPRESS_OPS: [fc.weight, /fc/Gemm, proj.weight]\n"
           "EXCLUDE_CONV2D_COMPRESS_OPS: [/conv/Conv]\nWEIGHT_MIN_MAX: {conv.weight: [-1, 1]}\n"
           "OUTPUT_OPS: [y]\nFP16_OUT_OPS: [y]\nINPUT_OPS: {x: [1, 2, 10]}\n")


@pytest.mark.parametrize("body, where, what", [
    ("EXCLUDE_COMPRESS_OPS: [fc.wieght]\n", "config.yaml:2: EXCLUDE_COMPRESS_OPS",
     "'fc.wieght' is not a weight or op of the model (close matches: fc.weight"),
    ("WEIGHT_MIN_MAX:\n  a: [0, 1]\n  conv.wight: [0, 1]\n", "config.yaml:4: WEIGHT_MIN_MAX", "conv.weight"),
    ("EXCLUDE_COMPRESS_OPS: [/relu/Relu]\n", "config.yaml:2: EXCLUDE_COMPRESS_OPS", "op without weights"),
    ("EXCLUDE_CONV2D_COMPRESS_OPS: [fc.weight]\n", "config.yaml:2: EXCLUDE_CONV2D_COMPRESS_OPS",
     "not a convolution weight"),
    ("FP16_OUT_OPS: [/fc/Gemm_output_0]\n", "config.yaml:2: FP16_OUT_OPS", "is not an output of the model"),
])
def test_check_rejects_unknown_names_with_close_matches(proj, graph, body, where, what):
    if body.startswith("WEIGHT_MIN_MAX"):
        body = body.replace("  a: [0, 1]\n", "  fc.weight: [0, 1]\n")
    with pytest.raises(ConfigError) as info:
        _check(proj, graph, body)
    assert info.value.line().startswith(where) and what in info.value.line(), info.value.line()


def test_resolve_spells_aliases_as_weight_names(proj, graph):
    cfg = _check(proj, graph, "EXCLUDE_COMPRESS_OPS: [proj.weight]\nWEIGHT_MIN_MAX: {/fc/Gemm: [-1, 1]}\n")
    out = names.resolve(cfg, graph)
    assert out.exclude_compress_ops == ("/proj/Transpose_output_0",)  # weight tensor names only
    assert out.weight_min_max == {"fc.weight": (-1.0, 1.0), "fc.bias": (-1.0, 1.0)}  # /fc/Gemm's constants
    assert set(out.exclude_compress_ops) | set(out.weight_min_max) <= set(graph.tensors)


def test_compiled_model_keeps_the_resolved_config(proj):
    from gxnpuc import compiler

    cfg = config.load(proj("ONNX_FILE: model.onnx\nCOMPRESS: true\nWEIGHT_MIN_MAX: {/fc/Gemm: [-1, 1]}\n"
                           "FP16_OUT_OPS: [y:0]\n"))
    model = compiler.compile(cfg)
    assert model.config.weight_min_max["fc.weight"] == (-1.0, 1.0) and model.config.fp16_out_ops == ("y",)
    assert model.weights["fc.weight"].clip == (-1.0, 1.0) and model.fp16_outputs == ("y",)


def test_close_matches_lead_from_framework_variable_names_to_their_layer():
    """torch.onnx folds BatchNorm into `conv.weight` and renames it `onnx::Conv_25`; a frozen
    Keras graph names `probs/kernel` by its reader. Both users get the layer's names first."""
    pool = ["fc.weight", "pw.weight", "onnx::Conv_25", "/conv/Conv", "/1/1.0/conv1/Conv", "/fc/Gemm"]
    assert names.close_matches("conv.weight", pool)[0] == "/conv/Conv"
    assert names.close_matches("1.0.conv1.weight", pool)[0] == "/1/1.0/conv1/Conv"
    assert names.close_matches("fc.wieght", pool)[0] == "fc.weight"
    keras = ["cnn_1/conv1_1/convolution/ReadVariableOp", "cnn_1/probs_1/Cast/ReadVariableOp"]
    assert names.close_matches("probs/kernel:0", keras) == ["cnn_1/probs_1/Cast/ReadVariableOp"]


@pytest.mark.parametrize("body, where, what", [
    ("OUTPUT_OPS: [yy]\n", "config.yaml:2: OUTPUT_OPS", "'yy' is not a tensor of the model (close matches: y"),
    ("OUTPUT_OPS: [/fc/Gemm]\n", "config.yaml:2: OUTPUT_OPS", "close matches: /fc/Gemm_output_0"),
    ("INPUT_OPS:\n  X: [1, 2, 10]\n", "config.yaml:3: INPUT_OPS", "'X' is not an input of the model"),
])
def test_front_end_name_errors_point_at_the_config_line(proj, body, where, what):
    cfg = config.load(proj("ONNX_FILE: model.onnx\n" + body))
    with pytest.raises(ConfigError) as info:
        frontend_load(cfg)
    assert info.value.line().startswith(where) and what in info.value.line(), info.value.line()


def test_output_ops_prunes_and_input_ops_sets_the_batch(proj):
    cfg = config.load(proj("ONNX_FILE: model.onnx\nOUTPUT_OPS: /fc/Gemm_output_0\nINPUT_OPS: {x: [2, 2, 10]}\n"))
    g = frontend_load(cfg)
    assert g.outputs == ["/fc/Gemm_output_0"] and g.tensors["x"].shape == (2, 2, 10)
    assert not any(n.name == "/proj/MatMul" for n in g.nodes)
    assert np.prod(g.tensors["/fc/Gemm_output_0"].shape) == 12
