"""Fold the dequantisation scale of quantize_dynamic's integer ops into their weights.

MatMulInteger / ConvInteger lower to an fc / conv whose weight is the integer (q - zero_point)
(ops/quantized.py lists them in graph.meta["integer_weights"]); the graph multiplies the
result by x_scale * w_scale right after (x_scale is 1: activations carry real values). That
per-channel constant multiply is folded into the weight here, always (not only under
FUSE_BN), so the weight the compressor sees is the real one, and fp16 never holds the
integer accumulator.
"""
from __future__ import annotations

from gxnpuc.ir import Graph
from gxnpuc.passes.affine import Step, fold_chains


def fold_integer_scales(graph: Graph, cfg) -> None:
    names = set(graph.meta.get("integer_weights", ()))
    if names:
        fold_chains(graph, lambda steps: _first_scale(graph, names, steps))


def _first_scale(graph: Graph, names: set, steps: list[Step]) -> list[Step]:
    """The multiply straight after an fc / conv whose weight is an integer weight, if any."""
    if not steps or steps[0].kind != "scale" or steps[0].node.op != "binary":
        return []
    producer = next((n for n in graph.nodes if steps[0].src in n.outputs), None)
    if producer is None or len(producer.inputs) < 2 or producer.inputs[1] not in names:
        return []
    return steps[:1]
