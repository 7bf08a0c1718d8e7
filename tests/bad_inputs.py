"""The bad-input catalogue: one row per thing a user can get wrong, its cause and its fix, and
the model files the rows need (built in code with fixed seeds; none is committed).

tests/test_bad_input.py runs every row through the real CLI, and writes docs/errors.md from
these rows and the messages they produce (`python tests/test_bad_input.py > docs/errors.md`).
"""
from __future__ import annotations

import hashlib
import itertools
import os
import warnings
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper

BASE = "ONNX_FILE: model.onnx\nOUTPUT_FILE: out/model.h\n"


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    cause: str  # what the user did (docs)
    fix: str  # what to do about it (docs)
    config: str | bytes | None  # config.yaml text; None: no config.yaml is written
    expect: tuple = ()  # substrings of the error line: where the problem is and what it is
    files: tuple = ("model.onnx",)  # bad_files.FILES keys to create beside config.yaml
    args: tuple = ()  # CLI flags before the config path
    target: str = "config.yaml"  # the CLI's config argument
    old_output: bool = False  # out/model.h exists before the run (must stay byte-identical)
    stdin: bytes | None = None
    stdout_ok: bool = False  # the run fails after compiling: the summary may be printed, nothing written
    bomb: bool = False  # unbounded work if a bound broke: run in a child under resource limits


def _c(group, id, cause, fix, config, *expect, **kw) -> Case:
    return Case(id, group, cause, fix, config, tuple(expect), **kw)


# -- one wrong type for every key of config.KEYS (a test checks none is missing) -------------------
WRONG_TYPES = {
    "CORENAME": "5", "PB_FILE": "[a.pb]", "SAVED_MODEL_DIR": "{dir: sm}", "KERAS_FILE": "{a: b}",
    "ONNX_FILE": "[model.onnx]", "TFLITE_FILE": "{a: b.tflite}", "OUTPUT_FILE": "[out/model.h]",
    "OUTPUT_TYPE": "header", "NPU_UNIT": "NPU64",
    "INPUT_OPS": "[1, 2, 8, 8]", "INPUT_VALUES": "{x: [a, b]}", "OUTPUT_OPS": "{y: 1}", "FP16_OUT_OPS": "{y: 1}",
    "COMPRESS": '"yes"', "CONV2D_COMPRESS": "1", "FUSE_BN": "enabled", "FUSE_BIASADD": "[true]",
    "EXCLUDE_COMPRESS_OPS": "{fc.weight: 1}", "EXCLUDE_CONV2D_COMPRESS_OPS": "[[conv.weight]]",
    "WEIGHT_MIN_MAX": "[-1, 1]", "MODEL_INFO": "{a: b}", "COMPRESS_PER_CHANNEL": '"no"',
    "WEIGHT_CLIP": "max", "KERAS_ALLOW_LAMBDA": "0", "EVAL_SNR_THRESHOLD_DB": "high",
    "TUNE_TARGET_SNR_DB": "[20]", "TUNE_MAX_WEIGHT_BYTES": "-5", "TUNE_CLIP_SEARCH": "best",
    "TUNE_PER_CHANNEL": "maybe", "STATE_OPS": "[s_out, s]",
}


def _wrong_type(key: str, value: str) -> Case:
    text, line = f"{BASE}{key}: {value}\n", 3
    if key in ("ONNX_FILE", "OUTPUT_FILE"):
        text, line = BASE.replace(f"{key}: ", f"{key}: {value}\n# was: "), 1 + (key == "OUTPUT_FILE")
    return _c("Wrong type for a key", f"type-{key.lower().replace('_', '-')}",
              f"`{key}: {value}`", f"write {key} as docs/config.md shows", text,
              f"config.yaml:{line}: {key}")


_TYPES = [_wrong_type(k, v) for k, v in WRONG_TYPES.items()]

