"""The decoder: sections (from the raw container or the C header) back to a CompiledModel.

The graph, attrs, weights (codes, lo/step, packing, fp16 and int values) and the memory plan
come back exactly, so the simulator runs a decoded file bit-identically to the in-memory model.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.backend import cmd as cmd_stream
from gxnpuc.backend import sections as S
from gxnpuc.backend import tlv
from gxnpuc.compress import StoredWeight, bitmap_unpack, choose_packing, table_facts
from gxnpuc.errors import ModelError
from gxnpuc.ir import Graph, Node, Tensor
from gxnpuc.model import CompiledModel


class Bad(Exception):
    """Internal: a structural problem; read() turns it into one ModelError line."""


def records(ops: bytes) -> list[tuple]:
    size = S.OPS_RECORD.size
    if len(ops) % size:
        raise Bad(f"ops section of {len(ops)} bytes is not a whole number of {size}-byte records")
    return [S.OPS_RECORD.unpack_from(ops, k) for k in range(0, len(ops), size)]


def _codes(rest: memoryview, shape: tuple, n: int, rec, lo16, step16, axis) -> np.ndarray:
    packing = S.PACKINGS[rec[3]]
    if packing == "dense":
        if len(rest) != n:
            raise Bad(f"{n} codes expected, {len(rest)} bytes found")
        return np.frombuffer(rest, np.uint8).reshape(shape).copy()
    nbm = -(-n // 8)
    if len(rest) != nbm + rec[9]:
        raise Bad("bitmap size does not match its header")
    zero = table_facts(lo16, step16)[1]
    if zero is None:
        raise Bad("bitmap packing for a range with no zero code")
    return bitmap_unpack(bytes(rest[:nbm]), bytes(rest[nbm:]), shape, zero, axis)


def unpack_weight(entry: list, rec: tuple, payload: memoryview) -> StoredWeight:
    name, shape, dtype, extra = entry
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    packing, family = S.PACKINGS[rec[3]], S.FAMILIES[rec[2]]
    base = dict(name=name, shape=shape, family=family, dtype=dtype, packing=packing)
    if packing in ("fp16", "int32"):
        dt = "<f2" if packing == "fp16" else "<i4"
        if len(payload) != n * np.dtype(dt).itemsize:
            raise Bad(f"{packing} payload of {len(payload)} bytes for {n} values")
        arr = np.frombuffer(payload, dt).reshape(shape)
        key = "data_f16" if packing == "fp16" else "data_i32"
        return StoredWeight(**base, **{key: arr.astype(np.float16 if packing == "fp16" else np.int32)})
    c = rec[8]
    if packing not in ("dense", "bitmap") or c < 1 or len(payload) < 4 * c:
        raise Bad(f"bad storage record (packing {packing}, {c} channels)")
    lo16 = np.frombuffer(payload[:2 * c], "<f2").astype(np.float16)
    step16 = np.frombuffer(payload[2 * c:4 * c], "<f2").astype(np.float16)
    axis = None if rec[7] < 0 else rec[7]
    codes = _codes(payload[4 * c:], shape, n, rec, lo16, step16, axis)
    nnz = rec[9] if packing == "bitmap" else choose_packing(codes, lo16, step16, axis)[1]
    clip = extra.get("clip")
    return StoredWeight(**base, compressed=True, codes=codes, lo_f16=lo16, step_f16=step16, axis=axis,
                        clip=None if clip is None else tuple(clip), range_source=extra.get("range", ""),
                        nnz=nnz)


def _weights(tensors: list, recs: list, weight: bytes) -> dict:
    out, view = {}, memoryview(weight)
    for entry, rec in zip(tensors, recs):
        if S.REGIONS[rec[1]] != "weight":
            continue
        off, nbytes = rec[5], rec[6]
        if off + nbytes > len(weight):
            raise Bad(f"weight {entry[0]!r} lies outside the weight section")
        out[entry[0]] = unpack_weight(entry, rec, view[off:off + nbytes])
    return out


def _graph(cmd: dict, stream: dict, weights: dict) -> Graph:
    tensors = cmd["tensors"]
    names = [t[0] for t in tensors]
    g = Graph(meta=dict(cmd.get("meta", {})))
    for name, shape, dtype, _ in tensors:
        data = None
        sw = weights.get(name)
        if sw is not None and sw.compressed and np.issubdtype(np.dtype(dtype), np.floating):
            data = sw.decode(dtype)  # straight from the codes: no fp16 array in between
        elif sw is not None:
            data = np.asarray(sw.decode()).astype(dtype)
        g.tensors[name] = Tensor(name, tuple(shape), dtype, data)
    for (op, name, source, attrs), (_, _, ins, outs, _) in zip(cmd["nodes"], stream["nodes"]):
        g.nodes.append(Node(name, op, [names[i] if i != cmd_stream.NONE_REF else "" for i in ins],
                            [names[i] for i in outs], attrs, source))
    g.inputs = [names[i] for i in cmd["inputs"]]
    g.outputs = [names[i] for i in cmd["outputs"]]
    return g


def _plan(tensors: list, recs: list, sec) -> dict:
    plan = {"tensors": {}, "region": {}, "data_size": sec.data_size, "tmp_size": sec.tmp_size,
            "io_size": int(sec.info.get("sizes", {}).get("io", 0))}
    for entry, rec in zip(tensors, recs):
        region = S.REGIONS[rec[1]]
        if region != "none":
            plan["tensors"][entry[0]] = (rec[5], rec[6])
            plan["region"][entry[0]] = region
    return plan


def _agree(debug: dict, stream: dict) -> None:
    """The debug section describes the command stream's tensors and nodes (a file that mixes
    them up is corrupt): same count, shapes and op of every node, attrs that encode the same."""
    tensors, nodes = debug["tensors"], debug["nodes"]
    if [tuple(t[1]) for t in tensors] != stream["shapes"]:
        raise Bad("cmd and debug sections list different tensors")
    if len(nodes) != len(stream["nodes"]):
        raise Bad("cmd and debug sections list different nodes")
    for (op, name, _, attrs), (op2, sub, _, _, words) in zip(nodes, stream["nodes"]):
        if op != op2 or cmd_stream.node_fields(Node(name, op, [], [], attrs)) != (sub, words):
            raise Bad(f"node {name!r} differs between the cmd and debug sections")


def model_from_sections(sec, where: str) -> CompiledModel:
    """Rebuild the CompiledModel; any inconsistency is one ModelError naming `where`."""
    try:
        stream = cmd_stream.decode(sec.cmd)
        cmd = tlv.decode(sec.debug) if sec.debug else {}
        if cmd.get("format") != S.FORMAT_VERSION:
            raise Bad(f"debug section of format {cmd.get('format')} (this gxnpuc reads {S.FORMAT_VERSION})")
        _agree(cmd, stream)
        recs = records(sec.ops)
        if len(recs) != len(cmd["tensors"]):
            raise Bad("ops and cmd sections list different tensors")
        weights = _weights(cmd["tensors"], recs, sec.weight)
        graph = _graph(cmd, stream, weights)
        names = [t[0] for t in cmd["tensors"]]
        plan = _plan(cmd["tensors"], recs, sec)
    except (Bad, tlv.DecodeError, cmd_stream.CmdError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ModelError(where, f"not a valid gxnpuc model ({exc})",
                         "a model.h or raw file written by gxnpuc") from None
    info = sec.info
    return CompiledModel(graph, weights, tuple(names[i] for i in cmd.get("fp16_outputs", [])),
                         info.get("model_info", ""), info.get("npu_unit", "NPU32"),
                         info.get("corename", "GRUS"), info.get("source_hash", ""),
                         int(info.get("build_time", 0)), plan, dict(info.get("sizes", {})))
