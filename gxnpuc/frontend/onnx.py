"""ONNX front end: read a .onnx file, resolve input shapes, and lower every node to the IR.

Initializers keep their ONNX names. An unknown leading (batch) dimension becomes 1 and the
summary says so; any other unknown dimension must be given in INPUT_OPS.
"""
from __future__ import annotations

from gxnpuc.errors import ConfigError, ModelError
from gxnpuc.frontend.common import FNode, LowerCtx, lower
from gxnpuc.ir import Graph
from gxnpuc.config.names import ConfigNameError, unknown

_ELEM_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 6: "int32", 7: "int64",
               9: "bool", 2: "uint8", 3: "int8"}


def load_model(path: str):
    """Parse the file with onnx; every failure becomes one ModelError line."""
    import onnx

    from gxnpuc.config.files import display_path

    shown = display_path(path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types on corrupt bytes
        raise ModelError(shown, f"not a readable ONNX model ({type(exc).__name__})",
                         "an .onnx file saved by torch.onnx.export, tf2onnx or onnx.save") from None
    if not model.graph.node and not model.graph.output:  # other protobufs (a TF .pb) parse so too
        raise ModelError(shown, "the ONNX model has an empty graph",
                         "an .onnx file with nodes and outputs; a TensorFlow .pb goes in PB_FILE")
    _load_external(model, path)
    return model


def _load_external(model, path: str) -> None:
    """Read weights kept beside the model (torch's dynamo exporter writes `<model>.onnx.data`).

    onnx itself refuses locations that leave the model's folder, so a hostile model cannot
    make us read arbitrary files.
    """
    import os

    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    if not any(uses_external_data(t) for t in model.graph.initializer):
        return
    try:
        load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except Exception as exc:
        raise ModelError(path, f"its external weight data cannot be read ({exc})",
                         "keep the .onnx.data file the exporter wrote next to the .onnx file") from None


def _attrs(node) -> dict:
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if hasattr(v, "raw_data") or hasattr(v, "float_data"):  # TensorProto
            v = numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", "replace") for x in v]
        out[a.name] = v
    return out


def _checked_override(vi, given: list[int]) -> tuple[int, ...]:
    """An INPUT_OPS shape: same rank as the model's input, and its static dims unchanged."""
    if not vi.type.tensor_type.HasField("shape"):
        return tuple(given)  # the model does not say
    model = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
             for d in vi.type.tensor_type.shape.dim]
    if len(model) != len(given) or any(m is not None and m != g for m, g in zip(model, given)):
        raise ConfigNameError("INPUT_OPS", f"shape {given} of {vi.name!r} does not fit the model's "
                              f"input shape {model}", "same rank; None dims may be any positive size",
                              "INPUT_OPS", vi.name)  # frontend.load() adds the config line
    return tuple(given)


def _input_shape(vi, overrides: dict, notes: list, guessed: dict) -> tuple[int, ...]:
    name = vi.name
    dims = vi.type.tensor_type.shape.dim
    if name in overrides:
        return _checked_override(vi, [int(d) for d in overrides[name]])
    shape = []
    for k, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(d.dim_value)
        elif k == 0:
            shape.append(1)
            notes.append(f"input {name!r}: unknown batch dimension set to 1")
            guessed.setdefault(name, {})[k] = d.dim_param or "?"  # a recurrent layer checks it
        else:
            raise ConfigError(f"input {name!r}", f"dimension {k} is unknown ({d.dim_param or '?'})",
                              f"give the static shape in INPUT_OPS, e.g. INPUT_OPS: {{{name}: [1, ...]}}")
    return tuple(shape)


