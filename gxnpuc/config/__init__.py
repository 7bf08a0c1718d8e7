"""config.yaml: the frozen Config and load(), vendor-compatible keys plus this project's own.

load() does all validation (safe YAML, unknown keys with the closest suggestion, types,
paths resolved relative to the config file); the rest of the compiler trusts a Config.
The keys, their validators and docs/config.md live in gxnpuc/config/keys.py, the model and
output path checks in gxnpuc/config/files.py; this module is the API the others import.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from gxnpuc.config.docs import markdown, update_docs
from gxnpuc.config.files import display_path, resolve_files
from gxnpuc.config.keys import (
    CORES, ENCRYPTED_KEY, KEY_BY_NAME, KEYS, MAX_INPUT_ELEMENTS, MODEL_KEYS, OTHER_CORE_KEYS,
    VENDOR_CORES, Ctx, Key, read_keys)
from gxnpuc.errors import ConfigError

__all__ = ["Config", "load", "loads", "where", "display_path", "MAX_CONFIG_BYTES",  # the API
           # re-exported from config.keys, where they live
           "CORES", "ENCRYPTED_KEY", "KEY_BY_NAME", "KEYS", "MAX_INPUT_ELEMENTS", "MODEL_KEYS",
           "OTHER_CORE_KEYS", "VENDOR_CORES", "Key", "markdown", "update_docs"]

MAX_CONFIG_BYTES = 1 << 20  # a flat config is a few hundred bytes; refuse anything huge
MAX_YAML_DEPTH = 16  # a config nests 3 deep (KEY: {name: [numbers]})
MAX_YAML_VALUES = 100_000  # values after expanding YAML aliases (an alias bomb has billions)


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
    state_ops: dict | None = None  # state output -> state input; None: inferred from the model
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
        kind = os.stat(path).st_mode
        if not stat.S_ISREG(kind):  # a FIFO would block, a device never end
            raise ConfigError(label, "is not a regular file", "a config.yaml file on disk, or `-` for stdin")
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
        loader = _bounded_loader()(text)
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
    except ConfigError as exc:
        loader.dispose()
        mark = loader.peek_event().start_mark if loader.check_event() else None
        exc.where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise ConfigError(exc.where, exc.what, exc.accepted) from None
    if root is None or type(root).__name__ != "MappingNode":
        loader.dispose()
        got = "empty" if root is None else f"a {type(root).__name__[:-4].lower()}, not a map"
        raise ConfigError(label, f"the config is {got}", "`KEY: value` lines, e.g. ONNX_FILE: model.onnx")
    _check_expansion(root, label, loader)
    return c, root


def _bounded_loader():
    """SafeLoader that refuses documents nested deeper than MAX_YAML_DEPTH while composing."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    raise ConfigError("", f"YAML nested more than {MAX_YAML_DEPTH} levels deep",
                                      "flat YAML `KEY: value`; lists and maps nest 3 levels at most")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1
    return Loader


def _check_expansion(root, label: str, loader) -> None:
    """Count values as constructing would see them (an alias counts each time it is used)."""
    stack, seen = [root], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            loader.dispose()
            raise ConfigError(label, f"expands to more than {MAX_YAML_VALUES:,} YAML values "
                              "(aliases `*name` repeating anchors)", "a flat config without alias chains")
        if isinstance(node.value, list):
            for item in node.value:
                stack.extend(item if isinstance(item, tuple) else (item,))

