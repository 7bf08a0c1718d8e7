"""Graph passes, run in order by compiler.compile; each is `pass_name(graph, cfg) -> None`.

The compiler verifies the graph after each one (named by the function's __name__). Every
pass keeps the float result unchanged up to float32 rounding.
"""
from __future__ import annotations

from typing import Callable

from gxnpuc.passes.bn_params import bn_params
from gxnpuc.passes.fold_constants import fold_constants
from gxnpuc.passes.fuse_biasadd import fuse_biasadd
from gxnpuc.passes.fuse_bn import fuse_bn
from gxnpuc.passes.remove_identity import remove_identity
from gxnpuc.passes.sink_moves import sink_moves

__all__ = ["pipeline", "fold_constants", "remove_identity", "sink_moves", "fuse_bn", "fuse_biasadd", "bn_params"]


def pipeline(cfg) -> list[Callable]:
    """The passes to run for this config, in order.

    No-op removal runs before the fusions so a reshape-to-same-shape or an identity between
    a conv and its batch norm does not hide the pattern. FUSE_BN before FUSE_BIASADD: a
    BiasAdd followed by a batch norm folds together with it. A batch norm left after them
    stores its multiply-add (bn_params).
    """
    stages: list[Callable] = [fold_constants, remove_identity, sink_moves]
    if cfg.fuse_bn:
        stages.append(fuse_bn)
    if cfg.fuse_biasadd:
        stages.append(fuse_biasadd)
    stages.append(bn_params)
    return stages
