"""Read every TensorFlow form (frozen .pb, SavedModel folder, Keras .h5/.keras) into one
frozen GraphDef plus the names of its inputs and outputs.

TensorFlow is imported only inside these functions, so `gxnpuc --help` and ONNX models work
without it. Constant folding happens later, while lowering (frontend/tf.py), so that every
folded constant keeps the name of the TF node that produced it.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field

from gxnpuc.config import display_path
from gxnpuc.errors import ConfigError, ModelError

INSTALL_HINT = "pip install gxnpuc[tf]"
# What TF prepends to every node of a function inlined from a SavedModel signature.
_INLINE_PREFIX = "StatefulPartitionedCall/"
_VARIABLE_OPS = {"VariableV2", "Variable", "VarHandleOp", "ReadVariableOp", "AssignVariableOp"}
_NOT_OUTPUTS = {"NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert", "SaveV2",
                "RestoreV2", "VarHandleOp", "VariableV2"}


@dataclass
class Frozen:
    """One frozen GraphDef and the user-facing names of its inputs and outputs."""
    graph_def: object  # tf.compat.v1.GraphDef
    inputs: dict[str, str]  # input name -> tensor in graph_def ("X" or "X:k")
    outputs: dict[str, str]  # output name -> tensor in graph_def
    shapes: dict[str, list | None] = field(default_factory=dict)  # input name -> dims (-1 unknown)
    notes: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # TF node name -> the name we show


def import_tf():
    """The tensorflow module, or a one-line ModelError saying how to install it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise ModelError("TensorFlow model", "TensorFlow is not installed",
                         INSTALL_HINT) from None
    return tf


def tensor_name(name: str) -> str:
    """Our tensor naming: output 0 of node X is "X", output k is "X:k"."""
    name = name.lstrip("^")
    return name[:-2] if name.endswith(":0") else name


def node_of(name: str) -> str:
    return re.sub(r":\d+$", "", name.lstrip("^"))


