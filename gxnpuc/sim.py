"""The numpy simulator of the NPU IR, in two modes.

`float` mode runs every op's float32 kernel on the IR as lowered (it must agree with the
framework to ~1e-5 relative); these are the kernels constant folding uses. `npu` mode runs
every op's device kernel (OpDef.run_npu: float32 in the operation order docs/numerics.md
defines, the same bits as the C runtime) inside the rules of gxnpuc.numerics: fp16
activations, weights as the device decodes them, every op output rounded to fp16. A model
decoded from model.h / raw runs exactly like the in-memory one.

Many samples (run_batch, run_samples, run_model_batch) run in chunks of up to
batching.CHUNK samples per pass when the graph allows it (gxnpuc/batching.py), with results
bit-identical to one run per sample; otherwise one sample at a time.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gxnpuc import batching, numerics
from gxnpuc.errors import GxnpucError
from gxnpuc.ir import Graph

MODES = ("float", "npu")


def run(graph: Graph, feeds: dict[str, np.ndarray], consts: dict[str, np.ndarray] | None = None,
        cast: Callable[[np.ndarray], np.ndarray] | None = None,
        keep: bool = False, start: int = 0, env: dict | None = None,
        round_moves: bool = False) -> dict[str, np.ndarray]:
    """Run the graph once on one sample (shapes as in the graph, batch included).

    consts overrides constant tensors (e.g. dequantized weights); cast is applied to every
    input and node output (e.g. rounding to fp16); keep=True returns every intermediate
    tensor too. To reuse work, pass env (a keep=True result of an earlier run) and start
    (the index of the first node to recompute): nodes before it are taken from env.
    cast=numerics.round_f16 is npu mode: every op runs its device kernel (OpDef.run_npu,
    docs/numerics.md), and ops that only move or select activations (reshape, relu, max
    pool, ...; numerics.keeps_f16) skip the rounding, which would change nothing
    (round_moves=True rounds them anyway, to check that).
    """
    from gxnpuc.ops import REGISTRY

    env = dict(env) if env is not None else _bind_inputs(graph, feeds, cast)
    overrides = consts or {}

    def value(name: str):
        if not name:
            return None
        if name in env:
            return env[name]
        if name in overrides:
            return overrides[name]
        return graph.tensors[name].data

    exact_f16 = cast is numerics.round_f16  # npu mode; rounding a moved/selected fp16 value is a no-op
    for node in graph.nodes[start:]:
        op = REGISTRY[node.op]
        outs = (op.run_npu if exact_f16 else op.run)(node, [value(i) for i in node.inputs])
        c = cast
        if exact_f16 and not round_moves and numerics.keeps_f16(node) and all(i in env for i in node.inputs if i):
            c = None
        for name, y in zip(node.outputs, outs):
            env[name] = c(y) if c else y
    if keep:
        return env
    return {name: value(name) for name in graph.outputs}


def _bind_inputs(graph: Graph, feeds: dict, cast) -> dict[str, np.ndarray]:
    env = {}
    for name in graph.inputs:
        if name not in feeds:
            raise GxnpucError("simulator", f"no value for input {name!r}", f"inputs: {graph.inputs}")
        x = np.asarray(feeds[name], dtype=graph.tensors[name].dtype)
        if x.shape != graph.tensors[name].shape:
            x = x.reshape(graph.tensors[name].shape)
        env[name] = cast(x) if cast else x
    return env


# -- many samples ----------------------------------------------------------------------------
def run_batch(graph: Graph, feeds: dict[str, np.ndarray], consts: dict | None = None, cast=None,
              keep: bool = False, chunk: int = batching.CHUNK) -> dict[str, np.ndarray]:
    """run() over the leading samples axis of every feed ([samples, *input shape]); each
    result is [samples, *graph shape], exactly np.stack of one run() per sample."""
    n = len(next(iter(feeds.values())))
    p = batching.plan(graph)
    if not p.ok:
        return stack([run(graph, sample(graph, feeds, i), consts, cast, keep) for i in range(n)])
    parts = []
    for idx in batching.chunks(n, chunk):
        g = p.graph_for(len(idx))
        fed = {k: _rows(graph, k, feeds[k], idx) for k in graph.inputs if k in feeds}
        env = run(g, fed, consts, cast, keep)
        parts.append({k: p.per_sample(k, v, len(idx)) for k, v in env.items()})
    return {k: parts[0][k] if len(parts) == 1 else np.concatenate([q[k] for q in parts]) for k in parts[0]}


def _rows(graph: Graph, name: str, v, idx: range) -> np.ndarray:
    """Feeds idx of input `name` as one batched array [len(idx), *shape[1:]]."""
    shape = graph.tensors[name].shape
    return np.asarray(v[idx.start:idx.stop]).reshape(len(idx), *shape[1:])


def run_samples(graph: Graph, samples: list[dict], consts: dict | None = None, cast=None,
                keep: bool = False, start: int = 0, envs: list[dict] | None = None,
                progress: Callable[[int], None] | None = None,
                chunk: int = batching.CHUNK) -> list[dict]:
    """[run(graph, s, consts, cast, keep, start, env) for s, env in zip(samples, envs)], computed
    in batched chunks where the graph allows (same values, bit for bit; per-sample results are
    views into the batched arrays). envs=None starts every sample from its inputs (start 0).
    progress(k) is called after each k samples."""
    p = batching.plan(graph)
    out: list[dict] = []
    for idx in batching.chunks(len(samples), chunk if p.ok else 1):
        todo = [samples[i] for i in idx]
        before = None if envs is None else [envs[i] for i in idx]
        if len(idx) == 1:
            out.append(run(graph, todo[0], consts, cast, keep, start if before else 0,
                           before[0] if before else None))
        else:
            out += _run_chunk(p, todo, consts, cast, keep, start, before)
        if progress:
            progress(len(idx))
    return out


def _run_chunk(p, samples: list[dict], consts, cast, keep: bool, start: int, envs) -> list[dict]:
    graph, n = p.graph, len(samples)
    g = p.graph_for(n)
    if envs is None:
        fed = {k: np.concatenate([_one(graph, k, s) for s in samples]) for k in graph.inputs}
        env = run(g, fed, consts, cast, keep)
    else:
        env = run(g, {}, consts, cast, keep, start, _merged(p, envs, start))
    fresh = set(env) if envs is None else {o for node in graph.nodes[start:] for o in node.outputs}
    if not keep:
        fresh = set(graph.outputs)
    parts = {k: p.split(k, env[k], n) for k in fresh if k in env}
    res = []
    for i in range(n):
        r = dict(envs[i]) if keep and envs is not None else {}
        r.update({k: v[i] for k, v in parts.items()})
        if not keep:
            r = {k: r[k] for k in graph.outputs}
        res.append(r)
    return res


def _one(graph: Graph, name: str, s: dict) -> np.ndarray:
    if name not in s:
        raise GxnpucError("simulator", f"no value for input {name!r}", f"inputs: {graph.inputs}")
    t = graph.tensors[name]
    return np.asarray(s[name], dtype=t.dtype).reshape(t.shape)


def _merged(p, envs: list[dict], start: int) -> dict:
    """One batched env from per-sample envs: the tensors that nodes from `start` on read."""
    graph = p.graph
    need = {i for node in graph.nodes[start:] for i in node.inputs if i} | set(graph.outputs)
    merged = {}
    for k in need:
        if k in envs[0]:
            merged[k] = np.concatenate([e[k] for e in envs]) if k in p.batched else envs[0][k]
    return merged


def sample(graph: Graph, feeds: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Sample i of batched feeds ([samples, ...]), reshaped to each input's graph shape."""
    return {k: np.asarray(v[i:i + 1]).reshape(graph.tensors[k].shape) for k, v in feeds.items()}


