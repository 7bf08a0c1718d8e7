"""config.yaml: the frozen Config and load(), vendor-compatible keys plus this project's own.

load() does all validation (safe YAML, unknown keys with the closest suggestion, types,
paths resolved relative to the config file); the rest of the compiler trusts a Config.
The keys, their validators and docs/config.md live in gxnpuc/config/keys.py, the model and
output path checks in gxnpuc/config/files.py; this module is the API the others import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from gxnpuc.config.files import display_path, resolve_files
from gxnpuc.config.keys import (
    CORES, ENCRYPTED_KEY, KEY_BY_NAME, KEYS, MAX_INPUT_ELEMENTS, MODEL_KEYS, OTHER_CORE_KEYS,
    VENDOR_CORES, Ctx, Key, markdown, read_keys, update_docs)
from gxnpuc.errors import ConfigError

__all__ = ["Config", "load", "loads", "where", "display_path", "MAX_CONFIG_BYTES",  # the API
           # re-exported from config.keys, where they live
           "CORES", "ENCRYPTED_KEY", "KEY_BY_NAME", "KEYS", "MAX_INPUT_ELEMENTS", "MODEL_KEYS",
           "OTHER_CORE_KEYS", "VENDOR_CORES", "Key", "markdown", "update_docs"]

MAX_CONFIG_BYTES = 1 << 20  # a flat config is a few hundred bytes; refuse anything huge


@dataclass(frozen=True)
class Config:
    path: str = ""  # the config file itself, absolute ("" when built in code)
    corename: str = "GRUS"
    model_key: str = "ONNX_FILE"  # which of MODEL_KEYS was given
    model_path: str = ""  # absolute
    output_file: str = "model.h"  # absolute after load()
    output_type: str = "c_code"  # c_code | raw
    npu_unit: str = "NPU32"
    input_ops: dict = field(default_factory=dict)  # name -> tuple shape
    output_ops: tuple = ()
    fp16_out_ops: tuple = ()
    compress: bool = False
    conv2d_compress: bool = False
    fuse_bn: bool = False
    fuse_biasadd: bool = False
    exclude_compress_ops: tuple = ()
    exclude_conv2d_compress_ops: tuple = ()
    weight_min_max: dict = field(default_factory=dict)  # name -> (lo, hi)
    model_info: str = ""
    # -- additions of this project (defaults = vendor behaviour) --
    compress_per_channel: bool = False
    weight_clip: str = "minmax"  # minmax | mse | percentile
    keras_allow_lambda: bool = False
    eval_snr_threshold_db: float = 20.0
    tune_target_snr_db: float | None = None
    tune_max_weight_bytes: int | None = None
    tune_clip_search: str = "output"  # output | weight | percentile | none
    tune_per_channel: bool = False
    input_values: dict = field(default_factory=dict)  # name -> fixed value (number or nested list)
    # -- filled by load(): where each key / name was written, and warnings for the user --
    lines: dict = field(default_factory=dict, compare=False, repr=False)  # KEY or (KEY, name) -> line
    warnings: tuple = field(default=(), compare=False)  # one line each, printed by the CLI


def where(cfg: Config, key: str, name: str | None = None) -> str:
    """`config.yaml:12: KEY` (the line of `name` inside KEY when known) for error messages."""
    line = cfg.lines.get((key, name)) or cfg.lines.get(key)
    if not cfg.path and not cfg.lines:
        return key  # a Config built in code
    label = display_path(cfg.path) if cfg.path else "<stdin>"
    return f"{label}:{line}: {key}" if line else f"{label}: {key}"


# -- load ----------------------------------------------------------------------------------------
def load(path: str) -> Config:
    """Read, validate and resolve a config file; every problem is one ConfigError line."""
    label = display_path(os.path.abspath(path)) if path else path
    if os.path.isdir(path):
        raise ConfigError(label, "is a folder, not a config file", "a config.yaml file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(label, f"cannot be read ({exc.strerror or exc})", "a readable config.yaml") from None
    return loads(raw, os.path.abspath(path), os.path.dirname(os.path.abspath(path)))


def loads(raw: bytes | str, path: str = "<stdin>", base_dir: str | None = None) -> Config:
    """Validate config text; `path` names it in errors, relative paths start at base_dir."""
    label = display_path(path)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(label, f"is larger than {MAX_CONFIG_BYTES // 1024} KiB", "a small flat YAML file")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(label, f"is not UTF-8 text (byte {exc.start})", "a YAML text file") from None
    c, root = _parse(raw, label, base_dir or os.getcwd())
    try:
        values = read_keys(c, root)
    finally:
        c.loader.dispose()
    values = resolve_files(c, values, path)
    return Config(path=path if not path.startswith("<") else "", lines=c.lines,
                  warnings=tuple(c.warnings), **values)


def _parse(text: str, label: str, base_dir: str):
    """Compose (never construct arbitrary objects: SafeLoader only) the YAML into nodes."""
    import yaml

    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader refuses control characters up front
        pos = max(0, min(int(exc.position), len(text)))
        line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        ch = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"{label}:{line}:{col}", f"control character U+{ch:04X} is not allowed in YAML",
                          "printable text; remove control characters") from None
    c = Ctx(label, base_dir, loader)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        loader.dispose()
        mark = exc.problem_mark or exc.context_mark
        at = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise ConfigError(at, f"YAML syntax error: {exc.problem or exc.context}",
                          "flat YAML `KEY: value`, spaces not tabs") from None
    except yaml.YAMLError as exc:
        loader.dispose()
        raise ConfigError(label, f"YAML error: {exc}", "flat YAML `KEY: value`") from None
    if root is None or type(root).__name__ != "MappingNode":
        loader.dispose()
        got = "empty" if root is None else f"a {type(root).__name__[:-4].lower()}, not a map"
        raise ConfigError(label, f"the config is {got}", "`KEY: value` lines, e.g. ONNX_FILE: model.onnx")
    return c, root

