"""TensorFlow Lite recurrent layers, unrolled over the static sequence length into NPU ops.

- WHILE: what Keras 3 LSTM / GRU / SimpleRNN (and Bidirectional) become in TFLite. Its trip
  count is a constant once shapes are static, so the loop is unrolled while lowering: each
  pass lowers the condition subgraph, which folds to True or False, then the body with the
  step counter a constant (the body's GATHER of the input sequence becomes a `slice`, its
  write into the output TensorArray a `concat`). The body's FULLY_CONNECTED weights are
  constants under their TFLite names, read by every step's `fc` (compressible, listed by -w).
- UNIDIRECTIONAL_SEQUENCE_LSTM, BIDIRECTIONAL_SEQUENCE_LSTM, UNIDIRECTIONAL_SEQUENCE_RNN:
  the fused ops, described as `recurrent.Cell`s (one weight block per gate, peepholes,
  projection) and unrolled by `recurrent.unroll`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from gxnpuc.errors import ModelError
from gxnpuc.ops.base import tflite_lowering
from gxnpuc.ops.recurrent import Cell, check_static_length, unroll
from gxnpuc.ops.recurrent_tf import MAX_STEPS
from gxnpuc.ops.shape_ops import emit_reshape

_LOOP_OPS = ("fc", "binary", "act", "slice", "split", "reshape", "concat", "matmul", "transpose")
_LOOP_CONTROL = ("a WHILE loop whose trip count depends on run-time values is not supported by the "
                 "NPU; give static shapes in INPUT_OPS (the sequence length of a recurrent layer)")


@tflite_lowering("WHILE", emits=_LOOP_OPS)
def _tflite_while(ctx, fn):
    """Unrolled: cond(vars) must fold to a constant in every pass; body(vars) -> vars."""
    if ctx.subgraph_of is None:
        return ctx.reject(_LOOP_CONTROL)
    cond = ctx.subgraph_of(int(fn.attrs["cond_subgraph_index"]))
    body = ctx.subgraph_of(int(fn.attrs["body_subgraph_index"]))
    if len(cond.inputs) != len(fn.inputs) or len(body.inputs) != len(fn.inputs) or \
            len(body.outputs) != len(fn.inputs) or len(cond.outputs) != 1:
        return ctx.reject("WHILE whose condition / body do not take and give its loop variables")
    try:
        return _unroll_while(ctx, fn, cond, body)
    except ValueError as exc:  # a corrupt body: a kernel folding its constants refuses them
        raise ModelError(f"tflite node {fn.name!r} [WHILE]", f"its loop body is malformed ({exc})",
                         "a .tflite file written by the TFLite converter") from None


def _unroll_while(ctx, fn, cond, body):
    state = [ctx.resolve(i) for i in fn.inputs]
    for step in range(MAX_STEPS + 1):
        env = dict(zip(cond.inputs, state))
        if not _lower_pass(ctx, fn, cond, env, f"c{step}"):
            return None
        go = ctx.const(env.get(cond.outputs[0], cond.outputs[0]))
        if go is None or np.size(go) != 1:
            return ctx.reject(_LOOP_CONTROL)
        if not bool(np.ravel(go)[0]):
            break
        if step == MAX_STEPS:
            return ctx.reject(f"a WHILE loop of more than {MAX_STEPS} steps")
        env = dict(zip(body.inputs, state))
        if not _lower_pass(ctx, fn, body, env, f"t{step}"):
            return None
        state = [env.get(o, o) for o in body.outputs]  # a constant output is itself
    ctx.fnode = fn
    for out, v in zip(fn.outputs, state):
        ctx.set_alias(out, v)
    return None


def _lower_pass(ctx, fn, sub, env: dict[str, str], tag: str) -> bool:
    """Lower a copy of the subgraph's nodes, named `<while>/<tag>/<node>`; env maps the
    subgraph's run-time tensors to graph tensors (its constants are graph constants)."""
    for n in sub.fnodes:
        ins = [env.get(i, i) if i else "" for i in n.inputs]
        name = ctx.fresh(f"{fn.name}/{tag}/{n.name.split(':', 1)[-1]}")
        outs = [name] + [ctx.fresh(f"{name}:{k}") for k in range(1, len(n.outputs))]
        ok = ctx.lower_nodes([replace(n, name=name, inputs=ins, outputs=outs)])
        env.update(zip(n.outputs, outs))
        if not ok:
            return False
    return True


# -- fused recurrent ops ------------------------------------------------------------------------
_ACTS: dict[str, dict] = {"TANH": {"fn": "tanh"}, "RELU": {"fn": "relu"}, "LOGISTIC": {"fn": "sigmoid"},
         "RELU6": {"fn": "clip", "min": 0.0, "max": 6.0}}


def _inp(fn, k: int) -> str:
    return fn.inputs[k] if k < len(fn.inputs) and fn.inputs[k] else ""


def _consts(ctx, fn, idx) -> list[str] | None:
    names = [_inp(fn, k) for k in idx]
    if any(n and ctx.const(n) is None for n in names):
        ctx.reject("recurrent weights, biases and peepholes must be constant")
        return None
    return names


def _state(ctx, name: str) -> str | None:
    """An initial state: None when it is zero (a variable tensor the model starts at zero)."""
    if not name:
        return None
    v = ctx.const(name)
    return None if v is not None and not np.any(v) else name


