"""The `gxnpuc` command (SPEC 2): flags, exit codes, one-line errors, nothing half-written.

Most cases call cli.main() in-process (fast); a few run the real `python -m gxnpuc` to prove
the same from outside. Models are tiny ONNX graphs built in code.
"""
from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys

import onnx
import pytest
from onnx import helper

from gxnpuc import __version__, cli, config
from onnx_util import make_model, rand
from test_config import BAD, tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def relu_model() -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"], name="/relu/Relu")
    return make_model([node], [("x", [1, 4])], [("y", [1, 4])])


def unsupported_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="/relu/Relu"),
             helper.make_node("Hardmax", ["h"], ["y"], name="/head/Hardmax")]
    return make_model(nodes, [("x", [1, 1, 4])], [("y", [1, 1, 4])], {})


@pytest.fixture
def work(workdir):
    """Working folder with model.onnx (conv+fc), relu.onnx and bad.onnx; returns a config writer."""
    onnx.save(tiny_model(), str(workdir.dir / "model.onnx"))
    onnx.save(relu_model(), str(workdir.dir / "relu.onnx"))
    onnx.save(unsupported_model(), str(workdir.dir / "bad.onnx"))
    return workdir


def run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(code: int, err: str, start: str = "gxnpuc: error: ") -> str:
    lines = err.splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith(start), err
    assert "Traceback" not in err
    return lines[0]


def _has_backend_writer() -> bool:
    try:
        return hasattr(importlib.import_module("gxnpuc.backend"), "write")
    except ImportError:
        return False


needs_pipeline = pytest.mark.skipif(not _has_backend_writer(),
                                    reason="gxnpuc.backend.write (output writer) not written yet")


