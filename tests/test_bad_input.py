"""Bad input, hostile files and faults: every failure is one clear line and nothing is half-written.

The catalogue (tests/bad_inputs.py) runs through the real CLI, in-process and, for a few rows,
as `python -m gxnpuc`. Then: safe loading (YAML, .npz, Keras), file names that cannot escape
npu_jpgs/, reproducible and atomic output (also under SIGINT/SIGTERM), oversize models.
Run as a script, this file prints docs/errors.md: `python tests/test_bad_input.py > docs/errors.md`.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from onnx import helper

from bad_inputs import CASES, GROUPS, OLD_OUTPUT, WRONG_TYPES, Case, normalize, snapshot, stage
from bad_inputs import _model, _rand, tf_bytes
from gxnpuc import cli, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "errors.md")
LINE = re.compile(r"^gxnpuc: error: (?P<where>\S.*?): (?P<what>.+) \((?P<accepted>.+)\)$")
MESSAGES: dict[str, str] = {}  # case id -> its error line, for docs/errors.md
SUBPROCESS = ("yaml-syntax", "python-object-tag", "onnx-truncated", "unsupported-ops", "pb-bitflip",
              "output-in-proc", "eval-pickled")


def _param(case: Case):
    return pytest.param(case, id=case.id)


# -- the catalogue ---------------------------------------------------------------------------------
def check_failure(case: Case, code: int, out: str, err: str, before: dict, after: dict, folder: str) -> str:
    """The rules every bad input obeys; returns the error line with the folder removed."""
    assert "Traceback" not in out + err, err
    assert code == 1, (code, err)
    lines = [ln for ln in err.splitlines() if not ln.startswith("gxnpuc: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("gxnpuc: error: "), err
    line = normalize(lines[0], folder)
    assert LINE.match(line), f"not `where: what (accepted)`: {line}"
    for part in case.expect:
        assert part in line, (part, line)
    assert out == "", out
    assert after == before, "files created, changed or removed: " + ", ".join(
        sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
    return line


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_catalogue(case, tmp_path, monkeypatch, capsys):
    stage(case, str(tmp_path))
    before = snapshot(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GXNPUC_DEBUG", raising=False)
    if case.stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(case.stdin)))
    code = cli.main([*case.args, case.target])
    out, err = capsys.readouterr()
    MESSAGES[case.id] = check_failure(case, code, out, err, before, snapshot(str(tmp_path)), str(tmp_path))


@pytest.mark.parametrize("case", [_param(c) for c in CASES if c.id in SUBPROCESS])
def test_catalogue_as_a_process(case, tmp_path):
    """No traceback and no library chatter at the process level: stderr is the one line."""
    stage(case, str(tmp_path))
    before = snapshot(str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k not in ("GXNPUC_DEBUG", "TF_CPP_MIN_LOG_LEVEL")}
    proc = subprocess.run([sys.executable, "-m", "gxnpuc", *case.args, case.target], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    line = check_failure(case, proc.returncode, proc.stdout, proc.stderr, before,
                         snapshot(str(tmp_path)), str(tmp_path))
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_catalogue_is_big_and_distinct():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.config, c.files, c.args, c.target) for c in CASES}) == len(CASES)


def test_every_key_has_a_wrong_type_case():
    assert set(WRONG_TYPES) == {k.name for k in config.KEYS}


# -- docs/errors.md ---------------------------------------------------------------------------------
def run_case(case: Case) -> str:
    """The normalized error line of one row, run in-process in a fresh folder (for the docs)."""
    with tempfile.TemporaryDirectory() as folder:
        stage(case, folder)
        out, err, cwd, stdin = io.StringIO(), io.StringIO(), os.getcwd(), sys.stdin
        try:
            os.chdir(folder)
            if case.stdin is not None:
                sys.stdin = io.TextIOWrapper(io.BytesIO(case.stdin))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                cli.main([*case.args, case.target])
        finally:
            os.chdir(cwd)
            sys.stdin = stdin
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("gxnpuc: error: ")]
        return normalize(lines[0] if lines else err.getvalue().strip(), folder)


ERROR_TYPES = {"GxnpucError", "ConfigError", "ModelError", "CompileError", "OutputError"}


def _text(node) -> str:
    """Source text of a message argument, with run-time values shown as {expression}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    return "{" + ast.unparse(node) + "}"


