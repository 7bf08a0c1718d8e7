"""Pass FUSE_BIASADD: a per-channel constant add right after a conv / fc becomes its bias.

TF lowers Conv2D/MatMul + BiasAdd (and Keras Dense/Conv use_bias) to a conv/fc followed by a
`binary` add; this folds the add (or `y - c`) into the op's bias input, adding to a bias it
already has, also across a channel-keeping reshape (TF Conv1D's Squeeze). ONNX Conv and
Gemm carry their bias inside the op already, so on ONNX models this pass usually finds
nothing; a MatMul + Add export is folded like TF's BiasAdd.
"""
from __future__ import annotations

from gxnpuc.ir import Graph
from gxnpuc.passes.affine import Step, fold_chains


def fuse_biasadd(graph: Graph, cfg) -> None:
    """Fold conv/fc -> add chains (pipeline runs this only when cfg.fuse_biasadd)."""
    fold_chains(graph, _add_prefix)


def _add_prefix(steps: list[Step]) -> list[Step]:
    """The adds (and channel-keeping reshapes) directly after the conv/fc, up to any scaling."""
    out = []
    for st in steps:
        if st.kind == "scale":
            break
        out.append(st)
    return out
