"""The lowering walk shared by the ONNX, TensorFlow and TensorFlow Lite front ends.

A front end turns its model into FNodes (framework nodes with plain-Python attrs) plus
graph inputs/outputs and constants, then `lower()` calls each node's registered lowering.
LowerCtx.emit infers shapes at once and folds a node whose inputs are all constant with the
op's own kernel, so Shape -> Gather -> Concat -> Reshape chains vanish while lowering and a
folded constant keeps the name of the framework tensor that produced it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gxnpuc.errors import CompileError, ModelError, UnsupportedOpError
from gxnpuc.ir import Graph, Node, Tensor
from gxnpuc.config.names import ConfigNameError, unknown
from gxnpuc.passes.rewrite import rename_tensor


@dataclass
class FNode:
    """A framework node: ONNX NodeProto or TF NodeDef reduced to plain values."""
    name: str
    op_type: str
    inputs: list[str]  # "" for an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


class LowerCtx:
    """What a lowering function sees: shapes, constants, and emit()."""

    def __init__(self, framework: str):
        self.framework = framework
        self.graph = Graph(meta={"framework": framework, "notes": []})
        self.alias: dict[str, str] = {}
        self.unsupported: list[tuple[str, str, str]] = []
        self._names: set[str] = set()
        self.fnode: FNode | None = None  # the framework node being lowered
        # input -> {axis: dim name} of unknown dims the front end took as batch 1
        self.guessed_dims: dict[str, dict[int, str]] = {}
        self.table: dict = {}  # the lowering table lower() runs (loops lower their bodies with it)
        self.tensor_lists: dict[str, list] = {}  # TF TensorList placeholder -> its item tensors
        # the front end's converter of framework nodes (an ONNX If branch's) to FNodes
        self.fnodes_of: Callable[[Any], list[FNode]] | None = None
        # the TFLite front end's reader of subgraph k (a WHILE's condition and body)
        self.subgraph_of: Callable[[int], Any] | None = None

    # -- reading -------------------------------------------------------------
    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def has(self, name: str) -> bool:
        return self.resolve(name) in self.graph.tensors

    def tensor(self, name: str) -> Tensor:
        return self.graph.tensors[self.resolve(name)]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensor(name).shape

    def const(self, name: str) -> np.ndarray | None:
        """The constant value of a tensor, or None when it is computed at run time."""
        if not name:
            return None
        return self.tensor(name).data

    def fresh(self, base: str) -> str:
        """A tensor/node name not used yet, derived from base."""
        name, k = base, 1
        while name in self._names or name in self.graph.tensors:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    # -- writing -------------------------------------------------------------
    def add_input(self, name: str, shape: tuple[int, ...], dtype: str = "float32") -> None:
        from gxnpuc.config import MAX_INPUT_ELEMENTS

        size = int(np.prod(shape, dtype=np.float64))
        if size > MAX_INPUT_ELEMENTS:  # a corrupt or mistaken shape; far beyond any target's memory
            raise ModelError(f"input {name!r}", f"shape {list(shape)} has {size:,} elements",
                             f"at most {MAX_INPUT_ELEMENTS:,}; give the real shape in INPUT_OPS")
        self.graph.tensors[name] = Tensor(name, tuple(int(d) for d in shape), dtype)
        self.graph.inputs.append(name)

    def add_const(self, name: str, value) -> str:
        """Register a constant under exactly `name` (a framework name) or a fresh one."""
        arr = np.asarray(value)
        if name in self.graph.tensors:
            name = self.fresh(name)
        self._names.add(name)
        self.graph.tensors[name] = Tensor(name, tuple(arr.shape), arr.dtype.name, arr)
        return name

    def set_alias(self, out: str, src: str) -> None:
        """Make framework tensor `out` another name for `src` (Identity, Dropout, ...)."""
        self.alias[out] = self.resolve(src)
        self.graph.record_alias(out, self.alias[out])  # so config names still resolve (names.py)

    def emit(self, op: str, inputs: list[str], outputs: list[str] | None = None,
             attrs: dict | None = None, name: str | None = None, source: str | None = None,
             fold: bool = True) -> list[str]:
        """Add one IR node; return its output tensor names.

        outputs defaults to one fresh name. When every input is constant and fold is true,
        the op's kernel runs now and the outputs become constants with those names.
        """
        from gxnpuc.ops import REGISTRY

        fn = self.fnode
        opdef = REGISTRY[op]
        ins = [self.resolve(i) if i else "" for i in inputs]
        outs = outputs or [self.fresh((name or (fn.name if fn else op)) + ":out")]
        node = Node(name or self.fresh(fn.name if fn else op), op, ins, list(outs), dict(attrs or {}),
                    source if source is not None else (fn.op_type if fn else op))
        self._names.add(node.name)
        present = [i for i in ins if i]
        shapes = [self.graph.tensors[i].shape if i else None for i in ins]
        if fold and present and all(self.graph.tensors[i].is_const for i in present):
            consts = [self.graph.tensors[i].data if i else None for i in ins]
            self.check_size(node, outs, _folded_shapes(opdef, node, shapes, consts))
            vals = opdef.run(node, consts)
            for old in present + ([fn.name] if fn else []):  # folded names live on in outs
                for o in outs:
                    self.graph.record_alias(old, o)
            for o, v in zip(outs, vals):
                self.graph.tensors[o] = Tensor(o, tuple(np.shape(v)), np.asarray(v).dtype.name,
                                               np.asarray(v))
            return list(outs)
        out_shapes = opdef.infer(node, shapes)
        self.check_size(node, outs, out_shapes)
        for o, s in zip(outs, out_shapes):
            self.graph.tensors[o] = Tensor(o, tuple(int(d) for d in s))
        self.graph.nodes.append(node)
        if fn is not None:
            self.graph.record_alias(fn.name, node.name)
        return list(outs)

    def check_size(self, node: Node | None, outs: list[str], shapes) -> None:
        """Constants and intermediate tensors obey the same bound as inputs (MAX_INPUT_ELEMENTS):
        checked from shapes, before a folded kernel allocates anything."""
        from gxnpuc import targets
        from gxnpuc.config import MAX_INPUT_ELEMENTS, display_path

        for o, s in zip(outs, shapes or ()):
            size = 1
            for d in s:
                size *= int(d)
            if size > MAX_INPUT_ELEMENTS:
                fn = self.fnode
                at = f"node {fn.name!r} [{fn.op_type}]" if fn else f"node {node.name!r}"
                src = self.graph.meta.get("source")
                raise ModelError(f"{display_path(src)}: {at}" if src else at,
                                 f"its output {o!r} would have shape {[int(d) for d in s]} ({size:,} elements)",
                                 f"at most {MAX_INPUT_ELEMENTS:,} elements per tensor; the "
                                 f"{targets.GRUS.chip} holds {targets.GRUS.sram_bytes // 1024} KB in all")

    def reject(self, reason: str) -> None:
        """Record that the current framework node cannot be lowered; lowering goes on."""
        fn = self.fnode
        self.unsupported.append((fn.name, fn.op_type, reason))

    def lower_nodes(self, fnodes: list[FNode]) -> bool:
        """Lower nested framework nodes (a loop body, an If branch) with the table lower()
        runs; stops at the first one refused (listed with the others) and returns False.
        The node being lowered is the current one again afterwards."""
        outer, rejected = self.fnode, set()
        try:
            return all(lower_node(self, fn, self.table, rejected) for fn in fnodes)
        finally:
            self.fnode = outer


def _folded_shapes(opdef, node: Node, shapes: list, consts: list):
    """Output shapes of a node about to fold, without running it: its own infer() when it has
    one, the shape a ConstantOfShape / Range asks for, else None (the kernel's output is
    bounded by its inputs)."""
    from gxnpuc.ops.base import OpDef

    if node.op == "const_of_shape":
        return [tuple(int(d) for d in np.ravel(consts[0]))]
    if node.op == "range":
        start, limit, delta = (float(np.asarray(x).reshape(())) for x in consts)
        n = (limit - start) / delta if delta else float("inf")
        return [(int(min(max(np.ceil(n), 0), 1 << 62)),)]
    if type(opdef).infer is not OpDef.infer:
        return opdef.infer(node, shapes)
    return None


def lower(ctx: LowerCtx, fnodes: list[FNode], outputs: list[str], table: dict) -> Graph:
    """Lower framework nodes in topological order; list every unsupported one at once.

    Only nodes that the outputs need are lowered, so OUTPUT_OPS can cut away a part of the
    model the NPU cannot run.
    """
    _check_outputs(ctx, fnodes, outputs)
    rejected: set[str] = set()  # outputs of nodes that could not be lowered
    ctx.table = table
    for fn in cone(fnodes, [ctx.resolve(o) for o in outputs]):
        lower_node(ctx, fn, table, rejected)
    ctx.fnode = None
    if ctx.unsupported:
        raise UnsupportedOpError(ctx.graph.meta.get("source") or f"{ctx.framework} model", ctx.unsupported)
    return finish(ctx, outputs)


def lower_node(ctx: LowerCtx, fn: FNode, table: dict, rejected: set[str]) -> bool:
    """Lower one framework node with its registered lowering; False when it (or a node it
    reads) was rejected, whose outputs then join `rejected`."""
    ctx.fnode = fn
    before = len(ctx.unsupported)
    low = table.get(fn.op_type)
    never = _never_supported(ctx, fn.op_type)
    if low is None or never:
        ctx.reject(never or "no lowering for this op type")
    elif _inputs_ready(ctx, fn, rejected):
        _lower_one(ctx, low, fn)
    else:
        rejected.update(fn.outputs)  # downstream of an unsupported node, which is listed
        return False
    if len(ctx.unsupported) > before:
        rejected.update(fn.outputs)
        return False
    return True


def _never_supported(ctx: LowerCtx, op_type: str) -> str:
    """The reason an op type is always refused (its lowering declares `unsupported(...)`), so
    it is listed even when it sits behind another refused node; "" otherwise."""
    from gxnpuc.ops.base import LOWERING_EMITS, NoNpuOp

    key = {"onnx": "onnx", "tflite": "tflite"}.get(ctx.framework, "tf")
    emits = LOWERING_EMITS.get((key, op_type))
    if isinstance(emits, NoNpuOp) and emits.summary == "not supported":
        return emits.constraint
    return ""


def _inputs_ready(ctx: LowerCtx, fn: FNode, rejected: set[str]) -> bool:
    """True when every input exists; False when one comes from a rejected node."""
    missing = [i for i in fn.inputs if i and not ctx.has(i)]
    if missing and not any(m in rejected for m in missing):
        raise ModelError(f"{ctx.framework} node {fn.name!r} [{fn.op_type}]",
                         f"reads {missing[0]!r}, which no earlier node of the model produces",
                         "a model whose nodes are in topological order, every input produced")
    return not missing


def _lower_one(ctx: LowerCtx, low, fn: FNode) -> None:
    try:
        low(ctx, fn)
    except (KeyError, IndexError) as exc:  # a required attribute or input is missing
        raise ModelError(f"{ctx.framework} node {fn.name!r} [{fn.op_type}]",
                         f"is malformed ({type(exc).__name__}: {exc})",
                         "a model file written by its framework; export it again") from exc


def _check_outputs(ctx: LowerCtx, fnodes: list[FNode], outputs: list[str]) -> None:
    """Every requested output (OUTPUT_OPS) is a tensor of the model; else close matches."""
    known = set(ctx.graph.tensors) | set(ctx.alias) | {o for fn in fnodes for o in fn.outputs}
    for out in outputs:
        if out not in known:
            node = next((fn for fn in fnodes if fn.name == out), None)
            if node is not None:
                raise unknown("OUTPUT_OPS", out, node.outputs, "is an op, not a tensor; name its output")
            used = {i for fn in fnodes for i in fn.inputs}
            sinks = [o for fn in fnodes for o in fn.outputs[:1] if o not in used]  # the model's outputs
            raise unknown("OUTPUT_OPS", out, sorted(known), "is not a tensor of the model",
                          "model outputs: " + ", ".join(sinks[:8]))


def cone(fnodes: list[FNode], outputs: list[str]) -> list[FNode]:
    """The framework nodes that the named outputs depend on, in their original order."""
    needed, keep = set(outputs), []
    for fn in reversed(fnodes):
        if needed.intersection(fn.outputs):
            keep.append(fn)
            needed.update(i for i in fn.inputs if i)
    return keep[::-1]


def finish(ctx: LowerCtx, outputs: list[str]) -> Graph:
    """Bind graph outputs (copying where an output is an alias of an input/constant), prune."""
    g = ctx.graph
    for out in outputs:
        real = ctx.resolve(out)
        if real not in g.tensors:
            raise CompileError(f"output {out!r}", "is not produced by the model",
                               "check OUTPUT_OPS")
        if g.tensors[real].is_const and real == out:
            raise ConfigNameError("OUTPUT_OPS", f"{out!r} is a constant (a weight), which no op computes",
                                  "name a tensor that an op of the model computes",
                                  "OUTPUT_OPS", out)  # frontend.load() adds the config line
        if real != out and (real in g.inputs or g.tensors[real].is_const or real in g.outputs):
            g.tensors[out] = Tensor(out, g.tensors[real].shape)
            g.nodes.append(Node(ctx.fresh(out + "/copy"), "identity", [real], [out], {}, "Identity"))
        elif real != out:  # a computed tensor takes the framework's output name users know
            rename_tensor(g, real, out)
        g.outputs.append(out)
    g.prune()
    g.verify("lowering")
    return g