def _error_site(call: ast.Call) -> tuple[str, str, str] | None:
    """(where, what, accepted) of a call that makes a user error, else None."""
    f, args = call.func, call.args
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    if name in ERROR_TYPES and len(args) >= 2:
        return _text(args[0]), _text(args[1]), _text(args[2]) if len(args) > 2 else ""
    if name == "err" and len(args) >= 3:  # config.py: c.err(node, key, what, accepted)
        return "<config>:<line>: " + _text(args[1]), _text(args[2]), _text(args[3]) if len(args) > 3 else ""
    if name == "unknown" and len(args) >= 2:  # names.unknown(key, name, candidates, what, hint)
        what = _text(args[3]) if len(args) > 3 else "is not in the model"
        hint = _text(args[4]) if len(args) > 4 else "see `gxnpuc -w` and `gxnpuc -v`"
        return _text(args[0]), "'{" + ast.unparse(args[1]) + "}' " + what, "close matches: ... | " + hint
    return None


def source_errors() -> dict[str, list[tuple[str, str, str]]]:
    """module path -> the user errors it can raise, in source order (no duplicates)."""
    out: dict[str, list] = {}
    for folder, _, files in sorted(os.walk(os.path.join(ROOT, "gxnpuc"))):
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
            calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                           key=lambda n: (n.lineno, n.col_offset))
            sites = list(dict.fromkeys(s for s in map(_error_site, calls) if s))
            if sites:
                out[os.path.relpath(path, ROOT).replace(os.sep, "/")] = sites
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


INTRO = """# Error messages

Generated by `python tests/test_bad_input.py > docs/errors.md` from the bad-input catalogue
(`tests/bad_inputs.py`) and from the error sites in `gxnpuc/`; do not edit by hand.
`tests/test_bad_input.py` fails when this page is out of date.

Every problem with a config or a model is **one line** on stderr and exit status 1:

    gxnpuc: error: <where>: <what is wrong> (<what is accepted>)

`<where>` is `config.yaml:<line>: <KEY>` for the config, or the model file, weight, input or
op. Other exit statuses: 2 bad command line (usage), 3 internal error (a bug in gxnpuc: one
line too; `GXNPUC_DEBUG=1` shows the traceback), 130 interrupted (Ctrl-C or SIGTERM). A failed
or interrupted run leaves no new, changed or partial output file: everything that can fail
runs first, and the output is written to a temporary file that is renamed into place.
"""


def markdown(messages: dict[str, str]) -> str:
    parts = [INTRO, "## Catalogue", "",
             "Each entry is a test: run in a folder holding `config.yaml` and the model, it prints",
             "exactly this line. Paths are shown relative to that folder.", ""]
    for group in GROUPS:
        parts += [f"### {group}", ""]
        for c in (c for c in CASES if c.group == group):
            cmd = " ".join(["gxnpuc", *c.args, c.target])
            parts += [f"- **{c.cause}** (`{c.id}`, `{cmd}`). Fix: {c.fix}.", "",
                      "  ```", f"  {messages[c.id]}", "  ```", ""]
    parts += ["## Every error in the source", "",
              "Each place in `gxnpuc/` that raises a user error, with its text; `{...}` is filled",
              "in at run time. Reasons an op cannot run on the NPU are listed by `gxnpuc -L`.", ""]
    for module, sites in source_errors().items():
        parts += [f"### `{module}`", "", "| where | what is wrong | what is accepted / the fix |",
                  "| --- | --- | --- |", *(f"| {_cell(w)} | {_cell(p)} | {_cell(a)} |" for w, p, a in sites), ""]
    return "\n".join(parts)


def test_errors_doc_is_current():
    messages = {c.id: MESSAGES.get(c.id) or run_case(c) for c in CASES}
    with open(DOC, encoding="utf-8") as fh:
        assert fh.read() == markdown(messages), \
            "docs/errors.md is out of date: python tests/test_bad_input.py > docs/errors.md"


if __name__ == "__main__":
    print(markdown({c.id: run_case(c) for c in CASES}), end="")
