"""`--eval` / `--tune` over sequences, for streaming models (STATE_OPS, gxnpuc/state.py).

A model with state pairs is evaluated over steps with the state carried forward, as on the
device: `load()` reads `[samples, steps, ...]` arrays for the per-step inputs (state inputs
start at zeros, or a TFLite variable's initial value, unless given as `[samples, *shape]`)
and returns the compiled model *unrolled* over the steps: one copy of the graph per step (the
weights are shared tensors, so every measure of eval and tune that swaps a weight swaps it in
every step), each state output of
step t feeding its state input at step t + 1, and each model output stacked over the steps
as `[1, steps, ...]` under its own name. The float IR and the npu simulation thus carry their
own state (in npu mode the fp16 state the device writes); the framework reference
(`reference()`, called by gxnpuc.oracle) runs the model step by step carrying its own (the
TFLite interpreter keeps its resource variables inside itself, a new interpreter per sample).
`step_rows()` adds SNR per output over all steps and over the first and last quarter.
"""
from __future__ import annotations

import copy
import math
import os
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc.errors import ConfigError, GxnpucError
from gxnpuc.ir import Graph, Node, Tensor

if TYPE_CHECKING:
    from gxnpuc.evaluate.rows import Report

META = "sequence"  # graph.meta key of an unrolled graph
RANDOM_STEPS = 16  # steps of `-e random` for a streaming model
MAX_STEPS = 4096
HINT = ("np.savez(path, <per-step input>=[samples, steps, *input shape], "
        "<state input>=[samples, *input shape] (optional; by default zeros, or a TFLite variable's initial value))")


def _pairs(graph: Graph) -> dict[str, str]:
    from gxnpuc import state

    return state.pairs_of(graph)


def is_unrolled(graph: Graph) -> bool:
    return META in graph.meta


def step_graph(graph: Graph) -> Graph:
    """The one-step graph of an unrolled graph (the graph itself otherwise): for cost models."""
    return graph.meta[META]["graph"] if is_unrolled(graph) else graph


def step_model(model):
    """The compiled one-step model of an unrolled one (the model itself otherwise): what the
    device and the C runtime run at each step."""
    if not is_unrolled(model.graph):
        return model
    out = copy.copy(model)
    out.__dict__.pop("_sim_consts", None)
    out.graph = step_graph(model.graph)
    return out


# -- entry point for eval and tune ----------------------------------------------------------------
def load(data: str, model, samples: int | None = None, seed: int = 0):
    """(model to evaluate, feeds, labels, source). A model without state pairs: eval's inputs,
    the model as it is; with state pairs: sequences, the model unrolled over their steps."""
    from gxnpuc.evaluate import inputs as ev

    if not _pairs(model.graph):
        return (model, *ev.load_inputs(data, model.graph, samples, seed))
    if set(model.graph.inputs) <= set(_pairs(model.graph).values()):
        raise GxnpucError("--eval", "every input of the model is a state input: nothing to feed per step",
                          "a streaming model with at least one per-step input")
    if data == "random":
        per_step, state0 = _random(model.graph, int(samples or ev.RANDOM_SAMPLES), seed)
        source = f"random (seed {seed})"
    else:
        per_step, state0 = read(data, model.graph)
        if samples:
            per_step = {k: v[:samples] for k, v in per_step.items()}
            state0 = {k: v[:samples] for k, v in state0.items()}
        source = os.path.basename(data)
    steps = next(iter(per_step.values())).shape[1] if per_step else 1
    source += f", {steps} steps"
    seq = unroll(model, steps)
    feeds = dict(state0)
    for k, v in per_step.items():
        feeds.update({f"{k}@{t}": np.ascontiguousarray(v[:, t]) for t in range(steps)})
    return seq, feeds, None, source


def like(model, runs_model):
    """model unrolled as runs_model is (tune verifies its tuned config on the same steps)."""
    if not is_unrolled(runs_model.graph):
        return model
    return unroll(model, runs_model.graph.meta[META]["steps"])