_Y = "The config file"
_CONFIG = [
    _c(_Y, "yaml-syntax", "an unclosed `[` in YAML", "close the bracket",
       BASE + "OUTPUT_OPS: [y\nCOMPRESS: true\n", "config.yaml:4:9", "YAML syntax error"),
    _c(_Y, "yaml-tab", "a tab used for indentation", "indent with spaces",
       BASE + "INPUT_OPS:\n\tx: [1, 2, 8, 8]\n", "config.yaml:4:1", "YAML syntax error"),
    _c(_Y, "yaml-list", "the config is a YAML list", "write `KEY: value` lines, no leading `- `",
       "- ONNX_FILE: model.onnx\n", "config.yaml", "a sequence, not a map"),
    _c(_Y, "yaml-scalar", "the config is a bare word", "write `KEY: value` lines",
       "model.onnx\n", "config.yaml", "a scalar, not a map", old_output=True),
    _c(_Y, "config-empty", "an empty config file", "name a model: `ONNX_FILE: model.onnx`",
       "", "config.yaml", "empty"),
    _c(_Y, "config-comments-only", "a config with only comments", "name a model",
       "# ONNX_FILE: model.onnx\n", "config.yaml", "empty"),
    _c(_Y, "config-not-utf8", "a config saved in another encoding", "save it as UTF-8",
       b"MODEL_INFO: \xff\xfe\n" + BASE.encode(), "config.yaml", "not UTF-8"),
    _c(_Y, "config-missing", "the config path does not exist", "check the path", None,
       "nothere.yaml", "cannot be read", target="nothere.yaml"),
    _c(_Y, "config-folder", "a folder given as the config", "give the config.yaml inside it", None,
       "a_folder", "is a folder", files=("a_folder",), target="a_folder"),
    _c(_Y, "stdin-empty", "`gxnpuc -` with nothing on stdin", "pipe a config in", None,
       "<stdin>", "empty", target="-", stdin=b""),
    _c(_Y, "unknown-key", "a key gxnpuc does not know", "remove it (docs/config.md lists every key)",
       BASE + "FOO_BAR: 1\n", "config.yaml:3: FOO_BAR", "unknown key"),
    _c(_Y, "misspelt-key", "a misspelt key", "use the suggested key",
       BASE + "COMPRES: true\n", "config.yaml:3: COMPRES", "did you mean COMPRESS?", old_output=True),
    _c(_Y, "lowercase-key", "a key in lower case", "keys are UPPER_CASE",
       "onnx_file: model.onnx\n", "config.yaml:1: onnx_file", "did you mean ONNX_FILE?"),
    _c(_Y, "duplicate-key", "a key given twice", "keep one of them",
       BASE + "COMPRESS: true\nCOMPRESS: false\n", "config.yaml:4: COMPRESS", "given twice"),
    _c(_Y, "complex-key", "a list used as a key", "keys are plain words",
       BASE + "? [a, b]\n: 1\n", "config.yaml:3", "plain UPPER_CASE words"),
    _c(_Y, "python-object-tag", "a `!!python/object/apply` tag (YAML that would run code)",
       "plain values only: the config is never executed",
       BASE + 'MODEL_INFO: !!python/object/apply:os.system ["touch pwned"]\n', "config.yaml:3"),
    _c(_Y, "python-name-tag", "a `!!python/name` tag", "plain values only",
       BASE + "COMPRESS: !!python/name:os.system\n", "config.yaml:3"),
    _c(_Y, "encrypted", "`MODEL_ENCRYPTED: true` (a vendor option)", "give the plain model",
       BASE + "MODEL_ENCRYPTED: true\n", "config.yaml:3: MODEL_ENCRYPTED", "not supported"),
    _c(_Y, "vendor-core", "a core of the vendor tool other than GRUS", "CORENAME: GRUS",
       BASE + "CORENAME: LEO\n", "config.yaml:3: CORENAME", "not supported"),
]

_S = "Input shapes"
_SHAPES = [
    _c(_S, "shape-zero", "a zero dimension in INPUT_OPS", "every dimension >= 1",
       BASE + "INPUT_OPS: {x: [1, 0, 8, 8]}\n", "config.yaml:3: INPUT_OPS", "positive integers"),
    _c(_S, "shape-negative", "a negative dimension (-1 for 'any')", "give the real size",
       BASE + "INPUT_OPS: {x: [-1, 2, 8, 8]}\n", "config.yaml:3: INPUT_OPS", "positive integers"),
    _c(_S, "shape-empty", "an empty shape", "list the dimensions",
       BASE + "INPUT_OPS: {x: []}\n", "config.yaml:3: INPUT_OPS", "positive integers"),
    _c(_S, "shape-float", "a fractional dimension", "whole numbers only",
       BASE + "INPUT_OPS: {x: [1, 2.5, 8, 8]}\n", "config.yaml:3: INPUT_OPS", "positive integers"),
    _c(_S, "shape-huge", "an absurdly large input", "the real input size",
       BASE + "INPUT_OPS: {x: [100000, 100000, 8]}\n", "config.yaml:3: INPUT_OPS", "elements"),
    _c(_S, "shape-rank", "INPUT_OPS with the wrong number of dimensions", "the model's rank",
       BASE + "INPUT_OPS: {x: [1, 2, 8]}\n", "x"),
    _c(_S, "shape-channels", "INPUT_OPS channels that do not match the model's input", "the model's channels",
       BASE + "INPUT_OPS: {x: [1, 3, 8, 8]}\n", "config.yaml:3: INPUT_OPS", "does not fit"),
    _c(_S, "dynamic-shape", "an exported dynamic dimension and no INPUT_OPS", "give INPUT_OPS",
       "ONNX_FILE: dynamic.onnx\nOUTPUT_FILE: out/model.h\n", "input 'x'", "INPUT_OPS",
       files=("dynamic.onnx",)),
    _c(_S, "dynamic-sequence", "an LSTM whose sequence length the export left dynamic (time-major "
       "input, so it looks like a batch dimension)", "give the number of steps in INPUT_OPS",
       "ONNX_FILE: dynlstm.onnx\nOUTPUT_FILE: out/model.h\n", "input 'x'", "sequence length",
       "INPUT_OPS: {x: [T, 1, 4]}", files=("dynlstm.onnx",)),
]

