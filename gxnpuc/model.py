"""CompiledModel: everything the backend writes and the decoder reads back.

The simulator can run a CompiledModel made in memory or decoded from model.h / raw output;
both must give bit-identical results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gxnpuc.ops  # noqa: F401 - fills the op table (ir.OPS) every graph's ops are read from
from gxnpuc.ir import Graph

if TYPE_CHECKING:
    from gxnpuc.config import Config


@dataclass
class CompiledModel:
    graph: Graph  # the IR after all passes
    weights: dict  # tensor name -> gxnpuc.compress.StoredWeight, every constant an op reads
    fp16_outputs: tuple = ()  # graph outputs written as fp16
    model_info: str = ""
    npu_unit: str = "NPU32"
    corename: str = "GRUS"
    source_hash: str = ""  # sha256 of the model file(s)
    build_time: int = 0  # SOURCE_DATE_EPOCH when set
    # memory plan (gxnpuc/backend/plan.py): {"tensors": name -> (offset, nbytes),
    # "region": name -> io|data|weight, "data_size", "tmp_size", "io_size", "fits_target", ...}
    plan: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)  # cmd, weight, ops, data, tmp, io, npu_size, total_size, limit
    # the Config it was compiled with, its names resolved to tensor names (gxnpuc.config.names
    # .resolve); None for a model decoded from a file
    config: Config | None = None

    def compressed_weights(self) -> list:
        """The compressed StoredWeights in graph order (the order `-w` prints)."""
        order = []
        for node, idx, _ in self.graph.weight_slots():
            name = node.inputs[idx]
            if name not in order:
                order.append(name)
        order += [n for n in self.weights if n not in order]
        return [self.weights[n] for n in order if n in self.weights and self.weights[n].compressed]
