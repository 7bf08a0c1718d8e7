"""TensorFlow recurrent layers: Keras LSTM / GRU / SimpleRNN arrive (in every TF form, once
frozen) as a while loop over TensorLists. The loop is unrolled while lowering: its trip count
is a constant (the static sequence length), so each pass lowers the loop's condition, which
folds to True or False, then its body, with the step index a constant. The body's MatMuls
become `fc` nodes that share the layer's kernel and recurrent kernel (loop invariants, lowered
once under the name of the frozen constant), so `-w`/`-s`/compression see each once.

The frame itself is found by frontend/tf_rewrite.collapse_loops (one "While" FNode carrying
the frame's nodes). TensorLists live only at compile time: a list is either a stacked tensor
(TensorListFromTensor) or a Python list of item tensors (TensorListReserve/SetItem), kept in
`ctx.tensor_lists` under a placeholder constant.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from gxnpuc.ops.base import ALIAS, CONSTANT, tf_lowering
from gxnpuc.ops.shape_ops import emit_reshape

MAX_STEPS = 4096  # a loop running longer is not a recurrent layer over a static sequence
_CONTROL = ("control flow (a while loop whose trip count depends on run-time values, or a "
            "conditional) is not supported by the NPU; give static shapes in INPUT_OPS or "
            "export a straight-line graph")
FNode = Any  # frontend.common.FNode: ops never import the front ends
LOOP_CONTROL = ("Enter", "Merge", "Switch", "LoopCond", "NextIteration", "Exit")
_IDENTITY = ("Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient")
_LOOP_OPS = ("fc", "binary", "act", "slice", "split", "reshape", "concat", "matmul", "transpose")


@tf_lowering("While", "StatelessWhile", emits=_LOOP_OPS)
def _tf_while(ctx, fn):
    """A TF1 loop frame (collapse_loops): unrolled. A functional While (a graph whose control
    flow was never lowered) is refused."""
    if "frame_nodes" not in fn.attrs:
        return ctx.reject(_CONTROL)
    return _Unroller(ctx, fn).run()


class _Unroller:
    """Lowers one loop frame pass by pass; `env` maps a frame tensor to the graph tensor it
    stands for in the current pass."""

    def __init__(self, ctx, fn: FNode):
        self.ctx, self.fn = ctx, fn
        self.nodes = list(fn.attrs["frame_nodes"])
        self.env: dict[str, str] = {}
        by_type: dict[str, list[FNode]] = {}
        for n in self.nodes:
            by_type.setdefault(n.op_type, []).append(n)
        self.by_type = by_type
        self.invariant = self._invariants()
        self.cond = self._cond_nodes()

    # -- classification -------------------------------------------------------------------
    def _invariants(self) -> set[int]:
        """Nodes whose value is the same in every pass: constant Enters and what reads only them."""
        inner = {o for n in self.nodes for o in n.outputs}
        fixed = {e.outputs[0] for e in self.by_type.get("Enter", []) if e.attrs.get("is_constant")}
        out: set[int] = set()
        for n in self._order():
            if n.op_type not in LOOP_CONTROL and \
                    n.inputs and all(i in fixed or i not in inner for i in n.inputs if i):
                out.add(id(n))
                fixed.update(n.outputs)
        return out

    def _cond_nodes(self) -> set[int]:
        """The variant nodes that the loop condition depends on (lowered before the body)."""
        producer = {o: n for n in self.nodes for o in n.outputs}
        need, out = [lc.inputs[0] for lc in self.by_type.get("LoopCond", [])], set()
        while need:
            n = producer.get(need.pop())
            if n is None or id(n) in out or n.op_type in ("Merge", "Enter") or id(n) in self.invariant:
                continue
            out.add(id(n))
            need.extend(i for i in n.inputs if i)
        return out

    def _order(self) -> list[FNode]:
        """Frame nodes producers first, ignoring the back edge NextIteration -> Merge."""
        producer = {o: n for n in self.nodes for o in n.outputs}
        done: set[int] = set()
        order: list[FNode] = []

        def visit(n):
            stack = [(n, False)]
            while stack:
                node, expanded = stack.pop()
                if id(node) in done:
                    continue
                if expanded:
                    done.add(id(node))
                    order.append(node)
                    continue
                stack.append((node, True))
                ins = node.inputs[:1] if node.op_type == "Merge" else node.inputs
                stack.extend((producer[i], False) for i in ins if i in producer and id(producer[i]) not in done)
        for n in self.nodes:
            visit(n)
        return order

    # -- passes ---------------------------------------------------------------------------
    def run(self) -> None:
        ctx, order = self.ctx, self._order()
        for e in self.by_type.get("Enter", []):
            self.env[e.outputs[0]] = e.inputs[0]
        if not self._lower([n for n in order if id(n) in self.invariant], None):
            return None
        merges = self.by_type.get("Merge", [])
        state = {id(m): self.env[m.inputs[0]] for m in merges}
        step = 0
        while True:
            for m in merges:
                self.env[m.outputs[0]] = state[id(m)]
            if not self._lower([n for n in order if id(n) in self.cond], step):
                return None
            go = self._condition()
            if go is None:
                return ctx.reject(_CONTROL)
            for s in self.by_type.get("Switch", []):
                for o in s.outputs:
                    self.env[o] = self.env[s.inputs[0]]
            if not go:
                break
            if step >= MAX_STEPS:
                return ctx.reject(f"a while loop of more than {MAX_STEPS} steps")
            body = [n for n in order if id(n) not in self.invariant and id(n) not in self.cond]
            if not self._lower(body, step):
                return None
            for ni in self.by_type.get("NextIteration", []):
                for m in merges:
                    if len(m.inputs) > 1 and m.inputs[1] == ni.outputs[0]:
                        state[id(m)] = self.env[ni.inputs[0]]
            step += 1
        for x in self.by_type.get("Exit", []):
            ctx.set_alias(x.outputs[0], self.env[x.inputs[0]])
        ctx.fnode = self.fn
        return None

    def _condition(self) -> bool | None:
        conds = self.by_type.get("LoopCond", [])
        if len(conds) != 1:
            return None
        v = self.ctx.const(self.env.get(conds[0].inputs[0], conds[0].inputs[0]))
        return None if v is None or v.size != 1 else bool(np.ravel(v)[0])

    def _lower(self, nodes: list[FNode], step: int | None) -> bool:
        """Lower these frame nodes for pass `step` (None: loop invariants, own names)."""
        ctx = self.ctx
        for n in nodes:
            if n.op_type in ("Enter", "Merge", "Switch", "NextIteration", "Exit"):
                continue
            ins = [self.env.get(i, i) for i in n.inputs]
            if step is None and n.op_type == "Identity" and ctx.const(ins[0]) is not None:
                self.env[n.outputs[0]] = self._weight(n, ins[0])
                continue
            if n.op_type in _IDENTITY or n.op_type == "LoopCond":
                for o, i in zip(n.outputs, ins):
                    self.env[o] = i
                continue
            copy = self._renamed(n, ins, step)
            ok = ctx.lower_nodes([copy])
            for o, c in zip(n.outputs, copy.outputs):
                self.env[o] = c
            if not ok:
                return False
        return True

    def _weight(self, n: FNode, src: str) -> str:
        """A loop-invariant constant read in the body (`<loop>/body/.../lstm_cell/Cast/
        ReadVariableOp`) named as a Dense layer's weight is: `<layer>/lstm_cell/Cast/ReadVariableOp`."""
        ctx = self.ctx
        layer = self.fn.name.rsplit("/while", 1)[0]
        name = f"{layer}/{n.name.rsplit('/while/', 1)[-1]}"
        real = ctx.add_const(name, ctx.const(src))
        ctx.graph.record_alias(ctx.resolve(src), real)
        ctx.graph.record_alias(n.name, real)
        return real

    def _renamed(self, n: FNode, ins: list[str], step: int | None) -> FNode:
        """A copy of n for pass `step` (None: a loop invariant, named after the layer)."""
        short = n.name.rsplit("/while/", 1)[-1]
        where = self.fn.name.rsplit("/while", 1)[0] if step is None else f"{self.fn.name}/t{step}"
        name = self.ctx.fresh(f"{where}/{short}")
        outs = [name] + [f"{name}:{k}" for k in range(1, len(n.outputs))]
        defs = getattr(self.ctx.table, "node_defs", None)
        if defs is not None and n.name in defs:
            defs[name] = defs[n.name]  # TensorFlow folds ops we have no lowering for
        return replace(n, name=name, inputs=ins, outputs=outs)


