"""Read a .tflite flatbuffer (with the `tflite` schema package) into plain Python values.

Nothing here knows about the IR: a TfliteModel holds, per subgraph, the tensors (name, shape,
numpy dtype, constant data as stored, quantisation, sparsity) and the operators (op type,
tensor indices, options as a dict of plain values with snake_case keys and enum names). Any
failure of the parser on a corrupt file becomes one ModelError line. The helpers at the end
(unique tensor names, dequantisation) serve the front end, its variable handling and the oracle.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from gxnpuc.errors import ModelError

# schema TensorType -> numpy dtype name (int4, bfloat16, strings, resources have none)
DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
          9: "int8", 10: "float64", 12: "uint64", 15: "uint32", 16: "uint16"}
RESOURCE, VARIANT = 13, 14
# options fields holding a schema enum -> the enum class name in the tflite package
_ENUM_FIELDS = {"padding": "Padding", "fused_activation_function": "ActivationFunctionType",
                "mode": "MirrorPadMode", "weights_format": "FullyConnectedOptionsWeightsFormat",
                "in_data_type": "TensorType", "out_data_type": "TensorType",
                "reduce_type": "ReduceWindowFunction"}
_ACCEPTED = "a .tflite file written by tf.lite.TFLiteConverter (TensorFlow Lite flatbuffer, 'TFL3')"


@dataclass
class TfTensor:
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]  # shape_signature: -1 for a dimension the model leaves open
    dtype: str  # numpy dtype name, "resource", or "type<N>" for types numpy cannot hold
    data: np.ndarray | None = None  # constant value as stored (int8, fp16, ...), shaped
    scale: np.ndarray | None = None  # quantisation: real = scale * (q - zero_point)
    zero_point: np.ndarray | None = None
    axis: int = 0  # quantized_dimension (per-channel scales)
    sparsity: object = None  # tflite.SparsityParameters of a sparse constant
    variable: bool = False


@dataclass
class TfOp:
    op_type: str  # builtin name (CONV_2D) or the custom code (Convolution2DTransposeBias)
    inputs: list[int]  # -1 for an omitted optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)
    custom: bytes = b""  # custom options, as stored


@dataclass
class TfSubgraph:
    name: str
    tensors: list[TfTensor]
    ops: list[TfOp]
    inputs: list[int]
    outputs: list[int]


@dataclass
class TfliteModel:
    subgraphs: list[TfSubgraph]
    description: str = ""


def read(path: str, shown: str) -> TfliteModel:
    """The model in the file at `path` (`shown` is how errors name it)."""
    try:
        import tflite
    except ImportError:
        raise ModelError(shown, "reading .tflite files needs the `tflite` package",
                         "pip install tflite, or pip install 'gxnpuc[tflite]'") from None
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as exc:
        raise ModelError(shown, f"cannot be read ({exc.strerror or exc})", "a readable file") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError(shown, "not a TensorFlow Lite flatbuffer (no 'TFL3' identifier)", _ACCEPTED)
    try:
        model = tflite.Model.GetRootAs(buf, 0)
        codes = [_op_name(model.OperatorCodes(k), tflite) for k in range(model.OperatorCodesLength())]
        buffers = [model.Buffers(k) for k in range(model.BuffersLength())]
        subgraphs = [_subgraph(model.Subgraphs(k), codes, buffers, buf, tflite)
                     for k in range(model.SubgraphsLength())]
        desc = (model.Description() or b"").decode("utf-8", "replace")
    except ModelError:
        raise
    except Exception as exc:  # the generated accessors raise many types on corrupt offsets
        why = str(exc) if isinstance(exc, ValueError) else "offsets or sizes point outside the file"
        raise ModelError(shown, f"corrupt TensorFlow Lite flatbuffer ({why})", _ACCEPTED) from None
    if not subgraphs:
        raise ModelError(shown, "the TensorFlow Lite model has no subgraph", _ACCEPTED)
    return TfliteModel(subgraphs, desc)


def _op_name(code, tflite) -> str:
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"CUSTOM").decode("utf-8", "replace")
    return tflite.BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")


def _subgraph(sg, codes: list[str], buffers: list, buf: bytes, tflite) -> TfSubgraph:
    tensors = [_tensor(sg.Tensors(k), buffers, buf) for k in range(sg.TensorsLength())]
    ops = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        ins = [int(i) for i in _ints(op.InputsAsNumpy())]
        outs = [int(i) for i in _ints(op.OutputsAsNumpy())]
        bad = [i for i in ins + outs if i >= len(tensors) or i < -1]
        if bad or op.OpcodeIndex() >= len(codes):
            raise ValueError(f"operator {k} refers to tensor {bad[:1]} or opcode {op.OpcodeIndex()}")
        custom = bytes(_ints(op.CustomOptionsAsNumpy()).astype(np.uint8).tobytes())
        ops.append(TfOp(codes[op.OpcodeIndex()], ins, outs, _options(op, tflite), custom))
    ins = [int(i) for i in _ints(sg.InputsAsNumpy())]
    outs = [int(i) for i in _ints(sg.OutputsAsNumpy())]
    if any(not 0 <= i < len(tensors) for i in ins + outs):
        raise ValueError("subgraph input/output index out of range")
    return TfSubgraph((sg.Name() or b"").decode("utf-8", "replace"), tensors, ops, ins, outs)


def _ints(v) -> np.ndarray:
    """A vector accessor's result: the generated code returns 0 for an absent vector."""
    return np.asarray(v, np.int64).reshape(-1) if not isinstance(v, int) else np.zeros(0, np.int64)


