"""The compression settings the accuracy section compares, one row group each.

A Setting is a label plus Config overrides on top of the model's base config (COMPRESS,
CONV2D_COMPRESS, FUSE_BN on), and optionally a `prepare(cfg, bench) -> Config` hook (or
`-> (Config, note)`) for settings found by search, such as the tuner of issue 7 (the
"gxnpuc tuned" rows below):

    from benchmarks import settings
    settings.register(settings.Setting("gxnpuc my search", prepare=lambda cfg, bench: search(cfg, ...)))

Peers (TFLite, onnxruntime) are listed in benchmarks/accuracy.py and always run beside these.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

BASE = {"compress": True, "conv2d_compress": True, "fuse_bn": True}


@dataclass(frozen=True)
class Setting:
    label: str  # the table's `item`, e.g. "gxnpuc per-channel"
    overrides: dict = field(default_factory=dict)  # Config fields on top of BASE
    prepare: Callable | None = None  # (cfg, bench) -> Config | (Config, note); its time goes in the note
    doc: str = ""  # one line for docs/performance.md

    def prepared(self, cfg, bench=None) -> tuple[object, str]:
        """(Config, note for the row): the overrides applied, then the prepare hook if any."""
        cfg = replace(cfg, **self.overrides)
        out = self.prepare(cfg, bench) if self.prepare else cfg
        return out if isinstance(out, tuple) else (out, "")

    def config(self, cfg, bench=None):
        return self.prepared(cfg, bench)[0]


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


def tuned_config(cfg, bench, per_channel: bool = False):
    """`gxnpuc -t` as a user runs it: a real config file in the bench folder with a byte budget
    of the smaller peer's weight bytes (accuracy.peer_budget), tuned on the bench's calibration
    inputs only (never x_eval); returns (the tuned Config, note)."""
    from benchmarks import accuracy
    from gxnpuc import config, tune

    folder = os.path.dirname(cfg.output_file)
    budget, peer = accuracy.peer_budget(bench, folder)
    stem = os.path.join(folder, f"{bench.key}_tune{'_pc' if per_channel else ''}")
    keys = {"ONNX_FILE": cfg.model_path, "OUTPUT_FILE": stem + ".h", "COMPRESS": True,
            "CONV2D_COMPRESS": True, "FUSE_BN": True, "TUNE_MAX_WEIGHT_BYTES": budget,
            "TUNE_PER_CHANNEL": per_channel}
    with open(stem + ".yaml", "w", encoding="utf-8") as fh:
        fh.write("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    res = tune.tune(config.load(stem + ".yaml"), bench.calib_path)
    with open(res.tuned_path, "w", encoding="utf-8") as fh:  # kept with --keep, for reading
        fh.write(res.text)
    note = (f"budget {budget:,} B ({peer}); tuned on {res.samples} calibration inputs "
            f"({res.snr:.1f} dB there{'' if res.met else ', budget not met'}), {res.chosen.path}")
    return config.loads(res.text, res.tuned_path, folder), note


SETTINGS += [
    Setting("gxnpuc tuned", {"tune_per_channel": False}, prepare=tuned_config,
            doc="`gxnpuc -t` with TUNE_MAX_WEIGHT_BYTES = the smaller peer's weight bytes, on "
                "calibration inputs disjoint from the evaluation inputs; per-tensor ranges (vendor format)"),
    Setting("gxnpuc tuned per-channel", {"tune_per_channel": True}, prepare=partial(tuned_config, per_channel=True),
            doc="the same with TUNE_PER_CHANNEL: true (per-channel ranges allowed where they pay)"),
]


def register(setting: Setting) -> None:
    """Add (or replace, by label) a setting; later issues add theirs here."""
    SETTINGS[:] = [s for s in SETTINGS if s.label != setting.label] + [setting]


def supported(cfg_fields: set[str]) -> list[Setting]:
    """The settings whose override keys the current Config has (others are skipped)."""
    return [s for s in SETTINGS if set(s.overrides) <= cfg_fields]
