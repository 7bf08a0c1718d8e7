"""The memory plan: where every tensor lives at run time, and the section sizes.

Regions: `io` (struct in_out: graph inputs as fp16, outputs as fp32 or fp16, packed in graph
order), `data` (every other activation, fp16; buffers whose lifetimes do not overlap share
bytes), `weight` (the packed weights; offsets come from the container layout) and `tmp`
(the decompressor's staging tile). Offsets are relative to the start of their region.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ir import Graph

ACT_BYTES = 2  # activations are fp16 on the NPU


def align(n: int, a: int) -> int:
    return -(-int(n) // a) * a


def io_layout(graph: Graph, fp16_outputs) -> dict[str, tuple[int, int]]:
    """tensor -> (offset, nbytes) in the packed struct in_out: inputs, then outputs. A state
    output (graph.meta["state_pairs"], gxnpuc/state.py) is written over its state input of the
    next buffer, so it gets that input's offset and takes no bytes of its own."""
    out, off = {}, 0
    fp16 = set(fp16_outputs)
    pairs = graph.meta.get("state_pairs") or {}
    for name in graph.inputs:
        out[name] = (off, graph.tensors[name].size * 2)
        off += out[name][1]
    for name in graph.outputs:
        if name in out:
            continue
        if name in pairs:
            out[name] = (out[pairs[name]][0], graph.tensors[name].size * 2)
            continue
        out[name] = (off, graph.tensors[name].size * (2 if name in fp16 else 4))
        off += out[name][1]
    return out


def lifetimes(graph: Graph, skip: set[str]) -> dict[str, tuple[int, int]]:
    """Activation -> (index of the producing node, index of the last node that reads it)."""
    live: dict[str, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.outputs:
            if name not in skip:
                live[name] = [i, i]
        for name in node.inputs:
            if name in live:
                live[name][1] = i
    return {k: (a, b) for k, (a, b) in live.items()}


def place(sizes: dict[str, int], live: dict[str, tuple[int, int]], alignment: int) -> tuple[dict, int]:
    """Greedy by size: each buffer goes at the lowest aligned offset that no buffer alive at
    the same time occupies. Returns (tensor -> offset, arena size). Deterministic order:
    size descending, then first use, then name."""
    order = sorted(sizes, key=lambda n: (-sizes[n], live[n][0], n))
    placed: list[tuple[int, int, int, int]] = []  # offset, end, first, last
    offsets, top = {}, 0
    for name in order:
        first, last = live[name]
        size = align(max(sizes[name], 1), alignment)
        busy = sorted((o, e) for o, e, f, l in placed if f <= last and first <= l)
        off = 0
        for o, e in busy:
            if off + size <= o:
                break
            off = max(off, align(e, alignment))
        offsets[name] = off
        placed.append((off, off + size, first, last))
        top = max(top, off + size)
    return offsets, top


def tmp_bytes(graph: Graph, weights: dict, tile: int) -> int:
    """The decompressor stages one op's fp16 weights at a time, at most one tile."""
    need = 0
    for node in graph.nodes:
        n = sum(weights[i].size for i in node.inputs if i in weights and weights[i].compressed)
        need = max(need, n * 2)
    return min(need, tile)


def make(graph: Graph, weights: dict, fp16_outputs, target) -> dict:
    """The plan dict: {"tensors": name -> (offset, nbytes), "region": name -> region,
    "data_size", "tmp_size", "io_size", "alignment"}. Weight offsets are filled by the container."""
    io = io_layout(graph, fp16_outputs)
    acts = {n: graph.tensors[n].size * ACT_BYTES for n in lifetimes(graph, set(io) | set(weights))}
    live = lifetimes(graph, set(io) | set(weights))
    offsets, data_size = place(acts, live, target.alignment)
    tensors = {n: io[n] for n in io}
    tensors.update({n: (offsets[n], acts[n]) for n in sorted(offsets, key=offsets.get)})
    region = {n: "io" for n in io}
    region.update({n: "data" for n in offsets})
    return {"tensors": tensors, "region": region, "data_size": int(data_size),
            "io_size": int(max((o + nb for o, nb in io.values()), default=0)),
            "tmp_size": int(tmp_bytes(graph, weights, target.decompress_tile_bytes)),
            "alignment": target.alignment, "peak_live": peak_live(acts, live)}


def peak_live(sizes: dict[str, int], live: dict[str, tuple[int, int]]) -> int:
    """The largest total of activation bytes alive at one step (a lower bound for data)."""
    if not sizes:
        return 0
    steps = max(b for _, b in live.values()) + 1
    use = np.zeros(steps + 1, np.int64)
    for n, (a, b) in live.items():
        use[a] += sizes[n]
        use[b + 1] -= sizes[n]
    return int(np.cumsum(use).max())


def sizes(plan: dict, cmd: int, weight: int, ops: int, target) -> dict:
    """Section sizes as the header reports them; npu_size is what the NPU block holds when
    the model runs from SRAM, total_size adds struct in_out (vendor definitions)."""
    npu = cmd + weight + ops + plan["data_size"] + plan["tmp_size"]
    return {"cmd": cmd, "weight": weight, "ops": ops, "data": plan["data_size"],
            "tmp": plan["tmp_size"], "io": plan["io_size"], "npu_size": npu,
            "total_size": npu + plan["io_size"], "limit": target.memory_bytes}