def _tensor(t, buffers: list, buf: bytes) -> TfTensor:
    shape = tuple(int(d) for d in _ints(t.ShapeAsNumpy()))
    sig = tuple(int(d) for d in _ints(t.ShapeSignatureAsNumpy())) or shape
    ttype = int(t.Type())
    dtype = DTYPES.get(ttype, "resource" if ttype == RESOURCE else f"type{ttype}")
    out = TfTensor((t.Name() or b"").decode("utf-8", "replace"), shape, sig, dtype,
                   variable=bool(t.IsVariable()), sparsity=t.Sparsity())
    b = int(t.Buffer())
    if not 0 <= b < len(buffers):
        raise ValueError(f"tensor {out.name!r} refers to buffer {b}")
    raw = _buffer_bytes(buffers[b], buf)
    if raw is not None and len(raw) and dtype in DTYPES.values():
        out.data = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(dtype)
        if out.sparsity is None:
            out.data = out.data.reshape(shape)
    q = t.Quantization()
    if q is not None and q.ScaleLength():
        out.scale = np.asarray(q.ScaleAsNumpy(), np.float64)
        out.zero_point = _ints(q.ZeroPointAsNumpy())
        out.axis = int(q.QuantizedDimension())
    return out


def _buffer_bytes(b, buf: bytes) -> bytes | None:
    """A buffer's bytes: inside the flatbuffer, or (models over 2 GB) at an offset in the file."""
    off = int(b.Offset()) if hasattr(b, "Offset") else 0
    if off > 1:
        size = int(b.Size())
        if off + size > len(buf):
            raise ValueError("buffer beyond the end of the file")
        return buf[off:off + size]
    data = b.DataAsNumpy()
    return None if isinstance(data, int) else data.tobytes()


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _options(op, tflite) -> dict:
    """BuiltinOptions (and BuiltinOptions2) as {snake_case field: plain value}."""
    out = {}
    for kind, table_of, enum in ((op.BuiltinOptionsType(), op.BuiltinOptions, tflite.BuiltinOptions),
                                 (op.BuiltinOptions2Type(), op.BuiltinOptions2, tflite.BuiltinOptions2)):
        if not kind:
            continue
        cls_name = next((k for k, v in vars(enum).items() if v == kind and not k.startswith("_")), None)
        table = table_of()
        if cls_name is None or table is None or not hasattr(tflite, cls_name):
            continue
        opts = getattr(tflite, cls_name)()
        opts.Init(table.Bytes, table.Pos)
        out.update(_fields(opts, tflite))
    return out


def _fields(opts, tflite) -> dict:
    """Every scalar, string and numeric-vector field of a generated options table."""
    cls, out = type(opts), {}
    for name, fn in vars(cls).items():
        if not callable(fn) or name == "Init" or name.startswith(("GetRootAs", "_")) or \
                name.endswith(("AsNumpy", "Length", "IsNone", "BufferHasIdentifier")):
            continue
        if hasattr(cls, name + "AsNumpy"):
            vec = getattr(opts, name + "AsNumpy")()
            value = [] if isinstance(vec, int) else np.asarray(vec).reshape(-1).tolist()
        elif fn.__code__.co_argcount == 1:
            value = fn(opts)
        else:
            continue
        key = _snake(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if key in _ENUM_FIELDS and isinstance(value, int):
            enum = getattr(tflite, _ENUM_FIELDS[key], None)
            value = next((k for k, v in vars(enum).items() if v == value and not k.startswith("_")),
                         value) if enum is not None else value
        out[key] = value
    return out


# -- helpers the front end, its state handling and the oracle share ----------------------------
def unique_names(tensors: list[TfTensor]) -> list[str]:
    """The TFLite tensor names, with `_<index>` added to a repeated or empty one."""
    seen: dict[str, int] = {}
    for t in tensors:
        seen[t.name] = seen.get(t.name, 0) + 1
    return [t.name if t.name and seen[t.name] == 1 else f"{t.name or 'tensor'}_{k}"
            for k, t in enumerate(tensors)]


def dequantize(t: TfTensor) -> np.ndarray:
    """The real value of a constant: float32 for quantised and float16 data, else as stored."""
    data = np.asarray(t.data)
    if t.scale is not None and data.dtype.kind in "iu":
        shape = [1] * data.ndim
        if t.scale.size > 1:
            shape[t.axis] = t.scale.size
        scale = t.scale.reshape(shape)
        given = np.zeros(0) if t.zero_point is None else t.zero_point
        zp = (given if given.size == t.scale.size else np.zeros(t.scale.size)).reshape(shape)
        return ((data.astype(np.float64) - zp) * scale).astype(np.float32)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data


def scale_and_zero_point(t: TfTensor) -> tuple[float, int]:
    """The (first) scale and zero point of a quantised tensor."""
    scale = float(np.ravel(t.scale)[0]) if t.scale is not None and t.scale.size else 0.0
    zp = int(np.ravel(t.zero_point)[0]) if t.zero_point is not None and t.zero_point.size else 0
    return scale, zp
