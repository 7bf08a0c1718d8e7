"""The generated key tables of docs/config.md, written from KEYS and the vendor-key tables."""
from __future__ import annotations

from gxnpuc.config.keys import ENCRYPTED_KEY, KEYS, MODEL_KEYS, OTHER_CORE_KEYS, VENDOR_SPELLINGS, Key


def _md_default(k: Key) -> str:
    if k.name in MODEL_KEYS:
        return "—"
    if isinstance(k.default, bool):
        return f"`{str(k.default).lower()}`"
    if k.name == "STATE_OPS":
        return "inferred"
    if k.default is None:
        return "`null` (off)"
    if k.default in ((), {}):
        return "`[]`" if k.default == () else "`{}`"
    return '`""`' if k.default == "" else f"`{k.default}`"


def _md_rows(keys) -> list[str]:
    return [f"| `{k.name}` | {k.type} | {_md_default(k)} | {k.meaning} |" for k in keys]


BEGIN, END = "<!-- BEGIN keys: generated from gxnpuc/config/keys.py -->", "<!-- END keys -->"


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
        "", "### Vendor spellings (honoured as the key they spell, with a note)", "",
        "| key | read as |", "| --- | --- |",
        *[f"| `{k}` | `{v}` (names of both keys are merged) |" for k, v in VENDOR_SPELLINGS.items()],
        "", END])


def update_docs(path: str) -> None:
    """Replace the generated tables in docs/config.md; the prose around them is hand-written."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    before, rest = text.split(BEGIN, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(before + markdown() + rest.split(END, 1)[1])
