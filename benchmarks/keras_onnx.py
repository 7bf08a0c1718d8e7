"""Export a chain-shaped Keras model to ONNX with onnx.helper, laid out the way tf2onnx does it.

tf2onnx is not installed here, so the benchmark writes the graph itself from the Keras
weights: NHWC input with a Transpose to NCHW, Conv/BatchNormalization/Relu in NCHW, a
Transpose back before Flatten, Dense as MatMul + Add, tf2onnx-style names with '/' and ':0',
a dynamic batch dimension. Supports the layers benchmarks/models.py uses.
"""
from __future__ import annotations

import numpy as np

OPSET = 17
_ACTS = {"relu": "Relu", "softmax": "Softmax", "sigmoid": "Sigmoid", "tanh": "Tanh"}


class _Writer:
    """Collects nodes and initializers; tracks the current tensor and whether it is NCHW."""

    def __init__(self, scope: str):
        self.scope, self.nodes, self.inits = scope, [], []
        self.x, self.nchw, self.shape = "", False, ()  # shape: the Keras (NHWC) shape, no batch

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, where: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        name = f"{self.scope}/{where}/{op_type}"
        out = f"{name}:0"
        self.nodes.append(helper.make_node(op_type, [self.x, *inputs], [out], name=name, **attrs))
        self.x = out
        return out

    def to_nchw(self, where: str) -> None:
        if not self.nchw and len(self.shape) == 3:
            self.op("Transpose", where, [], perm=[0, 3, 1, 2])
            self.nchw = True

    def to_nhwc(self, where: str) -> None:
        if self.nchw:
            self.op("Transpose", where, [], perm=[0, 2, 3, 1])
            self.nchw = False


