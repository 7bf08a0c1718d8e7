"""The lowered-graph cache: repeated `-w`, `-s`, `-e` on an unchanged TensorFlow model skip
TensorFlow's import (5-8 s) by reading the NPU IR (and, for `-e`, the framework's outputs on
the same inputs) that an earlier run computed.

Where: `$GXNPUC_CACHE_DIR`, else `$XDG_CACHE_HOME/gxnpuc`, else `~/.cache/gxnpuc`; never beside
the user's files. `GXNPUC_CACHE=off` turns it off; deleting the folder clears it; at most
MAX_ENTRIES entries are kept (least recently used go first).

Safe by construction: an entry is found only by a key that hashes the model file's bytes
(every file of a SavedModel folder), the model key and path, every config value the front end
reads (INPUT_OPS, INPUT_VALUES, OUTPUT_OPS, KERAS_ALLOW_LAMBDA), the TensorFlow / Keras and
gxnpuc versions and the bytes of every gxnpuc source file (so a changed lowering never reads
an old graph), and for outputs the input arrays' bytes. Entries are JSON plus a `.npz` of
plain arrays read with allow_pickle=False: no pickle, no code runs on load. An unreadable
entry is ignored and rewritten; a graph holding a value JSON cannot hold is simply not cached.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from gxnpuc import __version__

MAX_ENTRIES = 64
_SOURCE_DIGEST: list[str] = []


def folder() -> str | None:
    """The cache folder, or None when caching is off."""
    if os.environ.get("GXNPUC_CACHE", "").lower() in ("0", "off", "no", "false"):
        return None
    if os.environ.get("GXNPUC_CACHE_DIR"):
        return os.environ["GXNPUC_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gxnpuc")


def _source_digest() -> str:
    """sha256 of every gxnpuc source file: a changed compiler never reads an old entry."""
    if not _SOURCE_DIGEST:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        h = hashlib.sha256()
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    h.update(os.path.relpath(path, root).encode() + b"\0")
                    with open(path, "rb") as fh:
                        h.update(fh.read())
        _SOURCE_DIGEST.append(h.hexdigest())
    return _SOURCE_DIGEST[0]


def _frameworks() -> dict:
    """Installed TensorFlow / Keras versions (read from package metadata, without importing)."""
    from importlib import metadata

    out = {}
    for dist in ("tensorflow", "tensorflow-cpu", "keras"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def graph_key(cfg) -> str:
    """The key of cfg's lowered graph: model bytes and every value lowering reads."""
    from gxnpuc.backend import source_hash

    parts = {"kind": "graph", "version": __version__, "source": _source_digest(), "frameworks": _frameworks(),
             "model": source_hash(cfg.model_path), "model_key": cfg.model_key, "path": cfg.model_path,
             "input_ops": {k: list(v) for k, v in dict(cfg.input_ops).items()},
             "output_ops": list(cfg.output_ops), "keras_allow_lambda": bool(cfg.keras_allow_lambda),
             "input_values": {k: np.asarray(v).tolist()
                              for k, v in dict(getattr(cfg, "input_values", {}) or {}).items()}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def outputs_key(cfg, graph, feeds: dict) -> str:
    """The key of the framework's outputs for these inputs (graph_key + the input bytes)."""
    h = hashlib.sha256(graph_key(cfg).encode() + json.dumps([graph.inputs, graph.outputs]).encode())
    for k in sorted(feeds):
        a = np.ascontiguousarray(feeds[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\0".encode() + a.tobytes())
    return h.hexdigest()


# -- graphs ---------------------------------------------------------------------------------------
class _Unsupported(Exception):
    """A value the JSON + npz encoding does not hold: the graph is not cached."""


def _enc(v, arrays: dict):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, float)) and type(v) in (int, float):
        return v
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biufc":
            raise _Unsupported(v.dtype)
        key = f"a{len(arrays)}"
        arrays[key] = v
        return {"__a": key}
    if isinstance(v, np.generic):
        return {"__s": v.dtype.str, "v": v.item()}
    if isinstance(v, tuple):
        return {"__t": [_enc(x, arrays) for x in v]}
    if isinstance(v, list):
        return [_enc(x, arrays) for x in v]
    if isinstance(v, dict):
        return {"__d": [[_enc(k, arrays), _enc(x, arrays)] for k, x in v.items()]}
    raise _Unsupported(type(v).__name__)


def _dec(v, arrays):
    if isinstance(v, list):
        return [_dec(x, arrays) for x in v]
    if not isinstance(v, dict):
        return v
    if "__a" in v:
        return arrays[v["__a"]]
    if "__s" in v:
        return np.dtype(v["__s"]).type(v["v"])
    if "__t" in v:
        return tuple(_dec(x, arrays) for x in v["__t"])
    return {_dec(k, arrays): _dec(x, arrays) for k, x in v["__d"]}


def save_graph(key: str, graph) -> None:
    arrays: dict = {}
    try:
        doc = {"inputs": graph.inputs, "outputs": graph.outputs, "meta": _enc(graph.meta, arrays),
               "tensors": [[t.name, list(t.shape), t.dtype, _enc(t.data, arrays)] for t in graph.tensors.values()],
               "nodes": [[n.name, n.op, n.inputs, n.outputs, _enc(n.attrs, arrays), n.source] for n in graph.nodes]}
    except _Unsupported:
        return
    _write(key, doc, arrays)


def load_graph(key: str):
    """The cached Graph for key, or None."""
    from gxnpuc.ir import Graph, Node, Tensor

    found = _read(key)
    if found is None:
        return None
    doc, arrays = found
    try:
        g = Graph(inputs=list(doc["inputs"]), outputs=list(doc["outputs"]), meta=_dec(doc["meta"], arrays))
        for name, shape, dtype, data in doc["tensors"]:
            g.tensors[name] = Tensor(name, tuple(shape), dtype, _dec(data, arrays))
        g.nodes = [Node(n, op, list(i), list(o), _dec(a, arrays), s) for n, op, i, o, a, s in doc["nodes"]]
    except (KeyError, TypeError, ValueError):
        return None
    return g


# -- framework outputs ----------------------------------------------------------------------------
def save_arrays(key: str, values: dict) -> None:
    _write(key, {"names": list(values)}, {f"a{i}": np.asarray(v) for i, v in enumerate(values.values())})


def load_arrays(key: str) -> dict | None:
    found = _read(key)
    if found is None:
        return None
    doc, arrays = found
    try:
        return {n: arrays[f"a{i}"] for i, n in enumerate(doc["names"])}
    except KeyError:
        return None


# -- files ----------------------------------------------------------------------------------------
def _paths(key: str) -> tuple[str, str] | None:
    root = folder()
    return None if root is None else (os.path.join(root, key + ".json"), os.path.join(root, key + ".npz"))


def _write(key: str, doc: dict, arrays: dict) -> None:
    paths = _paths(key)
    if paths is None:
        return
    try:
        os.makedirs(os.path.dirname(paths[0]), mode=0o700, exist_ok=True)
        tmp = f"{paths[1]}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, paths[1])
        tmp = f"{paths[0]}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(tmp, paths[0])  # the .json last: an entry is complete once it exists
        _trim(os.path.dirname(paths[0]))
    except (OSError, ValueError):
        pass  # a cache that cannot be written is no cache, never an error


def _read(key: str):
    paths = _paths(key)
    if paths is None or not os.path.isfile(paths[0]):
        return None
    try:
        with open(paths[0], encoding="utf-8") as fh:
            doc = json.load(fh)
        with np.load(paths[1], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        os.utime(paths[0])  # recently used
    except (OSError, ValueError, EOFError):
        return None
    return doc, arrays


def _trim(root: str) -> None:
    entries = sorted((os.path.getmtime(os.path.join(root, f)), f[:-5]) for f in os.listdir(root)
                     if f.endswith(".json"))
    for _, key in entries[:max(0, len(entries) - MAX_ENTRIES)]:
        for ext in (".json", ".npz"):
            try:
                os.remove(os.path.join(root, key + ext))
            except OSError:
                pass