def to_ir(path: str, input_shapes: dict | None = None, outputs: list[str] | None = None,
          input_values: dict | None = None) -> Graph:
    """Read and lower an ONNX file. input_shapes/outputs/input_values come from
    INPUT_OPS/OUTPUT_OPS/INPUT_VALUES (an input with a fixed value becomes a constant)."""
    from onnx import numpy_helper

    from gxnpuc.ops import ONNX_LOWERINGS

    model = load_model(path)
    g = model.graph
    ctx = LowerCtx("onnx")
    ctx.fnodes_of = fnodes_of  # If branches (ops/control.py)
    ctx.graph.meta.update(source=path, opset=max((o.version for o in model.opset_import
                                                  if o.domain in ("", "ai.onnx")), default=0))
    inits = {t.name for t in g.initializer}
    for t in g.initializer:
        try:
            ctx.add_const(t.name, numpy_helper.to_array(t))
            t.ClearField("raw_data")  # the array owns a copy; later stages hold one, not two
        except Exception as exc:
            raise ModelError(f"{path}: initializer {t.name!r}", f"cannot be read ({exc})",
                             "weights stored inside the .onnx file") from None
    overrides = dict(input_shapes or {})
    free = [vi.name for vi in g.input if vi.name not in inits]
    values = dict(input_values or {})
    for key, given in (("INPUT_OPS", overrides), ("INPUT_VALUES", values)):  # before shape errors
        for name in given:
            if name not in free:
                raise unknown(key, name, free, "is not an input of the model",
                              "model inputs: " + ", ".join(free[:8]))
    for vi in g.input:
        if vi.name in inits:
            continue
        elem = _ELEM_TYPES.get(vi.type.tensor_type.elem_type, "float32")
        if vi.name in values:
            _add_fixed(ctx, vi, values[vi.name], elem)
            continue
        ctx.add_input(vi.name, _input_shape(vi, overrides, ctx.graph.meta["notes"], ctx.guessed_dims), elem)
    fnodes = fnodes_of(g.node)
    _check_single_writer(fnodes, path)
    return lower(ctx, fnodes, outputs or [o.name for o in g.output], ONNX_LOWERINGS)


def fnodes_of(nodes) -> list[FNode]:
    """FNodes of ONNX NodeProtos (a graph's or an If branch's); other domains as `domain.Op`."""
    fnodes = []
    for k, n in enumerate(nodes):
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        fn = FNode(n.name or f"{n.op_type}_{k}", op, list(n.input), list(n.output), _attrs(n))
        if op == "If":  # what the branches read from the graph: computed before the If
            fn.inputs += [i for key in ("then_branch", "else_branch") if key in fn.attrs
                          for i in _outer_reads(fn.attrs[key]) if i not in fn.inputs]
        fnodes.append(fn)
    return fnodes


def _outer_reads(graph) -> list[str]:
    made = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    reads = [i for n in graph.node for i in n.input if i and i not in made]
    reads += [o.name for o in graph.output if o.name not in made]
    return list(dict.fromkeys(reads))


def _add_fixed(ctx, vi, value, elem: str) -> None:
    """An INPUT_VALUES input: a constant of the model's dtype (and shape, when it says one)."""
    import numpy as np

    arr = np.asarray(value, dtype=elem)
    tt = vi.type.tensor_type
    dims = [int(d.dim_value) for d in tt.shape.dim if d.HasField("dim_value")] if tt.HasField("shape") else []
    if tt.HasField("shape") and len(dims) == len(tt.shape.dim):  # a fully static shape
        if arr.size != int(np.prod(dims, dtype=np.int64)):
            raise ConfigNameError("INPUT_VALUES", f"{vi.name!r} has {arr.size} value(s) for the model's "
                                  f"input shape {dims}", "one value per element (a number for a scalar)",
                                  "INPUT_VALUES", vi.name)
        arr = arr.reshape(dims)
    ctx.add_const(vi.name, arr)
    ctx.graph.meta["notes"].append(f"input {vi.name!r} fixed to {value!r} (INPUT_VALUES)")


def _check_single_writer(fnodes: list[FNode], path: str) -> None:
    """ONNX graphs are in SSA form: a tensor written twice means a broken file."""
    seen: dict[str, str] = {}
    for fn in fnodes:
        for out in fn.outputs:
            if out and out in seen:
                raise ModelError(f"{path}: node {fn.name!r} [{fn.op_type}]",
                                 f"writes {out!r}, which node {seen[out]!r} already writes",
                                 "a valid ONNX graph: every tensor has one producer")
            seen[out] = fn.name
