"""The `c_code` output: a self-contained C header (vendor layout), and its parser.

Every string from the user or the model (model_info, tensor names) goes into C string
literals with octal escapes for anything but plain printable ASCII (and for `"`, `\\`, `?`:
no trigraphs), never into comments, so no value can break the header. Empty sections
become one-byte arrays; the `*_size` constants give the real sizes.
"""
from __future__ import annotations

import re
from typing import Iterator

import numpy as np

from gxnpuc.backend.sections import FORMAT_VERSION, Sections

ROWS_PER_CHUNK = 1 << 14  # 16 bytes a row: 256 KiB of content per generated text chunk
_HEX = np.array([f"0x{i:02x},".encode() for i in range(256)], dtype="S5")
ROW = b"0x00," * 16 + b"\n"  # one row of the array body; the writer fills in the digits
_DIGITS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), "<u2")  # byte -> 2 hex digits
SIZE_CONSTS = {"cmd": "cmd_size", "weight": "weight_size", "ops": "ops_size", "data": "data_size",
               "tmp": "tmp_size", "io": "io_size", "npu_size": "npu_size", "total_size": "total_size",
               "limit": "memory_limit"}
STRINGS = {"gxnpuc_version": "version", "source_hash": "source_hash", "npu_unit": "npu_unit",
           "corename": "corename", "model_info": "model_info"}
ARRAYS = ("cmd_content", "weight_content", "ops_content")
DEBUG = "debug_content"  # names and attrs for decoders; not part of npu_size, a firmware drops it
ALIGNED = "__attribute__ ((aligned (16)))"
C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while asm typeof _Bool _Complex _Imaginary npu_data_t".split())