# -- frozen .pb ------------------------------------------------------------------------
def _refuse_saved_model_graph(tf, data: bytes, path: str) -> None:
    """A SavedModel's saved_model.pb (renamed or not) is no GraphDef: say what it is."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString(data)
    except Exception:  # noqa: BLE001 - not a SavedModel either: the caller's line stands
        return
    if sm.meta_graphs:
        raise ModelError(display_path(path), "this is the graph of a SavedModel, not a frozen GraphDef",
                         "give its folder as SAVED_MODEL_DIR") from None


def load_pb(path: str, cfg) -> Frozen:
    tf = import_tf()
    gd = tf.compat.v1.GraphDef()
    from gxnpuc import inputs as bounded

    data = bounded.read_bytes(path, display_path(path), bounded.MAX_MODEL_BYTES, "frozen GraphDef .pb")
    try:
        gd.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and friends on other bytes
        _refuse_saved_model_graph(tf, data, path)
        raise ModelError(display_path(path), f"not a frozen GraphDef ({type(exc).__name__})",
                         "a .pb written by tf.io.write_graph(..., as_text=False); an .onnx file "
                         "goes in ONNX_FILE") from None
    _check_frozen(gd, path)
    placeholders = [n for n in gd.node if n.op == "Placeholder"]
    inputs = {n.name: n.name for n in placeholders}
    shapes = {n.name: _shape_attr(n) for n in placeholders}
    return Frozen(gd, inputs, {t: t for t in _sinks(gd)}, shapes)


def _check_frozen(gd, path: str) -> None:
    if not gd.node:
        raise ModelError(display_path(path), "the GraphDef has no nodes", "a frozen GraphDef .pb")
    variables = sorted(n.name for n in gd.node if n.op in _VARIABLE_OPS)
    if variables:
        raise ModelError(display_path(path), f"the graph is not frozen: it reads "
                         f"{len(variables)} variable(s), e.g. {variables[0]!r}",
                         "freeze it with convert_variables_to_constants_v2, or give SAVED_MODEL_DIR")


def _shape_attr(node) -> list | None:
    shape = node.attr["shape"].shape if "shape" in node.attr else None
    if shape is None or shape.unknown_rank:
        return None
    return [int(d.size) for d in shape.dim]


def _sinks(gd) -> list[str]:
    """Output 0 of every node nothing reads: the outputs of a graph nobody named."""
    read = {node_of(i) for n in gd.node for i in n.input}
    return [n.name for n in gd.node if n.name not in read and n.op not in _NOT_OUTPUTS]


# -- SavedModel -------------------------------------------------------------------------
def load_saved_model(path: str, cfg) -> Frozen:
    tf = import_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ModelError(display_path(path), "no saved_model.pb in this folder",
                         "a folder written by model.export() or tf.saved_model.save()")
    try:
        loaded = tf.saved_model.load(path)
    except Exception as exc:  # objects current TF cannot revive (a Keras 2 optimizer, ...)
        return load_saved_model_v1(path, _first_line(exc))
    sig = _signature(loaded, path)
    frozen = convert_variables_to_constants_v2(sig)
    in_keys = _flat_keys(sig.structured_input_signature, frozen.inputs)
    out_keys = _flat_keys(sig.structured_outputs, frozen.outputs)
    inputs = {k: tensor_name(t.name) for k, t in zip(in_keys, frozen.inputs)}
    outputs = {k: tensor_name(t.name) for k, t in zip(out_keys, frozen.outputs)}
    shapes = {k: (None if t.shape.rank is None else [-1 if d is None else int(d) for d in t.shape])
              for k, t in zip(in_keys, frozen.inputs)}
    gd = frozen.graph.as_graph_def()
    renamed = strip_inline_prefix(gd)
    inputs = {k: _renamed(v, renamed) for k, v in inputs.items()}
    outputs = {k: _renamed(v, renamed) for k, v in outputs.items()}
    return Frozen(gd, inputs, outputs, shapes, renamed=renamed)


def load_saved_model_v1(path: str, why: str) -> Frozen:
    """The TF1 loader (tf.compat.v1.saved_model), which reads only the graph, the variables
    and the signature: a fallback for SavedModels whose Python objects cannot be revived."""
    tf = import_tf()
    from tensorflow.python.saved_model import loader_impl

    try:
        meta_graphs = loader_impl.parse_saved_model(path).meta_graphs
        tags = list(next((m.meta_info_def.tags for m in meta_graphs if "serve" in m.meta_info_def.tags),
                         meta_graphs[0].meta_info_def.tags))
        graph = tf.Graph()
        with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, tags, path)
            sig = _signature_v1(meta.signature_def, path)
            outputs = {k: tensor_name(v.name) for k, v in sorted(sig.outputs.items())}
            nodes = sorted({node_of(t) for t in outputs.values()})
            gd = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, _inline_functions(graph, nodes), nodes)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(display_path(path), f"cannot load the SavedModel ({why}; the TF1 loader: "
                         f"{_first_line(exc)})", "a folder written by model.export() or "
                         "tf.saved_model.save()") from None
    renamed = strip_inline_prefix(gd)
    inputs = {k: _renamed(tensor_name(v.name), renamed) for k, v in sorted(sig.inputs.items())}
    outputs = {k: _renamed(v, renamed) for k, v in outputs.items()}
    shapes = {k: None if v.tensor_shape.unknown_rank else [int(d.size) for d in v.tensor_shape.dim]
              for k, v in sig.inputs.items()}
    note = f"SavedModel read with the TF1 loader (tf.saved_model.load: {why})"
    return Frozen(gd, inputs, outputs, shapes, [note], renamed)


def _inline_functions(graph, outputs: list[str]):
    """The GraphDef with its function calls (StatefulPartitionedCall) inlined by grappler, so
    that the v1 freezer sees every variable read."""
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer

    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    meta.collection_def["train_op"].node_list.value.extend(outputs)
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.optimizers.append("function")
    config.graph_options.rewrite_options.min_graph_nodes = -1
    return tf_optimizer.OptimizeGraph(config, meta)


def _signature_v1(defs, path: str):
    """The serving_default signature of a {name: signature} mapping, or its only one."""
    if "serving_default" in defs:
        return defs["serving_default"]
    if len(defs) == 1:
        return next(iter(defs.values()))
    raise ModelError(display_path(path), f"no serving_default signature (found: {sorted(defs) or 'none'})",
                     "export with model.export() or tf.saved_model.save(obj, dir, signatures=fn)")


def _signature(loaded, path: str):
    return _signature_v1(dict(getattr(loaded, "signatures", {}) or {}), path)


def _flat_keys(structure, tensors) -> list[str]:
    """Names for the flattened leaves of a signature structure: its dict keys (tf.nest
    flattens dicts in sorted key order) where it has them, else the graph's tensor names."""
    if isinstance(structure, tuple) and len(structure) == 2 and not structure[0]:
        structure = structure[1]  # (args, kwargs) of an input signature: signatures use kwargs
    keys = sorted(structure) if isinstance(structure, dict) else []
    if len(keys) != len(tensors) or not all(isinstance(k, str) and k for k in keys):
        return [tensor_name(t.name) for t in tensors]
    return keys


