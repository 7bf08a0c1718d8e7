"""The tools users would pick instead, run on the same models and inputs as gxnpuc:
TensorFlow Lite's converter with dynamic-range quantisation (Optimize.DEFAULT: int8 weights,
float activations) and onnxruntime's quantize_dynamic (per-channel int8 weights), plus
onnxruntime's fp32 session as the speed baseline for the simulator.
"""
from __future__ import annotations

import time

import numpy as np

QUIET_ORT = 3  # onnxruntime log severity: errors only


# -- TensorFlow Lite -------------------------------------------------------------------------
def tflite_convert(keras_model) -> tuple[bytes, float]:
    """(flatbuffer, seconds) for TFLiteConverter.from_keras_model + Optimize.DEFAULT."""
    import tensorflow as tf

    t0 = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    blob = conv.convert()
    return blob, time.perf_counter() - t0


def tflite_run(blob: bytes, x: np.ndarray) -> np.ndarray:
    """The converted model's output on a batch (the interpreter resized to the batch)."""
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=blob, num_threads=1)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x.astype(np.float32))
    it.invoke()
    return np.array(it.get_tensor(it.get_output_details()[0]["index"]))


def tflite_weight_bytes(blob: bytes) -> int:
    """Bytes of every constant tensor in the flatbuffer (buffer data) plus its quantisation
    parameters as stored (float32 scales, int64 zero points)."""
    from tensorflow.lite.python import schema_py_generated as fb

    model = fb.Model.GetRootAsModel(blob, 0)
    total, seen = 0, set()
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            buf = tensor.Buffer()
            size = model.Buffers(buf).DataLength() if buf else 0
            if not size or buf in seen:
                continue
            seen.add(buf)
            q = tensor.Quantization()
            total += size + (4 * q.ScaleLength() + 8 * q.ZeroPointLength() if q else 0)
    return total


# -- onnxruntime -----------------------------------------------------------------------------
def ort_quantize(onnx_path: str, out_path: str, per_channel: bool = True) -> float:
    """Seconds for quantize_dynamic(per_channel, int8 weights), writing out_path."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # it logs a pre-processing hint per call
    t0 = time.perf_counter()
    quantize_dynamic(onnx_path, out_path, per_channel=per_channel, weight_type=QuantType.QInt8)
    return time.perf_counter() - t0


def ort_weight_bytes(onnx_path: str) -> int:
    """Bytes of every initializer as stored (int8 codes, scales, zero points, fp32 rest)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    return int(sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer))


def ort_session(onnx_path: str, threads: int = 1):
    """A CPU session pinned to `threads` threads, sequential execution."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = QUIET_ORT
    return ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])


def ort_run(onnx_path: str, input_name: str, x: np.ndarray) -> np.ndarray:
    return ort_session(onnx_path, threads=1).run(None, {input_name: x.astype(np.float32)})[0]