def same_pads(size: tuple, kernel: tuple, strides: tuple, padding: str) -> list[int]:
    """ONNX pads [begin..., end...] for TF padding; SAME puts the odd pixel at the end."""
    if padding == "valid":
        return [0] * (2 * len(size))
    total = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(size, kernel, strides)]
    return [t // 2 for t in total] + [t - t // 2 for t in total]


def _activation(w: _Writer, layer) -> None:
    fn = getattr(getattr(layer, "activation", None), "__name__", "linear")
    if fn == "linear":
        return
    if fn not in _ACTS:
        raise ValueError(f"layer {layer.name}: activation {fn} not exported")
    w.op(_ACTS[fn], layer.name, [], **({"axis": -1} if fn == "softmax" else {}))


def _conv(w: _Writer, layer, depthwise: bool) -> None:
    w.to_nchw(f"{layer.name}/transpose_in")
    kernel = np.asarray(layer.get_weights()[0])  # HWIO, or HWIM for depthwise
    kh, kw, cin, m = kernel.shape
    if depthwise:  # out channel c*M + m reads input channel c
        w_oihw, group = kernel.transpose(2, 3, 0, 1).reshape(cin * m, 1, kh, kw), cin
    else:
        w_oihw, group = kernel.transpose(3, 2, 0, 1), 1
    inputs = [w.const(f"{w.scope}/{layer.name}/ReadVariableOp:0", w_oihw.astype(np.float32))]
    if layer.use_bias:
        inputs.append(w.const(f"{w.scope}/{layer.name}/BiasAdd/ReadVariableOp:0",
                              np.asarray(layer.get_weights()[1], np.float32)))
    strides = tuple(layer.strides)
    pads = same_pads(w.shape[:2], (kh, kw), strides, layer.padding)
    w.op("Conv", layer.name, inputs, kernel_shape=[kh, kw], strides=list(strides), pads=pads,
         dilations=list(layer.dilation_rate), group=group)
    _activation(w, layer)


def _batchnorm(w: _Writer, layer) -> None:
    w.to_nchw(f"{layer.name}/transpose_in")
    c = w.shape[-1]
    vals = dict(zip([v.path.split("/")[-1] for v in layer.weights], layer.get_weights()))
    gamma = vals.get("gamma", np.ones(c, np.float32))
    beta = vals.get("beta", np.zeros(c, np.float32))
    names = ("gamma", "beta", "moving_mean", "moving_variance")
    arrays = (gamma, beta, vals["moving_mean"], vals["moving_variance"])
    inputs = [w.const(f"{w.scope}/{layer.name}/{n}:0", np.asarray(a, np.float32)) for n, a in zip(names, arrays)]
    w.op("BatchNormalization", layer.name, inputs, epsilon=float(layer.epsilon))


def _pool(w: _Writer, layer, kind: str) -> None:
    w.to_nchw(f"{layer.name}/transpose_in")
    k, s = tuple(layer.pool_size), tuple(layer.strides)
    attrs = {"kernel_shape": list(k), "strides": list(s), "pads": same_pads(w.shape[:2], k, s, layer.padding)}
    if kind == "AveragePool":
        attrs["count_include_pad"] = 0
    w.op(kind, layer.name, [], **attrs)


def _global_avg(w: _Writer, layer) -> None:
    w.to_nchw(f"{layer.name}/transpose_in")
    w.op("GlobalAveragePool", layer.name, [])
    axes = w.const(f"{w.scope}/{layer.name}/Squeeze/axes:0", np.array([2, 3], np.int64))
    w.op("Squeeze", layer.name, [axes])
    w.nchw = False


def _flatten(w: _Writer, layer) -> None:
    w.to_nhwc(f"{layer.name}/transpose_out")
    shape = w.const(f"{w.scope}/{layer.name}/Const:0", np.array([-1, int(np.prod(w.shape))], np.int64))
    w.op("Reshape", layer.name, [shape])


def _dense(w: _Writer, layer) -> None:
    kernel, *bias = layer.get_weights()
    w.op("MatMul", f"{layer.name}/MatMul",
         [w.const(f"{w.scope}/{layer.name}/MatMul/ReadVariableOp:0", np.asarray(kernel, np.float32))])
    if bias:
        w.op("Add", f"{layer.name}/BiasAdd",
             [w.const(f"{w.scope}/{layer.name}/BiasAdd/ReadVariableOp:0", np.asarray(bias[0], np.float32))])
    _activation(w, layer)


def _relu(w: _Writer, layer) -> None:
    w.op("Relu", layer.name, [])


_EXPORTERS = {
    "Conv2D": lambda w, l: _conv(w, l, False), "DepthwiseConv2D": lambda w, l: _conv(w, l, True),
    "BatchNormalization": _batchnorm, "ReLU": _relu, "Activation": _activation,
    "MaxPooling2D": lambda w, l: _pool(w, l, "MaxPool"),
    "AveragePooling2D": lambda w, l: _pool(w, l, "AveragePool"),
    "GlobalAveragePooling2D": _global_avg, "Flatten": _flatten, "Dense": _dense,
    "Dropout": lambda w, l: None,
}


def to_onnx(model, output_name: str = "logits"):
    """The Keras model (a chain of supported layers) as a checked onnx.ModelProto."""
    import onnx
    from onnx import TensorProto, helper

    w = _Writer(model.name)
    in_layer = model.layers[0]
    in_name = in_layer.name
    w.x, w.shape = in_name, tuple(model.inputs[0].shape[1:])
    for layer in model.layers[1:]:
        kind = type(layer).__name__
        if kind not in _EXPORTERS:
            raise ValueError(f"layer {layer.name}: {kind} not exported")
        _EXPORTERS[kind](w, layer)
        w.shape = tuple(layer.output.shape[1:])
    w.to_nhwc("output/transpose")
    w.nodes.append(helper.make_node("Identity", [w.x], [output_name], name=f"{w.scope}/Identity"))
    dims = ["unk__0", *w.shape]
    graph = helper.make_graph(
        w.nodes, model.name,
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["unk__1", *model.inputs[0].shape[1:]])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, dims)], w.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tf2onnx", producer_version="1.16.1", ir_version=8)
    onnx.checker.check_model(proto)
    return proto


def save(model, path: str) -> None:
    import onnx

    onnx.save(to_onnx(model), path)
