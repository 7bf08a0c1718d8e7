"""Einsum (ONNX, TensorFlow: torch.einsum exports, Keras EinsumDense, attention scores) as the
transposes, reshapes and one product it is.

One operand: a transpose and/or a sum over the letters the output drops ('ij->ji', 'bij->bj').
Two operands: every letter is a batch letter (in both inputs and the output), a contracted
letter (both inputs, not the output), a free letter of one input, or summed away first (one
input only, not the output). A is arranged as [batch, M, K], B as [batch, K, N], multiplied
(an `fc` with B as its weight when B is constant and there is no batch letter, else a
`matmul`), and the result reshaped and transposed to the output's order. Outer products are
K = 1. Refused: three or more operands, a letter repeated inside one operand (a diagonal),
ellipsis broadcasting between operands of different ranks.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import emit_checked, onnx_lowering, tf_lowering
from gxnpuc.ops.shape_ops import emit_reshape

_EMITS = ("fc", "matmul", "transpose", "reshape", "reduce")


def parse(equation: str, ranks: list[int]) -> tuple[list[str], str] | str:
    """(input letter strings, output letters) with '...' expanded, or why not."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        return f"equation {equation!r} names {len(terms)} operands, the node has {len(ranks)}"
    used = set(eq) - set(".,->")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    ell = None
    expanded = []
    for term, rank in zip(terms, ranks):
        if "..." in term:
            n = rank - (len(term) - 3)
            if n < 0 or (ell is not None and len(ell) != n):
                return f"ellipsis of different ranks in {equation!r}"
            ell = "".join(spare[:n])
            term = term.replace("...", ell)
        if len(term) != rank or not term.isalpha():
            return f"term {term!r} of {equation!r} does not fit a rank-{rank} operand"
        if len(set(term)) != len(term):
            return f"a letter repeated inside one operand ({term!r}: a diagonal) is not supported"
        expanded.append(term)
    if not arrow:  # implicit output: letters seen once, in alphabetical order
        letters = "".join(expanded)
        out = (ell or "") + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in (ell or "")))
    out = out.replace("...", ell or "")
    if len(set(out)) != len(out) or not set(out) <= set("".join(expanded)):
        return f"output {out!r} of {equation!r}: each letter once, and only letters of the inputs"
    return expanded, out


def _arrange(ctx, x: str, term: str, order: str) -> str:
    """x (letters `term`) with axes summed where `order` lacks them, then permuted to `order`."""
    drop = [k for k, c in enumerate(term) if c not in order]
    if drop:
        x = ctx.emit("reduce", [x], None, {"fn": "sum", "axes": drop, "keepdims": 0})[0]
        term = "".join(c for c in term if c in order)
    if term != order:
        x = ctx.emit("transpose", [x], None, {"perm": [term.index(c) for c in order]})[0]
    return x


def _sizes(ctx, names: list[str], terms: list[str]) -> dict[str, int] | str:
    size: dict[str, int] = {}
    for name, term in zip(names, terms):
        for c, d in zip(term, ctx.shape(name)):
            if size.setdefault(c, int(d)) != int(d):
                return f"letter {c!r} has sizes {size[c]} and {int(d)}"
    return size


def _finish(ctx, fn, y: str, got: str, out: str, size: dict) -> None:
    """y (letters `got`, maybe flattened) reshaped and permuted into the node's output."""
    shape = [size[c] for c in got]
    perm = [got.index(c) for c in out]
    if perm == list(range(len(out))):
        if list(ctx.shape(y)) == shape and y != ctx.resolve(fn.inputs[0]):
            ctx.set_alias(fn.outputs[0], y)
        else:
            emit_reshape(ctx, y, shape, fn.outputs[:1])
        return None
    if list(ctx.shape(y)) != shape:
        y = emit_reshape(ctx, y, shape)
    ctx.emit("transpose", [y], fn.outputs[:1], {"perm": perm})
    return None


def lower_einsum(ctx, fn, equation: str) -> None:
    names = [i for i in fn.inputs if i]
    spec = parse(equation, [len(ctx.shape(n)) for n in names])
    size = spec if isinstance(spec, str) else _sizes(ctx, names, spec[0])
    if isinstance(size, str) or isinstance(spec, str):
        return ctx.reject(f"Einsum {equation!r}: {size if isinstance(size, str) else spec}")
    terms, out = spec
    if len(terms) == 1:
        kept = "".join(c for c in terms[0] if c in out)
        return _finish(ctx, fn, _arrange(ctx, names[0], terms[0], kept), kept, out, size)
    if len(terms) != 2:
        return ctx.reject(f"Einsum {equation!r}: only one or two operands (got {len(terms)})")
    a, b = terms
    batch = "".join(c for c in out if c in a and c in b)
    contract = "".join(c for c in a if c in b and c not in out)
    free_a = "".join(c for c in a if c in out and c not in b)
    free_b = "".join(c for c in b if c in out and c not in a)
    nb, m, k, n = (int(np.prod([size[c] for c in s], dtype=np.int64)) for s in (batch, free_a, contract, free_b))
    lead = [nb] if batch else []
    xa = emit_reshape(ctx, _arrange(ctx, names[0], a, batch + free_a + contract), lead + [m, k])
    xb = emit_reshape(ctx, _arrange(ctx, names[1], b, batch + contract + free_b), lead + [k, n])
    if not batch and ctx.const(xb) is not None and ctx.const(xa) is None:  # a weight: EinsumDense
        y = emit_checked(ctx, "fc", [xa, xb], None, {"transpose_w": False})
    else:
        y = emit_checked(ctx, "matmul", [xa, xb], None, {})
    if y is not None:
        _finish(ctx, fn, y[0], batch + free_a + free_b, out, size)
    return None


@onnx_lowering("Einsum", emits=_EMITS)
def _onnx_einsum(ctx, fn):
    lower_einsum(ctx, fn, str(fn.attrs.get("equation", "")))


@tf_lowering("Einsum", emits=_EMITS)
def _tf_einsum(ctx, fn):
    lower_einsum(ctx, fn, str(fn.attrs.get("equation", "")))
