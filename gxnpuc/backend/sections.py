"""A CompiledModel as the byte sections both output formats carry: cmd, weight, ops (+ the
sizes of data and tmp, which are zero-initialised RAM and hold no bytes in the file), and
debug, which the device never reads.

cmd is the binary command stream (backend/cmd.py: shapes, op records with tensor references
and numeric attributes), weight the packed weights, ops one fixed 32-byte binding record per
tensor (region, offset, size, storage), debug the TLV-encoded names, dtypes, full attrs and
graph metadata the decoder and the reports need (not part of npu_size).
docs/model-format.md is the field-by-field description; gxnpuc/backend/decode.py the inverse.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from gxnpuc.backend import cmd as cmd_stream
from gxnpuc.backend import tlv
from gxnpuc.backend.plan import align

FORMAT_VERSION = 2
OPS_RECORD = struct.Struct("<IBBBBIIiIII")  # 32 bytes
REGIONS = ("none", "io", "data", "weight")
FAMILIES = ("activation", "conv", "fc", "bias", "param")
PACKINGS = ("none", "fp16", "dense", "bitmap", "int32")
F_COMPRESSED, F_INPUT, F_OUTPUT, F_FP16_OUT = 1, 2, 4, 8
META_KEYS = ("framework", "opset", "notes", "aliases")  # graph.meta entries kept (never absolute paths)


@dataclass
class Sections:
    cmd: bytes
    weight: bytes
    ops: bytes
    data_size: int
    tmp_size: int
    info: dict = field(default_factory=dict)  # version, hashes, model_info, sizes (header)
    debug: bytes = b""  # TLV: names, dtypes, attrs, graph meta (not part of npu_size)
    weight_layout: dict = field(default_factory=dict)  # weight -> (offset, nbytes) in `weight`


def weight_payload(sw) -> list[memoryview]:
    """The bytes of one stored weight, in file order (little-endian), as byte views (the
    arrays' own memory where it is contiguous: no copy until the section is assembled)."""
    from gxnpuc.compress import bitmap_pack

    if sw.packing == "int32":
        parts = [np.ascontiguousarray(sw.data_i32, "<i4")]
    elif sw.packing == "fp16":
        parts = [np.ascontiguousarray(sw.data_f16, "<f2")]
    else:
        parts = [np.ascontiguousarray(sw.lo_f16, "<f2"), np.ascontiguousarray(sw.step_f16, "<f2")]
        if sw.packing == "bitmap":
            parts += bitmap_pack(sw.codes, sw.zero_codes(), sw.axis)
        else:
            parts.append(np.ascontiguousarray(sw.codes, np.uint8))
    return [memoryview(np.ascontiguousarray(p).reshape(-1)).cast("B") if isinstance(p, np.ndarray)
            else memoryview(p) for p in parts]


def pack_weights(names: list[str], weights: dict, alignment: int) -> tuple[bytearray, dict]:
    """The weight section (each weight starts aligned, zero padding) and name -> (offset,
    nbytes), copied once into a buffer of the final size."""
    payloads, layout, off = [], {}, 0
    for name in names:
        payloads.append(weight_payload(weights[name]))
        nbytes = sum(p.nbytes for p in payloads[-1])
        layout[name] = (off, nbytes)
        off += align(nbytes, alignment)
    section = bytearray(off)
    view = memoryview(section)
    for name, payload in zip(names, payloads):
        pos = layout[name][0]
        for part in payload:
            view[pos:pos + part.nbytes] = part
            pos += part.nbytes
    return section, layout


def _plain(v):
    """Attr values as TLV-encodable plain values (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def tensor_order(model) -> list[str]:
    """Tensors in the file: every graph tensor except constants nothing reads."""
    return [n for n, t in model.graph.tensors.items() if not t.is_const or n in model.weights]


def _tensor_entry(name: str, t, sw) -> list:
    extra = {}
    if sw is not None:
        extra["family"] = sw.family
        if sw.compressed:
            extra["range"] = sw.range_source
            extra["clip"] = None if sw.clip is None else [float(sw.clip[0]), float(sw.clip[1])]
    dtype = sw.dtype if sw is not None else t.dtype
    return [name, [int(d) for d in t.shape], str(dtype), extra]


def encode_debug(model, order: list[str]) -> bytes:
    """The debug section: everything but the numbers a runtime needs (those are in cmd)."""
    g = model.graph
    ids = {n: i for i, n in enumerate(order)}
    nodes = [[n.op, n.name, n.source, _plain(n.attrs)] for n in g.nodes]
    meta = {k: _plain(g.meta[k]) for k in META_KEYS if k in g.meta}
    return tlv.encode({
        "format": FORMAT_VERSION,
        "tensors": [_tensor_entry(n, g.tensors[n], model.weights.get(n)) for n in order],
        "nodes": nodes, "inputs": [ids[n] for n in g.inputs], "outputs": [ids[n] for n in g.outputs],
        "fp16_outputs": [ids[n] for n in model.fp16_outputs], "meta": meta})


def _record(i: int, name: str, model, place: tuple[str, int, int]) -> bytes:
    g, sw = model.graph, model.weights.get(name)
    flags = (F_INPUT * (name in g.inputs) | F_OUTPUT * (name in g.outputs)
             | F_FP16_OUT * (name in model.fp16_outputs))
    if sw is None:
        fam, pack, axis, ch, nnz = 0, 0, -1, 0, 0
    else:
        fam, pack = FAMILIES.index(sw.family), PACKINGS.index(sw.packing)
        axis = -1 if sw.axis is None else sw.axis
        ch, nnz = sw.channels, sw.nnz if sw.packing == "bitmap" else 0
        flags |= F_COMPRESSED * bool(sw.compressed)
    region, off, nbytes = place
    return OPS_RECORD.pack(i, REGIONS.index(region), fam, pack, flags, off, nbytes, axis, ch, nnz,
                           g.tensors[name].size)


def encode(model, alignment: int) -> Sections:
    """Every section of a built model (model.plan must hold the activation placement)."""
    order = tensor_order(model)
    wnames = [n for n in order if n in model.weights]
    weight, layout = pack_weights(wnames, model.weights, alignment)
    tensors, regions = model.plan.get("tensors", {}), model.plan.get("region", {})

    def place(n):
        if n in layout:
            return ("weight", *layout[n])
        if n in tensors:
            return (regions.get(n, "data"), *tensors[n])
        return ("none", 0, 0)
    ops = b"".join(_record(i, n, model, place(n)) for i, n in enumerate(order))
    return Sections(cmd_stream.encode(model.graph, order), weight, ops, int(model.plan.get("data_size", 0)),
                    int(model.plan.get("tmp_size", 0)), info_of(model), encode_debug(model, order), layout)


def info_of(model) -> dict:
    """The header fields (identical in both formats)."""
    from gxnpuc import __version__

    return {"format": FORMAT_VERSION, "gxnpuc_version": __version__, "source_hash": model.source_hash,
            "npu_unit": model.npu_unit, "corename": model.corename, "model_info": model.model_info,
            "build_time": int(model.build_time),
            "sizes": {k: int(v) for k, v in model.sizes.items()}}
