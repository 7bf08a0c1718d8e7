"""The reference: run the user's model in its source framework on the same inputs.

ONNX models run in onnxruntime; TensorFlow models (frozen .pb, SavedModel, Keras) are loaded
exactly as the TensorFlow front end loads them (one frozen GraphDef) and run by TensorFlow;
TFLite models run in the LiteRT interpreter (oracle_tflite.py).
Both are imported lazily, and only here. Outputs come back keyed by the IR's output names,
stacked over samples: {name: [samples, *ir_shape]}.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gxnpuc.errors import GxnpucError, ModelError

if TYPE_CHECKING:
    from gxnpuc.config import Config
    from gxnpuc.ir import Graph

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def name(cfg: Config) -> str:
    """The framework label shown in the report."""
    if cfg.model_key == "TFLITE_FILE":
        from gxnpuc.evaluate.oracle_tflite import NAME

        return NAME
    return "onnxruntime" if cfg.model_key == "ONNX_FILE" else "tensorflow"


def run(cfg: Config, graph: Graph, feeds: dict[str, np.ndarray], progress=None) -> dict[str, np.ndarray]:
    """Framework outputs for batched feeds ({input: [samples, *shape]}), one sample a call.

    The IR has batch 1 and exported models often fix it too, so samples go one by one.
    progress, if given, is called once per sample (a tqdm update).
    """
    if cfg.model_key in ("ONNX_FILE", "TFLITE_FILE"):
        return _run(runner(cfg, graph), graph, feeds, progress)
    from gxnpuc.frontend import cache  # TF: outputs on the same inputs come from the cache

    key = cache.outputs_key(cfg, graph, feeds) if cache.folder() else ""
    found = cache.load_arrays(key) if key else None
    if found is not None and set(found) == set(graph.outputs):
        for _ in range(len(next(iter(feeds.values()))) if progress else 0):
            progress()
        return found
    out = _run(_tf_runner(cfg, graph), graph, feeds, progress)
    if key:
        cache.save_arrays(key, out)
    return out


def _run(fn, graph, feeds: dict, progress) -> dict[str, np.ndarray]:
    n = len(next(iter(feeds.values())))
    results = []
    for i in range(n):
        one = {k: np.asarray(v[i:i + 1]).reshape(graph.tensors[k].shape) for k, v in feeds.items()}
        results.append(_to_ir_shapes(graph, fn(one)))
        if progress:
            progress()
    return {k: np.stack([r[k] for r in results]) for k in graph.outputs}


def runner(cfg: Config, graph: Graph, carry_state: bool = False):
    """fn(feeds of one sample, in the graph's shapes) -> {output: array}: the framework.

    carry_state: the steps of a sequence follow (TFLite keeps its resource variables from call
    to call then; fn.keeps_state names the state inputs it keeps, oracle_tflite.runner)."""
    if cfg.model_key == "ONNX_FILE":
        return _onnx_runner(cfg.model_path, graph, dict(getattr(cfg, "input_values", None) or {}))
    if cfg.model_key == "TFLITE_FILE":
        from gxnpuc.evaluate import oracle_tflite

        return oracle_tflite.runner(cfg.model_path, graph, carry_state)
    return _tf_runner(cfg, graph)


def _to_ir_shapes(graph: Graph, outs: dict) -> dict:
    fixed = {}
    for k in graph.outputs:
        y = np.asarray(outs[k])
        shape = graph.tensors[k].shape
        if y.size != int(np.prod(shape, dtype=np.int64)):
            raise GxnpucError(f"output {k!r}", f"the framework gives shape {list(y.shape)}, the IR "
                              f"{list(shape)}", "outputs of matching size")
        fixed[k] = y.reshape(shape)
    return fixed


# -- ONNX -----------------------------------------------------------------------------------
def onnx_session(path: str, outputs: list[str]):
    """An onnxruntime session that also exposes OUTPUT_OPS naming inner tensors."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    declared = {o.name for o in model.graph.output}
    for out in outputs:
        if out not in declared:
            model.graph.output.append(onnx.ValueInfoProto(name=out))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # deterministic and polite on shared machines
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(path, f"onnxruntime cannot load the model ({str(exc).splitlines()[0][:200]})",
                         "a model onnxruntime can run, to compare against") from None


def _onnx_runner(path: str, graph: Graph, values: dict | None = None):
    try:
        sess = onnx_session(path, list(graph.outputs))
    except ImportError:
        raise GxnpucError("--eval", "onnxruntime is not installed",
                          "pip install onnxruntime, or pip install 'gxnpuc[test]'") from None
    types = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in sess.get_inputs()}
    # inputs the pruned IR does not need (OUTPUT_OPS cut them off) still get a value
    unused: dict[str, np.ndarray] = {i.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape],
                               types[i.name]) for i in sess.get_inputs() if i.name not in graph.inputs}
    for name, value in (values or {}).items():  # INPUT_VALUES: the value the config fixed, not zeros
        if name in unused:
            arr: np.ndarray = np.asarray(value, types[name])
            unused[name] = arr.reshape(unused[name].shape) if arr.size == unused[name].size else arr
    outputs = list(graph.outputs)

    def fn(feeds):
        fed = {k: v.astype(types.get(k, np.float32)) for k, v in feeds.items() if k in types}
        try:
            return dict(zip(outputs, sess.run(outputs, {**unused, **fed})))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(path, f"onnxruntime cannot run the model ({str(exc).splitlines()[0][:200]})",
                             "a model onnxruntime can run, to compare against") from None
    return fn


# -- TensorFlow -----------------------------------------------------------------------------
def tf_tensor_name(tensor: str) -> str:
    """Our TF tensor names ("X" = output 0 of node X, "X:k") as TensorFlow spells them."""
    return tensor if ":" in tensor.rsplit("/", 1)[-1] else tensor + ":0"


def _tf_runner(cfg: Config, graph: Graph):
    """A TF session on the frozen GraphDef the front end builds (same loader, same names)."""
    from gxnpuc.frontend import tf as tf_front
    from gxnpuc.frontend.tf_load import import_tf

    frozen = tf_front.load(cfg)
    tf = import_tf()
    tfg = tf.Graph()
    with tfg.as_default():
        tf.graph_util.import_graph_def(frozen.graph_def, name="")
    sess = tf.compat.v1.Session(graph=tfg)
    feeds_to = {k: tf_tensor_name(frozen.inputs.get(k, k)) for k in graph.inputs}
    outputs = list(graph.outputs)
    fetches = [tf_tensor_name(frozen.outputs.get(k, k)) for k in outputs]

    def fn(feeds):
        return dict(zip(outputs, sess.run(fetches, {feeds_to[k]: v for k, v in feeds.items()})))
    return fn
