"""The npu-mode numeric rules: what a GX8002-class NPU computes, as small pure functions.

The simulator's npu mode (sim.run_model(..., mode="npu")) is these rules applied around the
same float32 kernels that float mode uses; docs/numerics.md explains each rule and why.
"""
from __future__ import annotations

import numpy as np

F16_MAX = float(np.finfo(np.float16).max)  # 65504: larger magnitudes overflow to inf


def is_float(x) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def round_f16(x: np.ndarray) -> np.ndarray:
    """Round to the nearest fp16 value (IEEE round-to-nearest-even), kept as float32.

    Activations live in fp16 on the device; the kernels then compute in float32 on the
    exact fp16 values, which is the device's fp32 accumulation. Non-float tensors (shape
    or index values that only fold-time ops produce) pass unchanged.
    """
    if not is_float(x):
        return x
    with np.errstate(over="ignore"):  # overflow to inf is what fp16 storage does
        return np.asarray(x).astype(np.float16).astype(np.float32)


def stored_values(stored) -> np.ndarray:
    """The weight as the device sees it (StoredWeight.decode(), fp16), as float32 for kernels."""
    return np.asarray(stored.decode()).astype(np.float32)


def is_compressed(stored) -> bool:
    """Whether a StoredWeight holds 8-bit codes (as opposed to plain fp16)."""
    flag = getattr(stored, "compressed", None)
    if flag is not None:
        return bool(flag)
    return getattr(stored, "codes", None) is not None


def device_consts(graph, weights: dict) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph as the device holds it.

    A constant with a StoredWeight (every weight, bias and parameter an op reads) takes its
    decoded value: compressed ones dequantized exactly as SPEC 5, the rest fp16. Any other
    float constant is rounded to fp16 (the device has no other float format).
    """
    out = {}
    for name, t in graph.tensors.items():
        if name in weights:
            out[name] = stored_values(weights[name])
        elif t.is_const:
            out[name] = round_f16(t.data)
    return out


def float_consts(graph, weights: dict) -> dict[str, np.ndarray]:
    """Constants for float mode: the graph's own float values; decoded ones where a model
    read back from a file carries no float copy."""
    return {name: stored_values(sw) for name, sw in weights.items()
            if name in graph.tensors and not graph.tensors[name].is_const}


def output_value(y: np.ndarray, fp16: bool) -> np.ndarray:
    """A graph output as the host reads it: fp16 for FP16_OUT_OPS, otherwise fp32 (exact)."""
    if not is_float(y):
        return y
    return np.asarray(y).astype(np.float16 if fp16 else np.float32)


def overflows(x: np.ndarray) -> bool:
    """True when a float tensor holds values beyond the fp16 range (or already inf/NaN)."""
    if not is_float(x) or np.size(x) == 0:
        return False
    return not bool(np.all(np.abs(x) <= F16_MAX))
