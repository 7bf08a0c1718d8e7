"""TensorFlow Lite front end: a .tflite file (tflite_read.py) -> FNodes -> NPU IR.

Tensor names are the TFLite tensor names (made unique where the file repeats one). Every
quantised constant is dequantised when read (real = scale * (q - zero_point), per channel
along quantized_dimension), fp16 constants become float32 and sparse ones dense, so
DEQUANTIZE / DENSIFY of a weight is a no-op and a weight keeps the name of the tensor that
stores it; the compressor then sees float weights as from any other framework. In a fully
int8 model the activations are computed in float: its quantised inputs and outputs carry
the real value (scale * (q - zero_point)) and the summary says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gxnpuc.config.names import ConfigNameError, unknown
from gxnpuc.errors import ConfigError, ModelError
from gxnpuc.frontend.common import FNode, LowerCtx, lower
from gxnpuc.frontend.tflite_read import (TfliteModel, TfTensor, dequantize, read, scale_and_zero_point,
                                        unique_names)
from gxnpuc.ir import Graph

_QUANT_TYPES = ("int8", "uint8", "int16")


def load(path: str) -> TfliteModel:
    from gxnpuc.config.files import display_path

    return read(path, display_path(path))


def to_ir(path: str, input_shapes: dict | None = None, outputs: list[str] | None = None) -> Graph:
    """Read and lower a .tflite file. input_shapes/outputs come from INPUT_OPS/OUTPUT_OPS."""
    from gxnpuc.frontend import tflite_state
    from gxnpuc.ops import TFLITE_LOWERINGS

    model = load(path)
    sg = model.subgraphs[0]
    names = unique_names(sg.tensors)
    ctx = LowerCtx("tflite")
    ctx.graph.meta.update(source=path, form="tflite")
    notes = ctx.graph.meta["notes"]
    _add_constants(ctx, sg.tensors, names, notes, path)
    _zero_variables(ctx, sg, names, notes)
    ctx.subgraph_of = _subgraph_reader(ctx, model, path)
    fnodes = [FNode(_op_name(op, names, k), op.op_type, [names[i] if i >= 0 else "" for i in op.inputs],
                    [names[i] for i in op.outputs],
                    dict(op.options, custom_options=op.custom,
                         output_dtypes=[sg.tensors[i].dtype for i in op.outputs]))
              for k, op in enumerate(sg.ops)]
    state = tflite_state.resolve(ctx, model, fnodes, path)
    _add_inputs(ctx, sg.tensors, names, sg.inputs, dict(input_shapes or {}), notes)
    state.add_inputs(ctx)
    outs = list(outputs or [names[i] for i in sg.outputs])
    _note_quantised_outputs(ctx, sg, names, outs)
    outs += state.outputs(outs)
    return lower(ctx, state.fnodes, outs, TFLITE_LOWERINGS)


def _op_name(op, names: list[str], k: int) -> str:
    """A TFLite operator has no name: it is called after its first output tensor."""
    return names[op.outputs[0]] if op.outputs else f"{op.op_type}_{k}"


def _zero_variables(ctx, sg, names: list[str], notes: list) -> None:
    """The state tensors of fused recurrent ops (UNIDIRECTIONAL_SEQUENCE_LSTM's output and
    cell state): variable tensors that no operator writes, zero when the interpreter starts."""
    written = {i for op in sg.ops for i in op.outputs} | set(sg.inputs)
    for k, t in enumerate(sg.tensors):
        if t.variable and t.data is None and k not in written and t.dtype in ("float32", "float16"):
            names[k] = ctx.add_const(names[k], np.zeros(t.shape, np.float32))
            notes.append(f"variable tensor {names[k]!r} (a recurrent op's initial state) starts at zero")


@dataclass
class Subgraph:
    """A TFLite subgraph besides the main one (a WHILE's condition or body): its operators
    as FNodes and its input / output tensor names. Its constants are graph constants under
    their TFLite names; its other tensors are named `@<k>:<name>`, apart from the main graph's."""
    fnodes: list[FNode]
    inputs: list[str]
    outputs: list[str]


def _subgraph_reader(ctx, model: TfliteModel, path: str):
    cache: dict[int, Subgraph] = {}

    def read_subgraph(k: int) -> Subgraph:
        if k not in cache:
            if not 0 < k < len(model.subgraphs):
                raise ModelError(f"{path}: subgraph {k}", "does not exist",
                                 f"a subgraph index below {len(model.subgraphs)}")
            sg = model.subgraphs[k]
            names = [f"@{k}:{n}" for n in unique_names(sg.tensors)]
            for j, t in enumerate(sg.tensors):
                if t.data is not None:
                    names[j] = t.name or names[j]
            _add_constants(ctx, sg.tensors, names, [], path)
            fnodes = [FNode(_op_name(op, names, j), op.op_type, [names[i] if i >= 0 else "" for i in op.inputs],
                            [names[i] for i in op.outputs],
                            dict(op.options, custom_options=op.custom,
                                 output_dtypes=[sg.tensors[i].dtype for i in op.outputs]))
                      for j, op in enumerate(sg.ops)]
            cache[k] = Subgraph(fnodes, [names[i] for i in sg.inputs], [names[i] for i in sg.outputs])
        return cache[k]
    return read_subgraph


def _add_constants(ctx, tensors: list[TfTensor], names: list[str], notes: list, path: str) -> None:
    """Every constant as a graph constant (names[k] becomes the name it got)."""
    from gxnpuc.frontend.tflite_sparse import densify

    counts = {"int8": 0, "fp16": 0, "sparse": 0}
    for k, (t, name) in enumerate(zip(tensors, names)):
        if t.data is None:
            continue
        try:
            data = t.data
            if t.sparsity is not None:
                data = densify(data, t.sparsity, t.shape)
                counts["sparse"] += 1
            t.data = data
            value = dequantize(t)
        except (ValueError, IndexError) as exc:
            raise ModelError(f"{path}: tensor {name!r}", f"cannot be read ({exc})",
                             "a .tflite file written by the TFLite converter") from None
        if t.scale is not None and t.data.dtype.kind in "iu" and t.data.dtype != np.int32:
            counts["int8"] += 1
        counts["fp16"] += t.data.dtype == np.float16
        names[k] = ctx.add_const(name, value)
    if counts["int8"]:
        notes.append(f"{counts['int8']} quantised (int8) weights dequantised to float; the compiler "
                     "compresses them from there")
    if counts["fp16"]:
        notes.append(f"{counts['fp16']} fp16 weights read as float")
    if counts["sparse"]:
        notes.append(f"{counts['sparse']} sparse weights made dense")


def _quant_note(what: str, name: str, t: TfTensor) -> str:
    scale, zp = scale_and_zero_point(t)
    return (f"{what} {name!r} is {t.dtype} in the model (scale {scale:.6g}, zero point {zp}): the "
            f"compiled model {'takes' if what == 'input' else 'gives'} its real value "
            f"scale*(q - zero_point) in fp16")


def _add_inputs(ctx, tensors, names, inputs: list[int], overrides: dict, notes: list) -> None:
    free = [names[i] for i in inputs]
    for name in list(overrides):  # `serving_default_x` names `serving_default_x:0`
        if name not in free and f"{name}:0" in free:
            overrides[f"{name}:0"] = overrides.pop(name)
    for name in overrides:
        if name not in free:
            raise unknown("INPUT_OPS", name, free, "is not an input of the model",
                          "model inputs: " + ", ".join(free[:8]))
    for i in inputs:
        t, name = tensors[i], names[i]
        shape = _input_shape(name, t, overrides, notes)
        if name not in overrides and t.signature and t.signature[0] < 0:
            ctx.guessed_dims[name] = {0: "None"}  # a recurrent op over this axis says so
        dtype = t.dtype
        if t.scale is not None and dtype in _QUANT_TYPES:
            notes.append(_quant_note("input", name, t))
            dtype = "float32"
        elif dtype not in ("float32", "float16", "int32", "int64", "bool"):
            raise ModelError(f"input {name!r}", f"has type {dtype}",
                             "float, or int8/uint8/int16 with quantisation parameters")
        ctx.add_input(name, shape, dtype)


def _input_shape(name: str, t: TfTensor, overrides: dict, notes: list) -> tuple[int, ...]:
    """INPUT_OPS wins (same rank; the model's fixed dims kept); an open batch becomes 1."""
    sig = list(t.signature)
    if name in overrides:
        given = [int(d) for d in overrides[name]]
        if len(given) != len(sig) or any(s >= 0 and s != g for s, g in zip(sig, given)) or min(given, default=1) < 1:
            raise ConfigNameError("INPUT_OPS", f"shape {given} of {name!r} does not fit the model's input "
                                  f"shape {[s if s >= 0 else None for s in sig]}",
                                  "same rank; None dims may be any positive size", "INPUT_OPS", name)
        return tuple(given)
    for k, d in enumerate(sig):
        if d < 0 and k == 0:
            notes.append(f"input {name!r}: unknown batch dimension set to 1")
        elif d < 0:
            example = ", ".join(str(x) if x >= 0 else "N" for x in [1, *sig[1:]])
            raise ConfigError(f"input {name!r}", f"dimension {k} is unknown",
                              f"give the static shape in INPUT_OPS, e.g. INPUT_OPS: {{{name}: [{example}]}}")
    return tuple(1 if d < 0 else d for d in sig)


def _note_quantised_outputs(ctx, sg, names: list[str], outs: list[str]) -> None:
    by_name = dict(zip(names, sg.tensors))
    for name in outs:
        t = by_name.get(name)
        if t is not None and t.scale is not None and t.dtype in _QUANT_TYPES and t.data is None:
            ctx.graph.meta["notes"].append(_quant_note("output", name, t))


def io_quantisation(path: str) -> dict[str, tuple[float, int, str]]:
    """{tensor name: (scale, zero point, dtype)} of the main subgraph's quantised inputs and
    outputs (the oracle maps real values to and from them)."""
    sg = load(path).subgraphs[0]
    names = unique_names(sg.tensors)
    out = {}
    for i in list(sg.inputs) + list(sg.outputs):
        t = sg.tensors[i]
        if t.scale is not None and t.dtype in _QUANT_TYPES:
            out[names[i]] = (*scale_and_zero_point(t), t.dtype)
    return out