_M = "Model files"
_MODELS = [
    _c(_M, "no-model", "no model key at all", "add ONNX_FILE, PB_FILE, SAVED_MODEL_DIR, KERAS_FILE or TFLITE_FILE",
       "COMPRESS: true\n", "config.yaml", "no model given"),
    _c(_M, "several-models", "two model keys", "keep exactly one",
       BASE + "PB_FILE: model.pb\n", "config.yaml:3: PB_FILE", "several models"),
    _c(_M, "model-missing", "the model file does not exist", "fix the path (relative to the config)",
       "ONNX_FILE: nothere.onnx\n", "config.yaml:1: ONNX_FILE", "nothere.onnx", old_output=True),
    _c(_M, "model-missing-stdin", "a config on stdin names a model that does not exist",
       "stdin paths start at the current folder", None, "<stdin>:1: ONNX_FILE", "nothere.onnx",
       "relative to the current folder", target="-", stdin=b"ONNX_FILE: nothere.onnx\n", files=()),
    _c(_M, "model-folder", "a folder given as ONNX_FILE", "name the .onnx file",
       "ONNX_FILE: a_folder\n", "config.yaml:1: ONNX_FILE", "is a folder", files=("a_folder",)),
    _c(_M, "saved-model-file", "a file given as SAVED_MODEL_DIR", "give the SavedModel folder",
       "SAVED_MODEL_DIR: model.onnx\n", "config.yaml:1: SAVED_MODEL_DIR", "not a SavedModel folder"),
    _c(_M, "saved-model-empty", "a folder without saved_model.pb", "export with tf.saved_model.save",
       "SAVED_MODEL_DIR: a_folder\n", "config.yaml:1: SAVED_MODEL_DIR", "saved_model.pb",
       files=("a_folder",)),
    _c(_M, "h5-as-onnx", "a Keras .h5 given as ONNX_FILE", "use KERAS_FILE",
       "ONNX_FILE: model.h5\n", "config.yaml:1: ONNX_FILE", "Keras", files=("model.h5",)),
    _c(_M, "onnx-as-keras", "an ONNX file given as KERAS_FILE", "use ONNX_FILE",
       "KERAS_FILE: model.onnx\n", "config.yaml:1: KERAS_FILE", "not a Keras file"),
    _c(_M, "onnx-as-pb", "an ONNX file given as PB_FILE", "use ONNX_FILE",
       "PB_FILE: model.onnx\nOUTPUT_FILE: out/model.h\n", "model.onnx", "GraphDef",
       old_output=True),
    _c(_M, "pb-as-onnx", "a frozen TensorFlow .pb given as ONNX_FILE", "use PB_FILE",
       "ONNX_FILE: model.pb\n", "model.pb", "ONNX", files=("model.pb",)),
    _c(_M, "onnx-empty", "an empty (0-byte) .onnx file", "export the model again",
       "ONNX_FILE: empty.onnx\n", "config.yaml:1: ONNX_FILE", "is empty", files=("empty.onnx",)),
    _c(_M, "onnx-truncated", "a truncated .onnx (interrupted download or copy)", "copy it again",
       BASE.replace("model.onnx", "trunc.onnx"), "trunc.onnx", "not a readable ONNX model",
       files=("trunc.onnx",), old_output=True),
    _c(_M, "onnx-bitflip", "a corrupted .onnx (one bit flipped)", "copy it again",
       BASE.replace("model.onnx", "flip.onnx"), "flip.onnx", files=("flip.onnx",)),
    _c(_M, "onnx-no-graph", "an .onnx with an empty graph", "export the model with its nodes",
       "ONNX_FILE: nograph.onnx\n", "nograph.onnx", "empty graph", files=("nograph.onnx",)),
    _c(_M, "onnx-missing-input", "a Conv node without its weight input", "export the model again",
       "ONNX_FILE: noweight.onnx\n", "'/conv/Conv' [Conv]", "malformed", files=("noweight.onnx",)),
    _c(_M, "onnx-huge-input", "a model input of 2^40 values (a corrupt or mistaken shape)",
       "give the real shape in INPUT_OPS", "ONNX_FILE: hugeinput.onnx\n", "input 'x'", "elements",
       files=("hugeinput.onnx",)),
    _c(_M, "pb-empty", "an empty .pb", "freeze the graph again",
       "PB_FILE: empty.pb\n", "config.yaml:1: PB_FILE", "is empty", files=("empty.pb",)),
    _c(_M, "pb-truncated", "a truncated frozen .pb", "copy it again",
       "PB_FILE: trunc.pb\nOUTPUT_FILE: out/model.h\n", "trunc.pb", "not a frozen GraphDef",
       files=("trunc.pb",), old_output=True),
    _c(_M, "pb-bitflip", "a corrupted frozen .pb", "copy it again",
       "PB_FILE: flip.pb\n", "flip.pb", files=("flip.pb",)),
    _c(_M, "pb-missing-attr", "a frozen .pb with a Const node that lost its value", "freeze it again",
       "PB_FILE: noattr.pb\n", "[Const]", "malformed", files=("noattr.pb",)),
    _c(_M, "h5-empty", "an empty .h5", "save the Keras model again",
       "KERAS_FILE: empty.h5\n", "config.yaml:1: KERAS_FILE", "is empty", files=("empty.h5",)),
    _c(_M, "h5-truncated", "a truncated Keras .h5", "copy it again",
       "KERAS_FILE: trunc.h5\nOUTPUT_FILE: out/model.h\n", "trunc.h5", "Keras cannot load",
       files=("trunc.h5",), old_output=True),
    _c(_M, "h5-bitflip", "a corrupted Keras .h5", "copy it again",
       "KERAS_FILE: flip.h5\n", "flip.h5", "Keras cannot load", files=("flip.h5",)),
]

