"""The inputs of `--eval` and `--tune`: an .npz file (one array per model input, optional
labels) checked against the model, or seeded random samples."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc.errors import ConfigError, GxnpucError

if TYPE_CHECKING:
    from gxnpuc.ir import Graph

RANDOM_SAMPLES = 16
NPZ_HINT = "np.savez(path, <input name>=array of shape [samples, *input shape], labels=...)"


def load_inputs(data: str, graph: Graph, samples: int | None = None, seed: int = 0):
    """(feeds {input: [samples, *shape] float32}, labels [samples] or None, description)."""
    if data == "random":
        n = int(samples or RANDOM_SAMPLES)
        rng = np.random.default_rng(seed)
        feeds = {k: rng.standard_normal((n, *graph.tensors[k].shape)).astype(np.float32)
                 for k in graph.inputs}
        return feeds, None, f"random (seed {seed})"
    arrays = _read_arrays(data, graph)
    feeds = {k: _input_array(data, k, _lookup(data, arrays, k, graph), graph.tensors[k].shape)
             for k in graph.inputs}
    counts = {k: len(v) for k, v in feeds.items()}
    if len(set(counts.values())) != 1:
        raise GxnpucError(data, f"inputs have different sample counts {counts}", "one count for all")
    n = next(iter(counts.values()))
    _check_extra_arrays(data, arrays, graph)
    labels = _labels(data, arrays.get("labels"), n, graph.tensors[graph.outputs[0]].shape)
    _check_label_range(data, labels, graph)
    if samples:
        feeds = {k: v[:samples] for k, v in feeds.items()}
        labels = None if labels is None else labels[:samples]
    return feeds, labels, os.path.basename(data)


def _read_arrays(path: str, graph: Graph) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise ConfigError(path, "no such file", f"an .npz file ({NPZ_HINT}) or the word random")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for non-npz bytes
        raise GxnpucError(path, f"not a readable .npz file ({type(exc).__name__})", NPZ_HINT) from None
    if isinstance(loaded, np.ndarray):  # a bare .npy: fine for a one-input model
        if len(graph.inputs) != 1:
            raise GxnpucError(path, "is one array but the model has several inputs", NPZ_HINT)
        return {graph.inputs[0]: loaded}
    with loaded:
        try:
            return {k: loaded[k] for k in loaded.files}
        except ValueError as exc:  # object arrays: they would need unpickling, which is refused
            raise GxnpucError(path, f"holds arrays that are not plain numbers ({exc})", NPZ_HINT) from None


def _lookup(path: str, arrays: dict, name: str, graph: Graph) -> np.ndarray:
    """The array for input `name`; TF users may write the tensor name "x:0" for "x"."""
    for key in (name, name + ":0", name[:-2] if name.endswith(":0") else None):
        if key in arrays:
            return arrays[key]
    keys = ", ".join(sorted(arrays)) or "none"
    raise GxnpucError(path, f"no array for model input {name!r} (keys in the file: {keys})",
                      f"one array per input: {', '.join(graph.inputs)}; {NPZ_HINT}")


def _input_array(path: str, name: str, arr: np.ndarray, shape: tuple) -> np.ndarray:
    """[samples, *shape], also accepting [samples, *shape[1:]] when the batch dim is 1."""
    arr = np.asarray(arr)
    ok = arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == tuple(shape)
    no_batch = (len(shape) >= 1 and shape[0] == 1 and arr.ndim == len(shape)
                and tuple(arr.shape[1:]) == tuple(shape[1:]))
    if not (ok or no_batch) or len(arr) == 0 or not np.issubdtype(arr.dtype, np.number):
        accepted = f"[samples, {', '.join(map(str, shape))}]"
        if no_batch or (len(shape) >= 1 and shape[0] == 1):
            accepted += f" or [samples, {', '.join(map(str, shape[1:]))}]"
        raise GxnpucError(f"{path}: {name}", f"has shape {list(arr.shape)} ({arr.dtype})",
                          f"numbers of shape {accepted}")
    arr = arr.astype(np.float32).reshape(len(arr), *shape)
    if not np.all(np.isfinite(arr)):
        raise GxnpucError(f"{path}: {name}", "holds NaN or Inf", "finite input values")
    return arr


def _check_extra_arrays(path: str, arrays: dict, graph: Graph) -> None:
    """An array that is neither an input nor `labels` is most likely a typo ('lables')."""
    known = {"labels"} | {v for k in graph.inputs for v in (k, k + ":0", k[:-2] if k.endswith(":0") else k)}
    extra = sorted(set(arrays) - known)
    if extra:
        raise GxnpucError(f"{path}: {extra[0]}", "is neither a model input nor `labels`",
                          f"arrays named {', '.join(graph.inputs)} and optionally labels")


def _check_label_range(path: str, labels, graph: Graph) -> None:
    """Class indices must index the classifier output (its last axis)."""
    if labels is None:
        return
    classes = int(graph.tensors[graph.outputs[0]].shape[-1])
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise GxnpucError(f"{path}: labels", f"holds class {int(bad[0])}, outside the output's "
                          f"{classes} classes", f"class indices 0..{classes - 1} (or one-hot rows)")


def _labels(path: str, labels, n: int, out_shape=()) -> np.ndarray | None:
    """Class indices [n] (or one-hot [n, classes]); for a per-frame classifier output
    ([1, frames, classes]) also per-frame indices [n, frames] (or one-hot [n, frames, classes])."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    frames = _frames(out_shape)
    integral = np.issubdtype(labels.dtype, np.number) and bool(np.all(labels == np.round(labels)))
    if frames is not None and labels.ndim == 3 and len(labels) == n and _one_hot(labels):
        return np.argmax(labels, axis=-1)
    if labels.ndim == 2 and len(labels) == n and frames is None:  # one-hot
        return np.argmax(labels, axis=1)
    if integral and len(labels) == n and labels.shape[1:] == (() if frames is None else (frames,)):
        return labels.astype(np.int64)
    want = f"{n} integer class indices, or a one-hot array [{n}, classes]" if frames is None else (
        f"per-frame class indices [{n}, {frames}], or one-hot [{n}, {frames}, classes]")
    raise GxnpucError(f"{path}: labels", f"has shape {list(labels.shape)} ({labels.dtype})", want)


def _frames(out_shape) -> int | None:
    """Frames of a per-frame classifier output (None for one score vector per sample)."""
    dims = [int(d) for d in tuple(out_shape)[1:] if d != 1]
    return int(np.prod(dims[:-1])) if len(dims) > 1 else None


def _one_hot(labels: np.ndarray) -> bool:
    return bool(np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(axis=-1) == 1))
