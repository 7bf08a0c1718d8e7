"""The numbers of the --eval report: SNR, cosine, error, top-1 agreement and accuracy.

Pure: arrays in, numbers out (float64 throughout).
"""
from __future__ import annotations

import math

import numpy as np


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """10*log10(sum(ref^2) / sum((ref - x)^2)) in float64; inf when x equals ref exactly."""
    ref = np.asarray(ref, np.float64)
    err = ref - np.asarray(x, np.float64).reshape(ref.shape)
    noise = float(np.sum(err * err)) if np.all(np.isfinite(err)) else math.inf
    signal = float(np.sum(ref * ref))
    if noise == 0.0:
        return math.inf
    if signal == 0.0 or math.isinf(noise):
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(ref: np.ndarray, x: np.ndarray) -> float:
    a = np.asarray(ref, np.float64).ravel()
    b = np.asarray(x, np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0 or not math.isfinite(nb):
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def max_abs_err(ref: np.ndarray, x: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(ref - np.asarray(x, np.float64).reshape(ref.shape)), initial=0.0))


def class_scores(y: np.ndarray) -> np.ndarray | None:
    """[samples, classes], or [samples, frames, classes] for a per-frame classifier, when y
    ([samples, *shape]) is a classifier output, else None.

    A classifier output has one axis of two or more entries once size-1 axes are dropped; a
    per-frame one (phone posteriors [1, 11, 65]) has more, and classes on its last axis.
    """
    y = np.asarray(y)
    per_sample = [d for d in y.shape[1:] if d != 1]
    if len(per_sample) == 1 and per_sample[0] >= 2:
        return y.reshape(len(y), per_sample[0])
    if len(per_sample) > 1 and y.shape[-1] >= 2:
        return y.reshape(len(y), -1, y.shape[-1])
    return None


def top1(y: np.ndarray) -> np.ndarray | None:
    """The arg-max class: [samples], or [samples, frames] for a per-frame classifier."""
    scores = class_scores(y)
    return None if scores is None else np.argmax(scores.astype(np.float64), axis=-1)


def compare(ref: np.ndarray, x: np.ndarray, labels: np.ndarray | None = None,
            steps: int = 0, classes: bool = True) -> dict:
    """One row of the per-output table: x against the framework's ref (both [samples, ...]);
    top-1 agreement and accuracy count every frame of a per-frame classifier.

    steps > 0: an output stacked over the steps of a sequence ([samples, 1, steps, ...]);
    each step is then scored on its own (the step axis is time, never a class axis).
    classes=False: no top-1 (a state output is not a classifier)."""
    row = {"snr_db": snr_db(ref, x), "cosine": cosine(ref, x), "max_abs_err": max_abs_err(ref, x),
           "top1_agreement": None, "accuracy": None}
    if not classes:
        return row
    t_ref, t_x = (top1(per_step(ref, steps)), top1(per_step(x, steps))) if steps else (top1(ref), top1(x))
    if t_ref is not None:
        row["top1_agreement"] = float(np.mean(t_ref == t_x))
        row["accuracy"] = None if steps else accuracy(x, labels)
    return row


def per_step(y: np.ndarray, steps: int) -> np.ndarray:
    """[samples, 1, steps, *rest] -> [samples * steps, *rest]: one row per step."""
    y = np.asarray(y)
    return y.reshape(y.shape[0] * steps, *y.shape[3:])


def accuracy(y: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Share of samples (of frames, with per-frame labels [samples, frames]) classified right;
    None without labels or when their shape does not fit the output."""
    t = top1(y)
    if t is None or labels is None or np.shape(labels) != t.shape:
        return None
    return float(np.mean(t == labels))
