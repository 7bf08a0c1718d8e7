"""Recurrent layers (LSTM, GRU, plain RNN) unrolled over their static sequence length into
existing NPU ops: `fc` for the input and recurrent products, `binary`, `act` (sigmoid, tanh,
...), `slice`, `split`, `reshape`, `concat`. No new NPU op.

`unroll()` is framework-neutral: a front end describes one direction of a layer as a
`Cell` (constant names of its weight blocks, gate order, activations) and gets back the
hidden state of every step. The input projection runs once over the whole sequence (one fc);
each step then adds the recurrent product h @ R and applies the gates. The weights stay the
framework's constants (a direction of a bidirectional ONNX weight becomes `<W>/forward` and
`<W>/reverse`), so `-w`, `-s`, compression and tuning see them as ordinary fc weights, each
read by every step.

ONNX `LSTM`, `GRU` (both linear_before_reset) and `RNN` are lowered here, forward, reverse
and bidirectional, batch-major layout too; TensorFlow's Keras layers arrive as while loops
and are unrolled by ops/tf_loops.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gxnpuc.errors import ConfigError
from gxnpuc.ops.base import onnx_lowering
from gxnpuc.ops.shape_ops import emit_reshape


@dataclass
class Cell:
    """One direction of a recurrent layer, by the names of constants already in the graph.

    kind: "lstm" | "gru" | "rnn". gates: one letter per gate in weight-row order (LSTM i, o,
    f, c in any order; GRU z, r, h; RNN h). w_x / w_h: weight blocks [rows, in] (fc with
    transpose_w) whose rows cover `gates` in order, e.g. one fused block, or one per gate;
    b_x / b_h: a bias per block or None (b_h is added to h @ R, which matters for a GRU with
    linear_before_reset). acts: act attrs of (gate activation, candidate, output) per ONNX's
    f, g, h. peep: LSTM peephole constants (i, o, f), each [H], or None.
    """
    kind: str
    gates: str
    hidden: int
    w_x: list[str]
    w_h: list[str]
    b_x: list[str | None]
    b_h: list[str | None]
    acts: tuple[dict, ...] = ({"fn": "sigmoid"}, {"fn": "tanh"}, {"fn": "tanh"})
    clip: float | None = None
    linear_before_reset: bool = False
    input_forget: bool = False
    peep: tuple[str, str, str] | None = None
    name: str = "rnn"  # prefix of the node names
    proj: tuple[str, str | None] | None = None  # LSTM projection of h: weight [P, H], bias


class _Emit:
    """Short emitters with readable node names (`<layer>/<dir>/t3/...`)."""

    def __init__(self, ctx, base: str):
        self.ctx, self.base = ctx, base

    def node(self, what: str) -> str:
        return self.ctx.fresh(f"{self.base}/{what}")

    def op(self, op: str, inputs: list[str], attrs: dict, what: str, outputs=None) -> list[str]:
        name = self.node(what)
        return self.ctx.emit(op, inputs, outputs or [self.ctx.fresh(name + ":0")], attrs, name=name)

    def fc(self, x: str, w: str, b: str | None, what: str) -> str:
        return self.op("fc", [x, w] + ([b] if b else []), {"transpose_w": True}, what)[0]

    def bin(self, fn: str, a: str, b: str, what: str) -> str:
        return self.op("binary", [a, b], {"fn": fn}, what)[0]

    def act(self, x: str, attrs: dict, what: str) -> str:
        return self.op("act", [x], dict(attrs), what)[0]

    def split(self, x: str, sizes: list[int], what: str) -> list[str]:
        if len(sizes) == 1:
            return [x]
        outs = [self.ctx.fresh(f"{self.base}/{what}:{k}") for k in range(len(sizes))]
        return self.op("split", [x], {"axis": len(self.ctx.shape(x)) - 1, "sizes": sizes}, what, outs)

    def take(self, x: str, axis: int, index: int, what: str) -> str:
        """x[..., index, ...] along axis, the axis removed."""
        shape = list(self.ctx.shape(x))
        if shape[axis] == 1:
            return emit_reshape(self.ctx, x, shape[:axis] + shape[axis + 1:])
        attrs = {"starts": [0] * len(shape), "ends": list(shape), "steps": [1] * len(shape)}
        attrs["starts"][axis], attrs["ends"][axis] = index, index + 1
        y = self.op("slice", [x], attrs, what)[0]
        return emit_reshape(self.ctx, y, shape[:axis] + shape[axis + 1:])


def _gate_map(cell: Cell, parts: list[str]) -> dict[str, str]:
    return dict(zip(cell.gates, parts))


def _blocks(e: _Emit, cell: Cell, x: str, weights, biases, what: str) -> dict[str, str]:
    """x @ each weight block (+ bias), split into its gates: gate letter -> tensor."""
    parts, k = [], 0
    for w, b in zip(weights, biases):
        rows = e.ctx.shape(w)[0] // cell.hidden
        y = e.fc(x, w, b, f"{what}{k}" if len(weights) > 1 else what)
        parts += e.split(y, [cell.hidden] * rows, f"{what}_gates{k}")
        k += 1
    return _gate_map(cell, parts)


def _bias_only(e: _Emit, cell: Cell) -> dict[str, str]:
    """The recurrent projection of a zero state: only its biases (gate -> constant)."""
    parts = []
    for w, b in zip(cell.w_h, cell.b_h):
        rows = e.ctx.shape(w)[0] // cell.hidden
        if b is None:
            parts += [""] * rows
            continue
        v = np.asarray(e.ctx.const(b)).reshape(rows, cell.hidden)
        parts += [e.ctx.add_const(e.ctx.fresh(f"{b}/{g}"), v[j]) if np.any(v[j]) else ""
                  for j, g in enumerate(cell.gates[len(parts):len(parts) + rows])]
    return _gate_map(cell, parts)


def _add(e: _Emit, a: str, b: str, what: str) -> str:
    return e.bin("add", a, b, what) if a and b else (a or b)


def _activate(e: _Emit, cell: Cell, pre: str, which: int, what: str) -> str:
    if cell.clip is not None:
        pre = e.act(pre, {"fn": "clip", "min": -cell.clip, "max": cell.clip}, what + "_clip")
    return e.act(pre, cell.acts[which], what)


def _ones_minus(e: _Emit, x: str, what: str) -> str:
    one = e.ctx.add_const(e.ctx.fresh(f"{e.base}/one"), np.ones((), np.float32))
    return e.bin("sub", one, x, what)


def _lstm_step(e: _Emit, cell: Cell, gx: dict, gh: dict, h: str | None, c: str | None):
    pre = {g: _add(e, gx[g], gh.get(g, ""), f"{g}_pre") for g in "iofc"}
    peep = cell.peep or ("", "", "")
    if c and peep[0]:
        pre["i"] = e.bin("add", pre["i"], e.bin("mul", peep[0], c, "pi"), "i_peep")
    if c and peep[2] and not cell.input_forget:
        pre["f"] = e.bin("add", pre["f"], e.bin("mul", peep[2], c, "pf"), "f_peep")
    i = _activate(e, cell, pre["i"], 0, "i")
    f = _ones_minus(e, i, "f") if cell.input_forget else _activate(e, cell, pre["f"], 0, "f")
    cand = _activate(e, cell, pre["c"], 1, "g")
    new_c = e.bin("mul", i, cand, "i_g")
    if c:
        new_c = e.bin("add", e.bin("mul", f, c, "f_c"), new_c, "c")
    if peep[1]:
        pre["o"] = e.bin("add", pre["o"], e.bin("mul", peep[1], new_c, "po"), "o_peep")
    o = _activate(e, cell, pre["o"], 0, "o")
    h_new = e.bin("mul", o, e.act(new_c, cell.acts[2], "h_c"), "h")
    return (e.fc(h_new, cell.proj[0], cell.proj[1], "h_proj") if cell.proj else h_new), new_c


def _gru_step(e: _Emit, cell: Cell, gx: dict, gh: dict, h: str | None, rh_w: str | None,
              rh_b: str | None):
    z = _activate(e, cell, _add(e, gx["z"], gh.get("z", ""), "z_pre"), 0, "z")
    r = _activate(e, cell, _add(e, gx["r"], gh.get("r", ""), "r_pre"), 0, "r")
    if cell.linear_before_reset:
        hh = gh.get("h", "")
        cand = _add(e, gx["h"], e.bin("mul", r, hh, "r_hh") if hh else "", "h_pre")
    else:
        assert rh_w is not None  # _split_candidate_rows found the candidate's rows
        hh = e.fc(e.bin("mul", r, h, "r_h"), rh_w, rh_b, "rh") if h else (rh_b or "")
        cand = _add(e, gx["h"], hh, "h_pre")
    cand = _activate(e, cell, cand, 1, "h_cand")
    if not h:  # (1 - z) * cand
        return e.bin("sub", cand, e.bin("mul", z, cand, "z_cand"), "h")
    return e.bin("add", cand, e.bin("mul", z, e.bin("sub", h, cand, "h_minus"), "z_d"), "h")


def _split_candidate_rows(ctx, cell: Cell) -> tuple[str | None, str | None]:
    """GRU without linear_before_reset: the candidate's recurrent rows multiply r * h, so
    they become their own product. Returns (R_h, its bias); cell.w_h/b_h keep the z/r rows
    and cell.gates is reordered to match them (h last)."""
    new_w, new_b, rh_w, rh_b, pos, hsz = [], [], None, None, 0, cell.hidden
    for w, b in zip(cell.w_h, cell.b_h):
        rows = ctx.shape(w)[0] // hsz
        letters, pos = cell.gates[pos:pos + rows], pos + rows
        if "h" not in letters:
            new_w.append(w)
            new_b.append(b)
            continue
        j, wv, bv = letters.index("h"), ctx.const(w), None if b is None else ctx.const(b)
        if rows == 1:
            rh_w, rh_b = w, b
            continue
        keep, rest = [k for k in range(rows) if k != j], letters.replace("h", "")
        new_w.append(ctx.add_const(ctx.fresh(f"{w}/{rest}"),
                                   np.concatenate([wv[k * hsz:(k + 1) * hsz] for k in keep])))
        new_b.append(None if bv is None else ctx.add_const(
            ctx.fresh(f"{b}/{rest}"), np.concatenate([bv[k * hsz:(k + 1) * hsz] for k in keep])))
        rh_w = ctx.add_const(ctx.fresh(f"{w}/h"), wv[j * hsz:(j + 1) * hsz])
        rh_b = None if bv is None else ctx.add_const(ctx.fresh(f"{b}/h"), bv[j * hsz:(j + 1) * hsz])
    cell.w_h, cell.b_h, cell.gates = new_w, new_b, cell.gates.replace("h", "")
    return rh_w, rh_b


def unroll(ctx, cell: Cell, x: str, time_axis: int, h0: str | None = None, c0: str | None = None,
           reverse: bool = False) -> tuple[list[str], str | None, str | None]:
    """Run one direction of a recurrent layer over x ([T, B, I] for time_axis 0, [B, T, I]
    for 1). h0/c0: initial states [B, H] (None = zeros). Returns (the hidden state of every
    step in time order, each [B, H]; the last state h; the last cell state c, LSTM only)."""
    e = _Emit(ctx, cell.name)
    steps = ctx.shape(x)[time_axis]
    xcell = Cell(cell.kind, cell.gates, cell.hidden, cell.w_x, [], cell.b_x, [])
    rh_w = rh_b = None
    if cell.kind == "gru" and not cell.linear_before_reset:
        rh_w, rh_b = _split_candidate_rows(ctx, cell)
    proj = [e.fc(x, w, b, f"x_proj{k}" if len(cell.w_x) > 1 else "x_proj")
            for k, (w, b) in enumerate(zip(cell.w_x, cell.b_x))]
    h, c = h0, c0
    hs: list[str] = [""] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        e.base = f"{cell.name}/t{t}"
        rows = [e.take(p, time_axis, t, f"x{k}") for k, p in enumerate(proj)]
        if h and cell.kind != "gru" and len(rows) == 1 and len(cell.w_h) == 1:  # one add, one split
            pre = e.bin("add", rows[0], e.fc(h, cell.w_h[0], cell.b_h[0], "h_proj"), "pre")
            gx, gh = _gate_map(xcell, e.split(pre, [cell.hidden] * len(cell.gates), "gates")), {}
        else:
            parts = [q for k, row in enumerate(rows)
                     for q in e.split(row, [cell.hidden] * (ctx.shape(row)[-1] // cell.hidden), f"x_gates{k}")]
            gx = _gate_map(xcell, parts)
            gh = _blocks(e, cell, h, cell.w_h, cell.b_h, "h_proj") if h else _bias_only(e, cell)
        if cell.kind == "lstm":
            h, c = _lstm_step(e, cell, gx, gh, h, c)
        elif cell.kind == "gru":
            h = _gru_step(e, cell, gx, gh, h, rh_w, rh_b)
        else:
            h = _activate(e, cell, _add(e, gx["h"], gh.get("h", ""), "pre"), 0, "h")
        hs[t] = h
    return hs, h, c


# -- ONNX --------------------------------------------------------------------------------
_GATES = {"LSTM": "iofc", "GRU": "zrh", "RNN": "h"}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_ACTS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Softsign": "softsign",
         "Softplus": "softplus", "HardSigmoid": "hard_sigmoid", "LeakyRelu": "leaky_relu", "Elu": "elu"}
_ALPHA = {"HardSigmoid": 0.2, "LeakyRelu": 0.01, "Elu": 1.0}
_BETA = {"HardSigmoid": 0.5}


def _onnx_acts(ctx, fn, dirs: int) -> list[tuple[dict, ...]] | None:
    """Per direction the act attrs (f, g, h); alpha/beta are consumed in order by the
    activations that take them (as onnxruntime reads them)."""
    per = len(_DEFAULT_ACTS[fn.op_type])
    names = list(fn.attrs.get("activations") or _DEFAULT_ACTS[fn.op_type] * dirs)
    alphas, betas = list(fn.attrs.get("activation_alpha") or []), list(fn.attrs.get("activation_beta") or [])
    if len(names) != per * dirs:
        ctx.reject(f"{len(names)} activations for {dirs} direction(s) (need {per * dirs})")
        return None
    out = []
    for name in names:
        if name not in _ACTS:
            ctx.reject(f"activation {name!r} ({', '.join(_ACTS)})")
            return None
        attrs: dict[str, Any] = {"fn": _ACTS[name]}
        if name in _ALPHA:
            attrs["alpha"] = float(alphas.pop(0)) if alphas else _ALPHA[name]
        if name in _BETA:
            attrs["beta"] = float(betas.pop(0)) if betas else _BETA[name]
        out.append(attrs)
    if per == 1:  # RNN: the single activation serves every role
        return [tuple([a] * 3) for a in out]
    if per == 2:  # GRU: f, g
        return [(out[2 * d], out[2 * d + 1], out[2 * d + 1]) for d in range(dirs)]
    return [tuple(out[3 * d:3 * d + 3]) for d in range(dirs)]


def _piece(ctx, name: str, d: int, tag: str, value=None) -> str:
    """Direction d of a constant with a leading direction axis, as its own constant named
    `<name>/<forward|reverse>[/what]`."""
    v = ctx.const(name)[d] if value is None else value
    return ctx.add_const(ctx.fresh(f"{ctx.resolve(name)}/{tag}"), np.ascontiguousarray(v))


def check_static_length(ctx, fn, x: str, time_axis: int) -> None:
    """A sequence length that the model leaves unknown (taken as batch 1 by the front end)
    would silently run one step: refuse it, naming the INPUT_OPS dimension that fixes it."""
    src, axis = ctx.resolve(x), time_axis
    guessed = ctx.guessed_dims
    while src not in guessed:
        node = ctx.graph.producer(src)
        if node is None or node.op not in ("transpose", "act", "cast", "identity"):
            return
        axis = node.attrs["perm"][axis] if node.op == "transpose" else axis
        src = node.inputs[0]
    if axis in guessed[src]:
        shape = list(ctx.shape(src))
        shape[axis] = "T"
        example = ", ".join(str(d) for d in shape)
        raise ConfigError(f"input {src!r}", f"dimension {axis} is the sequence length of {fn.op_type} "
                          f"{fn.name!r} and the model leaves it unknown ({guessed[src][axis]!r})",
                          f"give the number of steps in INPUT_OPS, e.g. INPUT_OPS: {{{src}: [{example}]}}")


@onnx_lowering("LSTM", "GRU", "RNN", emits=("fc", "binary", "act", "slice", "split", "reshape", "concat"))
def _onnx_recurrent(ctx, fn):
    op, a = fn.op_type, fn.attrs
    ins = list(fn.inputs) + [""] * (8 - len(fn.inputs))
    x, w, r, b, seq_lens, h0, c0, p = ins[:8]
    direction = str(a.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        return ctx.reject(f"direction {direction!r} (forward, reverse, bidirectional)")
    dirs, layout = 2 if direction == "bidirectional" else 1, int(a.get("layout", 0))
    hidden, gates = int(a.get("hidden_size") or ctx.shape(r)[-1]), _GATES[op]
    consts = {k: ctx.const(v) for k, v in (("W", w), ("R", r), ("B", b), ("P", p)) if v}
    if any(v is None for v in consts.values()):
        return ctx.reject(f"weights {', '.join(k for k, v in consts.items() if v is None)} must be constant")
    if seq_lens and not _full_lengths(ctx, seq_lens, ctx.shape(x)[1 - layout]):
        return ctx.reject("sequence_lens must be absent or a constant equal to the sequence length "
                          "for every sample (padded batches are not supported)")
    acts = _onnx_acts(ctx, fn, dirs)
    if acts is None:
        return None
    check_static_length(ctx, fn, x, layout)
    if ctx.shape(x)[layout] < 1:
        return ctx.reject("an empty sequence (0 steps)")
    results = [_onnx_direction(ctx, fn, d, dirs, direction, hidden, gates, acts[d],
                               (x, w, r, b, h0, c0, p), layout) for d in range(dirs)]
    _onnx_outputs(ctx, fn, results, layout)


def _full_lengths(ctx, name: str, steps: int) -> bool:
    v = ctx.const(name)
    return v is not None and bool(np.all(np.asarray(v) == steps))


def _onnx_direction(ctx, fn, d, dirs, direction, hidden, gates, acts, names, layout):
    x, w, r, b, h0, c0, p = names
    op, g, lbr = fn.op_type, len(gates), bool(fn.attrs.get("linear_before_reset", 0))
    reverse = direction == "reverse" or d == 1
    tag = "reverse" if reverse else "forward"
    w_x, w_h = _piece(ctx, w, d, tag), _piece(ctx, r, d, tag)
    b_x = b_h = None
    if b:
        bv = ctx.const(b)[d]
        wb, rb = bv[:g * hidden], bv[g * hidden:]
        if op == "GRU":  # Rbh belongs to the candidate's recurrent product (see _gru_step)
            zero = np.zeros(2 * hidden, rb.dtype)
            b_x = _piece(ctx, b, d, f"{tag}/x", np.concatenate([wb[:2 * hidden] + rb[:2 * hidden],
                                                              wb[2 * hidden:]]))
            b_h = _piece(ctx, b, d, f"{tag}/h", np.concatenate([zero, rb[2 * hidden:]]))
        else:
            b_x = _piece(ctx, b, d, f"{tag}/sum", wb + rb)
    peep = None
    if p:
        pv = ctx.const(p)[d]
        peep = tuple(_piece(ctx, p, d, f"{tag}/{k}", pv[j * hidden:(j + 1) * hidden])
                     for j, k in enumerate("iof"))
    clip = float(fn.attrs["clip"]) if "clip" in fn.attrs else None
    cell = Cell(op.lower(), gates, hidden, [w_x], [w_h], [b_x], [b_h], acts, clip, lbr,
                bool(fn.attrs.get("input_forget", 0)), peep, f"{fn.name}/{tag}")
    state = [_initial(ctx, s, d, layout) if s else None for s in (h0, c0)]
    return unroll(ctx, cell, x, layout, state[0], state[1] if op == "LSTM" else None, reverse)


def _initial(ctx, name: str, d: int, layout: int) -> str:
    """initial_h/c of direction d as [B, H] ([nd, B, H]; layout 1: [B, nd, H])."""
    return _Emit(ctx, ctx.fnode.name).take(name, 1 if layout else 0, d, "initial")


def _onnx_outputs(ctx, fn, results, layout: int) -> None:
    """Y [T, nd, B, H] (layout 1: [B, T, nd, H]), Y_h and Y_c [nd, B, H] (layout 1: [B, nd, H])."""
    outs = list(fn.outputs) + ["", "", ""]
    hs0, _, _ = results[0]
    b_, h_ = ctx.shape(hs0[0])
    if outs[0]:
        dir_axis, time_axis = (2, 1) if layout else (1, 0)
        shape = [b_, 1, 1, h_] if layout else [1, 1, b_, h_]
        per_dir = []
        for hs, _, _ in results:
            steps = [emit_reshape(ctx, h, shape) for h in hs]
            per_dir.append(steps[0] if len(steps) == 1 else
                           ctx.emit("concat", steps, None, {"axis": time_axis})[0])
        _join(ctx, per_dir, dir_axis, outs[0])
    for k, idx in ((1, 1), (2, 2)):
        if outs[k] and (k == 1 or results[0][2]):
            shape = [b_, 1, h_] if layout else [1, b_, h_]
            parts = [emit_reshape(ctx, res[idx], shape) for res in results]
            _join(ctx, parts, 1 if layout else 0, outs[k])


def _join(ctx, parts: list[str], axis: int, out: str) -> None:
    if len(parts) == 1:
        ctx.set_alias(out, parts[0])
    else:
        ctx.emit("concat", parts, [out], {"axis": axis})