def strip_inline_prefix(gd) -> dict[str, str]:
    """Drop TF's "StatefulPartitionedCall/" inlining prefix where no name collides.

    So a SavedModel shows the same weight names as the Keras file it was exported from.
    Returns old node name -> new for the nodes that changed.
    """
    names = {n.name for n in gd.node}
    renames = {}
    for n in gd.node:
        new = n.name
        while new.startswith(_INLINE_PREFIX) and new[len(_INLINE_PREFIX):] not in names:
            new = new[len(_INLINE_PREFIX):]
        if new != n.name:
            renames[n.name] = new
            names.add(new)
    for n in gd.node:
        n.name = renames.get(n.name, n.name)
        for k, i in enumerate(n.input):
            ctrl, base = ("^", i[1:]) if i.startswith("^") else ("", i)
            node, sep, port = base.partition(":")
            if node in renames:
                n.input[k] = ctrl + renames[node] + sep + port
        _rename_colocation(n, renames)
    return renames


def _rename_colocation(node, renames: dict[str, str]) -> None:
    """Colocation hints (`_class: loc:@X`) follow the renamed nodes, so TensorFlow can import
    the GraphDef again (the --eval oracle does)."""
    if "_class" not in node.attr:
        return
    locs = node.attr["_class"].list.s
    for k, loc in enumerate(locs):
        name = loc.decode(errors="replace")
        if name.startswith("loc:@") and name[5:] in renames:
            locs[k] = ("loc:@" + renames[name[5:]]).encode()


def _renamed(tensor: str, renames: dict[str, str]) -> str:
    node, sep, port = tensor.partition(":")
    return renames.get(node, node) + sep + port