def _lstm_cell(ctx, fn, base: int, tag: str) -> Cell | None:
    """UNIDIRECTIONAL_SEQUENCE_LSTM's inputs 1..17 (base 1; a BIDIRECTIONAL direction's block
    at its own base): weights per gate i, f, c, o, peepholes, biases, projection."""
    a = fn.attrs
    if float(a.get("cell_clip", 0) or 0) or float(a.get("proj_clip", 0) or 0):
        ctx.reject("cell_clip / proj_clip (the converter writes 0)")
        return None
    if any(_inp(fn, k) for k in range(20, 24)) and fn.op_type == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        ctx.reject("layer-normalised LSTM")
        return None
    names = _consts(ctx, fn, range(base, base + 17))
    if names is None:
        return None
    w_x, w_h, peep, bias, proj = names[0:4], names[4:8], names[8:11], names[11:15], names[15:17]
    if not w_x[0] or not all(w_x) or not all(w_h):
        ctx.reject("an LSTM without input gate (CIFG) or with missing weights")
        return None
    act = str(a.get("fused_activation_function", "TANH"))
    if act not in _ACTS:
        ctx.reject(f"activation {act} ({', '.join(_ACTS)})")
        return None
    hidden = int(ctx.shape(w_x[0])[0])
    return Cell("lstm", "ifco", hidden, w_x, w_h, [b or None for b in bias], [None] * 4,
                ({"fn": "sigmoid"}, _ACTS[act], _ACTS[act]),
                peep=(peep[0], peep[2], peep[1]) if all(peep) else None,
                proj=(proj[0], proj[1] or None) if proj[0] else None, name=f"{fn.name}/{tag}")


def _time_axis(ctx, fn, x: str) -> int | None:
    axis = 0 if fn.attrs.get("time_major", False) else 1
    if len(ctx.shape(x)) != 3:
        ctx.reject(f"input {list(ctx.shape(x))} (3-D: [batch, time, features] or time-major)")
        return None
    check_static_length(ctx, fn, x, axis)
    return axis


def _sequence(ctx, hs: list[str], axis: int, out: str | None = None) -> str:
    """The hidden states [B, H] of every step stacked along the time axis."""
    b, h = ctx.shape(hs[0])
    parts = [emit_reshape(ctx, s, [1, b, h] if axis == 0 else [b, 1, h]) for s in hs]
    if len(parts) == 1:
        if out:
            ctx.set_alias(out, parts[0])
        return parts[0]
    return ctx.emit("concat", parts, [out] if out else None, {"axis": axis})[0]


_EMITS = ("fc", "binary", "act", "slice", "split", "reshape", "concat")


@tflite_lowering("UNIDIRECTIONAL_SEQUENCE_LSTM", emits=_EMITS)
def _tflite_lstm(ctx, fn):
    x = fn.inputs[0]
    axis = _time_axis(ctx, fn, x)
    cell = _lstm_cell(ctx, fn, 1, "fw") if axis is not None else None
    if cell is None:
        return None
    hs, _, _ = unroll(ctx, cell, x, axis, _state(ctx, _inp(fn, 18)), _state(ctx, _inp(fn, 19)))
    _sequence(ctx, hs, axis, fn.outputs[0])
    return None


@tflite_lowering("BIDIRECTIONAL_SEQUENCE_LSTM", emits=_EMITS)
def _tflite_bilstm(ctx, fn):
    """Forward weights at inputs 1..17, backward at 18..34, states 35..38; outputs forward
    and backward concatenated on the last axis (merge_outputs) or apart."""
    if _inp(fn, 39):
        return ctx.reject("an auxiliary input")
    x = fn.inputs[0]
    axis = _time_axis(ctx, fn, x)
    cells = [_lstm_cell(ctx, fn, 1, "fw"), _lstm_cell(ctx, fn, 18, "bw")] if axis is not None else [None]
    if any(c is None for c in cells):
        return None
    seqs = []
    for cell, h0, c0, rev in zip(cells, (35, 37), (36, 38), (False, True)):
        hs, _, _ = unroll(ctx, cell, x, axis, _state(ctx, _inp(fn, h0)), _state(ctx, _inp(fn, c0)), rev)
        seqs.append(hs)
    if fn.attrs.get("merge_outputs", False):
        parts = [_sequence(ctx, hs, axis) for hs in seqs]
        ctx.emit("concat", parts, fn.outputs[:1], {"axis": 2})
    else:
        for hs, out in zip(seqs, fn.outputs[:2]):
            _sequence(ctx, hs, axis, out)
    return None


@tflite_lowering("UNIDIRECTIONAL_SEQUENCE_RNN", emits=_EMITS)
def _tflite_rnn(ctx, fn):
    """(input, weights [H, I], recurrent weights [H, H], bias [H], hidden state):
    h = act(x W^T + h R^T + b)."""
    x = fn.inputs[0]
    axis = _time_axis(ctx, fn, x)
    names = _consts(ctx, fn, (1, 2, 3)) if axis is not None else None
    if names is None:
        return None
    act = str(fn.attrs.get("fused_activation_function", "TANH"))
    if act not in _ACTS:
        return ctx.reject(f"activation {act} ({', '.join(_ACTS)})")
    cell = Cell("rnn", "h", int(ctx.shape(names[0])[0]), [names[0]], [names[1]], [names[2] or None], [None],
                (_ACTS[act],) * 3, name=f"{fn.name}/fw")
    hs, _, _ = unroll(ctx, cell, x, axis, _state(ctx, _inp(fn, 4)))
    _sequence(ctx, hs, axis, fn.outputs[0])
    return None
