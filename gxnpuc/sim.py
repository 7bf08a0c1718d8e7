"""The numpy simulator of the NPU IR, in two modes.

`float` mode runs every op's float32 kernel on the IR as lowered (it must agree with the
framework to ~1e-5 relative). `npu` mode applies the device's numeric rules of
gxnpuc.numerics around the same kernels: fp16 activations, weights as the device decodes
them, float32 computation rounded to fp16 at every op output. The kernels are the same ones
constant folding uses. A model decoded from model.h / raw runs exactly like the in-memory one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gxnpuc import numerics
from gxnpuc.errors import GxnpucError
from gxnpuc.ir import Graph

MODES = ("float", "npu")


def run(graph: Graph, feeds: dict[str, np.ndarray], consts: dict[str, np.ndarray] | None = None,
        cast: Callable[[np.ndarray], np.ndarray] | None = None,
        keep: bool = False, start: int = 0, env: dict | None = None) -> dict[str, np.ndarray]:
    """Run the graph once on one sample (shapes as in the graph, batch included).

    consts overrides constant tensors (e.g. dequantized weights); cast is applied to every
    input and node output (e.g. rounding to fp16); keep=True returns every intermediate
    tensor too. To reuse work, pass env (a keep=True result of an earlier run) and start
    (the index of the first node to recompute): nodes before it are taken from env.
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

    for node in graph.nodes[start:]:
        outs = REGISTRY[node.op].run(node, [value(i) for i in node.inputs])
        for name, y in zip(node.outputs, outs):
            env[name] = cast(y) if cast else y
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


def run_batch(graph: Graph, feeds: dict[str, np.ndarray], **kw) -> dict[str, np.ndarray]:
    """Run sample by sample over the leading axis of every feed; stack the outputs."""
    n = len(next(iter(feeds.values())))
    results = [run(graph, sample(graph, feeds, i), **kw) for i in range(n)]
    return stack(results)


def sample(graph: Graph, feeds: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Sample i of batched feeds ([samples, ...]), reshaped to each input's graph shape."""
    return {k: np.asarray(v[i:i + 1]).reshape(graph.tensors[k].shape) for k, v in feeds.items()}


def stack(results: list[dict]) -> dict[str, np.ndarray]:
    """Per-sample result dicts -> one dict of arrays with a leading samples axis."""
    return {k: np.stack([r[k] for r in results]) for k in results[0]}


# -- whole compiled models --------------------------------------------------------------
def model_consts(model, mode: str) -> dict[str, np.ndarray]:
    """The constant values mode `mode` reads: float weights, or what the device decodes."""
    _check_mode(mode)
    if mode == "float":
        return numerics.float_consts(model.graph, model.weights)
    return numerics.device_consts(model.graph, model.weights)


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


def run_model_batch(model, feeds: dict[str, np.ndarray], mode: str = "float", **kw) -> dict:
    """run_model over the leading samples axis of every feed; outputs stacked.

    The mode's constants are decoded once for the batch (decoding a 25M-weight model costs
    ~15x one float inference), then each sample runs as run_model would run it.
    """
    n = len(next(iter(feeds.values())))
    consts = {**model_consts(model, mode), **(kw.pop("consts", None) or {})}
    cast = model_cast(mode)
    outs = [run(model.graph, sample(model.graph, feeds, i), consts, cast=cast, **kw) for i in range(n)]
    return stack([finish_outputs(model, out, mode) for out in outs])


def run_file(path: str, feeds: dict[str, np.ndarray], mode: str = "npu", **kw) -> dict:
    """Decode model.h / raw with the project's own reader and simulate it."""
    from gxnpuc import backend

    return run_model(backend.read(path), feeds, mode, **kw)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise GxnpucError("simulator", f"unknown mode {mode!r}", "float or npu")