_W = "Weights and ops"
_NAN = "ONNX_FILE: nan.onnx\nOUTPUT_FILE: out/model.h\n"
_INF = "ONNX_FILE: inf.onnx\nOUTPUT_FILE: out/model.h\n"
_WEIGHTS = [
    _c(_W, "nan-weight-compressed", "a NaN in an FC weight, COMPRESS on", "retrain or re-export",
       _NAN + "COMPRESS: true\n", "weight 'fc.weight'", "NaN or Inf", files=("nan.onnx",),
       old_output=True),
    _c(_W, "nan-weight-plain", "a NaN in an FC weight, compression off", "retrain or re-export",
       _NAN, "weight 'fc.weight'", "NaN or Inf", files=("nan.onnx",)),
    _c(_W, "inf-weight-compressed", "an Inf in a conv weight, CONV2D_COMPRESS on", "re-export",
       _INF + "CONV2D_COMPRESS: true\n", "weight 'conv.weight'", "NaN or Inf", files=("inf.onnx",)),
    _c(_W, "inf-weight-plain", "an Inf in a conv weight, compression off", "re-export",
       _INF, "weight 'conv.weight'", "NaN or Inf", files=("inf.onnx",)),
    _c(_W, "nan-bias", "a NaN in a bias", "re-export", "ONNX_FILE: nanbias.onnx\n",
       "weight 'fc.bias':", "NaN or Inf", files=("nanbias.onnx",)),
    _c(_W, "weight-beyond-fp16", "weights beyond the fp16 range, compressed", "exclude or clip it",
       "ONNX_FILE: huge.onnx\nCOMPRESS: true\n", "weight 'fc.weight'", "fp16", files=("huge.onnx",)),
    _c(_W, "unsupported-ops", "three ops the NPU cannot run", "replace them, or cut them off "
       "with OUTPUT_OPS", "ONNX_FILE: unsupported.onnx\nOUTPUT_FILE: out/model.h\n",
       "3 unsupported op(s)", "Hardmax", "TopK", "com.example.MyOp", files=("unsupported.onnx",),
       old_output=True),
]

_T = "TensorFlow Lite files"
_TFLITE = [
    _c(_T, "tflite-truncated", "a truncated .tflite (interrupted download or copy)", "copy it again",
       "TFLITE_FILE: trunc.tflite\nOUTPUT_FILE: out/model.h\n", "trunc.tflite",
       "corrupt TensorFlow Lite flatbuffer", files=("trunc.tflite",), old_output=True),
    _c(_T, "tflite-not-flatbuffer", "an ONNX file given as TFLITE_FILE", "use ONNX_FILE",
       "TFLITE_FILE: model.onnx\n", "model.onnx", "not a TensorFlow Lite flatbuffer"),
    _c(_T, "tflite-open-dimension", "a .tflite whose input has an open (None) time dimension, "
       "no INPUT_OPS", "give the static shape in INPUT_OPS",
       "TFLITE_FILE: open_time.tflite\n", "input 'serving_default_seq:0'", "dimension 1 is unknown",
       "INPUT_OPS", files=("open_time.tflite",)),
    _c(_T, "tflite-unsupported-ops", "a .tflite with three ops the NPU cannot run (bilinear resize by 1.5, "
       "sine, arg-max)", "replace them, or cut them off with OUTPUT_OPS",
       "TFLITE_FILE: unsupported.tflite\nOUTPUT_FILE: out/model.h\n", "3 unsupported op(s)",
       "[RESIZE_BILINEAR]", "[SIN]", "[ARG_MAX]", files=("unsupported.tflite",),
       old_output=True),
    _c(_T, "tflite-lstm-open-length", "a time-major UNIDIRECTIONAL_SEQUENCE_LSTM whose sequence length "
       "(the first input axis) the model leaves open", "give the number of steps in INPUT_OPS",
       "TFLITE_FILE: open_lstm.tflite\nOUTPUT_FILE: out/model.h\n", "input 'seq'",
       "dimension 0 is the sequence length of UNIDIRECTIONAL_SEQUENCE_LSTM", "INPUT_OPS: {seq: [T, 1, 3]}",
       files=("open_lstm.tflite",)),
]