# -- Keras --------------------------------------------------------------------------------
def load_keras(path: str, cfg, resolve_shape) -> Frozen:
    """Load a .keras/.h5 file safely, trace it with static input shapes, freeze it.

    resolve_shape(name, dims, notes) turns Keras input dims (None unknown) into a static shape.
    """
    tf = import_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if not os.path.isfile(path):
        raise ConfigError(display_path(path), "KERAS_FILE does not exist", "a .keras or .h5 file")
    allow_lambda = bool(getattr(cfg, "keras_allow_lambda", False))
    lambdas = find_lambda_layers(path)
    if lambdas and not allow_lambda:
        listed = ", ".join(repr(n) for n in lambdas)
        raise ModelError(display_path(path), f"Lambda layer(s) {listed} hold Python code that "
                         "loading would run", "rebuild them as built-in layers, or set "
                         "KERAS_ALLOW_LAMBDA: true if you trust this file")
    model = _load_keras_model(path, safe=not allow_lambda)
    notes: list[str] = []
    in_names = stable_input_names(path, [t.name for t in model.inputs])
    shapes = [resolve_shape(n, [-1 if d is None else d for d in t.shape], notes)
              for n, t in zip(in_names, model.inputs)]
    specs = [tf.TensorSpec(s, t.dtype, name=n) for n, s, t in zip(in_names, shapes, model.inputs)]
    single = len(specs) == 1

    @tf.function
    def infer(*xs):
        return model(xs[0] if single else list(xs), training=False)

    frozen = convert_variables_to_constants_v2(infer.get_concrete_function(*specs))
    out_names = list(getattr(model, "output_names", None) or [])
    if len(out_names) != len(frozen.outputs):
        out_names = [f"output_{k}" for k in range(len(frozen.outputs))]
    inputs = {n: tensor_name(t.name) for n, t in zip(in_names, frozen.inputs)}
    outputs = {n: tensor_name(t.name) for n, t in zip(out_names, frozen.outputs)}
    return Frozen(frozen.graph.as_graph_def(), inputs, outputs,
                  {n: list(s) for n, s in zip(in_names, shapes)}, notes)


def stable_input_names(path: str, names: list[str]) -> list[str]:
    """The input names a user writes in INPUT_OPS, read from the file's config: a functional
    model's input layers, a Sequential's InputLayer, or (a Keras 2 Sequential that gave its
    first layer `batch_input_shape`) `<first layer>_input`, as Keras 2 named it. Keras 3 names
    such an input after a global counter (`keras_tensor_596`), different on every load."""
    config = _keras_config(path).get("config") or {}
    found: list[str] = []
    spec = config.get("input_layers") if isinstance(config, dict) else None
    if isinstance(spec, list) and spec:
        entries = [spec] if isinstance(spec[0], str) else spec
        found = [str(e[0]) for e in entries if isinstance(e, list) and e]
    elif isinstance(config, dict) and isinstance(config.get("layers"), list) and config["layers"]:
        first = config["layers"][0] if isinstance(config["layers"][0], dict) else {}
        name = str((first.get("config") or {}).get("name", ""))
        found = [name if first.get("class_name") == "InputLayer" else f"{name}_input"] if name else []
    return found if len(found) == len(names) and len(set(found)) == len(found) else names


def _load_keras_model(path: str, safe: bool):
    import keras

    try:
        model = keras.models.load_model(path, safe_mode=safe, compile=False)
        model.inputs[0]  # noqa: B018 - a Sequential model saved unbuilt has no inputs
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError for many reasons
        raise ModelError(display_path(path), f"Keras cannot load this file ({_first_line(exc)})",
                         "a .keras or .h5 file saved by model.save() from a built model; custom "
                         "layers are not supported") from None
    return model


def find_lambda_layers(path: str) -> list[str]:
    """Names of the Lambda layers in a .keras/.h5 file, read from its JSON config only."""
    config = _keras_config(path)
    found: list[str] = []
    _walk_lambdas(config, found)
    return found


def _keras_config(path: str):
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read("config.json"))
        import h5py

        with h5py.File(path, "r") as fh:
            raw = fh.attrs.get("model_config")
        raw = raw.decode() if isinstance(raw, bytes) else raw
        return json.loads(raw) if raw else {}
    except (OSError, KeyError, ValueError):
        return {}  # load_model reports unreadable files with Keras' own words


def _walk_lambdas(obj, found: list[str]) -> None:
    if isinstance(obj, dict):
        if obj.get("class_name") == "Lambda":
            found.append(str((obj.get("config") or {}).get("name", "?")))
        for v in obj.values():
            _walk_lambdas(v, found)
    elif isinstance(obj, list):
        for v in obj:
            _walk_lambdas(v, found)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
