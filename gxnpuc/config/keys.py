"""config.yaml keys: the KEYS table and the validator of each value.

KEYS is the single source for validation and for the key tables of docs/config.md
(config/docs.py; regenerate with `python -m gxnpuc.config docs/config.md`). Validators read
YAML nodes (never constructed objects), so each error names the line of the bad value.
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

from gxnpuc.errors import ConfigError

MODEL_KEYS = ("PB_FILE", "SAVED_MODEL_DIR", "KERAS_FILE", "ONNX_FILE", "TFLITE_FILE")
CORES = ("GRUS",)
VENDOR_CORES = ("LEO", "LEO_MPE", "APUS", "FORNAX")  # the vendor tool's other targets
MAX_INPUT_ELEMENTS = 1 << 24  # far beyond the target's memory; stops absurd shapes early


# -- reading values from YAML nodes ---------------------------------------------------------------
class Ctx:
    """What validators need: error location, the config's folder, the loader for values."""

    def __init__(self, label: str, base_dir: str, loader):
        self.label, self.base_dir, self.loader = label, base_dir, loader
        self.lines: dict = {}
        self.warnings: list[str] = []

    @property
    def relative_to(self) -> str:
        """What relative paths start from: the config's folder, or the current one for stdin."""
        return "the current folder (config read from stdin)" if self.label == "<stdin>" else "the config file"

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


def is_null(node) -> bool:
    return node.tag == "tag:yaml.org,2002:null"


def _text(c: Ctx, key: str, node) -> str:
    """A name as written: names are text, so `123` or `yes` stay the characters typed."""
    if type(node).__name__ != "ScalarNode" or is_null(node) or not str(node.value).strip():
        raise c.err(node, key, "expected a name (text)", "e.g. dense/MatMul; quote names with ': ' or '#'")
    return str(node.value)


def _names(c: Ctx, key: str, node) -> tuple:
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


def _pairs(c: Ctx, key: str, node, example: str) -> list:
    if type(node).__name__ != "MappingNode":
        raise c.err(node, key, "expected a map of name -> value", f"e.g. {key}: {{{example}}}")
    out = []
    for k_node, v_node in node.value:
        name = _text(c, key, k_node)
        if (key, name) in c.lines:
            raise c.err(k_node, key, f"{name!r} is given twice (also on line {c.lines[(key, name)]})",
                        "each name once")
        c.lines[(key, name)] = k_node.start_mark.line + 1
        out.append((name, v_node))
    return out


def _shapes(c: Ctx, key: str, node) -> dict:
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


def _values(c: Ctx, key: str, node) -> dict:
    """Fixed input values: a number, or a (nested) list of numbers."""
    out = {}
    for name, v_node in _pairs(c, key, node, "input_name: 16000"):
        value = c.value(v_node)
        flat = value if isinstance(value, list) else [value]
        while any(isinstance(x, list) for x in flat):
            flat = [y for x in flat for y in (x if isinstance(x, list) else [x])]
        if not flat or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                               for x in flat) or len(flat) > MAX_INPUT_ELEMENTS:
            raise c.err(v_node, key, f"value of {name!r} must be a finite number or a list of them",
                        f"e.g. {name}: 16000")
        out[name] = value
    return out


def _min_max(c: Ctx, key: str, node) -> dict:
    out = {}
    for name, v_node in _pairs(c, key, node, "weight_name: [-1.0, 1.0]"):
        pair: Any = c.value(v_node) if type(v_node).__name__ == "SequenceNode" else None
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) and _finite(x) for x in pair))
        if not ok:
            raise c.err(v_node, key, f"range of {name!r} must be [min, max], two finite numbers"
                        + _as_text(pair), f"e.g. {name}: [-0.5, 0.5]")
        if not pair[0] < pair[1]:
            raise c.err(v_node, key, f"range of {name!r} has min {pair[0]} >= max {pair[1]}",
                        "min < max")
        lo, hi = float(pair[0]), float(pair[1])
        if not (hi - lo) / 255 > 2.0 ** -25:  # fp16 rounds anything up to 2^-25 to 0
            raise c.err(v_node, key, f"range of {name!r} is too narrow: its 8-bit step (max - min) / 255 "
                        f"is 0 in fp16, which would zero the weight", "max - min >= 255 * 6e-8")
        out[name] = (lo, hi)
    return out


