"""The one table of target limits (memory, MAC array, clock, weight-fetch costs) per CORENAME.

Sources: NationalChip's public GX8002 docs give the 208 KB of on-chip SRAM shared by the NPU
block, the MCU's stage-2 code and the always-on audio buffer, and the two ways to run a
model: "npu run in sram" (cmd + weights + data_content in SRAM) or "npu run in flash"
(cmd and weights fetched from flash by XIP; only data_content in SRAM). Everything marked
ASSUMPTION is an engineering estimate, not a vendor figure: change it here, in one place,
when a measured number is known. The latency cost model of `gxnpuc --tune` reads this table.
"""
from __future__ import annotations

from dataclasses import dataclass

from gxnpuc.errors import ConfigError

KB = 1024


@dataclass(frozen=True)
class Target:
    corename: str
    chip: str
    npu_units: tuple  # accepted NPU_UNIT values
    sram_bytes: int  # all on-chip SRAM of the chip
    # What the model may occupy in SRAM (the NPU block). ASSUMPTION: 208 KB minus ~48 KB for
    # the MCU's stage-2 code, stack and the always-on audio (log-fbank) ring buffer.
    memory_bytes: int
    macs_per_cycle: int  # fp16 MACs per cycle of the MAC array (NPU32: 32 lanes)
    clock_hz: int  # ASSUMPTION: NPU clock
    # ASSUMPTION: cycles to bring one weight byte to the MAC array from SRAM and from flash
    # (XIP through the SPI-NOR cache; quad SPI ~4 bits per flash clock, plus cache misses).
    sram_cycles_per_byte: float
    flash_cycles_per_byte: float
    # ASSUMPTION: extra cycles per compressed weight value for the decompressor's table
    # lookup (it runs beside the MACs; counted only where it is the bottleneck).
    decompress_cycles_per_value: float
    # ASSUMPTION: bytes of decompressed fp16 weights the decompressor stages at a time (tmp).
    decompress_tile_bytes: int
    alignment: int  # byte alignment of every buffer and section (NPU DMA burst)
    io_dtype: str  # how inputs are passed in struct input
    out_dtypes: tuple  # (default, FP16_OUT_OPS) element type of struct output members


GRUS = Target(
    corename="GRUS", chip="GX8002", npu_units=("NPU32",), sram_bytes=208 * KB,
    memory_bytes=160 * KB, macs_per_cycle=32, clock_hz=100_000_000,
    sram_cycles_per_byte=0.25, flash_cycles_per_byte=2.0, decompress_cycles_per_value=0.125,
    decompress_tile_bytes=4 * KB, alignment=16, io_dtype="float16", out_dtypes=("float32", "float16"),
)

TARGETS: dict[str, Target] = {GRUS.corename: GRUS}


def get(corename: str) -> Target:
    """The Target for a CORENAME (config.load checks the name; this guards library callers)."""
    try:
        return TARGETS[corename]
    except KeyError:
        raise ConfigError("CORENAME", f"unknown core {corename!r}", " | ".join(TARGETS)) from None


def latency_seconds(target: Target, macs: int, weight_bytes: int, compressed_values: int = 0,
                    weights_in_flash: bool = False) -> float:
    """Estimated time of one inference: the MAC array and the weight fetch overlap, so the
    slower of the two counts; decompression adds where it is slower than the fetch."""
    compute = macs / target.macs_per_cycle
    per_byte = target.flash_cycles_per_byte if weights_in_flash else target.sram_cycles_per_byte
    fetch = max(weight_bytes * per_byte, compressed_values * target.decompress_cycles_per_value)
    return max(compute, fetch) / target.clock_hz