# -- TensorLists --------------------------------------------------------------------------
def _new_list(ctx, name: str, items: list) -> None:
    real = ctx.add_const(name, np.zeros(0, np.float32))  # a placeholder, pruned when unused
    if real != name:
        ctx.set_alias(name, real)
    ctx.tensor_lists[real] = items


def _items(ctx, name: str) -> list | None:
    return ctx.tensor_lists.get(ctx.resolve(name))


def _index(ctx, name: str) -> int | None:
    v = ctx.const(name)
    if v is None or np.size(v) != 1:
        ctx.reject("a TensorList index computed at run time")
        return None
    return int(np.ravel(v)[0])


@tf_lowering("TensorListFromTensor", emits=ALIAS)
def _tf_list_from_tensor(ctx, fn):
    ctx.set_alias(fn.outputs[0], fn.inputs[0])  # a stacked list is the tensor itself


@tf_lowering("TensorListReserve", emits=CONSTANT)
def _tf_list_reserve(ctx, fn):
    n = _index(ctx, fn.inputs[1])
    if n is not None:
        if n < 0:
            return ctx.reject("a TensorList of unknown length")
        _new_list(ctx, fn.outputs[0], [None] * n)
    return None


@tf_lowering("TensorListSetItem", emits=CONSTANT)
def _tf_list_set(ctx, fn):
    items, k = _items(ctx, fn.inputs[0]), _index(ctx, fn.inputs[1])
    if k is None:
        return None
    if items is None or not 0 <= k < len(items):
        return ctx.reject("TensorListSetItem on a list that is not a reserved list of known length")
    items = list(items)
    items[k] = ctx.resolve(fn.inputs[2])
    _new_list(ctx, fn.outputs[0], items)
    return None