def _finite(x) -> bool:
    """math.isfinite, false for integers too large for a float (a 400-digit number)."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _as_text(pair) -> str:
    """Why `[-1.0e3, 1.0e3]` fails: YAML 1.1 reads an exponent without a sign as text."""
    texts = [x for x in pair if isinstance(x, str)] if isinstance(pair, list) else []
    for t in texts:
        try:
            float(t)
        except ValueError:
            continue
        return (f"; {t!r} was read as text (YAML needs a dot and a signed exponent: "
                f"write 1.0e+3 or 1000.0)")
    return ""


def _state_ops(c: Ctx, key: str, node) -> dict:
    """{state output: state input}, names as written (checked against the model later)."""
    out: dict = {}
    for name, v_node in _pairs(c, key, node, "State_c0_out: State_c0"):
        value = _text(c, key, v_node)
        c.lines.setdefault((key, value), v_node.start_mark.line + 1)
        out[name] = value
    return out


def _bool(c: Ctx, key: str, node) -> bool:
    v = c.value(node)
    if not isinstance(v, bool):
        raise c.err(node, key, f"expected true or false, got {_shown(node)}", "true | false")
    return v


def _enum(*options: str) -> Callable:
    def parse(c: Ctx, key: str, node) -> str:
        v = c.value(node)
        if isinstance(v, str) and v in options:
            return v
        lower = {o.lower(): o for o in options}
        close = difflib.get_close_matches(str(v).lower(), lower, n=1, cutoff=0.5)
        hint = f"; did you mean {lower[close[0]]}?" if close else ""
        raise c.err(node, key, f"unknown value {_shown(node)}{hint}", " | ".join(options))
    return parse


def _core(c: Ctx, key: str, node) -> str:
    v = c.value(node)
    if isinstance(v, str) and v.upper() in VENDOR_CORES:
        raise c.err(node, key, f"core {v} is not supported by this compiler", "GRUS (GX8002) only")
    return _enum(*CORES)(c, key, node)


def _number(optional: bool) -> Callable:
    def parse(c: Ctx, key: str, node):
        v = c.value(node)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v):
            return float(v)
        raise c.err(node, key, f"expected a number, got {_shown(node)}",
                    "a finite number" + (" or null" if optional else ""))
    return parse


def _pos_int(c: Ctx, key: str, node):
    v = c.value(node)
    if type(v) is int and v > 0:
        return v
    raise c.err(node, key, f"expected a positive integer, got {_shown(node)}", "e.g. 65536, or null")


def _info(c: Ctx, key: str, node) -> str:
    if type(node).__name__ != "ScalarNode":
        raise c.err(node, key, "expected text", 'e.g. MODEL_INFO: "kws v3, 12 keywords"')
    return str(node.value)


def _path(c: Ctx, key: str, node) -> str:
    c.value(node)  # refuses unsafe tags
    v = node.value if type(node).__name__ == "ScalarNode" else None  # a path is text as written
    if not isinstance(v, str) or not v.strip():
        raise c.err(node, key, f"expected a path, got {_shown(node)}",
                    f"a path relative to {c.relative_to}")
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
    Key("TFLITE_FILE", "path", None, "TensorFlow Lite flatbuffer (`.tflite`): fp32, fp16-weight, "
        "dynamic-range or fully int8 models ([tflite.md](tflite.md))", _path),
    Key("OUTPUT_FILE", "path", "model.h", "where the compiled model goes; its folder must exist", _path),
    Key("OUTPUT_TYPE", "`c_code` \\| `raw`", "c_code", "C header, or the binary container",
        _enum("c_code", "raw")),
    Key("NPU_UNIT", "`NPU32`", "NPU32", "MAC array width", _enum("NPU32")),
    Key("INPUT_OPS", "map name → shape", {}, "input names with static shapes, e.g. "
        "`{mfcc: [1, 40, 98]}`; default: all graph inputs, unknown batch set to 1. `struct input` "
        "has one member per entry, in this order", _shapes),
    Key("INPUT_VALUES", "map name → number or list", {}, "inputs fixed to a value, e.g. "
        "`{sr: 16000}`: each becomes a constant (in the model's dtype and shape), so what depends "
        "only on it (an ONNX `If` on the sample rate) is decided at compile time", _values, True),
    Key("OUTPUT_OPS", _NAMES, (), "outputs; the graph is pruned to what they need. "
        "Default: all graph outputs. `struct output` follows this order", _names),
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
    Key("STATE_OPS", "map output → input", None, "streaming state: each output whose value is the "
        "named input's value at the next step, e.g. `{State_c0_out: State_c0}`. Default: inferred "
        "where unambiguous (an output named like an input plus `_out`/`_next`/`_new`/`N`, same "
        "shape; TFLite resource variables); `{}`: none. `struct in_out` then has the vendor "
        "streaming layout, state outputs are fp16, and `--eval`/`--tune` run sequences", _state_ops, True),
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
}
# The vendor's other spellings of a key: honoured as the key they spell, with a note.
VENDOR_SPELLINGS = {"EXCLUDE_COMPRESS_WEIGHT_OPS": "EXCLUDE_COMPRESS_OPS"}
# MODEL_ENCRYPTED (vendor, every core): false is accepted; true is refused.
ENCRYPTED_KEY = "MODEL_ENCRYPTED"



# -- the keys of one config file -----------------------------------------------------------------
def read_keys(c: Ctx, root) -> dict:
    """Every `KEY: value` of the root map, validated; KEY -> value (None for an empty value)."""
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
        elif key in VENDOR_SPELLINGS:
            _read_spelling(c, values, key, v_node, line)
        elif is_null(v_node):
            values[key] = None  # `KEY:` left empty takes the default
        else:
            values[key] = KEY_BY_NAME[key].parse(c, key, v_node)
    return _merge_spellings(values)


def _read_spelling(c: Ctx, values: dict, key: str, v_node, line: int) -> None:
    """EXCLUDE_COMPRESS_WEIGHT_OPS: its names join EXCLUDE_COMPRESS_OPS (and errors about a
    name point at the line where it was written)."""
    target = VENDOR_SPELLINGS[key]
    c.warnings.append(f"{c.label}:{line}: {key} read as {target} (the vendor's other spelling)")
    if is_null(v_node):
        return
    names = KEY_BY_NAME[target].parse(c, key, v_node)
    for name in names:
        c.lines.setdefault((target, name), c.lines[(key, name)])
    c.lines.setdefault(target, line)
    values.setdefault(_SPELLED, {})[target] = names


_SPELLED = " spelled"  # values[_SPELLED]: target key -> names given under a vendor spelling


def _merge_spellings(values: dict) -> dict:
    for target, names in values.pop(_SPELLED, {}).items():
        values[target] = tuple(dict.fromkeys((values.get(target) or ()) + names))
    return values


def _key_name(c: Ctx, k_node, seen: dict) -> str:
    if type(k_node).__name__ != "ScalarNode" or not isinstance(k_node.value, str):
        raise c.err(k_node, "?", "keys must be plain UPPER_CASE words", "e.g. ONNX_FILE: model.onnx")
    key = k_node.value
    if key in seen:
        raise c.err(k_node, key, f"given twice (also on line {seen[key]})", "each key once")
    if key in KEY_BY_NAME or key in OTHER_CORE_KEYS or key in VENDOR_SPELLINGS or key == ENCRYPTED_KEY:
        return key
    known = list(KEY_BY_NAME) + list(OTHER_CORE_KEYS) + list(VENDOR_SPELLINGS) + [ENCRYPTED_KEY]
    close = [k for k in known if k == key.upper().replace("-", "_").strip()]
    close = close or difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see docs/config.md for every key"
    raise c.err(k_node, key, "unknown key", hint)
