"""SpaceToBatchND / BatchToSpaceND (TensorFlow, TFLite), and the dilated convolution they
usually are.

TensorFlow writes a dilated Conv2D / DepthwiseConv2dNative (Keras `dilation_rate`,
tf.nn.atrous_conv2d) as SpaceToBatchND -> a VALID convolution -> BatchToSpaceND. In TF graphs
the front end already makes that one convolution before lowering
(frontend/tf_rewrite.fuse_dilated_convs, which also sees Conv1D's ExpandDims / Squeeze).
What reaches lowering is TFLite's form (older converters), or a TF pattern the rewrite left
alone: when BatchToSpaceND closes exactly that pattern (same block, stride 1, no padding
inside, only element-wise activations in between), it becomes one convolution with
`dilations` = block and pads = paddings - crops; the space-to-batch nodes are then unread and
pruned. Anything else lowers as what the ops are: pad -> reshape -> transpose -> reshape (and
back, then a crop), moving the blocks into the batch axis, which every NPU op handles.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ops.base import emit_checked, tf_lowering, tflite_lowering
from gxnpuc.ops.shape_ops import emit_reshape

_S2B_EMITS = ("pad", "reshape", "transpose")
_B2S_EMITS = ("reshape", "transpose", "pad", "conv", "act")


def _consts(ctx, fn):
    """(block [M], pairs [M, 2]) from inputs 1 and 2, or None after a rejection."""
    block, pairs = ctx.const(fn.inputs[1]), ctx.const(fn.inputs[2])
    if block is None or pairs is None:
        ctx.reject("block_shape and paddings/crops must be constant")
        return None
    block = [int(b) for b in np.ravel(block)]
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    rank = len(ctx.shape(fn.inputs[0]))
    if not block or min(block) < 1 or len(pairs) != len(block) or 1 + len(block) > rank or pairs.min() < 0:
        ctx.reject(f"block_shape {block} with paddings/crops {pairs.tolist()} for a rank-{rank} input")
        return None
    return block, pairs


def _space_to_batch(ctx, x: str, block: list[int], pads, out: list[str]) -> str | None:
    shape, m = list(ctx.shape(x)), len(block)
    rank = len(shape)
    pad_attr = [0] * (2 * rank)
    for i in range(m):
        pad_attr[1 + i], pad_attr[rank + 1 + i] = int(pads[i][0]), int(pads[i][1])
    padded = [d + pad_attr[k] + pad_attr[rank + k] for k, d in enumerate(shape)]
    if any(padded[1 + i] % b for i, b in enumerate(block)):
        ctx.reject(f"padded spatial sizes {padded[1:1 + m]} are not divisible by block_shape {block}")
        return None
    y = emit_checked(ctx, "pad", [x], None, {"pads": pad_attr, "mode": "constant", "value": 0.0}) \
        if any(pad_attr) else [x]
    if y is None:
        return None
    split = [padded[0]]
    for i, b in enumerate(block):
        split += [padded[1 + i] // b, b]
    split += padded[1 + m:]
    perm = [2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)] + list(range(1 + 2 * m, len(split)))
    t = ctx.emit("transpose", [emit_reshape(ctx, y[0], split)], None, {"perm": perm})[0]
    small = [padded[1 + i] // b for i, b in enumerate(block)]
    return emit_reshape(ctx, t, [padded[0] * int(np.prod(block))] + small + padded[1 + m:], out)


def _lower_s2b(ctx, fn):
    args = _consts(ctx, fn)
    if args is None:
        return None
    block, pads = args
    y = _space_to_batch(ctx, fn.inputs[0], block, pads, fn.outputs[:1])
    if y is not None:  # what BatchToSpaceND needs to see the dilated-conv pattern
        ctx.__dict__.setdefault("space_to_batch", {})[y] = (ctx.resolve(fn.inputs[0]), block, pads)
    return None


def _producer(ctx, name: str):
    return next((n for n in reversed(ctx.graph.nodes) if name in n.outputs), None)


def _fold_dilated(ctx, fn, block: list[int], crops) -> bool:
    """Emit the dilated convolution that SpaceToBatchND -> conv -> BatchToSpaceND computes;
    False (nothing emitted) when the input is not that pattern."""
    acts, node = [], _producer(ctx, ctx.resolve(fn.inputs[0]))
    while node is not None and node.op == "act":
        acts.append(node)
        node = _producer(ctx, node.inputs[0])
    if node is None or node.op != "conv" or len(block) != 2:
        return False
    seen = ctx.__dict__.get("space_to_batch", {}).get(node.inputs[0])
    a = node.attrs
    if seen is None or seen[1] != block or a["data_format"] != "NHWC" or max(a["strides"]) != 1 \
            or max(a["dilations"]) != 1 or any(a["pads"]):
        return False
    x, _, pads = seen
    begin = [int(pads[i][0] - crops[i][0]) for i in range(2)]
    end = [int(pads[i][1] - crops[i][1]) for i in range(2)]
    if min(begin + end) < 0:
        return False
    attrs = dict(a, dilations=list(block), pads=begin + end)
    outs = fn.outputs[:1] if not acts else None
    name, node.name = node.name, ctx.fresh(node.name + "/batched")  # pruned unless read elsewhere
    y = emit_checked(ctx, "conv", [x, *node.inputs[1:]], outs, attrs, name=name, source=node.source)
    if y is None:
        return True
    for k, act in enumerate(reversed(acts)):
        y = ctx.emit("act", y, fn.outputs[:1] if k == len(acts) - 1 else None, dict(act.attrs))
    return True


def _lower_b2s(ctx, fn):
    args = _consts(ctx, fn)
    if args is None:
        return None
    block, crops = args
    x = fn.inputs[0]
    shape, m, nb = list(ctx.shape(x)), len(block), int(np.prod(block))
    if shape[0] % nb:
        return ctx.reject(f"batch {shape[0]} is not divisible by the block_shape product {nb}")
    big = [shape[1 + i] * b for i, b in enumerate(block)]
    if any(crops[i].sum() > big[i] - 1 for i in range(m)):
        return ctx.reject(f"crops {crops.tolist()} leave nothing of spatial sizes {big}")
    if _fold_dilated(ctx, fn, block, crops):
        return None
    n, rest = shape[0] // nb, shape[1 + m:]
    split = list(block) + [n] + shape[1:1 + m] + rest
    perm = [m] + [k for i in range(m) for k in (m + 1 + i, i)] + list(range(2 * m + 1, len(split)))
    t = ctx.emit("transpose", [emit_reshape(ctx, x, split)], None, {"perm": perm})[0]
    whole = [n] + big + rest
    if not crops.any():
        return emit_reshape(ctx, t, whole, fn.outputs[:1])
    pads = [0] * (2 * len(whole))
    for i in range(m):
        pads[1 + i], pads[len(whole) + 1 + i] = -int(crops[i][0]), -int(crops[i][1])
    emit_checked(ctx, "pad", [emit_reshape(ctx, t, whole)], fn.outputs[:1], {"pads": pads, "mode": "constant"})
    return None


tf_lowering("SpaceToBatchND", emits=_S2B_EMITS)(_lower_s2b)
tflite_lowering("SPACE_TO_BATCH_ND", emits=_S2B_EMITS)(_lower_s2b)
tf_lowering("BatchToSpaceND", emits=_B2S_EMITS)(_lower_b2s)
tflite_lowering("BATCH_TO_SPACE_ND", emits=_B2S_EMITS)(_lower_b2s)
