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
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from onnx import helper

from bad_inputs import CASES, GROUPS, OLD_OUTPUT, WRONG_TYPES, Case, normalize, snapshot, stage
from bad_inputs import BASE, _model, _rand, saved_model, tf_bytes, tiny_onnx
from bad_inputs_safety import PEAK_BYTES, run_limited
from gxnpuc import cli, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "errors.md")
LINE = re.compile(r"^gxnpuc: error: (?P<where>\S.*?): (?P<what>.+) \((?P<accepted>.+)\)$")
MESSAGES: dict[str, str] = {}  # case id -> its error line, for docs/errors.md
SUBPROCESS = ("yaml-syntax", "python-object-tag", "onnx-truncated", "unsupported-ops", "pb-bitflip",
              "output-in-proc", "eval-pickled", "tflite-truncated", "tflite-unsupported-ops")


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
    assert out == "" or case.stdout_ok, out
    assert after == before, "files created, changed or removed: " + ", ".join(
        sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
    return line


@pytest.mark.parametrize("case", [_param(c) for c in CASES if not c.bomb])
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
    check_failure(case, proc.returncode, proc.stdout, proc.stderr, before,
                         snapshot(str(tmp_path)), str(tmp_path))
    assert proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("case", [_param(c) for c in CASES if c.bomb])
def test_catalogue_bombs_under_limits(case, tmp_path):
    """Rows that would take gigabytes or minutes if a bound broke: a child under RLIMIT_AS/CPU."""
    stage(case, str(tmp_path))
    before = snapshot(str(tmp_path))
    code, out, err, peak = run_limited(case, str(tmp_path))
    assert peak < PEAK_BYTES, f"peak resident memory {peak >> 20} MB"
    MESSAGES[case.id] = check_failure(case, code, out, err, before, snapshot(str(tmp_path)), str(tmp_path))


def test_catalogue_is_big_and_distinct():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.config, c.files, c.args, c.target) for c in CASES}) == len(CASES)


def test_every_key_has_a_wrong_type_case():
    assert set(WRONG_TYPES) == {k.name for k in config.KEYS}


# -- security -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [
    '!!python/object/apply:os.system ["touch pwned"]', "!!python/object/new:os.system [touch pwned]",
    "!!python/name:os.system", "!!python/module:os", '!!python/object:gxnpuc.config.Config {path: x}'])
