"""Numbers about a stored weight that the `-s` pictures and the `--eval` layer table show."""
from __future__ import annotations

import numpy as np

OUTER = 0.10  # the "outer 10% of the range" shown in the title


def quant_range(sw) -> tuple[float, float]:
    """[lo, hi] the 8-bit codes span (the envelope over channels for per-channel ranges)."""
    lo = np.asarray(sw.lo_f16, dtype=np.float64)
    hi = lo + 255.0 * np.asarray(sw.step_f16, dtype=np.float64)
    return float(lo.min()), float(hi.max())


def outer_share(values: np.ndarray) -> float:
    """Share of values in the outer 10% (both ends) of [min, max]; small = range set by a tail."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return 1.0
    cut = OUTER * (hi - lo)
    return float(np.count_nonzero((v <= lo + cut) | (v >= hi - cut))) / v.size


def codes_used(sw) -> int | None:
    """How many of the 256 codes the weight actually uses (None when not known)."""
    codes = getattr(sw, "codes", None)
    if codes is None:
        return None
    return int(np.count_nonzero(np.bincount(np.asarray(codes, dtype=np.uint8).ravel(), minlength=256)))