_N = "Names in the config"
_NAMES = [
    _c(_N, "name-exclude-misspelt", "a misspelt weight in EXCLUDE_COMPRESS_OPS", "use the close match",
       BASE + "COMPRESS: true\nEXCLUDE_COMPRESS_OPS: [fc.weigth]\n",
       "config.yaml:4: EXCLUDE_COMPRESS_OPS", "fc.weigth", "close matches: fc.weight", old_output=True),
    _c(_N, "name-exclude-conv", "an unknown name in EXCLUDE_CONV2D_COMPRESS_OPS", "a conv weight name",
       BASE + "EXCLUDE_CONV2D_COMPRESS_OPS: [nope]\n", "config.yaml:3: EXCLUDE_CONV2D_COMPRESS_OPS", "nope"),
    _c(_N, "name-exclude-conv-fc", "an FC weight in EXCLUDE_CONV2D_COMPRESS_OPS", "EXCLUDE_COMPRESS_OPS",
       BASE + "EXCLUDE_CONV2D_COMPRESS_OPS: [fc.weight]\n", "config.yaml:3", "not a convolution weight"),
    _c(_N, "name-exclude-op", "an op without weights in EXCLUDE_COMPRESS_OPS", "name a weight",
       BASE + "EXCLUDE_COMPRESS_OPS: [/relu/Relu]\n", "config.yaml:3", "without weights"),
    _c(_N, "name-min-max", "an unknown weight in WEIGHT_MIN_MAX", "a name `gxnpuc -w` prints",
       BASE + "WEIGHT_MIN_MAX: {nope: [-1, 1]}\n", "config.yaml:3: WEIGHT_MIN_MAX", "nope"),
    _c(_N, "name-input", "an unknown input in INPUT_OPS", "the model's input name",
       BASE + "INPUT_OPS: {input: [1, 2, 8, 8]}\n", "config.yaml:3: INPUT_OPS", "'input'", "inputs: x"),
    _c(_N, "name-input-values", "an unknown input in INPUT_VALUES", "the model's input name",
       BASE + "INPUT_VALUES: {sr: 16000}\n", "config.yaml:3: INPUT_VALUES", "'sr'", "inputs: x"),
    _c(_N, "input-values-count", "INPUT_VALUES with fewer values than the input has elements",
       "one value per element", BASE + "INPUT_VALUES: {x: [1, 2]}\n", "config.yaml:3: INPUT_VALUES",
       "2 value(s)"),
    _c(_N, "name-output", "an unknown output in OUTPUT_OPS", "the model's output name",
       BASE + "OUTPUT_OPS: [logitz]\n", "config.yaml:3: OUTPUT_OPS", "logitz", "outputs: y", old_output=True),
    _c(_N, "name-fp16-out", "an unknown output in FP16_OUT_OPS", "an output of the model",
       BASE + "FP16_OUT_OPS: [nope]\n", "config.yaml:3: FP16_OUT_OPS", "nope"),
]

_R = "WEIGHT_MIN_MAX ranges"
_RANGE = "{BASE}COMPRESS: true\nWEIGHT_MIN_MAX:\n  fc.weight: {value}\n"
_RANGES = [_c(_R, f"range-{tag}", f"`fc.weight: {value}`", fix,
              _RANGE.format(BASE=BASE, value=value), "config.yaml:5: WEIGHT_MIN_MAX", *expect)
           for tag, value, fix, expect in [
               ("min-above-max", "[0.5, -0.5]", "swap them", ("min 0.5 >= max -0.5",)),
               ("min-equals-max", "[0.5, 0.5]", "min < max", (">= max",)),
               ("text", "[low, high]", "two numbers", ("two finite numbers",)),
               ("one-number", "0.5", "two numbers", ("[min, max]",)),
               ("three-numbers", "[-1, 0, 1]", "two numbers", ("[min, max]",)),
               ("nan", "[.nan, 1]", "finite numbers", ("finite",)),
               ("inf", "[-.inf, .inf]", "finite numbers", ("finite",)),
               ("bools", "[false, true]", "numbers", ("finite",))]]

_O = "The output file"
_OUTPUTS = [
    _c(_O, "output-in-file", "OUTPUT_FILE inside a regular file used as a folder", "an existing folder",
       "ONNX_FILE: model.onnx\nOUTPUT_FILE: a_file/model.h\n", "config.yaml:2: OUTPUT_FILE", "a_file",
       files=("model.onnx", "a_file")),
    _c(_O, "output-in-proc", "OUTPUT_FILE under /proc (no one may create files there)",
       "a folder you can write to", "ONNX_FILE: model.onnx\nOUTPUT_FILE: /proc/model.h\n",
       "/proc/model.h"),
    _c(_O, "output-folder-missing", "OUTPUT_FILE in a folder that does not exist", "create it first",
       "ONNX_FILE: model.onnx\nOUTPUT_FILE: build/model.h\n", "config.yaml:2: OUTPUT_FILE",
       "does not exist"),
    _c(_O, "output-is-folder", "OUTPUT_FILE names a folder", "a file name such as model.h",
       "ONNX_FILE: model.onnx\nOUTPUT_FILE: out\n", "config.yaml:2: OUTPUT_FILE", "is a folder",
       old_output=True),
    _c(_O, "output-is-model", "OUTPUT_FILE is the input model", "a different path",
       "ONNX_FILE: model.onnx\nOUTPUT_FILE: model.onnx\n", "config.yaml:2: OUTPUT_FILE", "the model itself"),
    _c(_O, "output-is-config", "OUTPUT_FILE is the config itself", "a different path",
       "ONNX_FILE: model.onnx\nOUTPUT_FILE: config.yaml\n", "config.yaml:2: OUTPUT_FILE", "the config"),
]

_E = "Evaluation data (-e)"
_EVAL = [
    _c(_E, f"eval-{tag}", cause, fix, BASE, *expect, files=("model.onnx", npz),
       args=("-e", npz), old_output=old)
    for tag, npz, cause, fix, expect, old in [
        ("missing-file", "nothere.npz", "-e names a file that does not exist", "check the path",
         ("nothere.npz",), True),
        ("missing-key", "nokey.npz", "no array named after the model input", "np.savez(path, x=...)",
         ("nokey.npz", "'x'"), False),
        ("wrong-shape", "shape.npz", "arrays of the wrong shape", "[samples, *input shape]",
         ("shape.npz: x", "shape"), True),
        ("pickled", "pickled.npz", "an object array (would need unpickling)", "plain numeric arrays",
         ("pickled.npz",), False),
        ("not-npz", "text.npz", "a text file given as .npz", "np.savez output",
         ("text.npz", "npz"), False),
        ("nan", "naninput.npz", "NaN in the inputs", "finite values", ("naninput.npz: x", "NaN"), False),
    ]
]

