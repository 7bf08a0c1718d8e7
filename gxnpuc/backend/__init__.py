"""The backend: memory plan, output writers (C header, raw container) and the decoder.

    build(graph, weights, cfg) -> CompiledModel   plan + sizes, nothing written
    write(model, path, output_type)               atomic, deterministic (SOURCE_DATE_EPOCH)
    read(path) -> CompiledModel                    either format back, for gxnpuc.sim
"""
from __future__ import annotations

import hashlib
import mmap
import os
import struct
import time
from typing import Iterable

from gxnpuc import targets
from gxnpuc.backend import c_header, container, plan, sections
from gxnpuc.backend.decode import model_from_sections
from gxnpuc.compress import store_plain
from gxnpuc.errors import ConfigError, ModelError, OutputError
from gxnpuc.ir import Graph
from gxnpuc.model import CompiledModel

OUTPUT_TYPES = ("c_code", "raw")
WRITE_CHUNK = 1 << 20
HASH_WINDOW = 1 << 24  # a multiple of mmap.ALLOCATIONGRANULARITY


# -- build --------------------------------------------------------------------------------------
def build(graph: Graph, weights: dict, cfg) -> CompiledModel:
    """Plan memory and compute every section size; the model is then ready to write.

    cfg is resolved (gxnpuc.config.names.resolve): FP16_OUT_OPS holds graph output names."""
    target = targets.get(cfg.corename)
    weights = complete_weights(graph, weights)
    fp16 = tuple(o for o in graph.outputs if o in set(cfg.fp16_out_ops))  # resolved: output names
    model = CompiledModel(graph, weights, fp16, cfg.model_info,
                          cfg.npu_unit, cfg.corename, source_hash(cfg.model_path), build_time())
    model.plan = plan.make(graph, weights, model.fp16_outputs, target)
    sec = sections.encode(model, target.alignment)
    for name, place in sec.weight_layout.items():
        model.plan["tensors"][name] = place
        model.plan["region"][name] = "weight"
    model.sizes = plan.sizes(model.plan, len(sec.cmd), len(sec.weight), len(sec.ops), target)
    model.plan["fits_target"] = model.sizes["total_size"] <= target.memory_bytes
    return model


def complete_weights(graph: Graph, weights: dict) -> dict:
    """Every constant a node reads needs a StoredWeight; missing ones are stored as fp16."""
    out = dict(weights)
    for node, idx, family in graph.weight_slots():
        name = node.inputs[idx]
        if name not in out:
            out[name] = store_plain(name, graph.tensors[name].data, family)
    return out


def source_hash(path: str) -> str:
    """sha256 of the model file, or of a folder's files (relative names and contents, sorted)."""
    if not path or not os.path.exists(path):
        return ""
    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    for f in files:
        if f != path:
            h.update(os.path.relpath(f, path).replace(os.sep, "/").encode() + b"\0")
        with open(f, "rb") as fh:
            _hash_file(h, fh.fileno())
    return h.hexdigest()


def _hash_file(h, fd: int) -> None:
    """Hash the page cache in place (no read() copies: ~1.5x faster on big models), one
    HASH_WINDOW at a time so that mapped pages add little to the resident memory."""
    size = os.fstat(fd).st_size
    for offset in range(0, size, HASH_WINDOW):
        with mmap.mmap(fd, min(HASH_WINDOW, size - offset), offset=offset, access=mmap.ACCESS_READ) as part:
            h.update(part)


def build_time() -> int:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else now."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is None:
        return int(time.time())
    try:
        return int(env)
    except ValueError:
        raise ConfigError("SOURCE_DATE_EPOCH", f"{env!r} is not an integer",
                          "seconds since 1970-01-01 UTC, e.g. SOURCE_DATE_EPOCH=1700000000") from None


# -- write ---------------------------------------------------------------------------------------
def encode(model: CompiledModel) -> sections.Sections:
    return sections.encode(model, targets.get(model.corename).alignment)


def chunks(model: CompiledModel, output_type: str) -> Iterable[bytes]:
    """The output file's bytes, piece by piece."""
    sec = encode(model)
    if output_type == "raw":
        blob = container.pack(sec)
        return (blob[i:i + WRITE_CHUNK] for i in range(0, len(blob), WRITE_CHUNK))
    if output_type == "c_code":
        return c_header.chunks(sec, model)
    raise ConfigError("OUTPUT_TYPE", f"unknown output type {output_type!r}", " | ".join(OUTPUT_TYPES))


def write(model: CompiledModel, path: str, output_type: str = "c_code") -> str:
    """Write atomically: a temporary file beside `path`, renamed over it only when complete.
    On any failure the previous file (if any) is untouched and no temporary file remains."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise OutputError(path, "is a folder", "OUTPUT_FILE must name a file")
    data = chunks(model, output_type)  # bad output_type fails before touching the disk
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as fh:
            for piece in data:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(path, f"cannot write ({exc.strerror or exc})", "a writable file path") from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# -- read ----------------------------------------------------------------------------------------
def read(path: str) -> CompiledModel:
    """Decode a raw container or a C header written by write()."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise ModelError(path, f"cannot read ({exc.strerror or exc})", "a model.h or raw file") from None
    try:
        if container.is_raw(blob):
            sec = container.unpack(blob)
        else:
            if not c_header.is_header(blob):
                raise ValueError("neither a gxnpuc raw container nor a gxnpuc C header")
            sec = c_header.parse(blob)
    except (ValueError, KeyError, IndexError, struct.error) as exc:
        raise ModelError(path, f"not a valid gxnpuc model ({exc})",
                         "a model.h or raw file written by gxnpuc") from None
    return model_from_sections(sec, path)


__all__ = ["build", "write", "read", "chunks", "encode", "complete_weights",
           "source_hash", "build_time", "OUTPUT_TYPES"]
