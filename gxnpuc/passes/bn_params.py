"""Pass: a `batchnorm` left in the graph stores its multiply-add, not its statistics.

The device computes `mul = scale / sqrt(var + eps)`, `add = bias - mean * mul` from fp16
parameters. Statistics do not fit fp16 the way their product does: a running variance of
9.8e7 (PP-OCRv4's detector) saturates to 65504 and the channel's output is wrong by orders of
magnitude, while `mul` and `add` are ordinary numbers. So the compiler computes both in
float64 from the float parameters and stores them as scale = mul, bias = add, mean = 0,
var = 1, eps = 0: the device's formula then gives fp16(mul) and fp16(add) exactly
(x / sqrt(1) is x), one rounding each instead of four, and nothing saturates that the
folded form would not. The float result is unchanged up to float32 rounding.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.ir import Graph, Tensor
from gxnpuc.ops.norm import bn_scale_shift


def bn_params(graph: Graph, cfg) -> None:
    """Rewrite every `batchnorm` node's constant parameters to the multiply-add form."""
    for node in graph.nodes:
        if node.op != "batchnorm" or not all(graph.tensors[p].is_const for p in node.inputs[1:5]):
            continue
        scale, bias, mean, var = (np.asarray(graph.tensors[p].data) for p in node.inputs[1:5])
        mul, add = bn_scale_shift(scale, bias, mean, var, node.attrs.get("epsilon", 1e-5), np.float64)
        if node.attrs.get("epsilon") == 0.0 and np.array_equal(mul, scale.reshape(-1)):
            continue  # already in this form
        shape = graph.tensors[node.inputs[1]].shape
        values = {"mul": mul, "add": add, "mean0": np.zeros_like(mul), "var1": np.ones_like(mul)}
        names = []
        for role, v in values.items():
            name = _free(graph, f"{node.name}/bn_{role}")
            graph.tensors[name] = Tensor(name, shape, "float32", v.astype(np.float32).reshape(shape))
            names.append(name)
        node.inputs[1:5] = names
        node.attrs["epsilon"] = 0.0
    graph.prune()


def _free(graph: Graph, name: str) -> str:
    k, out = 1, name
    while out in graph.tensors:
        k, out = k + 1, f"{name}_{k}"
    return out
