"""The one YAML writer: config lines `gxnpuc --eval` advises (flow style, one line to paste)
and the block `gxnpuc --tune` appends (block style, a comment per entry), plus commenting out
the keys a generated block replaces. Names are JSON strings (YAML double-quoted scalars: '/',
':', '#' are safe); numbers read back as exactly the same float.
"""
from __future__ import annotations

import json

import yaml


def yaml_float(x: float) -> str:
    """A float YAML 1.1 (PyYAML) reads back as the same float: repr, with a '.' in the mantissa
    (PyYAML reads `1e-05` as text)."""
    s = repr(float(x))
    mant, e, exp = s.partition("e")
    return (mant if "." in mant else mant + ".0") + e + exp


def yaml_name(name: str) -> str:
    return json.dumps(name)


def names_line(key: str, names: list[str]) -> str:
    """`KEY: ["a", "b"]`"""
    return f"{key}: " + json.dumps(list(names))


def ranges_line(key: str, ranges: dict) -> str:
    """`KEY: {"a": [lo, hi], ...}`"""
    items = ", ".join(f"{yaml_name(k)}: [{yaml_float(a)}, {yaml_float(b)}]" for k, (a, b) in ranges.items())
    return f"{key}: {{" + items + "}"


def names_block(key: str, comments: dict[str, str]) -> list[str]:
    """`KEY:` then `  - "name"  # comment` per name (`KEY: []` when there is none)."""
    return [f"{key}:" + ("" if comments else " []")] + [f"  - {yaml_name(n)}  # {c}" for n, c in comments.items()]


def ranges_block(key: str, entries: dict[str, tuple]) -> list[str]:
    """`KEY:` then `  "name": [lo, hi]  # comment` per name -> ((lo, hi), comment)."""
    lines = [f"{key}:" + ("" if entries else " {}")]
    for n, ((lo, hi), comment) in entries.items():
        lines.append(f"  {yaml_name(n)}: [{yaml_float(lo)}, {yaml_float(hi)}]  # {comment}")
    return lines


def comment_out(original: str, keys: set[str], prefix: str, mark: str) -> str:
    """The YAML text with its top-level entries of `keys` commented out with `prefix`, and
    everything from the first line starting with `mark` (a previous generated block) dropped."""
    src = original.splitlines()
    cut = next((i for i, line in enumerate(src) if line.startswith(mark)), len(src))
    src = src[:cut]
    root = yaml.compose("\n".join(src), Loader=yaml.SafeLoader)
    if root is None or not isinstance(root, yaml.MappingNode):
        return "\n".join(src)
    spans, starts = [], {k.start_mark.line for k, _ in root.value}
    for k, v in root.value:
        if k.value in keys:
            spans.append((k.start_mark.line, _end_line(src, v)))
    if root.flow_style or any(s < line < e for s, e in spans for line in starts):
        return _rebuild(src, root, keys, prefix)  # several keys on one line: write the rest anew
    out = list(src)
    for s, e in spans:
        for i in range(s, e):
            out[i] = prefix + out[i]
    for i in range(root.end_mark.line, len(out)):  # `...` would end the document before the block
        if out[i].strip() in ("...", "---"):
            out[i] = prefix + out[i]
    return "\n".join(out)


def _end_line(src: list[str], node) -> int:
    """One past the last line of node's text, blank and comment-only lines not counted."""
    end = min(node.end_mark.line + (1 if node.end_mark.column > 0 else 0), len(src))
    while end > node.start_mark.line + 1 and _is_blank_or_comment(src[end - 1]):
        end -= 1
    return end


def _is_blank_or_comment(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _rebuild(src: list[str], root, keys: set[str], prefix: str) -> str:
    out = [prefix + line for line in src]
    for k, v in root.value:
        if k.value not in keys:
            node = yaml.MappingNode("tag:yaml.org,2002:map", [(k, v)], flow_style=False)
            out.append(yaml.serialize(node, Dumper=yaml.SafeDumper, width=1 << 16).rstrip("\n"))
    return "\n".join(out)
