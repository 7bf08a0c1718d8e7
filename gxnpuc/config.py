"""config.yaml: the frozen Config and load(), vendor-compatible keys plus this project's own.

load() does all validation (safe YAML, unknown keys with the closest suggestion, types,
paths resolved relative to the config file); the rest of the compiler trusts a Config.
The KEYS table is the single source for validation and for docs/config.md (`markdown()`;
regenerate with `python -m gxnpuc.config docs/config.md`).
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from gxnpuc.errors import ConfigError

MODEL_KEYS = ("PB_FILE", "SAVED_MODEL_DIR", "KERAS_FILE", "ONNX_FILE")
CORES = ("GRUS",)
VENDOR_CORES = ("LEO", "LEO_MPE", "APUS", "FORNAX")  # the vendor tool's other targets
MAX_CONFIG_BYTES = 1 << 20  # a flat config is a few hundred bytes; refuse anything huge
MAX_INPUT_ELEMENTS = 1 << 24  # far beyond the target's memory; stops absurd shapes early


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
    # -- filled by load(): where each key / name was written, and warnings for the user --
    lines: dict = field(default_factory=dict, compare=False, repr=False)  # KEY or (KEY, name) -> line
    warnings: tuple = field(default=(), compare=False)  # one line each, printed by the CLI


def display_path(path: str) -> str:
    """A path as short as it can be shown: relative to the working folder when inside it."""
    if not path or path.startswith("<"):
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def where(cfg: Config, key: str, name: str | None = None) -> str:
    """`config.yaml:12: KEY` (the line of `name` inside KEY when known) for error messages."""
    line = cfg.lines.get((key, name)) or cfg.lines.get(key)
    if not cfg.path and not cfg.lines:
        return key  # a Config built in code
    label = display_path(cfg.path) if cfg.path else "<stdin>"
    return f"{label}:{line}: {key}" if line else f"{label}: {key}"


# -- reading values from YAML nodes ---------------------------------------------------------------
class _Ctx:
    """What validators need: error location, the config's folder, the loader for values."""

    def __init__(self, label: str, base_dir: str, loader):
        self.label, self.base_dir, self.loader = label, base_dir, loader
        self.lines: dict = {}
        self.warnings: list[str] = []

    def err(self, node, key: str, what: str, accepted: str = "") -> ConfigError:
        return ConfigError(f"{self.label}:{node.start_mark.line + 1}: {key}", what, accepted)

    def value(self, node) -> Any:
        import yaml

        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # e.g. a !!python/... tag: SafeLoader refuses to build it
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{self.label}:{node.start_mark.line + 1}", f"YAML value refused: {problem}",
                              "plain YAML values: text, numbers, true/false, lists, maps") from None


def _is_null(node) -> bool:
    return node.tag == "tag:yaml.org,2002:null"


def _text(c: _Ctx, key: str, node) -> str:
    """A name as written: names are text, so `123` or `yes` stay the characters typed."""
    if type(node).__name__ != "ScalarNode" or _is_null(node) or not str(node.value).strip():
        raise c.err(node, key, "expected a name (text)", "e.g. dense/MatMul; quote names with ': ' or '#'")
    return str(node.value)


def _names(c: _Ctx, key: str, node) -> tuple:
    """A list of names; a single name without brackets counts as a one-item list."""
    kind = type(node).__name__
    if kind == "ScalarNode":
        items = [node]
    elif kind == "SequenceNode":
        items = node.value
    else:
        raise c.err(node, key, "expected a list of names", f"e.g. {key}: [name1, name2]")
    out = []
    for item in items:
        name = _text(c, key, item)
        c.lines.setdefault((key, name), item.start_mark.line + 1)
        if name not in out:
            out.append(name)
    return tuple(out)


def _pairs(c: _Ctx, key: str, node, example: str) -> list:
    if type(node).__name__ != "MappingNode":
        raise c.err(node, key, "expected a map of name -> value", f"e.g. {key}: {{{example}}}")
    out = []
    for k_node, v_node in node.value:
        name = _text(c, key, k_node)
        c.lines[(key, name)] = k_node.start_mark.line + 1
        out.append((name, v_node))
    return out