def stack(results: list[dict]) -> dict[str, np.ndarray]:
    """Per-sample result dicts -> one dict of arrays with a leading samples axis."""
    return {k: np.stack([r[k] for r in results]) for k in results[0]}


# -- whole compiled models --------------------------------------------------------------------
def model_consts(model, mode: str) -> dict[str, np.ndarray]:
    """The constant values mode `mode` reads: float weights, or what the device decodes.

    Decoded once per model and mode (a 25M-weight model takes ~15 float inferences to
    decode) and kept on the model while its weights and constants stay the same objects;
    each call returns a new dict over the same arrays.
    """
    _check_mode(mode)
    cache = getattr(model, "__dict__", {}).setdefault("_sim_consts", {})  # none: no caching
    key = _consts_key(model)
    hit = cache.get(mode)
    if hit is None or not _same_objects(hit[0], key):
        decode = numerics.float_consts if mode == "float" else numerics.device_consts
        hit = cache[mode] = (key, decode(model.graph, model.weights))
    return dict(hit[1])


def _consts_key(model) -> tuple:
    """Every object the decoded constants depend on (compared by identity)."""
    g = model.graph
    consts = tuple((k, t, t.data) for k, t in g.tensors.items() if t.is_const)
    return g, tuple(model.weights.items()), consts


