"""The TFLite reference for --eval: the LiteRT interpreter (`ai-edge-litert`) runs the .tflite.

LiteRT is TensorFlow Lite's own runtime, published without TensorFlow (TensorFlow's
tf.lite.Interpreter is deprecated in its favour); one thread, TFLite's built-in kernels
without the XNNPACK delegate. The IR's
inputs and outputs are real values: a quantised model input gets the value quantised with
the model's scale and zero point (round to nearest, saturated), a quantised output is
dequantised. A variable of a streaming model lives inside the interpreter, so each sample
starts from the model's initial state; its `_next` output is read from the interpreter's
copy of the tensor the model assigns. (The interpreter's reset_all_variables() does not reset
resource variables, so a new sample of a stateful model gets a new interpreter.)
"""
from __future__ import annotations

import numpy as np

from gxnpuc.errors import GxnpucError

NAME = "tflite (ai-edge-litert)"


def interpreter(path: str, preserve: bool):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise GxnpucError("--eval", "the TFLite interpreter (ai-edge-litert) is not installed",
                          "pip install ai-edge-litert, or pip install 'gxnpuc[tflite]'") from None
    try:
        it = Interpreter(model_path=path, num_threads=1, experimental_preserve_all_tensors=preserve,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise GxnpucError(path, f"the TFLite interpreter cannot load the model "
                          f"({str(exc).splitlines()[0][:200]})", "a model the interpreter runs") from None
    return it


def runner(path: str, graph, carry_state: bool = False):
    """fn(feeds {input: [1, ...]}) -> {output: value} on the interpreter, in real values.

    Each call starts from the variables' initial values (the state inputs must hold them),
    unless carry_state: then the interpreter keeps its variables from call to call (steps of
    one sequence) and fn.keeps_state names the state inputs it keeps (the paired variables):
    fn.reset(initial) starts a new sequence (initial: {state input: value}, each the
    variable's initial value, as the interpreter cannot be given another), and those inputs
    are not fed."""
    from gxnpuc import state
    from gxnpuc.frontend import tflite as front
    from gxnpuc.frontend.tflite_read import unique_names

    model = front.load(path)
    sg = model.subgraphs[0]
    names = unique_names(sg.tensors)
    index = {n: k for k, n in enumerate(names)}
    sources = dict(graph.meta.get("tflite_sources", {}))  # IR output -> TFLite tensor
    outputs = list(graph.outputs)
    fetch = {o: index.get(sources.get(o, o)) for o in outputs}
    missing = [o for o, k in fetch.items() if k is None]
    if missing:
        raise GxnpucError(f"output {missing[0]!r}", "is not a tensor of the TFLite model",
                          "outputs named as the model names its tensors")
    preserve = any(k not in sg.outputs for k in fetch.values())
    initial = graph.meta.get("state_initial", {})  # every state input -> its start value
    kept = {i for i in state.pairs_of(graph).values() if i in initial} if carry_state else set()

    def fresh():  # reset_all_variables() leaves resource variables as they are: a new interpreter
        it = interpreter(path, preserve)
        _resize_inputs(it, graph, index)
        return it
    box = [fresh()]
    feed_to = {d["index"]: d for d in box[0].get_input_details()}
    details = {d["index"]: d for d in box[0].get_tensor_details()}

    def reset(start: dict | None = None) -> None:
        for name, value in (start or {}).items():
            if name in initial:
                _check_state(name, value, initial[name])
        box[0] = fresh()

    def fn(feeds):
        if initial and not kept:
            reset()
        it = box[0]
        it.reset_all_variables()  # a fused LSTM's state tensors (zero constants in the IR), not resource variables
        for name, value in feeds.items():
            if name in initial:
                if name not in kept:
                    _check_state(name, value, initial[name])
                continue
            k = index.get(name)
            if k not in feed_to:
                raise GxnpucError(f"input {name!r}", "is not an input of the TFLite model",
                                  "the model's own inputs")
            it.set_tensor(k, _to_model(value, feed_to[k]))
        it.invoke()
        return {o: _to_real(it.get_tensor(k), details[k]) for o, k in fetch.items()}
    fn.reset = reset  # type: ignore[attr-defined]
    fn.keeps_state = kept  # type: ignore[attr-defined]
    return fn


def _resize_inputs(it, graph, index: dict) -> None:
    """Give the interpreter the static shapes the IR has (INPUT_OPS for open dimensions)."""
    changed = False
    for d in it.get_input_details():
        name = next((n for n, k in index.items() if k == d["index"]), None)
        want = graph.tensors[name].shape if name in graph.tensors else None
        if want is not None and tuple(d["shape"]) != tuple(want):
            it.resize_tensor_input(d["index"], list(want))
            changed = True
    if changed:
        it.allocate_tensors()


def _check_state(name: str, value: np.ndarray, initial) -> None:
    start = np.broadcast_to(np.asarray(initial, np.float32), np.shape(value))
    if not np.array_equal(np.asarray(value, np.float32), np.asarray(start, np.float32)):
        raise GxnpucError(f"input {name!r}", "is a variable kept inside the TFLite interpreter, which "
                          "starts each sample from the model's initial value",
                          f"give {name!r} that initial value ({'zeros' if not np.any(start) else 'as in the model'})")


def _quant(d: dict) -> tuple[float, int]:
    scale, zp = d.get("quantization", (0.0, 0))
    return float(scale), int(zp)


def _to_model(x: np.ndarray, d: dict) -> np.ndarray:
    dtype = np.dtype(d["dtype"])
    x = np.asarray(x).reshape(d["shape"])
    scale, zp = _quant(d)
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x.astype(np.float64) / scale) + zp, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _to_real(y: np.ndarray, d: dict) -> np.ndarray:
    scale, zp = _quant(d)
    if np.asarray(y).dtype.kind in "iu" and scale:
        return ((np.asarray(y, np.float64) - zp) * scale).astype(np.float32)
    return np.asarray(y)
