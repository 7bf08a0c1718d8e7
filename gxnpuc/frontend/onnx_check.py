"""What the ONNX checker and the op semantics reject, refused before lowering.

onnx.checker.check_model is not run as a whole (it also refuses harmless exporter quirks
that compile correctly); these are the rules whose violation would otherwise compile into a
wrong or broken model: an opset import this onnx knows, at least one output, named and typed
real-valued inputs, no sparse initializers, attributes of the type the op's schema says,
and Transpose perms that are permutations.
"""
from __future__ import annotations

from gxnpuc.errors import ModelError

# TensorProto element types an input may have: the real numbers and bool
REAL_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
ONNX_DOMAINS = ("", "ai.onnx")
_VALID = "a model that onnx.checker.check_model accepts"


def validate(model, where: str) -> None:
    """Raise one ModelError for the first rule the model breaks."""
    opset = _opset(model, where)
    g = model.graph
    if not g.output:
        raise ModelError(where, "the graph has no outputs", "an ONNX graph with at least one output")
    if len(g.sparse_initializer):
        names = ", ".join(repr(s.values.name) for s in g.sparse_initializer[:3])
        raise ModelError(where, f"holds sparse initializer(s) {names}, which gxnpuc does not read",
                         "dense initializers: onnx.numpy_helper.to_array(...) and save them as initializers")
    inits = {t.name for t in g.initializer}
    for vi in g.input:
        if vi.name not in inits:
            _check_input(vi, where)
    for vi in g.output:
        if not vi.name:
            raise ModelError(where, "a graph output has an empty name", "named outputs")
    for k, node in enumerate(g.node):
        if node.domain in ONNX_DOMAINS:
            _check_node(node, k, opset, where)


def _opset(model, where: str) -> int:
    import onnx

    versions = [o.version for o in model.opset_import if o.domain in ONNX_DOMAINS]
    newest = onnx.defs.onnx_opset_version()
    if not versions:
        raise ModelError(where, "the model imports no ONNX opset (opset_import is empty)",
                         f"a model saved with an opset between 1 and {newest}")
    if model.ir_version > onnx.IR_VERSION:
        raise ModelError(where, f"IR version {model.ir_version} is newer than any this gxnpuc knows",
                         f"IR version {onnx.IR_VERSION} or older: save with an older onnx")
    if max(versions) > newest:
        raise ModelError(where, f"opset {max(versions)} is newer than any this gxnpuc knows",
                         f"opset 1 to {newest}: export with an older opset_version")
    return max(versions)


def _check_input(vi, where: str) -> None:
    if not vi.name:
        raise ModelError(where, "a graph input has an empty name", "named inputs")
    at = f"{where}: input {vi.name!r}"
    if not vi.type.HasField("tensor_type"):
        raise ModelError(at, "is not a tensor (a sequence, map or optional)", "tensor inputs")
    elem = vi.type.tensor_type.elem_type
    if elem not in REAL_TYPES:
        import onnx

        name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else str(elem)
        raise ModelError(at, f"has element type {name}", "real numbers: float32, float16, int8 ... or bool")


def _check_node(node, k: int, opset: int, where: str) -> None:
    import onnx

    at = f"{where}: node {node.name or f'{node.op_type}_{k}'!r} [{node.op_type}]"
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return  # an op onnx does not know: lowering lists it as unsupported
    for a in node.attribute:
        spec = schema.attributes.get(a.name)
        if spec is not None and a.type != spec.type:
            got = onnx.AttributeProto.AttributeType.Name(a.type)
            want = onnx.AttributeProto.AttributeType.Name(spec.type)
            raise ModelError(at, f"attribute {a.name!r} is {got}", f"{want}, as the {node.op_type} schema says")
    if node.op_type == "Transpose":
        perm = [a for a in node.attribute if a.name == "perm"]
        if perm and sorted(perm[0].ints) != list(range(len(perm[0].ints))):
            raise ModelError(at, f"perm {list(perm[0].ints)} is not a permutation",
                             f"each axis 0..{len(perm[0].ints) - 1} once")
