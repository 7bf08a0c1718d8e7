"""Estimated latency of one inference on the target, for the trade-off table of `gxnpuc --tune`.

A documented model, not a measurement (docs/tuning.md): every op runs its arithmetic on the
MAC array (`flops / 2` MAC-equivalents, `macs_per_cycle` a cycle) while its weights stream
in from SRAM or flash; the compressed ones pass the decompressor. These overlap, so each op
costs the slowest of the three (gxnpuc.targets.latency_seconds); ops run one after another.
Every number comes from the target table in gxnpuc/targets.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gxnpuc import targets

if TYPE_CHECKING:
    from gxnpuc.ir import Graph, Node


def op_work(graph: Graph) -> list[tuple[Node, int]]:
    """(node, MAC-equivalents per inference) in graph order; a MAC is 2 flops (ops/base.py)."""
    from gxnpuc.ops import REGISTRY

    out = []
    for node in graph.nodes:
        ins = [graph.tensors[i].shape if i else None for i in node.inputs]
        outs = [graph.tensors[o].shape for o in node.outputs]
        out.append((node, int(REGISTRY[node.op].flops(node, ins, outs)) // 2))
    return out


def _weights_of(node, weights: dict, seen: set) -> tuple[int, int]:
    """(stored bytes, compressed values) of the constants this node fetches first.

    A weight shared by two ops is fetched (and counted) once, by its first reader.
    """
    nbytes = values = 0
    for name in node.inputs:
        sw = weights.get(name) if name else None
        if sw is None or name in seen:
            continue
        seen.add(name)
        nbytes += int(sw.nbytes_stored)
        values += int(sw.size) if sw.compressed else 0
    return nbytes, values


def latency_seconds(graph: Graph, weights: dict, corename: str = "GRUS", in_flash: bool = False,
                    work: list | None = None) -> float:
    """Seconds per inference: the sum over ops of max(compute, fetch, decompress).

    weights: tensor name -> StoredWeight (what the model stores). in_flash: the weights are
    read from flash by XIP ("npu run in flash") instead of SRAM. work: op_work(graph), when
    the caller evaluates many weight choices on one graph.
    """
    target = targets.get(corename)
    seen: set = set()
    total = 0.0
    for node, macs in work if work is not None else op_work(graph):
        nbytes, values = _weights_of(node, weights, seen)
        total += targets.latency_seconds(target, macs, nbytes, values, in_flash)
    return total
