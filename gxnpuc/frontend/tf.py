"""TensorFlow front end: any TF form -> one frozen GraphDef (tf_load.py) -> FNodes -> NPU IR.

Constants are folded while lowering with the IR's own kernels (LowerCtx.emit), so a folded
constant keeps the name of the TF node that produced it (a Keras Conv1D weight is
`.../convolution/ExpandDims_1`, [1, k, c_in, c_out]); an Identity of a constant (the
ReadVariableOp chains of a frozen TF2 graph) renames the constant, as grappler does. A TF op
with no lowering whose inputs are all constant is evaluated by TensorFlow itself.
"""
from __future__ import annotations

import numpy as np

from gxnpuc.config.names import ConfigNameError
from gxnpuc.errors import ConfigError, ModelError
from gxnpuc.frontend import tf_load
from gxnpuc.frontend.common import FNode, LowerCtx, lower
from gxnpuc.frontend.tf_load import Frozen, node_of, tensor_name
from gxnpuc.frontend.tf_rewrite import collapse_loops, fuse_dilated_convs, resolve_switches, topological
from gxnpuc.ir import Graph

_LOADERS = {"PB_FILE": "pb", "SAVED_MODEL_DIR": "saved_model", "KERAS_FILE": "keras"}


def to_ir(cfg) -> Graph:
    """Read the TF model named by cfg.model_key/cfg.model_path and lower it to the IR."""
    from gxnpuc.ops import TF_LOWERINGS
    from gxnpuc.ops.rejected import reject_tf_loops

    overrides = {tensor_name(k): v for k, v in dict(cfg.input_ops or {}).items()}  # `x:0` is `x`
    frozen = load(cfg, overrides)
    fnodes = topological(graph_def_to_fnodes(frozen.graph_def))
    fnodes = collapse_loops(fuse_dilated_convs(resolve_switches(fnodes)))
    reject_tf_loops(fnodes)  # while loops (recurrent layers): one clear line, not a cycle error
    ctx = LowerCtx("tensorflow")
    ctx.graph.meta.update(source=cfg.model_path, form=_LOADERS[cfg.model_key])
    ctx.graph.meta["notes"].extend(frozen.notes)
    for old, new in frozen.renamed.items():
        ctx.graph.record_alias(old, new)
    by_node = {fn.name: fn for fn in fnodes}
    outputs = _bind_outputs(ctx, frozen, list(cfg.output_ops or ()), by_node)
    cut = _cut_tensors(frozen, overrides, by_node)
    kept = [fn for fn in fnodes if not cut.intersection(fn.outputs)]
    _add_inputs(ctx, frozen, kept, outputs, cut, overrides, cfg)
    table = _Table(TF_LOWERINGS, {n.name: n for n in frozen.graph_def.node})
    return lower(ctx, kept, outputs, table)


def load(cfg, overrides: dict | None = None) -> Frozen:
    """The frozen GraphDef of any TF form (see tf_load)."""
    form = _LOADERS.get(cfg.model_key)
    if form is None:
        raise ConfigError(cfg.model_key, "is not a TensorFlow model key", ", ".join(_LOADERS))
    if form == "pb":
        return tf_load.load_pb(cfg.model_path, cfg)
    if form == "saved_model":
        return tf_load.load_saved_model(cfg.model_path, cfg)
    overrides = overrides if overrides is not None else dict(cfg.input_ops or {})
    return tf_load.load_keras(cfg.model_path, cfg,
                              lambda name, dims, notes: resolve_shape(name, dims, overrides, notes))


# -- GraphDef -> FNodes ---------------------------------------------------------------------
def graph_def_to_fnodes(gd) -> list[FNode]:
    """One FNode per NodeDef: data inputs only ("^X" control inputs dropped), plain attrs."""
    tf = tf_load.import_tf()
    fnodes = []
    for node in gd.node:
        attrs = {k: attr_value(v, tf) for k, v in node.attr.items() if not k.startswith("_")}
        inputs = [tensor_name(i) for i in node.input if not i.startswith("^")]
        count = num_outputs(node.op, attrs)
        outputs = [node.name] + [f"{node.name}:{k}" for k in range(1, count)]
        fnodes.append(FNode(node.name, node.op, inputs, outputs, attrs))
    return fnodes