def _shapes(c: _Ctx, key: str, node) -> dict:
    out = {}
    for name, v_node in _pairs(c, key, node, "input_name: [1, 40, 98]"):
        dims = c.value(v_node) if type(v_node).__name__ == "SequenceNode" else None
        if not dims or any(type(d) is not int or d <= 0 for d in dims):
            raise c.err(v_node, key, f"shape of {name!r} must be a list of positive integers",
                        f"e.g. {name}: [1, 40, 98]")
        if math.prod(dims) > MAX_INPUT_ELEMENTS:
            raise c.err(v_node, key, f"shape of {name!r} has {math.prod(dims):,} elements",
                        f"at most {MAX_INPUT_ELEMENTS:,}")
        out[name] = tuple(dims)
    return out


def _min_max(c: _Ctx, key: str, node) -> dict:
    out = {}
    for name, v_node in _pairs(c, key, node, "weight_name: [-1.0, 1.0]"):
        pair = c.value(v_node) if type(v_node).__name__ == "SequenceNode" else None
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                      for x in pair))
        if not ok:
            raise c.err(v_node, key, f"range of {name!r} must be [min, max], two finite numbers",
                        f"e.g. {name}: [-0.5, 0.5]")
        if not pair[0] < pair[1]:
            raise c.err(v_node, key, f"range of {name!r} has min {pair[0]} >= max {pair[1]}",
                        "min < max")
        out[name] = (float(pair[0]), float(pair[1]))
    return out


def _bool(c: _Ctx, key: str, node) -> bool:
    v = c.value(node)
    if not isinstance(v, bool):
        raise c.err(node, key, f"expected true or false, got {_shown(node)}", "true | false")
    return v


def _enum(*options: str) -> Callable:
    def parse(c: _Ctx, key: str, node) -> str:
        v = c.value(node)
        if isinstance(v, str) and v in options:
            return v
        lower = {o.lower(): o for o in options}
        close = difflib.get_close_matches(str(v).lower(), lower, n=1, cutoff=0.5)
        hint = f"; did you mean {lower[close[0]]}?" if close else ""
        raise c.err(node, key, f"unknown value {_shown(node)}{hint}", " | ".join(options))
    return parse


def _core(c: _Ctx, key: str, node) -> str:
    v = c.value(node)
    if isinstance(v, str) and v.upper() in VENDOR_CORES:
        raise c.err(node, key, f"core {v} is not supported by this compiler", "GRUS (GX8002) only")
    return _enum(*CORES)(c, key, node)


def _number(optional: bool) -> Callable:
    def parse(c: _Ctx, key: str, node):
        v = c.value(node)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
        raise c.err(node, key, f"expected a number, got {_shown(node)}",
                    "a finite number" + (" or null" if optional else ""))
    return parse


def _pos_int(c: _Ctx, key: str, node):
    v = c.value(node)
    if type(v) is int and v > 0:
        return v
    raise c.err(node, key, f"expected a positive integer, got {_shown(node)}", "e.g. 65536, or null")


def _info(c: _Ctx, key: str, node) -> str:
    if type(node).__name__ != "ScalarNode":
        raise c.err(node, key, "expected text", 'e.g. MODEL_INFO: "kws v3, 12 keywords"')
    return str(node.value)


def _path(c: _Ctx, key: str, node) -> str:
    c.value(node)  # refuses unsafe tags
    v = node.value if type(node).__name__ == "ScalarNode" else None  # a path is text as written
    if not isinstance(v, str) or not v.strip():
        raise c.err(node, key, f"expected a path, got {_shown(node)}",
                    "a path relative to the config file")
    return os.path.normpath(os.path.join(c.base_dir, os.path.expanduser(v)))


def _shown(node) -> str:
    text = str(getattr(node, "value", "")) if type(node).__name__ == "ScalarNode" else type(node).__name__[:-4].lower()
    return repr(text[:40]) if type(node).__name__ == "ScalarNode" else f"a {text}"


# -- the table of keys ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    name: str
    type: str  # as shown in docs/config.md
    default: Any
    meaning: str
    parse: Callable
    project: bool = False  # an addition of this project (absent from the vendor tool)

    @property
    def attr(self) -> str:
        return "model_path" if self.name in MODEL_KEYS else self.name.lower()