def _same_objects(a: tuple, b: tuple) -> bool:
    if a[0] is not b[0] or len(a[1]) != len(b[1]) or len(a[2]) != len(b[2]):
        return False
    return all(x[0] == y[0] and all(u is v for u, v in zip(x[1:], y[1:]))
               for part in (1, 2) for x, y in zip(a[part], b[part]))


def model_cast(mode: str):
    """The per-op-output rounding of a mode (None for float)."""
    _check_mode(mode)
    return numerics.round_f16 if mode == "npu" else None


def run_model(model, feeds: dict[str, np.ndarray], mode: str = "float", keep: bool = False,
              consts: dict[str, np.ndarray] | None = None, **kw) -> dict[str, np.ndarray]:
    """Run a CompiledModel (in memory or decoded from a file) on one sample.

    mode "float": fp32, weights uncompressed. mode "npu": what the device computes; graph
    outputs come back fp32, or fp16 for model.fp16_outputs. consts overrides individual
    constants on top of the mode's own (the per-weight sweep of --eval swaps one weight).
    Extra keywords (start, env) are passed to run().
    """
    values = model_consts(model, mode)
    values.update(consts or {})
    env = run(model.graph, feeds, values, cast=model_cast(mode), keep=keep, **kw)
    return finish_outputs(model, env, mode)


def finish_outputs(model, env: dict, mode: str) -> dict:
    """Convert graph outputs to the host-visible dtype (npu: fp32 unless FP16_OUT_OPS)."""
    if mode != "npu":
        return env
    fp16 = set(model.fp16_outputs)
    out = dict(env)
    for name in model.graph.outputs:
        out[name] = numerics.output_value(env[name], name in fp16)
    return out


def run_model_batch(model, feeds: dict[str, np.ndarray], mode: str = "float",
                    consts: dict | None = None, keep: bool = False, chunk: int = batching.CHUNK) -> dict:
    """run_model over the leading samples axis of every feed ([samples, *input shape]);
    results [samples, *graph shape], bit-identical to stacking one run_model per sample.

    The mode's constants are decoded once per model; samples run in batched chunks where
    the graph allows (gxnpuc/batching.py), else one at a time.
    """
    values = {**model_consts(model, mode), **(consts or {})}
    env = run_batch(model.graph, feeds, values, model_cast(mode), keep, chunk)
    return finish_outputs(model, env, mode)


def run_model_samples(model, samples: list[dict], mode: str = "float") -> list[dict]:
    """[run_model(model, s, mode) for s in samples], batched as run_samples does."""
    envs = run_samples(model.graph, samples, model_consts(model, mode), model_cast(mode))
    return [finish_outputs(model, env, mode) for env in envs]


def run_file(path: str, feeds: dict[str, np.ndarray], mode: str = "npu", **kw) -> dict:
    """Decode model.h / raw with the project's own reader and simulate it."""
    from gxnpuc import backend

    return run_model(backend.read(path), feeds, mode, **kw)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise GxnpucError("simulator", f"unknown mode {mode!r}", "float or npu")