_ST = "Streaming state (STATE_OPS, sequences)"
_STATE = "ONNX_FILE: state.onnx\nOUTPUT_FILE: out/model.h\n"
_STATES = [
    _c(_ST, "state-shape-mismatch", "STATE_OPS pairs an output with an input of another shape",
       "pair each state output with the input of its shape", _STATE + "STATE_OPS: {y: s}\n",
       "config.yaml:3: STATE_OPS", "'y' has shape [1, 3]", "'s' has [1, 4]", files=("state.onnx",)),
    _c(_ST, "state-unknown-output", "STATE_OPS names an output the model lacks", "a model output name",
       _STATE + "STATE_OPS: {s_next: s}\n", "config.yaml:3: STATE_OPS", "'s_next'", "s_out",
       files=("state.onnx",)),
    _c(_ST, "state-output-pruned", "a STATE_OPS output left out of OUTPUT_OPS", "list it in OUTPUT_OPS too",
       _STATE + "OUTPUT_OPS: [y, t_out]\nSTATE_OPS: {s_out: s}\n", "config.yaml:4: STATE_OPS",
       "'s_out'", "list state outputs in OUTPUT_OPS", files=("state.onnx",)),
    _c(_ST, "state-input-twice", "two state outputs feed one state input", "one output per state input",
       _STATE + "STATE_OPS: {s_out: s, t_out: s}\n", "config.yaml:3: STATE_OPS", "fed by both",
       files=("state.onnx",)),
    _c(_ST, "sequence-steps-differ", "per-step inputs with different numbers of steps",
       "[samples, steps, ...] with one number of steps", _STATE, "steps.npz: z", "has 6 steps", "x has 5",
       files=("state.onnx", "steps.npz"), args=("-e", "steps.npz")),
    _c(_ST, "sequence-not-a-sequence", "a streaming model evaluated on [samples, *shape] arrays",
       "[samples, steps, *shape] per-step arrays", _STATE, "flat.npz: x", "sequence",
       files=("state.onnx", "flat.npz"), args=("-e", "flat.npz")),
]

CASES: tuple[Case, ...] = (*_CONFIG, *_TYPES, *_SHAPES, *_MODELS, *_TFLITE, *_WEIGHTS, *_NAMES,
                           *_RANGES, *_OUTPUTS, *_EVAL, *_STATES)
GROUPS = list(dict.fromkeys(c.group for c in CASES))


# -- the files the rows need -----------------------------------------------------------------------
OLD_OUTPUT = b"/* the previous build's model.h: a failed build must leave it byte-identical */\n"


