"""Dense values of a sparse TFLite constant (the converter's EXPERIMENTAL_SPARSITY encoding).

A sparse tensor stores its non-zero values in `traversal_order`; each traversed dimension is
DENSE (dense_size entries) or SPARSE_CSR (array_segments / array_indices), and `block_map`
names the original dimensions that are split into blocks (their block dimensions follow the
original ones in the traversal). This walks that structure, as the TFLite runtime's DENSIFY
kernel does, and scatters the values into a dense array of the tensor's shape.
"""
from __future__ import annotations

import numpy as np

_VECTORS = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}


def _index_vector(kind: int, table) -> np.ndarray:
    import tflite

    if table is None or kind not in _VECTORS:
        raise ValueError(f"sparse index vector of type {kind}")
    vec = getattr(tflite, _VECTORS[kind])()
    vec.Init(table.Bytes, table.Pos)
    values = vec.ValuesAsNumpy()
    return np.zeros(0, np.int64) if isinstance(values, int) else np.asarray(values, np.int64)


def _levels(sp, rank: int) -> tuple[list[int], list[tuple]]:
    """(traversal order, one (dense_size | None, segments, indices) per traversed dim)."""
    order = [int(v) for v in np.ravel(sp.TraversalOrderAsNumpy())] if sp.TraversalOrderLength() else list(range(rank))
    levels: list[tuple] = []
    for k in range(sp.DimMetadataLength()):
        m = sp.DimMetadata(k)
        if int(m.Format()) == 0:  # DENSE
            levels.append((int(m.DenseSize()), None, None))
        else:
            levels.append((None, _index_vector(m.ArraySegmentsType(), m.ArraySegments()),
                           _index_vector(m.ArrayIndicesType(), m.ArrayIndices())))
    if len(levels) != len(order):
        raise ValueError(f"{len(levels)} dimension metadata for {len(order)} traversed dims")
    return order, levels


def densify(values: np.ndarray, sp, shape: tuple[int, ...]) -> np.ndarray:
    """The dense array of `shape` that sparse `values` with SparsityParameters `sp` encode."""
    rank = len(shape)
    order, levels = _levels(sp, rank)
    block_map = [int(v) for v in np.ravel(sp.BlockMapAsNumpy())] if sp.BlockMapLength() else []
    block = {d: levels[order.index(rank + b)][0] for b, d in enumerate(block_map)}
    # the original dim each traversed dim adds to, and its weight (block size for a blocked dim)
    target = [d if d < rank else block_map[d - rank] for d in order]
    weight = [block.get(d, 1) if d < rank else 1 for d in order]
    out = np.zeros(shape, values.dtype)
    flat = np.ravel(values)
    stack = [(0, 0, [0] * rank)]  # (level, index into the level's parent, coordinates so far)
    while stack:
        level, parent, coord = stack.pop()
        size, segments, indices = levels[level]
        if size is not None:
            children = [(parent * size + i, i) for i in range(size)]
        else:
            children = [(j, int(indices[j])) for j in range(int(segments[parent]), int(segments[parent + 1]))]
        if level == len(levels) - 1:
            for node, idx in children:
                c = list(coord)
                c[target[level]] += idx * weight[level]
                out[tuple(c)] = flat[node]  # values are stored in the last level's order
            continue
        for node, idx in reversed(children):
            c = list(coord)
            c[target[level]] += idx * weight[level]
            stack.append((level + 1, node, c))
    return out
