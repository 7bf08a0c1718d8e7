"""The linear pipeline: config -> front end -> passes -> compression -> backend plan.

One line a stage; the graph is verified after every stage so a broken stage is named at once.
"""
from __future__ import annotations

from gxnpuc import backend, compress, frontend, names, passes, state
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
    cfg = names.resolve(cfg, graph)  # aliased config names reach compression as weight names
    cfg = state.apply(cfg, graph)  # STATE_OPS: vendor streaming layout, state outputs in fp16
    weights = compress.compress_graph(graph, cfg)
    return backend.build(graph, weights, cfg)
