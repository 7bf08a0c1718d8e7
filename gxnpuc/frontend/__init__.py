"""Front ends: each turns one model format into the NPU IR via the shared lowering walk.

`load(cfg)` picks the front end from the config's model key. A name the front end cannot
find (INPUT_OPS, OUTPUT_OPS) comes back as an error pointing at its line in config.yaml.
TensorFlow models are lowered once per model and config (cache.py), then read back without
importing TensorFlow.
"""
from __future__ import annotations

from gxnpuc.errors import ConfigError
from gxnpuc.ir import Graph


def load(cfg) -> Graph:
    """The model named by cfg (ONNX_FILE, PB_FILE, SAVED_MODEL_DIR, KERAS_FILE or
    TFLITE_FILE) as NPU IR."""
    from gxnpuc.config import names

    try:
        if cfg.model_key == "ONNX_FILE":
            from gxnpuc.frontend import onnx

            return onnx.to_ir(cfg.model_path, dict(cfg.input_ops), list(cfg.output_ops) or None,
                              dict(getattr(cfg, "input_values", {}) or {}))
        if cfg.model_key == "TFLITE_FILE":
            from gxnpuc.frontend import tflite

            return tflite.to_ir(cfg.model_path, dict(cfg.input_ops), list(cfg.output_ops) or None)
        return _tf_cached(cfg)
    except ConfigError as err:
        raise names.locate(cfg, err) from None


def _tf_cached(cfg) -> Graph:
    """The TF model's IR from the lowered-graph cache, else lowered (and cached)."""
    from gxnpuc.frontend import cache

    key = cache.graph_key(cfg) if cache.folder() else ""
    graph = cache.load_graph(key) if key else None
    if graph is None:
        from gxnpuc.frontend import tf

        graph = tf.to_ir(cfg)
        if key:
            cache.save_graph(key, graph)
    return graph
