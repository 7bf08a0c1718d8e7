"""The compression settings the accuracy section compares, one row group each.

A Setting is a label plus Config overrides on top of the model's base config (COMPRESS,
CONV2D_COMPRESS, FUSE_BN on), and optionally a `prepare(cfg, bench) -> Config` hook for
settings found by search, such as the tuner of issue 7:

    from benchmarks import settings
    settings.register(settings.Setting("gxnpuc tuned", prepare=lambda cfg, bench: tune(cfg, ...)))

Peers (TFLite, onnxruntime) are listed in benchmarks/accuracy.py and always run beside these.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

BASE = {"compress": True, "conv2d_compress": True, "fuse_bn": True}


@dataclass(frozen=True)
class Setting:
    label: str  # the table's `item`, e.g. "gxnpuc per-channel"
    overrides: dict = field(default_factory=dict)  # Config fields on top of BASE
    prepare: Callable | None = None  # (cfg, bench) -> Config; its time is reported as a note
    doc: str = ""  # one line for docs/performance.md

    def config(self, cfg, bench=None):
        cfg = replace(cfg, **self.overrides)
        return self.prepare(cfg, bench) if self.prepare else cfg


SETTINGS: list[Setting] = [
    Setting("gxnpuc fp16 (no compression)", {"compress": False, "conv2d_compress": False},
            doc="every weight stored as fp16: the size and SNR ceiling without 8-bit codes"),
    Setting("gxnpuc vendor default", {},
            doc="per-tensor min/max range, 8-bit codes (what the vendor tool does)"),
    Setting("gxnpuc per-channel", {"compress_per_channel": True},
            doc="COMPRESS_PER_CHANNEL: lo/step per output channel"),
    Setting("gxnpuc clip mse", {"weight_clip": "mse"},
            doc="WEIGHT_CLIP mse: per-tensor range that minimises the weight's squared error"),
    Setting("gxnpuc clip percentile", {"weight_clip": "percentile"},
            doc="WEIGHT_CLIP percentile: per-tensor range keeping 99.99 % of the values"),
    Setting("gxnpuc per-channel + clip mse", {"compress_per_channel": True, "weight_clip": "mse"},
            doc="both: per-channel ranges, each chosen by the squared-error search"),
]


def register(setting: Setting) -> None:
    """Add (or replace, by label) a setting; later issues add theirs here."""
    SETTINGS[:] = [s for s in SETTINGS if s.label != setting.label] + [setting]


def supported(cfg_fields: set[str]) -> list[Setting]:
    """The settings whose override keys the current Config has (others are skipped)."""
    return [s for s in SETTINGS if set(s.overrides) <= cfg_fields]