# -- reading sequences --------------------------------------------------------------------------
def _random(graph: Graph, n: int, seed: int):
    rng = np.random.default_rng(seed)
    ins = set(_pairs(graph).values())
    per_step = {k: rng.standard_normal((n, RANDOM_STEPS, *graph.tensors[k].shape)).astype(np.float32)
                for k in graph.inputs if k not in ins}
    state0 = {k: _start(graph, k, n) for k in graph.inputs if k in ins}
    return per_step, state0


def _start(graph: Graph, name: str, n: int) -> np.ndarray:
    """[n, *shape] initial state: zeros, or a TFLite variable's own initial value."""
    shape = graph.tensors[name].shape
    initial = graph.meta.get("state_initial", {}).get(name)
    one = np.zeros(shape, np.float32) if initial is None else np.asarray(initial, np.float32).reshape(shape)
    return np.broadcast_to(one, (n, *shape)).copy()


def _arrays(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise ConfigError(path, "no such file", f"an .npz file ({HINT}) or the word random")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for non-npz bytes
        raise GxnpucError(path, f"not a readable .npz file ({type(exc).__name__})", HINT) from None
    if isinstance(loaded, np.ndarray):
        raise GxnpucError(path, "is one array but a streaming model needs named per-step arrays", HINT)
    with loaded:
        try:
            return {k: loaded[k] for k in loaded.files}
        except ValueError as exc:
            raise GxnpucError(path, f"holds arrays that are not plain numbers ({exc})", HINT) from None


def _find(arrays: dict, name: str):
    for key in (name, name + ":0", name[:-2] if name.endswith(":0") else None):
        if key in arrays:
            return key
    return None


def _shaped(path: str, name: str, arr, shape: tuple, lead: int, accepted: str) -> np.ndarray:
    """arr as [*lead dims, *shape], also accepting the batch dim 1 left out."""
    arr = np.asarray(arr)
    full = arr.ndim == len(shape) + lead and tuple(arr.shape[lead:]) == tuple(shape)
    short = (len(shape) >= 1 and shape[0] == 1 and arr.ndim == len(shape) + lead - 1
             and tuple(arr.shape[lead:]) == tuple(shape[1:]))
    if not (full or short) or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
        raise GxnpucError(f"{path}: {name}", f"has shape {list(arr.shape)} ({arr.dtype})", accepted)
    arr = arr.astype(np.float32).reshape(*arr.shape[:lead], *shape)
    if not np.all(np.isfinite(arr)):
        raise GxnpucError(f"{path}: {name}", "holds NaN or Inf", "finite input values")
    return arr


def read(path: str, graph: Graph) -> tuple[dict, dict]:
    """({per-step input: [samples, steps, *shape]}, {state input: [samples, *shape]})."""
    arrays = _arrays(path)
    state_ins = set(_pairs(graph).values())
    per_step, state0, used = {}, {}, {"labels"}
    for name in graph.inputs:
        key, shape = _find(arrays, name), graph.tensors[name].shape
        dims = ", ".join(map(str, shape))
        if name in state_ins:
            if key is not None:
                state0[name] = _shaped(path, key, arrays[key], shape, 1,
                                       f"the initial state: [samples, {dims}]")
                _check_kept(path, key, state0[name], graph.meta.get("state_initial", {}).get(name))
                used.add(key)
            continue
        if key is None:
            keys = ", ".join(sorted(arrays)) or "none"
            raise GxnpucError(path, f"no array for per-step input {name!r} (keys in the file: {keys})", HINT)
        per_step[name] = _shaped(path, key, arrays[key], shape, 2,
                                 f"a sequence [samples, steps, {dims}]; this model carries state")
        used.add(key)
    _check_counts(path, per_step, state0)
    extra = sorted(set(arrays) - used)
    if extra:
        raise GxnpucError(f"{path}: {extra[0]}", "is not an input of the model",
                          f"arrays named {', '.join(graph.inputs)}")
    if "labels" in arrays:
        raise GxnpucError(f"{path}: labels", "labels are not read for sequences",
                          "leave labels out; the report compares every output over the steps")
    n = len(next(iter(per_step.values())))
    for name in state_ins - set(state0):
        state0[name] = _start(graph, name, n)
    return per_step, state0


def _check_kept(path: str, key: str, given: np.ndarray, initial) -> None:
    """A TFLite resource variable (graph.meta["state_initial"]) starts where the model starts
    it: the interpreter that is the reference cannot be given another initial value."""
    if initial is None:
        return
    start = np.broadcast_to(np.asarray(initial, np.float32).reshape(given.shape[1:]), given.shape)
    value = "zeros" if not np.any(start) else "as in the model"
    if not np.array_equal(given, start):
        raise GxnpucError(f"{path}: {key}", "sets the initial state of a variable the TFLite interpreter "
                          "keeps inside itself, which starts every sample from the model's own value",
                          f"leave {key} out, or give it that value ({value})")


def _check_counts(path: str, per_step: dict, state0: dict) -> None:
    steps = {k: v.shape[1] for k, v in per_step.items()}
    first = next(iter(steps))
    for k, t in steps.items():
        if t != steps[first]:
            raise GxnpucError(f"{path}: {k}", f"has {t} steps but {first} has {steps[first]}",
                              "one number of steps for every per-step input: [samples, steps, ...]")
    if steps[first] > MAX_STEPS:
        raise GxnpucError(f"{path}: {first}", f"has {steps[first]} steps", f"at most {MAX_STEPS}")
    counts = {k: len(v) for k, v in {**per_step, **state0}.items()}
    if len(set(counts.values())) != 1:
        raise GxnpucError(path, f"inputs have different sample counts {counts}", "one count for all")


# -- unrolling ---------------------------------------------------------------------------------
def unroll(model, steps: int):
    """A copy of the CompiledModel whose graph runs `steps` steps (module docstring)."""
    out = copy.copy(model)
    out.__dict__.pop("_sim_consts", None)
    out.graph = unroll_graph(model.graph, steps)
    return out


def _rest(shape: tuple) -> tuple:
    return tuple(shape[1:]) if shape and shape[0] == 1 else tuple(shape)


def unroll_graph(g: Graph, steps: int) -> Graph:
    pairs = _pairs(g)
    state_of = {i: o for o, i in pairs.items()}  # state input -> its state output
    consts = {n for n, t in g.tensors.items() if t.is_const}
    meta = {k: v for k, v in g.meta.items() if k != "state_pairs"}
    u = Graph(meta={**meta, META: {"steps": steps, "graph": g, "pairs": pairs}})
    u.tensors.update({n: g.tensors[n] for n in consts})
    for i in g.inputs:
        if i in state_of:
            u.tensors[i] = Tensor(i, g.tensors[i].shape, g.tensors[i].dtype)
    now = {i: i for i in state_of}  # state input -> the tensor holding it at this step
    for t in range(steps):
        def ren(n: str, t=t, now=now) -> str:
            return n if not n or n in consts else now.get(n) or f"{n}@{t}"
        for i in g.inputs:
            if i not in state_of:
                u.tensors[ren(i)] = Tensor(ren(i), g.tensors[i].shape, g.tensors[i].dtype)
                u.inputs.append(ren(i))
        for node in g.nodes:
            for o in node.outputs:
                u.tensors[ren(o)] = Tensor(ren(o), g.tensors[o].shape, g.tensors[o].dtype)
            u.nodes.append(Node(f"{node.name}@{t}", node.op, [ren(i) for i in node.inputs],
                                [ren(o) for o in node.outputs], dict(node.attrs), node.source))
        step_out = {o: ren(o) for o in g.outputs}
        now = {i: step_out[o] for i, o in state_of.items()}
        for o in g.outputs:
            _stack_part(u, o, step_out[o], t)
    u.inputs = [i for i in g.inputs if i in state_of] + u.inputs
    for o in g.outputs:
        parts = [f"{o}@{t}/step" for t in range(steps)]
        rest = _rest(g.tensors[o].shape)
        u.tensors[o] = Tensor(o, (1, steps, *rest), g.tensors[o].dtype)
        u.nodes.append(Node(f"{o}/steps", "concat", parts, [o], {"axis": 1}, "sequence"))
    u.outputs = list(g.outputs)
    return u


def _stack_part(u: Graph, o: str, value: str, t: int) -> None:
    """value (output o at step t) reshaped to [1, 1, ...] for the stacking concat."""
    rest = _rest(u.tensors[value].shape)
    name = f"{o}@{t}/step"
    u.tensors[name] = Tensor(name, (1, 1, *rest), u.tensors[value].dtype)
    u.nodes.append(Node(name, "reshape", [value], [name], {"shape": [1, 1, *rest]}, "sequence"))


# -- the framework, step by step -------------------------------------------------------------------
def reference(cfg, graph: Graph, feeds: dict, progress=None) -> dict[str, np.ndarray]:
    """The framework's outputs on the unrolled graph's feeds, stacked as the graph stacks
    them ([samples, 1, steps, ...]): one framework run per step, its own state carried.

    A runner may keep some state inside the framework (TFLite resource variables): the state
    inputs named by its `keeps_state` are not fed; its `reset(initial)` starts each sample
    from their initial values; it still returns their state outputs (the values assigned)."""
    from gxnpuc.evaluate import oracle

    info = graph.meta[META]
    g, steps, pairs = info["graph"], info["steps"], info["pairs"]
    fn = oracle.runner(cfg, g, carry_state=True)
    kept = set(getattr(fn, "keeps_state", ()))
    n = len(next(iter(feeds.values())))
    out = {o: np.zeros((n, 1, steps, *_rest(g.tensors[o].shape)), np.float32) for o in g.outputs}
    for s in range(n):
        state = {i: np.asarray(feeds[i][s]).reshape(g.tensors[i].shape) for i in pairs.values()}
        if kept:
            fn.reset({i: v for i, v in state.items() if i in kept})
        for t in range(steps):
            one = {i: np.asarray(feeds[f"{i}@{t}"][s]).reshape(g.tensors[i].shape)
                   for i in g.inputs if i not in state}
            res = fn({**one, **{i: v for i, v in state.items() if i not in kept}})
            for o in g.outputs:
                out[o][s, 0, t] = np.asarray(res[o], np.float32).reshape(_rest(g.tensors[o].shape))
            state = {i: np.asarray(res[o], np.float32).reshape(g.tensors[i].shape) for o, i in pairs.items()}
        if progress:
            progress()
    return out


# -- the report ----------------------------------------------------------------------------------
def ranges(steps: int) -> list[tuple[str, int, int]]:
    """(label, first step, end) of all steps, the first quarter and the last quarter."""
    q = max(1, math.ceil(steps / 4))
    return [("all steps", 0, steps), (f"steps 1-{q}", 0, q), (f"steps {steps - q + 1}-{steps}", steps - q, steps)]


def step_rows(runs) -> list[dict]:
    """SNR of every output (float IR and npu, against the framework) per step range."""
    g = runs.model.graph
    return [step_row(runs, o, mode, np.stack([np.asarray(e[o]) for e in envs]))
            for o in g.outputs for mode, envs in (("float", runs.float_envs), ("npu", runs.npu_envs))]


def step_row(runs, output: str, mode: str, x: np.ndarray) -> dict:
    """One row of the step table: output `output` of a mode ([samples, 1, steps, ...])."""
    from gxnpuc.evaluate.metrics import snr_db

    g = runs.model.graph
    steps = g.meta[META]["steps"]
    row = {"output": output, "mode": mode, "steps": steps, "state": output in g.meta[META]["pairs"], "snr_db": {}}
    for label, a, b in ranges(steps):
        row["snr_db"][label] = snr_db(runs.ref[output][:, :, a:b], x[:, :, a:b])
    return row


def text(report: Report) -> str:
    """The step-range table printed after eval's report."""
    from gxnpuc.evaluate.report import fmt_db
    from gxnpuc.tables import numbers_table

    rows = report.steps or []
    if not rows:
        return ""
    labels = list(rows[0]["snr_db"])
    body = [[r["output"] + (" (state)" if r["state"] else ""), r["mode"],
             *[fmt_db(r["snr_db"][k]) for k in labels]] for r in rows]
    head = (f"streaming: {rows[0]['steps']} steps, state carried in each mode; SNR dB against "
            f"{report.framework} per step range (error that grows shows in the last quarter):")
    return head + "\n" + numbers_table(["output", "mode", *labels], body)
