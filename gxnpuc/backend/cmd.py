"""The `cmd` section: a compact binary command stream a C runtime walks without parsing strings.

Layout (docs/model-format.md, little-endian, every record 4-byte aligned):

    header   16 B   magic "GXCM", u16 version, u16 n_tensors, u16 n_nodes, u16 0, u32 length
    ndims    n_tensors bytes (rank of each tensor), zero-padded to 4
    dims     u32 per dimension, tensor after tensor (C order)
    nodes    n_nodes records: u8 opcode, u8 sub, u8 n_words, u8 0, u16 n_in, u16 n_out,
             u16 tensor refs (inputs then outputs, 0xFFFF = omitted input) padded to 4,
             n_words u32 attribute words (int32, or float32 bits)

Names, dtypes, sources and the full attrs live in the debug section (sections.py).
"""
from __future__ import annotations

import struct

import numpy as np

MAGIC = b"GXCM"
VERSION = 2
HEAD = struct.Struct("<4sHHHHI")
NODE = struct.Struct("<BBBBHH")
NONE_REF = 0xFFFF
MAX_TENSORS = 0xFFFE

# opcode = index + 1; the C runtime (runtime/gxnpu.h, enum gx_op) uses the same numbers
OPCODES = ("conv", "fc", "matmul", "batchnorm", "binary", "prelu", "act", "softmax", "pool",
           "reduce", "reshape", "transpose", "concat", "split", "slice", "pad", "cast",
           "upsample", "identity")
ACT_FNS = ("relu", "leaky_relu", "clip", "sigmoid", "tanh", "hard_sigmoid", "hard_swish", "elu",
           "selu", "abs", "neg", "sqrt", "rsqrt", "reciprocal", "exp", "log", "square", "pow",
           "erf", "erfc", "gelu", "silu", "softplus", "softsign", "mish")
# act fn -> its float32 parameters (attr name, default), in word order
ACT_PARAMS = {"leaky_relu": (("alpha", 0.01),), "clip": (("min", -np.inf), ("max", np.inf)),
              "hard_sigmoid": (("alpha", 0.2), ("beta", 0.5)), "elu": (("alpha", 1.0),),
              "selu": (("alpha", 1.6732632423543772848170429916717), ("gamma", 1.0507009873554804934193349852946)),
              "pow": (("exponent", 1.0),), "silu": (("alpha", 1.0),)}
BINARY_FNS = ("add", "sub", "mul", "div", "max", "min", "pow", "squared_difference", "div_no_nan")
POOL_KINDS = ("max", "avg")
REDUCE_FNS = ("mean", "sum", "max", "min")
PAD_MODES = ("constant", "reflect", "edge")
W_FORMATS = ("OIHW", "HWIO", "HWIM")
CHANNELS_LAST = ("NHWC", "NWC")


class CmdError(ValueError):
    """The stream is not a valid command stream, or a node cannot be written as one."""


def _f32(v) -> int:
    return int(np.array(v, np.float32).view(np.uint32))


def _i32(v) -> int:
    return int(v) & 0xFFFFFFFF


def _w_format(fmt: str) -> int:
    return W_FORMATS.index({"OIW": "OIHW", "WIO": "HWIO"}.get(fmt, fmt))


def node_fields(node) -> tuple[int, list[int]]:
    """(sub, attribute words) of one IR node."""
    a, op = node.attrs, node.op
    if op == "conv":
        r = len(a["strides"])
        flags = int(a["data_format"] in CHANNELS_LAST) | _w_format(a.get("w_format", "OIHW")) << 4
        words = [flags, int(a.get("group", 1))]
        for i in range(r):
            words += [a["strides"][i], a["dilations"][i], a["pads"][i]]
        return 0, [_i32(w) for w in words]
    if op == "fc":
        return int(bool(a.get("transpose_w"))), []
    if op == "batchnorm":
        return 0, [_i32(a["axis"]), _f32(a.get("epsilon", 1e-5))]
    if op == "binary":
        return BINARY_FNS.index(a["fn"]), []
    if op == "act":
        fn = a["fn"]
        words = [_f32(a.get(k, d)) for k, d in ACT_PARAMS.get(fn, ())]
        if fn == "gelu":
            words = [int(a.get("approximate", "none") == "tanh")]
        return ACT_FNS.index(fn), words
    if op == "softmax":
        return int(bool(a.get("log"))), [_i32(a["axis"])]
    if op == "pool":
        r = len(a["kernel"])
        d = a.get("dilations") or [1] * r
        words = [int(a["data_format"] in CHANNELS_LAST) | 2 * int(bool(a.get("count_include_pad")))]
        for i in range(r):
            words += [a["kernel"][i], a["strides"][i], a["pads"][i], a["pads"][r + i], d[i]]
        return POOL_KINDS.index(a["kind"]), [_i32(w) for w in words]
    if op == "reduce":
        return REDUCE_FNS.index(a["fn"]), [sum(1 << int(ax) for ax in a["axes"])]
    if op == "transpose":
        return 0, [_i32(p) for p in a["perm"]]
    if op in ("concat", "split"):
        return 0, [_i32(a["axis"])]
    if op == "slice":
        return 0, [_i32(w) for pair in zip(a["starts"], a["steps"]) for w in pair]
    if op == "pad":
        r = len(a["pads"]) // 2
        return PAD_MODES.index(a.get("mode", "constant")), [_f32(a.get("value", 0))] + [_i32(p) for p in a["pads"][:r]]
    return 0, []  # matmul, prelu, reshape, cast, upsample, identity: shapes say everything