# -- flags ---------------------------------------------------------------------------------------
def test_every_flag_and_alias_parses():
    a = cli.parse_args(["-w", "-s", "-v", "-m", "c.yaml"])
    assert (a.weights, a.save, a.verbose, a.meminfo, a.config) == (True, True, True, True, "c.yaml")
    a = cli.parse_args(["--weights", "--save-hist", "--verbose", "--meminfo", "c.yaml"])
    assert a.weights and a.save and a.verbose and a.meminfo
    a = cli.parse_args(["--weight", "--save", "-e", "in.npz", "--dump-dir", "d", "c.yaml"])
    assert a.weights and a.save and a.eval == "in.npz" and a.dump_dir == "d"
    a = cli.parse_args(["-t", "--target-snr", "30", "--max-weight-bytes", "4096", "c.yaml"])
    assert a.tune and a.target_snr == 30.0 and a.max_weight_bytes == 4096
    a = cli.parse_args(["-L", "-c", "GRUS", "-f", "onnx", "--markdown"])
    assert a.list and a.core == "GRUS" and a.framework == "ONNX" and a.markdown


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["-V"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"gxnpuc {__version__}"
    assert run(["--version"], capsys)[:2] == (0, f"gxnpuc {__version__}\n")


@pytest.mark.parametrize("argv", [
    ["--no-such-flag", "c.yaml"], ["-c", "GRUS", "c.yaml"], ["--markdown", "c.yaml"],
    ["-f", "TF", "c.yaml"], ["--dump-dir", "d", "c.yaml"], ["--target-snr", "20", "c.yaml"],
    ["-t", "--max-weight-bytes", "0", "c.yaml"], ["-L", "c.yaml"], ["-L", "-f", "caffe"],
    ["-e"], ["a.yaml", "b.yaml"], ["-t", "--target-snr", "high", "c.yaml"],
])
def test_usage_errors_exit_2(argv, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and "usage: gxnpuc" in err and "Traceback" not in err


def test_eval_without_data_says_how_to_write_it(capsys):
    """`gxnpuc -e config.yaml` took the config as the data: say so, not "config required"."""
    code, out, err = run(["-e", "config.yaml"], capsys)
    assert code == 2 and "gxnpuc -e inputs.npz config.yaml" in err


def test_help_is_quick_and_complete(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for flag in ("--weight", "--save", "--verbose", "--meminfo", "--list", "--version", "--eval",
                 "--tune", "--dump-dir", "--markdown", "GXNPUC_DEBUG"):
        assert flag in out


def test_list_ops(capsys):
    code, out, err = run(["-L", "-f", "ONNX"], capsys)
    assert code == 0 and "Relu" in out and "Conv" in out and err == ""
    code, out, _ = run(["-L", "--markdown"], capsys)
    assert code == 0 and out.startswith("# Supported ops") and "| Relu |" in out


def test_list_ops_unknown_core_is_one_line(capsys):
    assert "LEO" in assert_one_error(*run(["-L", "-c", "LEO"], capsys)[::2])


# -- user errors: exit 1, one line, nothing written -----------------------------------------------
@pytest.mark.parametrize("case", sorted(BAD))
def test_every_config_error_is_one_line_and_writes_nothing(work, capsys, case):
    (work.dir / "empty.onnx").write_bytes(b"")
    (work.dir / "fake.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(8))
    path = work(BAD[case][0])
    before = sorted(os.listdir(work.dir))
    code, out, err = run(["-w", "-s", path], capsys)
    line = assert_one_error(code, err)
    assert BAD[case][2] in line
    assert sorted(os.listdir(work.dir)) == before and out == ""


@pytest.mark.parametrize("body, what", [
    ("ONNX_FILE: model.onnx\nEXCLUDE_COMPRESS_OPS: [fc.wieght]\n", "close matches: fc.weight"),
    ("ONNX_FILE: model.onnx\nOUTPUT_OPS: [yy]\n", "config.yaml:2: OUTPUT_OPS"),
    ("ONNX_FILE: bad.onnx\n", "/head/Hardmax [Hardmax]"),
    ("ONNX_FILE: empty.onnx\n", "is empty"),
    ("ONNX_FILE: trunc.onnx\n", "not a readable ONNX model"),
])
def test_model_errors_are_one_line_and_keep_the_old_output(work, capsys, body, what):
    (work.dir / "empty.onnx").write_bytes(b"")
    (work.dir / "trunc.onnx").write_bytes((work.dir / "model.onnx").read_bytes()[:57])
    (work.dir / "model.h").write_text("previous build\n")
    code, out, err = run([work(body)], capsys)
    assert what in assert_one_error(code, err)
    assert (work.dir / "model.h").read_text() == "previous build\n"
    assert not (work.dir / "npu_jpgs").exists()


def test_missing_config_file(work, capsys):
    assert "nope.yaml" in assert_one_error(*run(["nope.yaml"], capsys)[::2])


def test_config_from_stdin(work, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ONNX_FILE: gone.onnx\n")))
    line = assert_one_error(*run(["-"], capsys)[::2])
    assert line.startswith("gxnpuc: error: <stdin>:1: ONNX_FILE: gone.onnx: no such file")


def test_vendor_key_warns_on_stderr(work, capsys, monkeypatch):
    monkeypatch.setattr(cli, "compile_and_write", lambda cfg, args, out: None)
    code, _, err = run([work("ONNX_FILE: relu.onnx\nMEAN_SHRINK_OPS: [a]\n")], capsys)
    assert code == 0 and err == ("gxnpuc: warning: config.yaml:2: MEAN_SHRINK_OPS has no effect on GRUS "
                                 "(a LEO key of the vendor tool: Mean ops that divide before adding); ignored\n")


def test_tune_flags_override_the_config(work, capsys, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_optional", lambda mod, flag: type("M", (), {"main": staticmethod(
        lambda cfg, args: seen.update(cfg=cfg, mod=mod))}))
    code, _, _ = run(["-t", "--target-snr", "31", work("ONNX_FILE: relu.onnx\nTUNE_TARGET_SNR_DB: 20\n")], capsys)
    assert code == 0 and seen["mod"] == "gxnpuc.tune" and seen["cfg"].tune_target_snr_db == 31.0


def test_missing_stage_module_is_a_user_error():
    with pytest.raises(cli.GxnpucError) as info:
        cli._optional("gxnpuc.no_such_stage", "-x")
    assert "not available" in info.value.line()


# -- faults that are not the user's: still one line --------------------------------------------------
@pytest.mark.parametrize("exc, code, start", [
    (RuntimeError("boom\nsecond line"), 3, "gxnpuc: internal error: RuntimeError: boom second line"),
    (KeyboardInterrupt(), 130, "gxnpuc: interrupted"),
    (MemoryError(), 1, "gxnpuc: error: out of memory"),
    (OSError(28, "No space left on device", "/x/model.h"), 1, "gxnpuc: error: /x/model.h: No space left"),
])
def test_faults_are_one_line(work, capsys, monkeypatch, exc, code, start):
    def fail(*a, **k):
        raise exc
    monkeypatch.setattr(cli, "compile_and_write", fail)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    got, _, err = run([work("ONNX_FILE: relu.onnx\n")], capsys)
    assert got == code and len(err.splitlines()) == 1 and err.startswith(start), err
    if code == 3:
        assert "GXNPUC_DEBUG=1" in err
        monkeypatch.setenv(cli.DEBUG_ENV, "1")
        got, _, err = run([work("ONNX_FILE: relu.onnx\n")], capsys)
        assert got == 3 and "Traceback" in err and err.splitlines()[-1].startswith(start)


# -- from outside ---------------------------------------------------------------------------------
def _gxnpuc(args, cwd, stdin=subprocess.DEVNULL):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop(cli.DEBUG_ENV, None)
    return subprocess.run([sys.executable, "-m", "gxnpuc", *args], cwd=cwd, env=env, stdin=stdin,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_version_usage_and_error(work):
    p = _gxnpuc(["-V"], work.dir)
    assert (p.returncode, p.stdout) == (0, f"gxnpuc {__version__}\n")
    p = _gxnpuc([], work.dir)  # no config and nothing on stdin
    assert p.returncode == 2 and "config file is required" in p.stderr
    p = _gxnpuc([work("ONNX_FILE: model.onnx\nCOMPRES: true\n")], work.dir)
    assert p.returncode == 1 and p.stderr == ("gxnpuc: error: config.yaml:2: COMPRES: unknown key "
                                              "(did you mean COMPRESS?)\n")


# -- end to end -----------------------------------------------------------------------------------
@needs_pipeline
def test_compile_end_to_end(work, capsys):
    (work.dir / "out").mkdir()
    cfg = work("ONNX_FILE: model.onnx\nOUTPUT_FILE: out/model.h\nCOMPRESS: true\nCONV2D_COMPRESS: true\n"
               "EXCLUDE_COMPRESS_OPS: [proj.weight]\n")
    code, out, err = run(["-w", "-s", cfg], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["conv.weight: [3, 2, 3]", "fc.weight: [6, 24]"]  # -w first, graph order
    assert lines[2].startswith("saved 2 histogram(s) to out")
    assert "model.onnx" in lines[3] and "out/model.h" in lines[3]  # then the summary
    assert (work.dir / "out" / "model.h").stat().st_size > 0
    jpgs = [f for f in os.listdir(work.dir / "out" / "npu_jpgs") if f.endswith(".jpg")]
    assert len(jpgs) == 2


@needs_pipeline
def test_compile_without_compression_lists_nothing(work, capsys):
    code, out, err = run(["-w", "-v", "-m", work("ONNX_FILE: model.onnx\n")], capsys)
    assert code == 0 and "no weight is compressed" in err
    assert "/fc/Gemm" in out and (work.dir / "model.h").exists()
    assert config.load("config.yaml").output_file == str(work.dir / "model.h")


def shared_weight_model() -> onnx.ModelProto:
    """One conv weight used by two Conv+BatchNorm branches: FUSE_BN must copy it for one."""
    inits = {"shared.weight": rand((3, 2, 3), 1)}
    nodes = []
    for k in range(2):
        for p, v in (("s", 1.5), ("b", 0.1), ("m", 0.2), ("v", 2.0)):
            inits[f"bn{k}.{p}"] = rand((3,), 10 + k) * 0 + v + k
        nodes += [helper.make_node("Conv", ["x", "shared.weight"], [f"c{k}"], name=f"/conv{k}/Conv"),
                  helper.make_node("BatchNormalization", [f"c{k}"] + [f"bn{k}.{p}" for p in "sbmv"],
                                   [f"y{k}"], name=f"/bn{k}/BatchNormalization")]
    return make_model(nodes, [("x", [1, 2, 10])], [("y0", [1, 3, 8]), ("y1", [1, 3, 8])], inits)


@needs_pipeline
@pytest.mark.parametrize("exclude, compressed", [("[]", 2), ("[shared.weight]", 0), ("[/conv1/Conv]", 1)])
def test_excluding_a_shared_weight_reaches_its_fused_copies(work, capsys, exclude, compressed):
    onnx.save(shared_weight_model(), str(work.dir / "shared.onnx"))
    cfg = work(f"ONNX_FILE: shared.onnx\nCONV2D_COMPRESS: true\nFUSE_BN: true\n"
               f"EXCLUDE_CONV2D_COMPRESS_OPS: {exclude}\n")
    code, out, err = run(["-w", cfg], capsys)
    assert code == 0, err
    listed = [ln for ln in out.splitlines() if ln.endswith(": [3, 2, 3]")]
    assert len(listed) == compressed, out
