"""config.yaml paths: the model and output files a config names, checked before any work.

Exactly one model key, a model file of the kind its key says (a Keras file is not a .pb,
a SavedModel is a folder), and an output path that is writable and destroys nothing.
"""
from __future__ import annotations

import os

from gxnpuc.config.keys import KEYS, MODEL_KEYS, Ctx
from gxnpuc.errors import ConfigError


def display_path(path: str) -> str:
    """A path as short as it can be shown: relative to the working folder when inside it."""
    if not path or path.startswith("<"):
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def resolve_files(c: Ctx, values: dict, cfg_path: str) -> dict:
    """Exactly one model key; model and output paths checked; table defaults filled in."""
    given = sorted((k for k in MODEL_KEYS if values.get(k)), key=lambda k: c.lines[k])
    if not given:
        raise ConfigError(c.label, "no model given", "one of " + ", ".join(MODEL_KEYS))
    if len(given) > 1:
        lines = ", ".join(f"{k} (line {c.lines[k]})" for k in given)
        raise ConfigError(f"{c.label}:{c.lines[given[1]]}: {given[1]}", f"several models given: {lines}",
                          "exactly one model key")
    key = given[0]
    if values.get("KERAS_ALLOW_LAMBDA") and key != "KERAS_FILE":
        c.warnings.append(f"{c.label}:{c.lines['KERAS_ALLOW_LAMBDA']}: KERAS_ALLOW_LAMBDA has "
                          f"no effect without KERAS_FILE; ignored")
    _check_model(c, key, values[key])
    if values.get("OUTPUT_FILE") is None:
        values["OUTPUT_FILE"] = os.path.join(c.base_dir, "model.h")
    _check_output(c, values["OUTPUT_FILE"], values[key], cfg_path)
    out = {k.attr: k.default if values.get(k.name) is None else values[k.name]
           for k in KEYS if k.name not in MODEL_KEYS}
    return {**out, "model_key": key, "model_path": values[key]}


_KERAS_MAGIC = (b"\x89HDF\r\n\x1a\n", b"PK\x03\x04")  # HDF5 (.h5), zip (.keras)


def _check_model(c: Ctx, key: str, path: str) -> None:
    at = f"{c.label}:{c.lines[key]}: {key}"
    shown = display_path(path)
    if not os.path.exists(path):
        raise ConfigError(at, f"{shown}: no such file or folder", f"a path relative to {c.relative_to}")
    if key == "SAVED_MODEL_DIR":
        if not os.path.isdir(path):
            raise ConfigError(at, f"{shown} is a file, not a SavedModel folder",
                              "a folder with saved_model.pb; a frozen .pb goes in PB_FILE, "
                              "a .h5/.keras in KERAS_FILE")
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            raise ConfigError(at, f"{shown} has no saved_model.pb", "a folder written by tf.saved_model.save")
        return
    if os.path.isdir(path):
        saved = os.path.exists(os.path.join(path, "saved_model.pb"))
        raise ConfigError(at, f"{shown} is a folder", "a SavedModel folder goes in SAVED_MODEL_DIR"
                          if saved else f"{key} names a model file, not a folder")
    head = _head(at, path)
    is_keras = head.startswith(_KERAS_MAGIC)
    if key == "KERAS_FILE" and not is_keras:
        raise ConfigError(at, f"{shown} is not a Keras file", "an .h5 (HDF5) or .keras (zip) file "
                          "saved by model.save(); a frozen graph goes in PB_FILE, ONNX in ONNX_FILE")
    if key != "KERAS_FILE" and is_keras:
        raise ConfigError(at, f"{shown} looks like a Keras file (HDF5/zip)", "use KERAS_FILE for it")
    if key == "PB_FILE" and os.path.basename(path) == "saved_model.pb":
        raise ConfigError(at, f"{shown} is the graph of a SavedModel",
                          f"SAVED_MODEL_DIR: {display_path(os.path.dirname(path)) or '.'}")


def _head(at: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ConfigError(at, f"{display_path(path)} cannot be read ({exc.strerror or exc})",
                          "a readable model file") from None
    if not head:
        raise ConfigError(at, f"{display_path(path)} is empty", "a model file saved by its framework")
    return head


def _check_output(c: Ctx, out: str, model: str, cfg_path: str) -> None:
    at = f"{c.label}:{c.lines['OUTPUT_FILE']}: OUTPUT_FILE" if "OUTPUT_FILE" in c.lines else c.label
    shown, folder = display_path(out), os.path.dirname(out) or "."
    if os.path.isdir(out):
        raise ConfigError(at, f"{shown} is a folder", "a file path such as model.h")
    if not os.path.isdir(folder):
        raise ConfigError(at, f"folder {display_path(folder)} does not exist", "an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(at, f"folder {display_path(folder)} is not writable", "a folder you can write to")
    same = [p for p in (model, cfg_path) if p and not p.startswith("<") and _same(out, p)]
    if same:
        what = "the model" if same[0] == model else "the config file"
        raise ConfigError(at, f"{shown} is {what} itself; writing would destroy it",
                          "a different output path, e.g. model.h")


def _same(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)