def encode(graph, order: list[str]) -> bytes:
    """The command stream of a graph whose tensors are numbered by `order`."""
    if len(order) > MAX_TENSORS:
        raise CmdError(f"{len(order)} tensors (the command stream holds at most {MAX_TENSORS})")
    ids = {n: i for i, n in enumerate(order)}
    shapes = [graph.tensors[n].shape for n in order]
    ndims = bytes(len(s) for s in shapes)
    body = [ndims + b"\0" * (-len(ndims) % 4),
            struct.pack(f"<{sum(len(s) for s in shapes)}I", *[int(d) for s in shapes for d in s])]
    for node in graph.nodes:
        if node.op not in OPCODES:
            raise CmdError(f"node {node.name!r}: op {node.op!r} has no opcode")
        sub, words = node_fields(node)
        refs = [ids[i] if i else NONE_REF for i in node.inputs] + [ids[o] for o in node.outputs]
        rec = NODE.pack(OPCODES.index(node.op) + 1, sub, len(words), 0, len(node.inputs), len(node.outputs))
        rec += struct.pack(f"<{len(refs)}H", *refs) + b"\0" * (2 * (len(refs) % 2))
        body.append(rec + struct.pack(f"<{len(words)}I", *words))
    payload = b"".join(body)
    return HEAD.pack(MAGIC, VERSION, len(order), len(graph.nodes), 0, HEAD.size + len(payload)) + payload


def decode(blob: bytes) -> dict:
    """{"shapes": [tuple], "nodes": [(op, sub, ins, outs, words)]}; CmdError when malformed."""
    if len(blob) < HEAD.size or blob[:4] != MAGIC:
        raise CmdError("the cmd section is not a gxnpuc command stream (format 1 files: recompile)")
    _, version, nt, nn, _, length = HEAD.unpack_from(blob)
    if version != VERSION:
        raise CmdError(f"command stream version {version} (this gxnpuc reads {VERSION})")
    if length != len(blob):
        raise CmdError(f"command stream of {len(blob)} bytes, its header says {length}")
    pos = HEAD.size
    ndims = _take(blob, pos, nt)
    pos += nt + (-nt % 4)
    shapes = []
    for r in ndims:
        shapes.append(tuple(struct.unpack_from(f"<{r}I", _take(blob, pos, 4 * r))))
        pos += 4 * r
    nodes = []
    for _ in range(nn):
        op, sub, nw, _, n_in, n_out = NODE.unpack_from(_take(blob, pos, NODE.size))
        pos += NODE.size
        if not 1 <= op <= len(OPCODES):
            raise CmdError(f"unknown opcode {op}")
        nref = n_in + n_out
        refs = struct.unpack_from(f"<{nref}H", _take(blob, pos, 2 * nref))
        pos += 2 * nref + 2 * (nref % 2)
        words = struct.unpack_from(f"<{nw}I", _take(blob, pos, 4 * nw))
        pos += 4 * nw
        if any(t >= nt for t in refs[n_in:]) or any(t >= nt and t != NONE_REF for t in refs[:n_in]):
            raise CmdError("a node refers to a tensor that does not exist")
        nodes.append((OPCODES[op - 1], sub, list(refs[:n_in]), list(refs[n_in:]), list(words)))
    if pos != len(blob):
        raise CmdError(f"{len(blob) - pos} bytes after the last node")
    return {"shapes": shapes, "nodes": nodes}


def _take(blob: bytes, pos: int, n: int) -> bytes:
    if pos + n > len(blob):
        raise CmdError("the command stream is truncated")
    return blob[pos:pos + n]