def test_yaml_never_constructs_objects(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in (f"MODEL_INFO: {payload}\n", f"ONNX_FILE: {payload}\n", f"INPUT_OPS: {{x: {payload}}}\n",
                 f"{payload}\n", f"? {payload}\n: 1\n"):
        with pytest.raises(config.ConfigError):
            config.loads(text, "config.yaml", str(tmp_path))
    assert os.listdir(tmp_path) == []


def _gxnpuc_trees():
    for folder, _, files in os.walk(os.path.join(ROOT, "gxnpuc")):
        for f in sorted(files):
            if f.endswith(".py"):
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    yield f, ast.parse(fh.read())


def _call_name(call: ast.Call) -> str:
    return ast.unparse(call.func)


def test_nothing_is_unpickled_or_executed():
    """np.load always refuses pickles; no pickle/marshal/eval/exec/unsafe YAML anywhere in gxnpuc."""
    banned_modules = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
    bad = []
    for f, tree in _gxnpuc_trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                bad += [f"{f}: import {m}" for m in mods if m.split(".")[0] in banned_modules]
            if not isinstance(node, ast.Call):
                continue
            name, kw = _call_name(node), {k.arg: k.value for k in node.keywords}
            if name.split(".")[-1] == "load" and name.split(".")[0] in ("np", "numpy"):
                ok = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False
                bad += [] if ok else [f"{f}:{node.lineno}: {name} without allow_pickle=False"]
            if name in ("eval", "exec", "__import__", "yaml.load", "yaml.load_all", "yaml.unsafe_load",
                        "yaml.full_load", "torch.load", "yaml.UnsafeLoader", "yaml.FullLoader", "yaml.Loader"):
                bad.append(f"{f}:{node.lineno}: {name}(...)")
    assert not bad, bad


def test_keras_is_always_loaded_in_safe_mode():
    calls = []
    for f, tree in _gxnpuc_trees():
        own = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}  # onnx.py's load_model
        calls += [(f, node) for node in ast.walk(tree) if isinstance(node, ast.Call)
                  and _call_name(node).endswith("load_model") and _call_name(node) not in own]
    assert calls, "no keras load_model call found"
    for f, node in calls:
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert "safe_mode" in kw and kw["safe_mode"] not in ("False", "0"), (f, node.lineno, kw)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras_lambda_layers_are_refused(ext, tmp_path, monkeypatch, capsys):
    (tmp_path / f"lambda.{ext}").write_bytes(tf_bytes(f"lambda.{ext}"))
    (tmp_path / "config.yaml").write_text(f"KERAS_FILE: lambda.{ext}\n")
    before = snapshot(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = cli.main(["config.yaml"])
    out, err = capsys.readouterr()
    case = Case("lambda", "", "", "", "", ("'double'", "KERAS_ALLOW_LAMBDA"))
    check_failure(case, code, out, err, before, snapshot(str(tmp_path)), str(tmp_path))


HOSTILE = ["../../etc/x", "/tmp/gxnpuc-evil-{pid}", "..", "a/../../b", "CON", "sub\\dir\\x", ".hidden",
           "x" * 300, "npu_jpgs/../../model.h", "bad\nline"]


def hostile_onnx(names: list[str]):
    """x[1,8] -> MatMul -> ... -> y, one 8x8 weight per hostile name."""
    nodes, inits, prev = [], {}, "x"
    for k, name in enumerate(names):
        out = "y" if k == len(names) - 1 else f"h{k}"
        nodes.append(helper.make_node("MatMul", [prev, name], [out], name=f"/mm{k}/MatMul"))
        inits[name], prev = _rand((8, 8), 10 + k), out
    return _model(nodes, [("x", [1, 8])], [("y", [1, 8])], inits)


def test_output_only_goes_to_output_file_and_npu_jpgs(tmp_path, monkeypatch, capsys):
    """Weight names that look like paths never leave npu_jpgs/; nothing else is written anywhere."""
    names = [n.format(pid=os.getpid()) for n in HOSTILE]
    proj = tmp_path / "a" / "b" / "proj"
    (proj / "out").mkdir(parents=True)
    (proj / "model.onnx").write_bytes(hostile_onnx(names).SerializeToString())
    (proj / "config.yaml").write_text("ONNX_FILE: model.onnx\nOUTPUT_FILE: out/model.h\nCOMPRESS: true\n")
    (proj / "out" / "model.h").write_bytes(OLD_OUTPUT)
    before = snapshot(str(tmp_path))
    monkeypatch.chdir(tmp_path / "a")
    code = cli.main(["-w", "-s", "-v", "-m", str(proj / "config.yaml")])
    out, err = capsys.readouterr()
    assert code == 0, err
    after = snapshot(str(tmp_path))
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert not set(before) - set(after), "files removed"
    base = "a/b/proj/out/"
    assert all(k in (base + "model.h", base + "npu_jpgs/") or k.startswith(base + "npu_jpgs/")
               for k in changed), changed
    assert len([k for k in changed if k.endswith(".jpg")]) == len(names)
    assert not os.path.exists(names[1] + ".jpg") and not os.path.exists(names[1])
    for name in names[:-1]:
        assert f"{name}: [8, 8]" in out


def test_a_saved_model_writes_only_the_output(tmp_path, monkeypatch, capsys):
    """Loading a SavedModel (which runs TensorFlow's loader) adds no file but the output and pictures."""
    saved_model(str(tmp_path / "sm"))
    (tmp_path / "out").mkdir()
    (tmp_path / "config.yaml").write_text("SAVED_MODEL_DIR: sm\nOUTPUT_FILE: out/model.h\nCOMPRESS: true\n")
    before = snapshot(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["-s", "config.yaml"]) == 0, capsys.readouterr().err
    after = snapshot(str(tmp_path))
    changed = {k for k in after if before.get(k) != after[k]}
    assert "out/model.h" in changed and all(k.startswith("out/") for k in changed), changed
    assert set(before) <= set(after)


# -- reproducible and atomic output ------------------------------------------------------------------
def _project(folder, extra: str = "", model=None) -> str:
    os.makedirs(os.path.join(folder, "out"), exist_ok=True)
    with open(os.path.join(folder, "model.onnx"), "wb") as fh:
        fh.write((model or tiny_onnx()).SerializeToString())
    with open(os.path.join(folder, "config.yaml"), "w") as fh:
        fh.write(BASE + "COMPRESS: true\nCONV2D_COMPRESS: true\n" + extra)
    return os.path.join(folder, "config.yaml")


@pytest.mark.parametrize("output_type", ["c_code", "raw"])
def test_two_builds_are_byte_identical(output_type, tmp_path, monkeypatch, capsys):
    """Same input, same bytes, in another folder too (SOURCE_DATE_EPOCH gives the build time)."""
    from gxnpuc import backend

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    blobs = []
    for run in ("first", "second"):
        cfg = _project(str(tmp_path / run), f"OUTPUT_TYPE: {output_type}\n")
        assert cli.main(["-s", cfg]) == 0, capsys.readouterr().err
        out = tmp_path / run / "out"
        blobs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert blobs[0] == blobs[1] and "model.h" in blobs[0] and len(blobs[0]) > 2
    assert backend.read(str(tmp_path / "first" / "out" / "model.h")).build_time == 1700000000


SLOW_WRITER = r"""
import signal, sys, time
from gxnpuc import backend, cli

signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job ignores SIGINT

real = backend.chunks


def slow(model, output_type):  # the first piece goes into the temporary file, then we wait
    for k, piece in enumerate(real(model, output_type)):
        yield piece
        if k == 0:
            open(sys.argv[1], "w").close()
            time.sleep(120)


backend.chunks = slow
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_write_keeps_the_previous_output(sig, tmp_path):
    cfg = _project(str(tmp_path))
    (tmp_path / "out" / "model.h").write_bytes(OLD_OUTPUT)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(ready), cfg], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate()[1]
        temps = [p.name for p in (tmp_path / "out").iterdir() if p.name != "model.h"]
        assert temps, "the run was not caught while writing its temporary file"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip() == "gxnpuc: interrupted", (proc.returncode, err)
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.h"]
    assert (tmp_path / "out" / "model.h").read_bytes() == OLD_OUTPUT


# -- limits ---------------------------------------------------------------------------------------------
def mlp_onnx(width: int = 256, layers: int = 3):
    nodes, inits, prev = [], {}, "x"
    for k in range(layers):
        out = "y" if k == layers - 1 else f"/fc{k}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{k}.weight", f"fc{k}.bias"], [out],
                                      name=f"/fc{k}/Gemm", transB=1))
        inits[f"fc{k}.weight"] = _rand((width, width), 20 + k) * 0.05
        inits[f"fc{k}.bias"] = _rand((width,), 30 + k)
        prev = out
    return _model(nodes, [("x", [1, width])], [("y", [1, width])], inits)


def test_model_larger_than_the_target_compiles_with_a_warning(tmp_path, capsys):
    """3 x 256x256 fp16 weights = 384 KiB > the GRUS budget: still compiled, clearly flagged."""
    cfg = _project(str(tmp_path), model=mlp_onnx())
    with open(cfg, "w") as fh:
        fh.write(BASE)
    assert cli.main([cfg]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert re.search(r"WARNING: the model needs [\d,]+ B but GRUS has [\d,]+ B", out + err), out + err
    for size in ("cmd", "weight", "data", "npu_size", "total_size"):
        assert re.search(rf"^\s+{size}\s+[\d,]+ B", out, re.M), (size, out)
    assert (tmp_path / "out" / "model.h").stat().st_size > 3 * 256 * 256 * 2


# -- docs/errors.md ---------------------------------------------------------------------------------
def run_case(case: Case) -> str:
    """The normalized error line of one row, run in-process in a fresh folder (for the docs);
    bombs run in a child under resource limits."""
    with tempfile.TemporaryDirectory() as folder:
        stage(case, folder)
        if case.bomb:
            err = run_limited(case, folder)[2].splitlines()
            return normalize(next((ln for ln in err if ln.startswith("gxnpuc: error: ")), ""), folder)
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


ERROR_TYPES = {"GxnpucError", "ConfigError", "ConfigNameError", "ModelError", "CompileError", "OutputError"}


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
        return "{config}:{line}: " + _text(args[1]), _text(args[2]), _text(args[3]) if len(args) > 3 else ""
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
    text = " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return text or " "


INTRO = """# Error messages

Generated by `python tests/test_bad_input.py > docs/errors.md` from the bad-input catalogue
(`tests/bad_inputs.py`) and from the error sites in `gxnpuc/`; do not edit by hand.
`tests/test_bad_input.py` fails when this page is out of date.

Every problem with a config or a model is **one line** on stderr and exit status 1:

    gxnpuc: error: <where>: <what is wrong> (<what is accepted>)

`<where>` is `config.yaml:<line>: <KEY>` for the config, or the model file, weight, input or
op. Other exit statuses: 2 bad command line (usage), 3 internal error (a bug in gxnpuc: one
line too; `GXNPUC_DEBUG=1` shows the traceback), 130 interrupted (Ctrl-C or SIGTERM). A failed
or interrupted run leaves no new, changed or partial output file: every output is staged in
a temporary file and all are renamed into place only when the whole run succeeded
([files.md](files.md) says what gxnpuc reads, writes and never touches).
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
