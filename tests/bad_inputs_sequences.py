"""Catalogue rows for sequence data of streaming models (`gxnpuc -e seq.npz` with STATE_OPS):
per-step arrays and initial states that do not fit the model. Appended to bad_inputs.CASES /
FILES (group "Streaming state"), beside the STATE_OPS rows of tests/bad_inputs.py.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from bad_inputs import Case, _bytes, _model, _npz, _rand

_ST = "Streaming state (STATE_OPS, sequences)"
_STATE = "ONNX_FILE: state.onnx\nOUTPUT_FILE: out/model.h\n"


def _c(id, cause, fix, config, *expect, files=(), npz="") -> Case:
    return Case(id, _ST, cause, fix, config, tuple(expect), files=files, args=("-e", npz))


def _seq(**arrays):
    """x and z of state.onnx as [2 samples, 5 steps, 1, 4], plus the arrays given."""
    return _npz(**{"x": _rand((2, 5, 1, 4), 21), "z": _rand((2, 5, 1, 4), 22), **arrays})


ROWS = [
    _c("sequence-state-per-step", "a state input given per step ([samples, steps, ...]): the model "
       "carries its state, only its start is given", "give the initial state [samples, *shape], or leave it out",
       _STATE, "state_steps.npz: s", "[2, 5, 1, 4]", "the initial state: [samples, 1, 4]",
       files=("state.onnx", "state_steps.npz"), npz="state_steps.npz"),
    _c("sequence-sample-counts", "an initial state with another number of samples than the per-step inputs",
       "one sample count for every array", _STATE, "samples.npz", "different sample counts",
       files=("state.onnx", "samples.npz"), npz="samples.npz"),
    _c("sequence-missing-input", "a per-step input missing from the sequence file", "an array for every "
       "input that is not a state input", _STATE, "only_x.npz", "no array for per-step input 'z'",
       files=("state.onnx", "only_x.npz"), npz="only_x.npz"),
    _c("sequence-extra-array", "an array named after no input", "only the model's input names",
       _STATE, "extra.npz: w", "is not an input of the model", files=("state.onnx", "extra.npz"),
       npz="extra.npz"),
    _c("sequence-labels", "labels given with sequences", "leave labels out: every output is compared "
       "over the steps", _STATE, "labels.npz: labels", "not read for sequences",
       files=("state.onnx", "labels.npz"), npz="labels.npz"),
    _c("sequence-too-many-steps", "4,097 steps", "at most 4,096 steps: split the sequence", _STATE,
       "long.npz: x", "has 4097 steps", "at most 4096", files=("state.onnx", "long.npz"), npz="long.npz"),
    _c("sequence-nan", "NaN in a per-step input", "finite values", _STATE, "nanseq.npz: z", "NaN",
       files=("state.onnx", "nanseq.npz"), npz="nanseq.npz"),
    _c("sequence-state-only", "a streaming model whose every input is a state input",
       "a model with at least one per-step input", "ONNX_FILE: decay.onnx\nOUTPUT_FILE: out/model.h\n",
       "--eval", "every input of the model is a state input", files=("decay.onnx", "decay.npz"), npz="decay.npz"),
    _c("sequence-tflite-variable-start", "the start of a TFLite resource variable given as other than "
       "its initial value (the interpreter keeps its variables inside)", "leave the variable out of the "
       "data, or give its initial value", "TFLITE_FILE: streaming.tflite\nOUTPUT_FILE: out/model.h\n",
       "ctx_start.npz: ctx", "initial state of a variable the TFLite interpreter keeps",
       files=("streaming.tflite", "ctx_start.npz"), npz="ctx_start.npz"),
]


def _decay():
    """s_out = 0.5 s: a model with a state input and no per-step input."""
    node = helper.make_node("Mul", ["s", "half"], ["s_out"], name="/decay")
    return _model([node], [("s", [1, 4])], [("s_out", [1, 4])], {"half": np.array([0.5], np.float32)})


FILES = {
    "state_steps.npz": _seq(s=_rand((2, 5, 1, 4), 23)),
    "samples.npz": _seq(s=_rand((3, 1, 4), 24)),
    "only_x.npz": _npz(x=_rand((2, 5, 1, 4), 25)),
    "extra.npz": _seq(w=_rand((2, 5, 1, 4), 26)),
    "labels.npz": _seq(labels=np.zeros((2, 5), np.int64)),
    "long.npz": _npz(x=_rand((1, 4097, 1, 4), 27), z=_rand((1, 4097, 1, 4), 28)),
    "nanseq.npz": _seq(z=np.full((2, 5, 1, 4), np.nan, np.float32)),
    "decay.onnx": _bytes(lambda: _decay().SerializeToString()),
    "decay.npz": _npz(s=_rand((2, 1, 4), 29)),
    "ctx_start.npz": _npz(serving_default_frame=_rand((2, 3, 1, 1, 4), 30), ctx=np.ones((2, 1, 2, 4), np.float32)),
}
TF_FILES = {"streaming.tflite"}