def _rand(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tiny_onnx(poison: str = "", x_shape=(1, 2, 8, 8), scale: float = 1.0):
    """x[1,2,8,8] -> Conv(4, 3x3, pad 1) -> Relu -> Flatten -> Gemm(10) -> y, PyTorch names.

    poison: "nan" (fc.weight), "inf" (conv.weight), "nanbias" (fc.bias); scale multiplies fc.weight.
    """
    w = {"conv.weight": _rand((4, 2, 3, 3), 1), "conv.bias": _rand((4,), 2),
         "fc.weight": _rand((10, 256), 3) * scale, "fc.bias": _rand((10,), 4)}
    spot = {"nan": ("fc.weight", np.nan), "inf": ("conv.weight", np.inf), "nanbias": ("fc.bias", np.nan)}
    if poison:
        name, value = spot[poison]
        w[name].flat[5] = value
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["/conv/Conv_output_0"],
                         name="/conv/Conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["/conv/Conv_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("Flatten", ["/relu/Relu_output_0"], ["/Flatten_output_0"], name="/Flatten"),
        helper.make_node("Gemm", ["/Flatten_output_0", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", transB=1),
    ]
    return _model(nodes, [("x", list(x_shape))], [("y", [1, 10])], w)


def _model(nodes, inputs, outputs, inits, opsets=(("", 17),)):
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "bad_inputs", [vi(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [vi(n, TensorProto.FLOAT, s) for n, s in outputs],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             ir_version=8)


def unsupported_onnx():
    """Three branches the NPU cannot run (Hardmax, TopK, a custom-domain op), three outputs."""
    base = tiny_onnx()
    relu = "/relu/Relu_output_0"
    nodes = list(base.graph.node)[:2] + [
        helper.make_node("Hardmax", [relu], ["y1"], name="/head/Hardmax"),
        helper.make_node("TopK", [relu, "k"], ["y2", "idx"], name="/head/TopK"),
        helper.make_node("MyOp", [relu], ["y3"], name="/head/MyOp", domain="com.example"),
    ]
    inits = {t.name: numpy_helper.to_array(t) for t in base.graph.initializer if "conv" in t.name}
    inits["k"] = np.array([2], np.int64)
    return _model(nodes, [("x", [1, 2, 8, 8])], [("y1", None), ("y2", None), ("y3", None)], inits,
                  (("", 17), ("com.example", 1)))


def state_onnx():
    """A streaming cell: x, z (per step) and the states s, t [1, 4] in; y = (s + x + z) W,
    s_out = s + x + z, t_out = t * 0.5 out (state pairs inferred from the names)."""
    nodes = [helper.make_node("Add", ["x", "z"], ["xz"], name="/add0"),
             helper.make_node("Add", ["s", "xz"], ["s_out"], name="/add1"),
             helper.make_node("MatMul", ["s_out", "fc.weight"], ["y"], name="/fc/MatMul"),
             helper.make_node("Mul", ["t", "half"], ["t_out"], name="/mul")]
    inits = {"fc.weight": _rand((4, 3), 11), "half": np.array([0.5], np.float32)}
    return _model(nodes, [("x", [1, 4]), ("z", [1, 4]), ("s", [1, 4]), ("t", [1, 4])],
                  [("y", [1, 3]), ("s_out", [1, 4]), ("t_out", [1, 4])], inits)


def dynamic_lstm():
    """x[seq, 1, 4] -> LSTM(3): the time axis is the first, dynamic, dimension."""
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="/rnn/LSTM", hidden_size=3)
    return _model([node], [("x", ["seq", 1, 4])], [("y", None)],
                  {"W": _rand((1, 12, 4), 1), "R": _rand((1, 12, 3), 2)})


def flip(data: bytes, index: int, bit: int = 7) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


_TF: dict[str, bytes] = {}
_TF_MODELS: dict = {}


def saved_model(folder: str) -> None:
    """The MLP of tf_bytes() exported as a SavedModel folder."""
    tf_bytes("model.pb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _TF_MODELS["model"].export(folder, verbose=False)


def tf_bytes(name: str) -> bytes:
    """model.pb (frozen), model.h5/.keras (a small Keras MLP) and lambda.h5/.keras (the MLP and a
    Lambda layer), built once per process."""
    if not _TF:
        import tempfile

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        keras.utils.set_random_seed(0)
        x = keras.Input((8,), name="x")
        y = keras.layers.Dense(3, name="logits")(keras.layers.Dense(6, activation="relu", name="dense")(x))
        model = keras.Model(x, y, name="mlp")  # named: a default name counts Keras models built before
        fn = tf.function(lambda t: model(t, training=False))
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec([1, 8], tf.float32, "x")))
        gd = frozen.graph.as_graph_def()
        _TF["model.pb"] = gd.SerializeToString()
        del next(n for n in gd.node if n.op == "Const").attr["value"]  # a Const without its value
        _TF["noattr.pb"] = gd.SerializeToString()
        _TF_MODELS["model"] = model
        lam = keras.layers.Lambda(lambda t: t * 2.0, name="double")  # code that loading would run
        models = {"model": model, "lambda": keras.Model(x, lam(y))}
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' "HDF5 is legacy" and numpy-2 notes
            for (stem, m), ext in itertools.product(models.items(), ("h5", "keras")):
                m.save(os.path.join(tmp, f"{stem}.{ext}"))
                with open(os.path.join(tmp, f"{stem}.{ext}"), "rb") as fh:
                    _TF[f"{stem}.{ext}"] = fh.read()
    return _TF[name]


_TFLITE_FILES: dict[str, bytes] = {}


def tflite_bytes(name: str) -> bytes:
    """streaming, unsupported and open_time .tflite files (tests/tflite_models.py), converted once."""
    if name not in _TFLITE_FILES:
        import contextlib
        import io

        import tflite_models

        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # Keras' export notes
            warnings.simplefilter("ignore")
            _TFLITE_FILES[name] = getattr(tflite_models, f"{name}_tflite")()
    return _TFLITE_FILES[name]


def _open_lstm() -> bytes:
    import tflite_seq_models

    return tflite_seq_models.sequence_lstm(5, True, open_time=True)


def _npz(**arrays):
    def make(path):
        with open(path, "wb") as fh:  # np.savez(path) would append .npz to a path without it
            np.savez(fh, **arrays)
    return make


def _bytes(fn):
    def make(path):
        with open(path, "wb") as fh:
            fh.write(fn())
    return make


FILES = {
    "model.onnx": _bytes(lambda: tiny_onnx().SerializeToString()),
    "nan.onnx": _bytes(lambda: tiny_onnx("nan").SerializeToString()),
    "inf.onnx": _bytes(lambda: tiny_onnx("inf").SerializeToString()),
    "nanbias.onnx": _bytes(lambda: tiny_onnx("nanbias").SerializeToString()),
    "huge.onnx": _bytes(lambda: tiny_onnx(scale=1e6).SerializeToString()),
    "dynamic.onnx": _bytes(lambda: tiny_onnx(x_shape=("batch", 2, "h", 8)).SerializeToString()),
    "unsupported.onnx": _bytes(lambda: unsupported_onnx().SerializeToString()),
    "dynlstm.onnx": _bytes(lambda: dynamic_lstm().SerializeToString()),
    "nograph.onnx": _bytes(lambda: _model([], [], [], {}).SerializeToString()),
    "noweight.onnx": _bytes(lambda: _model([helper.make_node("Conv", ["x"], ["y"], name="/conv/Conv")],
                                           [("x", [1, 2, 8, 8])], [("y", None)], {}).SerializeToString()),
    "hugeinput.onnx": _bytes(lambda: _model([helper.make_node("Relu", ["x"], ["y"], name="/Relu")],
                                            [("x", [1, 1 << 40])], [("y", None)], {}).SerializeToString()),
    "trunc.onnx": _bytes(lambda: (lambda b: b[:len(b) // 2])(tiny_onnx().SerializeToString())),
    "flip.onnx": _bytes(lambda: flip(tiny_onnx().SerializeToString(), 0)),
    "empty.onnx": _bytes(lambda: b""), "empty.pb": _bytes(lambda: b""), "empty.h5": _bytes(lambda: b""),
    "model.pb": _bytes(lambda: tf_bytes("model.pb")),
    "trunc.pb": _bytes(lambda: tf_bytes("model.pb")[:len(tf_bytes("model.pb")) // 2]),
    "flip.pb": _bytes(lambda: flip(tf_bytes("model.pb"), 0)),
    "noattr.pb": _bytes(lambda: tf_bytes("noattr.pb")),
    "model.h5": _bytes(lambda: tf_bytes("model.h5")),
    "trunc.h5": _bytes(lambda: tf_bytes("model.h5")[:len(tf_bytes("model.h5")) // 2]),
    "flip.h5": _bytes(lambda: flip(tf_bytes("model.h5"), 20, 3)),
    "unsupported.tflite": _bytes(lambda: tflite_bytes("unsupported")),
    "streaming.tflite": _bytes(lambda: tflite_bytes("streaming")),
    "open_time.tflite": _bytes(lambda: tflite_bytes("open_time")),
    "trunc.tflite": _bytes(lambda: tflite_bytes("streaming")[:len(tflite_bytes("streaming")) // 2]),
    "open_lstm.tflite": _bytes(lambda: _open_lstm()),
    "a_file": _bytes(lambda: b"a regular file, not a folder\n"),
    "nokey.npz": _npz(input=_rand((2, 1, 2, 8, 8), 5)),
    "shape.npz": _npz(x=_rand((2, 3, 8, 8), 6)),
    "pickled.npz": _npz(x=np.array([{"payload": 1}, None], dtype=object)),
    "text.npz": _bytes(lambda: b"x = [1, 2, 3]\n"),
    "naninput.npz": _npz(x=np.full((2, 1, 2, 8, 8), np.nan, np.float32)),
    "state.onnx": _bytes(lambda: state_onnx().SerializeToString()),
    "steps.npz": _npz(x=_rand((2, 5, 1, 4), 12), z=_rand((2, 6, 1, 4), 13)),
    "flat.npz": _npz(x=_rand((2, 4), 14), z=_rand((2, 4), 15)),
}
TF_FILES = {"model.pb", "trunc.pb", "flip.pb", "noattr.pb", "model.h5", "trunc.h5", "flip.h5",
            "unsupported.tflite", "streaming.tflite", "trunc.tflite", "open_time.tflite", "open_lstm.tflite"}


from bad_inputs_safety import FILES as _SAFETY_FILES, ROWS as _SAFETY_ROWS, TF_FILES as _SAFETY_TF  # noqa: E402

from bad_inputs_sequences import FILES as _SEQ_FILES, ROWS as _SEQ_ROWS, TF_FILES as _SEQ_TF  # noqa: E402
from bad_inputs_newops import FILES as _NEWOPS_FILES, ROWS as _NEWOPS_ROWS  # noqa: E402

CASES = (*CASES, *_SAFETY_ROWS, *_SEQ_ROWS, *_NEWOPS_ROWS)
GROUPS = list(dict.fromkeys(c.group for c in CASES))
FILES.update(_SAFETY_FILES)
FILES.update(_SEQ_FILES)
FILES.update(_NEWOPS_FILES)
TF_FILES |= _SAFETY_TF | _SEQ_TF


def needs_tf(case: Case) -> bool:
    return bool(TF_FILES.intersection(case.files)) or "PB_FILE: model.onnx" in str(case.config)


# -- staging and checking a run --------------------------------------------------------------------
def stage(case: Case, folder: str) -> None:
    """Write the row's config, files, and out/ (with the previous model.h when old_output)."""
    from bad_inputs_safety import _special

    os.makedirs(os.path.join(folder, "out"), exist_ok=True)
    for entry in case.files:
        name, _, special = entry.partition("=")
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if name == "a_folder":
            os.makedirs(path, exist_ok=True)
        elif special:
            _special(special, path, folder)
        elif name in FILES:
            FILES[name](path)
    if case.old_output:
        with open(os.path.join(folder, "out", "model.h"), "wb") as fh:
            fh.write(OLD_OUTPUT)
    if case.config is not None:
        raw = case.config if isinstance(case.config, bytes) else case.config.encode()
        with open(os.path.join(folder, "config.yaml"), "wb") as fh:
            fh.write(raw)


def snapshot(folder: str) -> dict[str, str]:
    """Every file and folder under folder -> sha256 of its bytes ("dir" for folders)."""
    import stat

    out = {}
    for root, dirs, files in os.walk(folder):  # never into a linked folder
        for name in dirs + files:
            path = os.path.join(root, name)
            rel, st = os.path.relpath(path, folder), os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link -> " + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                out[rel + "/"] = "dir"
            elif not stat.S_ISREG(st.st_mode):
                out[rel] = f"node {stat.S_IFMT(st.st_mode):o} inode {st.st_ino}"
            else:
                with open(path, "rb") as fh:
                    out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


def normalize(text: str, folder: str) -> str:
    """A message with the run's folder removed, so the docs show paths as a user sees them."""
    for f in {folder, os.path.realpath(folder)}:
        text = text.replace(f + os.sep, "").replace(f, ".")
    return text
