"""The --eval report as typed rows; `Report.as_dict()` is what the JSON file holds (field order
is the file's key order) and the CSV rows come from."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class OutputRow:
    """One model output in one mode, against the framework's values."""
    output: str
    mode: str  # framework | float | npu_fp16 | npu
    shape: list[int]
    snr_db: float | None
    cosine: float | None
    max_abs_err: float | None
    top1_agreement: float | None
    accuracy: float | None


@dataclass
class LayerRow:
    """One compressed weight: its layer's error and the outputs with only it compressed."""
    weight: str
    shape: list[int]
    layer: str  # the first node reading the weight
    layer_output: str
    layer_snr_db: float  # that layer's output, npu against float IR, error accumulated
    only_snr_db: float  # the worst model output with only this weight compressed
    only_snr_by_output: dict[str, float]
    w_min: float
    w_max: float
    q_lo: float  # the range the 8-bit codes span
    q_hi: float
    clip: list[float] | None  # the range compression was given, if any
    clipped_share: float  # share of values outside the codes' range
    tail_share: float  # share of values in the outer 10% of [w_min, w_max]


@dataclass
class Verdict:
    """What to change first: action none | clip | unclip | exclude, and the config line."""
    action: str
    weight: str | None
    range: list[float] | None
    expected_only_snr_db: float | None
    config_line: str | None
    text: str


@dataclass
class Report:
    model: str
    framework: str
    data: str  # where the inputs came from
    samples: int
    threshold_db: float
    output_names: list[str]
    outputs: list[OutputRow]
    layers: list[LayerRow]  # worst first
    notes: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    runtime: dict | None = None  # --runtime --dump-dir: per-op comparison (evaluate/runtime.py)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["runtime"] is None:  # absent unless --runtime --dump-dir asked for it
            del d["runtime"]
        return d
