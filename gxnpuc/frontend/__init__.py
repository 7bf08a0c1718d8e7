"""Front ends: each turns one model format into the NPU IR via the shared lowering walk.

`load(cfg)` picks the front end from the config's model key. A name the front end cannot
find (INPUT_OPS, OUTPUT_OPS) comes back as an error pointing at its line in config.yaml.
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
        from gxnpuc.frontend import tf

        return tf.to_ir(cfg)
    except ConfigError as err:
        raise names.locate(cfg, err) from None
