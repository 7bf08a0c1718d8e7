"""The numpy simulator of the NPU IR.

`float` mode runs every op's float32 kernel on the IR as lowered (it must agree with the
framework to ~1e-5 relative). The kernels are the same ones constant folding uses.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gxnpuc.errors import GxnpucError
from gxnpuc.ir import Graph


def run(graph: Graph, feeds: dict[str, np.ndarray], consts: dict[str, np.ndarray] | None = None,
        cast: Callable[[np.ndarray], np.ndarray] | None = None,
        keep: bool = False) -> dict[str, np.ndarray]:
    """Run the graph once on one sample (shapes as in the graph, batch included).

    consts overrides constant tensors (e.g. dequantized weights); cast is applied to every
    node output (e.g. rounding to fp16); keep=True returns every intermediate tensor too.
    """
    from gxnpuc.ops import REGISTRY

    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in feeds:
            raise GxnpucError("simulator", f"no value for input {name!r}", f"inputs: {graph.inputs}")
        x = np.asarray(feeds[name], dtype=graph.tensors[name].dtype)
        env[name] = cast(x) if cast else x
    overrides = consts or {}

    def value(name: str):
        if not name:
            return None
        if name in env:
            return env[name]
        if name in overrides:
            return overrides[name]
        return graph.tensors[name].data

    for node in graph.nodes:
        outs = REGISTRY[node.op].run(node, [value(i) for i in node.inputs])
        for name, y in zip(node.outputs, outs):
            env[name] = cast(y) if cast else y
    if keep:
        return env
    return {name: value(name) for name in graph.outputs}


def run_batch(graph: Graph, feeds: dict[str, np.ndarray], **kw) -> dict[str, np.ndarray]:
    """Run sample by sample over the leading axis of every feed; stack the outputs."""
    n = len(next(iter(feeds.values())))
    results = [run(graph, {k: v[i:i + 1].reshape(graph.tensors[k].shape) for k, v in feeds.items()}, **kw)
               for i in range(n)]
    return {k: np.stack([r[k] for r in results]) for k in results[0]}