_NAMES = "list of names"
KEYS: tuple[Key, ...] = (
    Key("CORENAME", "`GRUS`", "GRUS", "target core (GX8002). The vendor's other cores "
        f"({', '.join(VENDOR_CORES)}) are refused", _core),
    Key("PB_FILE", "path", None, "TensorFlow frozen GraphDef (`.pb`)", _path),
    Key("SAVED_MODEL_DIR", "path", None, "TensorFlow SavedModel folder", _path),
    Key("KERAS_FILE", "path", None, "Keras `.h5` / `.keras` file", _path),
    Key("ONNX_FILE", "path", None, "ONNX model (PyTorch users export to this)", _path),
    Key("OUTPUT_FILE", "path", "model.h", "where the compiled model goes; its folder must exist", _path),
    Key("OUTPUT_TYPE", "`c_code` \\| `raw`", "c_code", "C header, or the binary container",
        _enum("c_code", "raw")),
    Key("NPU_UNIT", "`NPU32`", "NPU32", "MAC array width", _enum("NPU32")),
    Key("INPUT_OPS", "map name → shape", {}, "input names with static shapes, e.g. "
        "`{mfcc: [1, 40, 98]}`; default: all graph inputs, unknown batch set to 1", _shapes),
    Key("OUTPUT_OPS", _NAMES, (), "outputs; the graph is pruned to what they need. "
        "Default: all graph outputs", _names),
    Key("FP16_OUT_OPS", _NAMES, (), "outputs written as fp16 (others are fp32)", _names),
    Key("COMPRESS", "bool", False, "compress fully-connected (MatMul/Gemm) weights to 8 bit", _bool),
    Key("CONV2D_COMPRESS", "bool", False, "compress convolution weights to 8 bit", _bool),
    Key("FUSE_BN", "bool", False, "fold BatchNorm scale/shift into the preceding conv/FC weights", _bool),
    Key("FUSE_BIASADD", "bool", False, "fuse the bias add into the conv/FC command", _bool),
    Key("EXCLUDE_COMPRESS_OPS", _NAMES, (), "weights never to compress (weight name as `-w` "
        "prints it, or the name of the op that uses it)", _names),
    Key("EXCLUDE_CONV2D_COMPRESS_OPS", _NAMES, (), "convolution weights never to compress", _names),
    Key("WEIGHT_MIN_MAX", "map name → `[min, max]`", {}, "quantization range for one weight; "
        "values outside saturate; min < max", _min_max),
    Key("MODEL_INFO", "text", "", "free text embedded in the output", _info),
    Key("COMPRESS_PER_CHANNEL", "bool", False, "one 8-bit range per output channel instead of "
        "one per weight (SPEC 5)", _bool, True),
    Key("WEIGHT_CLIP", "`minmax` \\| `mse` \\| `percentile`", "minmax", "how each weight's range "
        "is chosen: raw min/max (vendor), the clip that minimises the error, or a percentile",
        _enum("minmax", "mse", "percentile"), True),
    Key("KERAS_ALLOW_LAMBDA", "bool", False, "allow Keras `Lambda` layers, whose code runs when "
        "the file is loaded; only for files you trust", _bool, True),
    Key("EVAL_SNR_THRESHOLD_DB", "number", 20.0, "`--eval` names the weight to blame when an "
        "output's SNR is below this", _number(False), True),
    Key("TUNE_TARGET_SNR_DB", "number or null", None, "`--tune` target: minimum output SNR in dB",
        _number(True), True),
    Key("TUNE_MAX_WEIGHT_BYTES", "integer or null", None, "`--tune` target: maximum stored "
        "weight bytes", _pos_int, True),
    Key("TUNE_CLIP_SEARCH", "`output` \\| `weight` \\| `percentile` \\| `none`", "output",
        "`--tune`: how each weight's clip range is chosen: the candidate giving the best output "
        "SNR (simulated), the best weight SNR (cheaper), percentile cuts only (cheapest), or none",
        _enum("output", "weight", "percentile", "none"), True),
    Key("TUNE_PER_CHANNEL", "bool", False, "`--tune` may switch on `COMPRESS_PER_CHANNEL` when "
        "that is the better trade (only if your runtime reads per-channel ranges)", _bool, True),
)
KEY_BY_NAME = {k.name: k for k in KEYS}

# Keys the vendor tool accepts for its other cores: accepted here with a warning.
OTHER_CORE_KEYS = {
    "SPACE_OPTIMIZATION": ("LEO", "trade speed for memory (0 or 1)"),
    "MEAN_SHRINK_OPS": ("LEO", "Mean ops that divide before adding"),
    "MAX_CACHE_SIZE": ("APUS", "size of the user cache"),
    "USE_DATA_CACHE": ("APUS", "copy temporary data to the cache first"),
    "SPLIT_CMD": ("APUS", "split commands into small pieces"),
    "STATE_8BIT": ("FORNAX", "store recurrent state in 8 bit"),
    "EXCLUDE_COMPRESS_WEIGHT_OPS": ("FORNAX", "FORNAX spelling of EXCLUDE_COMPRESS_OPS"),
}
# MODEL_ENCRYPTED (vendor, every core): false is accepted; true is refused.
ENCRYPTED_KEY = "MODEL_ENCRYPTED"


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
        values = _read_keys(c, root)
    finally:
        c.loader.dispose()
    values = _resolve_files(c, values, path)
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
    c = _Ctx(label, base_dir, loader)
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