@tf_lowering("TensorListGetItem", emits=("slice", "reshape"))
def _tf_list_get(ctx, fn):
    k = _index(ctx, fn.inputs[1])
    if k is None:
        return None
    items = _items(ctx, fn.inputs[0])
    if items is not None:
        if not 0 <= k < len(items) or items[k] is None:
            return ctx.reject(f"TensorListGetItem of item {k}, which was never set")
        return ctx.set_alias(fn.outputs[0], items[k])
    shape = list(ctx.shape(fn.inputs[0]))
    attrs = {"starts": [0] * len(shape), "ends": list(shape), "steps": [1] * len(shape)}
    attrs["starts"][0], attrs["ends"][0] = k, k + 1
    part = fn.inputs[0] if shape[0] == 1 else ctx.emit("slice", [fn.inputs[0]], None, attrs)[0]
    emit_reshape(ctx, part, shape[1:], fn.outputs[:1])
    return None


@tf_lowering("TensorListStack", emits=("concat", "reshape"))
def _tf_list_stack(ctx, fn):
    items = _items(ctx, fn.inputs[0])
    if items is None:
        return ctx.set_alias(fn.outputs[0], fn.inputs[0])
    if not items or any(i is None for i in items):
        return ctx.reject("TensorListStack of a list with unset items")
    parts = [emit_reshape(ctx, i, (1, *ctx.shape(i))) for i in items]
    if len(parts) == 1:
        return ctx.set_alias(fn.outputs[0], parts[0])
    ctx.emit("concat", parts, fn.outputs[:1], {"axis": 0})
    return None


@tf_lowering("TensorListLength", emits=CONSTANT)
def _tf_list_length(ctx, fn):
    items = _items(ctx, fn.inputs[0])
    n = len(items) if items is not None else ctx.shape(fn.inputs[0])[0]
    ctx.add_const(fn.outputs[0], np.asarray(n, np.int32))
