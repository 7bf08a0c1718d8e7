"""File names made from tensor names (`-s` pictures, `--dump-dir` arrays): they never leave
their folder and never collide, even on case-insensitive file systems."""
from __future__ import annotations

import hashlib
import re

MAX_STEM = 80  # characters of the weight name kept in a file name
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def _tag(name: str, n: int = 8) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _stem(name: str) -> str:
    """Only [A-Za-z0-9._+-]; no leading dots (so never '.' or '..'); bounded length."""
    stem = _UNSAFE.sub("_", name).lstrip(".")
    return stem[:MAX_STEM].rstrip(".") or "weight"


def safe_names(names: list[str]) -> dict[str, str]:
    """weight name -> file name `<stem>.jpg`, unique even on case-insensitive file systems.

    A name that had to change (path separators, control characters, truncation, reserved
    device names) or that collides with another gets a short hash of the full name appended.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        stem = _stem(name)
        changed = stem != name or stem.split(".")[0].upper() in _RESERVED
        n = 8
        cand = f"{stem}-{_tag(name, n)}" if changed else stem
        while cand.lower() in used:
            n += 4
            cand = f"{stem}-{_tag(name, n)}"
        used.add(cand.lower())
        out[name] = cand + ".jpg"
    return out