def c_string(text: str) -> str:
    """A C string literal holding text's UTF-8 bytes; only [ -~] minus `"\\?` stay literal."""
    out = []
    for b in text.encode("utf-8", "surrogatepass"):
        ch = chr(b)
        out.append(ch if 0x20 <= b < 0x7F and ch not in '"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


_ESC = re.compile(r'\\([0-7]{1,3}|.)', re.S)
_SIMPLE = {"n": 10, "t": 9, "r": 13, "\\": 92, '"': 34, "?": 63, "'": 39, "0": 0}


def c_unstring(body: str) -> str:
    """Inverse of c_string (the body between the quotes)."""
    raw, pos = bytearray(), 0
    for m in _ESC.finditer(body):
        raw += body[pos:m.start()].encode("latin-1")
        esc = m.group(1)
        raw.append(int(esc, 8) if esc[0] in "01234567" else _SIMPLE.get(esc, ord(esc)))
        pos = m.end()
    raw += body[pos:].encode("latin-1")
    return raw.decode("utf-8", "surrogatepass")


def c_identifier(name: str, taken: set[str]) -> str:
    """A valid, unreserved C identifier for name, unique against `taken` (which it joins)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name) or "v"
    if s[0].isdigit() or s.startswith("__") or re.match(r"_[A-Z]", s):
        s = "v_" + s
    if s in C_KEYWORDS:
        s += "_"
    base, k = s, 2
    while s in taken:
        s, k = f"{base}_{k}", k + 1
    taken.add(s)
    return s


def _members(names, shapes, types) -> list[str]:
    taken: set[str] = set()
    return [f"    {t} {c_identifier(n, taken)}{''.join(f'[{int(d)}]' for d in s)};"
            for n, s, t in zip(names, shapes, types)]


def _out_types(model, names) -> list[str]:
    fp16 = set(model.fp16_outputs)
    return ["npu_data_t" if n in fp16 else "float" for n in names]


def _in_out(model) -> list[str]:
    """struct in_out: input + output, or in the vendor streaming layout (STATE_OPS) the
    inputs and only the non-state outputs, with output_offset for the NPU's output address."""
    g = model.graph
    pairs = g.meta.get("state_pairs") or {}
    if not pairs:
        return ["// Input + output buffer the application hands to the NPU",
                "struct in_out {", "    struct input input;", "    struct output output;",
                "} __attribute__ ((packed));", ""]
    rest = [n for n in g.outputs if n not in pairs]
    taken = {"input"}
    members = [f"    {t} {c_identifier(n, taken)}{''.join(f'[{int(d)}]' for d in g.tensors[n].shape)};"
               for n, t in zip(rest, _out_types(model, rest))]
    first = min(g.inputs.index(i) for i in pairs.values())
    offset = sum(g.tensors[n].size * 2 for n in g.inputs[:first])
    return ["// Streaming layout (STATE_OPS): keep two or more of these buffers. Run step k with the",
            "// input address &buf[k] and the output address (char *)&buf[(k + 1) % n] + output_offset:",
            "// struct output then lands with each state output on its state input of the next",
            "// buffer and the other outputs after the inputs, where struct in_out has them.",
            "struct in_out {", "    struct input input;", *members, "} __attribute__ ((packed));",
            "// offset of the first state input in struct in_out: where the NPU writes struct output",
            f"const unsigned int output_offset = {offset};", ""]


def io_structs(model) -> str:
    g = model.graph
    stateful = bool(g.meta.get("state_pairs"))
    ins = _members(g.inputs, [g.tensors[n].shape for n in g.inputs], ["npu_data_t"] * len(g.inputs))
    outs = _members(g.outputs, [g.tensors[n].shape for n in g.outputs], _out_types(model, g.outputs))
    names = lambda ns: "{" + ", ".join([c_string(n) for n in ns] or ["0"]) + "}"  # noqa: E731
    return "\n".join([
        "// fp16 bit patterns (IEEE 754 binary16)", "typedef unsigned short npu_data_t;", "",
        "// Input structure of the model (graph inputs in order, fp16)"
        + ("; the state inputs last" if stateful else ""),
        "struct input {", *ins, "} __attribute__ ((packed));", "",
        "// Output structure of the model (fp32, or fp16 for FP16_OUT_OPS)"
        + ("; the state outputs first, in the order of their state inputs" if stateful else ""),
        "struct output {", *outs, "} __attribute__ ((packed));", "",
        *_in_out(model),
        "// Framework names of the struct members, in member order",
        f"const char *const input_names[{max(len(g.inputs), 1)}] = {names(g.inputs)};",
        f"const char *const output_names[{max(len(g.outputs), 1)}] = {names(g.outputs)};", ""])


def preamble(sec: Sections, model) -> str:
    info, sizes = sec.info, sec.info["sizes"]
    lines = ["// This file is generated by gxnpuc. Do not edit.",
             "// Layout: docs/model-format.md of the gxnpuc project.",
             "#ifndef GXNPUC_MODEL_H", "#define GXNPUC_MODEL_H", "",
             "// sizeof(in_out) + npu_size",
             f"const unsigned int total_size = {sizes['total_size']};",
             "// cmd + weight + ops + data + tmp: what the NPU block holds when the model runs from SRAM",
             f"const unsigned int npu_size = {sizes['npu_size']};"]
    lines += [f"const unsigned int {c} = {int(sizes[k])};" for k, c in SIZE_CONSTS.items()
              if k not in ("npu_size", "total_size") and k in sizes]
    lines += [f"const unsigned int debug_size = {len(sec.debug)};",
              f"const unsigned int format_version = {FORMAT_VERSION};",
              "// build time, seconds since 1970 (SOURCE_DATE_EPOCH when set)",
              f"const long long build_time = {int(info['build_time'])}LL;"]
    lines += [f"const char *{c} = {c_string(str(info[k]))};" for k, c in STRINGS.items()]
    return "\n".join(lines) + "\n\n" + io_structs(model) + "\n"


def hex_rows(blob: bytes) -> Iterator[bytes]:
    """The bytes as `0x..,` ASCII text, 16 a line, in chunks of ROWS_PER_CHUNK lines: a
    template of lines whose two digits per byte come from one table lookup (a strided
    uint16 store), so each byte costs a few numpy element operations."""
    arr = np.frombuffer(blob, np.uint8)
    full = len(arr) // 16
    rows = min(ROWS_PER_CHUNK, full)
    if rows:
        text = np.frombuffer(ROW * rows, np.uint8).copy().reshape(rows, len(ROW))
        digits = np.ndarray((rows, 16), "<u2", buffer=text, offset=2, strides=(len(ROW), 5))
        for r in range(0, full, rows):
            part = arr[16 * r:16 * min(r + rows, full)].reshape(-1, 16)
            digits[:len(part)] = np.take(_DIGITS, part)
            yield text[:len(part)].tobytes()
    if len(arr) > 16 * full:
        yield _HEX[arr[16 * full:]].tobytes() + b"\n"


def const_array(name: str, blob: bytes) -> Iterator[bytes]:
    yield f"\nconst unsigned char {name}[{max(len(blob), 1)}] {ALIGNED} = {{\n".encode("ascii")
    yield from hex_rows(blob if blob else b"\0")
    yield b"};\n"


def chunks(sec: Sections, model) -> Iterator[bytes]:
    """The header's ASCII bytes, piece by piece (the writer streams them to a temporary file)."""
    yield preamble(sec, model).encode("ascii")
    for name, blob in zip(ARRAYS, (sec.cmd, sec.weight, sec.ops)):
        yield from const_array(name, blob)
    yield (b"\n// Debug information (tensor names, attrs) for gxnpuc's decoder; the runtime never reads\n"
           b"// it. Define GXNPUC_NO_DEBUG before including this header to leave it out.\n#ifndef GXNPUC_NO_DEBUG")
    yield from const_array(DEBUG, sec.debug)
    yield b"#endif\n"
    yield ("\n// NPU working memory (zero-initialised): activations, and the decompressor's tile\n"
           f"unsigned char data_content[{max(sec.data_size, 1)}] {ALIGNED};\n"
           f"unsigned char tmp_content[{max(sec.tmp_size, 1)}] {ALIGNED};\n"
           f"{weak_pragmas(sec.info['sizes'], bool(model.graph.meta.get('state_pairs')))}"
           "\n#endif  // GXNPUC_MODEL_H\n").encode("ascii")


def weak_pragmas(sizes: dict, stateful: bool = False) -> str:
    """Every symbol is weak, so the header may be included by several .c files of one firmware
    and the linker keeps one copy (one NPU working memory), not a multiple-definition error.
    In C++ a namespace-scope const has internal linkage (each file its own copy, which may not
    be weak: "weak declaration must be public"), so there only the non-const ones are weak."""
    consts = ["total_size", "npu_size", *[c for k, c in SIZE_CONSTS.items()
                                          if k not in ("npu_size", "total_size") and k in sizes],
              "debug_size", "format_version", "build_time", "input_names", "output_names", *ARRAYS]
    consts += ["output_offset"] if stateful else []
    shared = [*STRINGS.values(), "data_content", "tmp_content"]
    return ("\n// Included by several .c files, the linker keeps one copy of each symbol.\n"
            "#ifndef __cplusplus\n" + "".join(f"#pragma weak {n}\n" for n in consts)
            + f"#ifndef GXNPUC_NO_DEBUG\n#pragma weak {DEBUG}\n#endif\n#endif\n"
            + "".join(f"#pragma weak {n}\n" for n in shared))


# -- parsing ------------------------------------------------------------------------------------
_UINT = re.compile(r"^const unsigned int (\w+) = (\d+);$", re.M)
_LL = re.compile(r"^const long long (\w+) = (-?\d+)LL;$", re.M)
_STR = re.compile(r'^const char \*(\w+) = "((?:[^"\\]|\\.)*)";$', re.M)
_ARR_HEAD = re.compile(r"const unsigned char (\w+)\[(\d+)\][^=\n]*= \{\n")


def is_header(data) -> bool:
    """Whether data (the file's bytes, or its latin-1 text) looks like a header we wrote."""
    needle = "const unsigned char cmd_content["
    return (needle if isinstance(data, str) else needle.encode()) in data


_HEXVAL = np.full(256, 255, np.uint8)
_HEXVAL[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_HEXVAL[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
# two hex digit characters, read as one little-endian uint16 -> their byte value (>255: not hex)
_PAIRVAL = ((_HEXVAL[:, None].astype(np.uint16) << 4) | _HEXVAL[None, :]).T.reshape(-1)
_PAIRVAL[((_HEXVAL[None, :] > 15) | (_HEXVAL[:, None] > 15)).T.reshape(-1)] = 0xFFFF
_ZERO_X = int.from_bytes(b"0x", "little")


def array_bytes(body) -> bytes:
    """The bytes of a `0x..,` array body (bytes, or latin-1 text): fast path for cells of
    exactly `0x..,`, then a plain scan for anything else a C compiler would take."""
    body = body.encode("latin-1") if isinstance(body, str) else bytes(body)
    raw = np.frombuffer(body.replace(b"\n", b""), np.uint8)
    if raw.size % 5 == 0:
        cells = raw.reshape(-1, 5)
        hi, lo = _HEXVAL[cells[:, 2]], _HEXVAL[cells[:, 3]]
        if (np.all(cells[:, 0] == ord("0")) and np.all(cells[:, 1] == ord("x"))
                and np.all(cells[:, 4] == ord(",")) and np.all((hi | lo) < 16)):
            return ((hi << 4) | lo).tobytes()
    return bytes(int(h, 16) for h in re.findall(rb"0[xX]([0-9a-fA-F]{1,2})", body))


def _cells(blob: bytes, start: int, rows: int, cols: int) -> np.ndarray | None:
    """The byte values of `rows` lines of `cols` cells `0x..,` then a newline, from
    blob[start:]; None if any character is not the writer's. Strided views of the text,
    ROWS_PER_CHUNK lines at a time."""
    line = 5 * cols + 1
    out = np.empty((rows, cols), np.uint8)
    for r in range(0, rows, ROWS_PER_CHUNK):
        n, at = min(ROWS_PER_CHUNK, rows - r), start + r * line
        cell = dict(buffer=blob, strides=(line, 5), shape=(n, cols))
        values = _PAIRVAL[np.ndarray(dtype="<u2", offset=at + 2, **cell).copy()]
        if ((np.ndarray(dtype="<u2", offset=at, **cell) != _ZERO_X).any()
                or (np.ndarray(dtype=np.uint8, offset=at + 4, **cell) != ord(",")).any()
                or (np.ndarray((n,), np.uint8, blob, at + line - 1, (line,)) != ord("\n")).any()
                or values.max() > 255):
            return None
        out[r:r + n] = values
    return out


def _writer_body(blob: bytes, start: int, n: int) -> tuple[bytes, int] | None:
    """(the n bytes, where `};` starts) when the body at blob[start:] has exactly the
    writer's layout (16 cells a line, the last line shorter), else None. Then it holds no
    `};`, so the one right after it is the first one, as a plain search would find."""
    full, tail = divmod(n, 16)
    end = start + 81 * full + (5 * tail + 1 if tail else 0)
    if n < 1 or blob[end:end + 2] != b"};":
        return None
    parts = [_cells(blob, start, full, 16)] if full else []
    if tail:
        parts.append(_cells(blob, start + 81 * full, 1, tail))
    if any(p is None for p in parts):
        return None
    return b"".join(p.tobytes() for p in parts), end


def arrays(data) -> dict[str, bytes]:
    """name -> the bytes of every `const unsigned char name[n] ... = {...};` array."""
    blob = data.encode("latin-1") if isinstance(data, str) else data
    out, pos = {}, 0
    while (i := blob.find(b"const unsigned char ", pos)) >= 0:
        nl = blob.find(b"\n", i)
        m = _ARR_HEAD.match(blob[i:nl + 1].decode("latin-1")) if nl >= 0 else None
        found = _writer_body(blob, i + m.end(), int(m.group(2))) if m else None
        if m and found is None:
            end = blob.find(b"};", i + m.end())
            found = (array_bytes(blob[i + m.end():end]), end) if end >= 0 else None
        if found is None:
            pos = i + 1
            continue
        out[m.group(1)], pos = found
    return out


def parse(data) -> Sections:
    """Sections from a header written by chunks() (the file's bytes, or its latin-1 text);
    ValueError when something is missing."""
    blob = data.encode("latin-1") if isinstance(data, str) else data
    cut = blob.find(b"const unsigned char cmd_content[")
    head = (blob[:cut] if cut >= 0 else blob).decode("latin-1")
    uints = {m.group(1): int(m.group(2)) for m in _UINT.finditer(head)}
    strings = {m.group(1): c_unstring(m.group(2)) for m in _STR.finditer(head)}
    longs = {m.group(1): int(m.group(2)) for m in _LL.finditer(head)}
    bodies = arrays(blob)
    version = uints.get("format_version")
    if version is not None and version != FORMAT_VERSION:
        raise ValueError(f"model format {version} (this gxnpuc reads {FORMAT_VERSION}; "
                         "recompile the model with this gxnpuc)")
    missing = [n for n in (*ARRAYS, DEBUG, "data_size", "tmp_size", "format_version", "debug_size")
               if n not in {**uints, **bodies}]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    blobs = []
    for name, key in zip(ARRAYS, ("cmd_size", "weight_size", "ops_size")):
        raw = bodies[name]
        blobs.append(raw[:uints.get(key, len(raw))])
    info = {"format": uints["format_version"], "build_time": longs.get("build_time", 0),
            **{k: strings.get(c, "") for k, c in STRINGS.items()},
            "sizes": {k: uints[c] for k, c in SIZE_CONSTS.items() if c in uints}}
    debug = bodies[DEBUG][:uints["debug_size"]]
    return Sections(*blobs, uints["data_size"], uints["tmp_size"], info, debug=debug)
