"""Pass FUSE_BN: fold batch normalisation into the preceding conv / fc weight and bias.

Handles the `batchnorm` op (ONNX BatchNormalization, TF FusedBatchNorm*) and the decomposed
forms frozen Keras graphs and TF's BiasAdd+Mul+Add leave behind: `binary` mul/div by and
add/sub of per-channel constants, also across a channel-keeping reshape/transpose (TF
Conv1D's Squeeze). The folded weight keeps its name (users exclude it by that name); a
weight shared with another op is copied first under a derived name; a bias made from
nothing is named "<conv node>/bias". A batchnorm with no conv/fc before it folds forwards
into the conv/fc after it where exact (fuse_bn_forward.py), else stays a `batchnorm` op (the
NPU runs it as a per-channel multiply-add with fp16 "param" inputs) and the summary says why.
"""
from __future__ import annotations

from gxnpuc.ir import Graph
from gxnpuc.passes.affine import Step, fold_chains
from gxnpuc.passes.fuse_bn_forward import fold_forward, note_unfolded


def fuse_bn(graph: Graph, cfg) -> None:
    """Fold every conv/fc -> batch-norm-like chain backwards, then the BatchNorms left before a
    conv/fc forwards (fuse_bn_forward.py); the summary names those that stay separate (pipeline
    runs this only when cfg.fuse_bn)."""
    folded = fold_chains(graph, _bn_chain)
    folded += fold_forward(graph)
    note_unfolded(graph, folded)


def _bn_chain(steps: list[Step]) -> list[Step]:
    """The whole affine chain, when it holds a scaling step (a lone bias add is FUSE_BIASADD's)."""
    return steps if any(st.kind == "scale" for st in steps) else []
