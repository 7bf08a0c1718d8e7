"""The linear pipeline: config -> front end -> passes -> checks -> compression -> backend plan.

One line a stage; the graph is verified after every stage so a broken stage is named at once.
`lower(cfg)` is the IR half (tests and benchmarks start there), `compile(cfg)` the whole.
"""
from __future__ import annotations

from gxnpuc import backend, compress, frontend, passes
from gxnpuc.config import Config, names
from gxnpuc.errors import UnsupportedOpError
from gxnpuc.ir import Graph
from gxnpuc.model import CompiledModel
from gxnpuc.ops.base import FOLD_ONLY, REGISTRY


def lower(cfg: Config) -> Graph:
    """Front end, passes and the checks: the IR every op of which the NPU runs, whose names
    the config's all exist in."""
    graph = frontend.load(cfg)
    graph.verify("front end")
    for stage in passes.pipeline(cfg):
        stage(graph, cfg)
        graph.verify(stage.__name__)
    reject_leftovers(graph)  # fold-only ops still present, and every node's NPU check()
    names.check(cfg, graph)
    names.order_inputs(cfg, graph)  # struct input: INPUT_OPS order, like struct output's OUTPUT_OPS
    return graph


def compile(cfg: Config) -> CompiledModel:  # noqa: A001 - the verb users know
    graph = lower(cfg)
    resolved = names.resolve(cfg, graph)  # the config's names as the weight / output tensors they select
    weights = compress.compress_graph(graph, resolved)
    graph.meta["warnings"] = names.unused_ranges(cfg, graph, weights)  # the CLI prints them
    model = backend.build(graph, weights, resolved)
    model.config = resolved
    return model


def reject_leftovers(graph: Graph) -> None:
    """After all passes: raise UnsupportedOpError listing every node the NPU cannot run.

    A fold-only op still in the graph is reported with FOLD_ONLY; other ops are reported
    when their check() names a reason.
    """
    items = []
    for node in graph.nodes:
        opdef = REGISTRY[node.op]
        shapes = [graph.tensors[i].shape if i else None for i in node.inputs]
        reason = opdef.check(node, shapes) or (None if opdef.npu else FOLD_ONLY)
        if reason:
            items.append((node.name, node.source or node.op, reason))
    if items:
        raise UnsupportedOpError(f"{graph.meta.get('framework', '')} model".strip(), items)