def _read_keys(c: _Ctx, root) -> dict:
    values: dict = {}
    seen: dict[str, int] = {}
    for k_node, v_node in root.value:
        key = _key_name(c, k_node, seen)
        line = k_node.start_mark.line + 1
        seen[key] = line
        c.lines[key] = line
        if key in OTHER_CORE_KEYS:
            core, meaning = OTHER_CORE_KEYS[key]
            c.warnings.append(f"{c.label}:{line}: {key} has no effect on GRUS "
                              f"(a {core} key of the vendor tool: {meaning}); ignored")
        elif key == ENCRYPTED_KEY:
            if c.value(v_node) is not False:
                raise c.err(v_node, key, "encrypted model files are not supported",
                            f"a plain model file; {key}: false")
        elif _is_null(v_node):
            values[key] = None  # `KEY:` left empty takes the default
        else:
            values[key] = KEY_BY_NAME[key].parse(c, key, v_node)
    return values


def _key_name(c: _Ctx, k_node, seen: dict) -> str:
    if type(k_node).__name__ != "ScalarNode" or not isinstance(k_node.value, str):
        raise c.err(k_node, "?", "keys must be plain UPPER_CASE words", "e.g. ONNX_FILE: model.onnx")
    key = k_node.value
    if key in seen:
        raise c.err(k_node, key, f"given twice (also on line {seen[key]})", "each key once")
    if key in KEY_BY_NAME or key in OTHER_CORE_KEYS or key == ENCRYPTED_KEY:
        return key
    known = list(KEY_BY_NAME) + list(OTHER_CORE_KEYS) + [ENCRYPTED_KEY]
    close = [k for k in known if k == key.upper().replace("-", "_").strip()]
    close = close or difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see docs/config.md for every key"
    raise c.err(k_node, key, "unknown key", hint)


def _resolve_files(c: _Ctx, values: dict, cfg_path: str) -> dict:
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


def _check_model(c: _Ctx, key: str, path: str) -> None:
    at = f"{c.label}:{c.lines[key]}: {key}"
    shown = display_path(path)
    if not os.path.exists(path):
        raise ConfigError(at, f"{shown}: no such file or folder", "a path relative to the config file")
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


def _check_output(c: _Ctx, out: str, model: str, cfg_path: str) -> None:
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


# -- docs/config.md ------------------------------------------------------------------------------
def _md_default(k: Key) -> str:
    if k.name in MODEL_KEYS:
        return "—"
    if isinstance(k.default, bool):
        return f"`{str(k.default).lower()}`"
    if k.default is None:
        return "`null` (off)"
    if k.default in ((), {}):
        return "`[]`" if k.default == () else "`{}`"
    return f'`""`' if k.default == "" else f"`{k.default}`"


def _md_rows(keys) -> list[str]:
    return [f"| `{k.name}` | {k.type} | {_md_default(k)} | {k.meaning} |" for k in keys]


BEGIN, END = "<!-- BEGIN keys: generated from gxnpuc/config.py -->", "<!-- END keys -->"


def markdown() -> str:
    """The key tables of docs/config.md, from KEYS and OTHER_CORE_KEYS (a test keeps them in sync)."""
    head = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    return "\n".join([
        BEGIN, "", "### Keys of the vendor tool", "", *head, *_md_rows(k for k in KEYS if not k.project), "",
        "### Additions of this project (each defaults to the vendor behaviour)", "",
        *head, *_md_rows(k for k in KEYS if k.project), "",
        "### Vendor keys for other cores (accepted with a warning: no effect on GRUS)", "",
        "| key | vendor core | meaning there |", "| --- | --- | --- |",
        *[f"| `{k}` | {core} | {m} |" for k, (core, m) in OTHER_CORE_KEYS.items()],
        f"| `{ENCRYPTED_KEY}` | all | encrypted model files: `false` is accepted, `true` is refused |",
        "", END])


def update_docs(path: str) -> None:
    """Replace the generated tables in docs/config.md; the prose around them is hand-written."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    before, rest = text.split(BEGIN, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(before + markdown() + rest.split(END, 1)[1])


if __name__ == "__main__":  # python -m gxnpuc.config docs/config.md
    import sys

    update_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/config.md")