def attr_value(v, tf):
    """An AttrValue as plain Python: str, int, float, bool, dtype name, dims, ndarray, lists."""
    kind = v.WhichOneof("value")
    if kind == "s":
        return v.s.decode("utf-8", "replace")
    if kind in ("i", "f", "b"):
        return getattr(v, kind)
    if kind == "type":
        return _dtype_name(v.type, tf)
    if kind == "shape":
        return None if v.shape.unknown_rank else [int(d.size) for d in v.shape.dim]
    if kind == "tensor":
        return tf.make_ndarray(v.tensor)
    if kind == "func":
        return v.func.name
    if kind == "list":
        lst = v.list
        if lst.s:
            return [x.decode("utf-8", "replace") for x in lst.s]
        if lst.type:
            return [_dtype_name(t, tf) for t in lst.type]
        for name in ("i", "f", "b"):
            if getattr(lst, name):
                return list(getattr(lst, name))
        if lst.shape:
            return [None if s.unknown_rank else [int(d.size) for d in s.dim] for s in lst.shape]
        return []
    return None


def _dtype_name(enum: int, tf) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except (TypeError, ValueError):
        return str(enum)


def num_outputs(op_type: str, attrs: dict) -> int:
    """How many outputs a node of this op type has, from TF's registered OpDef."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op_type)
    if op_def is None:
        return 1
    count = 0
    for arg in op_def.output_arg:
        if arg.number_attr:
            count += int(attrs.get(arg.number_attr, 1))
        elif arg.type_list_attr:
            count += len(attrs.get(arg.type_list_attr, []) or [])
        else:
            count += 1
    return max(count, 1)


# -- inputs and outputs ---------------------------------------------------------------------
def resolve_shape(name: str, dims, overrides: dict, notes: list) -> tuple[int, ...]:
    """A static shape for input `name`: INPUT_OPS wins; unknown batch -> 1 (noted)."""
    given = overrides.get(name)
    if given is not None:
        return _checked_override(name, dims, [int(d) for d in given])
    if dims is None:
        raise ConfigError(f"input {name!r}", "has an unknown rank",
                          f"give its static shape in INPUT_OPS, e.g. INPUT_OPS: {{{name}: [1, ...]}}")
    shape = []
    for k, d in enumerate(dims):
        if d is not None and d >= 0:
            shape.append(int(d))
        elif k == 0:
            shape.append(1)
            notes.append(f"input {name!r}: unknown batch dimension set to 1")
        else:
            example = ", ".join(str(x) if x is not None and x >= 0 else "N" for x in [1, *dims[1:]])
            raise ConfigError(f"input {name!r}", f"dimension {k} is unknown",
                              f"give the static shape in INPUT_OPS, e.g. INPUT_OPS: {{{name}: [{example}]}}")
    return tuple(shape)


def _checked_override(name: str, dims, given: list[int]) -> tuple[int, ...]:
    bad = dims is not None and (len(dims) != len(given) or any(
        d is not None and d >= 0 and d != g for d, g in zip(dims, given)))
    if bad or any(g <= 0 for g in given):
        model = "?" if dims is None else [d if d is not None and d >= 0 else None for d in dims]
        raise ConfigNameError("INPUT_OPS", f"shape {given} of {name!r} does not fit the model's input "
                              f"shape {model}", "same rank; None dims may be any positive size",
                              "INPUT_OPS", name)  # frontend.load() adds the config line
    return tuple(given)


def _bind_outputs(ctx: LowerCtx, frozen: Frozen, wanted: list[str], by_node: dict) -> list[str]:
    """Output names (OUTPUT_OPS, else the model's own), each an alias of its graph tensor."""
    names = wanted or list(frozen.outputs)
    if not names:
        raise ModelError("TensorFlow model", "the graph has no outputs", "give OUTPUT_OPS")
    for name in names:
        tensor = _find_tensor(name, frozen.outputs, by_node, "OUTPUT_OPS")
        if tensor != name:
            ctx.set_alias(name, tensor)
    return names


def _find_tensor(name: str, keys: dict, by_node: dict, key: str) -> str:
    """The graph tensor for a signature key / Keras name, a node name, or "node:k"."""
    if name in keys:
        return keys[name]
    tensor = tensor_name(name)
    fn = by_node.get(node_of(tensor))
    if fn is not None and tensor in fn.outputs:
        return tensor
    from gxnpuc.config import names

    role = "inputs" if key == "INPUT_OPS" else "outputs"
    raise names.unknown(key, name, list(keys) + list(by_node), "is not a tensor of the model",
                        f"model {role}: " + ", ".join(list(keys)[:8]))


def _cut_tensors(frozen: Frozen, overrides: dict, by_node: dict) -> set[str]:
    """INPUT_OPS names that are inner nodes: the graph is cut there and they become inputs."""
    cut = set()
    for name in overrides:
        if name not in frozen.inputs:
            cut.add(name)
            _find_tensor(name, frozen.inputs, by_node, "INPUT_OPS")
    return cut


def _add_inputs(ctx, frozen: Frozen, kept: list[FNode], outputs: list[str], cut: set,
                overrides: dict, cfg=None) -> None:
    """Add the placeholders (and cut tensors) that the outputs need, with static shapes."""
    from gxnpuc.frontend.common import cone

    needed = cone(kept, [ctx.resolve(o) for o in outputs])
    used = {i for fn in needed for i in fn.inputs} | {ctx.resolve(o) for o in outputs}
    by_tensor = {t: k for k, t in frozen.inputs.items()}
    notes = ctx.graph.meta["notes"]
    values = dict(getattr(cfg, "input_values", {}) or {})
    for name in values:
        if name not in frozen.inputs:
            from gxnpuc.config import names

            raise names.unknown("INPUT_VALUES", name, list(frozen.inputs), "is not an input of the model",
                                "model inputs: " + ", ".join(list(frozen.inputs)[:8]))
    for fn in needed:
        if fn.op_type == "Placeholder" and fn.name in by_tensor:
            name = by_tensor[fn.name]
            if name in values:
                _add_fixed(ctx, name, fn.name, values[name], fn.attrs.get("dtype", "float32"))
                continue
            shape = resolve_shape(name, frozen.shapes.get(name), overrides, notes)
            _add_input(ctx, name, fn.name, shape, fn.attrs.get("dtype", "float32"))
    for name in sorted(cut):
        if tensor_name(name) in used:
            _add_input(ctx, name, tensor_name(name), resolve_shape(name, None, overrides, notes),
                       "float32")


def _add_fixed(ctx, name: str, tensor: str, value, dtype: str) -> None:
    """An INPUT_VALUES input: a constant in the placeholder's dtype."""
    ctx.add_const(name, np.asarray(value, dtype=dtype if dtype in ("float32", "float16", "int32",
                                                                   "int64", "bool") else "float32"))
    if tensor != name:
        ctx.set_alias(tensor, name)
    ctx.graph.meta["notes"].append(f"input {name!r} fixed to {value!r} (INPUT_VALUES)")


def _add_input(ctx, name: str, tensor: str, shape, dtype: str) -> None:
    ctx.add_input(name, shape, dtype if dtype in ("float32", "float16", "int32", "int64", "bool")
                  else "float32")
    if tensor != name:
        ctx.set_alias(tensor, name)


# -- the lowering table, with TensorFlow itself folding ops we have no lowering for -----------
class _Table(dict):
    """TF_LOWERINGS, plus a fallback: an op without lowering whose inputs are all constant
    is evaluated by TensorFlow (its own constant folding); otherwise it is unsupported."""

    def __init__(self, lowerings: dict, node_defs: dict):
        super().__init__(lowerings)
        self.node_defs = node_defs

    def get(self, op_type, default=None):
        low = super().get(op_type)
        return low if low is not None else self._fold_or_reject

    def _fold_or_reject(self, ctx: LowerCtx, fn: FNode) -> None:
        values = [ctx.const(i) for i in fn.inputs]
        if not fn.inputs or any(v is None for v in values):
            return ctx.reject("no lowering for this op type")
        if _is_stateful(fn.op_type):  # random ops, variables: folding would freeze one draw
            return ctx.reject("a stateful op cannot be folded into a constant")
        try:
            results = tf_eval(self.node_defs[fn.name], values)
        except Exception as exc:  # TF raises many types for ops it cannot run here
            return ctx.reject(f"cannot be folded ({type(exc).__name__})")
        for name, value in zip(fn.outputs, results):
            ctx.add_const(name, np.asarray(value))


def _is_stateful(op_type: str) -> bool:
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op_type)
    return op_def is None or op_def.is_stateful


def tf_eval(node_def, values: list[np.ndarray]) -> list[np.ndarray]:
    """Run one NodeDef on constant inputs with TensorFlow; all its outputs."""
    tf = tf_load.import_tf()
    gd = tf.compat.v1.GraphDef()
    for k, v in enumerate(values):
        const = gd.node.add(name=f"in{k}", op="Const")
        const.attr["dtype"].type = tf.as_dtype(v.dtype).as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(v))
    node = gd.node.add()
    node.CopyFrom(node_def)
    node.name, node.device = "node", ""
    del node.input[:]
    node.input.extend(f"in{k}" for k in range(len(values)))
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    outs = graph.get_operation_by_name("node").outputs
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        return sess.run(list(outs))
