"""The linear pipeline: config -> front end -> passes -> compression -> backend plan.

One line a stage; the graph is verified after every stage so a broken stage is named at once.
"""
from __future__ import annotations

from gxnpuc import backend, compress, frontend, passes
from gxnpuc.config import names
from gxnpuc.config import Config
from gxnpuc.model import CompiledModel
from gxnpuc.ops.fold import reject_leftovers


def compile(cfg: Config) -> CompiledModel:  # noqa: A001 - the verb users know
    graph = frontend.load(cfg)
    graph.verify("front end")
    for stage in passes.pipeline(cfg):
        stage(graph, cfg)
        graph.verify(stage.__name__)
    reject_leftovers(graph)  # fold-only ops still present, and every node's NPU check()
    names.check(cfg, graph)
    names.order_inputs(cfg, graph)  # struct input: INPUT_OPS order, like struct output's OUTPUT_OPS
    resolved = names.resolve(cfg, graph)  # aliased config names reach compression as weight names
    weights = compress.compress_graph(graph, resolved)
    graph.meta["warnings"] = names.unused_ranges(cfg, graph, weights)  # the CLI prints them
    cfg = resolved
    return backend.build(graph, weights, cfg)
