"""Resource variables of streaming TFLite models as explicit state inputs and outputs.

A streaming model keeps its context in variables: VAR_HANDLE names one, READ_VARIABLE reads
it, ASSIGN_VARIABLE writes the next value, and CALL_ONCE runs an init subgraph that assigns
the initial values. The NPU has no variables, so each variable `v` becomes a graph input `v`
(read) and, when the model assigns it, a graph output `v_next` (its value after the step);
graph.meta["state_pairs"] = {"v_next": "v"} pairs them for whoever runs the steps (the host,
STATE_OPS, a sequence --eval). The variable ops themselves vanish from the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gxnpuc.errors import ModelError
from gxnpuc.frontend.common import FNode

VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")


@dataclass
class State:
    fnodes: list[FNode]
    shapes: dict[str, tuple] = field(default_factory=dict)  # state input -> shape
    nexts: dict[str, str] = field(default_factory=dict)  # state input -> tensor of its next value
    initial: dict[str, np.ndarray] = field(default_factory=dict)

    def add_inputs(self, ctx) -> None:
        for name, shape in self.shapes.items():
            ctx.add_input(name, shape, "float32")
            init = self.initial.get(name)
            how = "zeros" if init is None or not np.any(init) else "the model's initial value"
            ctx.graph.meta["notes"].append(
                f"variable {name!r} is state: input {name!r}"
                + (f", its next value output {name + '_next'!r}" if name in self.nexts else "")
                + f" (start from {how})")
        if self.nexts:
            ctx.graph.meta["state_pairs"] = {f"{v}_next": v for v in self.nexts}
            # for the oracle: the TFLite tensor each `_next` output is, and the start values
            ctx.graph.meta["tflite_sources"] = {f"{v}_next": t for v, t in self.nexts.items()}
        ctx.graph.meta["state_initial"] = {  # zeros where the model assigns no initial value
            v: np.asarray(self.initial.get(v, np.zeros(shape, np.float32)), np.float32).tolist()
            for v, shape in self.shapes.items()}

    def outputs(self, outs: list[str]) -> list[str]:
        """The state outputs to add after the model's own (named `<variable>_next`)."""
        return [f"{v}_next" for v in self.nexts if f"{v}_next" not in outs]


def resolve(ctx, model, fnodes: list[FNode], path: str) -> State:
    """Remove the variable ops; a read becomes the state input (or the value assigned before
    it in the same step); `<variable>_next` aliases the last value assigned."""
    if not any(fn.op_type in VARIABLE_OPS for fn in fnodes):
        return State(fnodes)
    handles = {fn.outputs[0]: _var_name(fn) for fn in fnodes if fn.op_type == "VAR_HANDLE"}
    state = State([])
    state.initial = _initial_values(model, fnodes)
    current: dict[str, str] = {}  # variable -> tensor holding its value at this point of the step
    renamed: dict[str, str] = {}  # READ_VARIABLE output -> what it reads
    for fn in fnodes:
        fn.inputs = [renamed.get(i, i) for i in fn.inputs]
        if fn.op_type in ("VAR_HANDLE", "CALL_ONCE"):
            continue
        if fn.op_type in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
            var = handles.get(fn.inputs[0]) if fn.inputs else None
            if var is None:
                raise ModelError(f"{path}: {fn.op_type} {fn.name!r}", "reads no VAR_HANDLE of the main graph",
                                 "variables created by VAR_HANDLE in the same subgraph")
            if fn.op_type == "READ_VARIABLE":
                if var not in current:
                    current[var] = var
                    state.shapes[var] = tuple(static_shape(model, fn.outputs[0], state.initial.get(var)))
                renamed[fn.outputs[0]] = current[var]
            else:
                current[var] = state.nexts[var] = fn.inputs[1]
            continue
        state.fnodes.append(fn)
    for var, value in state.nexts.items():
        if var not in state.shapes:  # written, never read: the next value is still an output
            state.shapes[var] = tuple(static_shape(model, value, state.initial.get(var)))
        ctx.set_alias(f"{var}_next", value)
    return state


def _var_name(fn: FNode) -> str:
    shared = str(fn.attrs.get("shared_name") or "")
    container = str(fn.attrs.get("container") or "")
    return (f"{container}/{shared}" if container else shared) or fn.outputs[0]


def static_shape(model, tensor: str, init) -> list[int]:
    """The static shape of a tensor of the main subgraph (its signature's open dims as 1)."""
    from gxnpuc.frontend.tflite_read import unique_names

    sg = model.subgraphs[0]
    names = unique_names(sg.tensors)
    if tensor in names:
        t = sg.tensors[names.index(tensor)]
        if t.shape:
            return [max(int(d), 1) for d in t.shape]
    return list(np.shape(init)) if init is not None else []


def _initial_values(model, fnodes: list[FNode]) -> dict[str, np.ndarray]:
    """Variable -> the constant that CALL_ONCE's init subgraph assigns to it."""
    from gxnpuc.frontend.tflite_read import dequantize, unique_names

    out = {}
    for fn in fnodes:
        k = int(fn.attrs.get("init_subgraph_index", -1)) if fn.op_type == "CALL_ONCE" else -1
        if not 0 < k < len(model.subgraphs):
            continue
        sg = model.subgraphs[k]
        names = unique_names(sg.tensors)
        handles = {}
        for op in sg.ops:
            if op.op_type == "VAR_HANDLE":
                handles[op.outputs[0]] = _var_name(FNode("", op.op_type, [], [names[op.outputs[0]]], op.options))
            elif op.op_type == "ASSIGN_VARIABLE" and op.inputs[0] in handles:
                t = sg.tensors[op.inputs[1]]
                if t.data is not None and t.sparsity is None:
                    out[handles[op.inputs[0]]] = np.asarray(dequantize(t), np.float32)
    return out
