"""Issue 11 beyond the catalogue: hostile file-system states (symlinks, devices, FIFOs, hard
links), concurrent runs on one output, and odd-but-valid inputs that must give a correct model.

Every run goes through the real CLI. The fuzz test draws seeded file-system states for the
files a run writes and checks the promises of docs/files.md: exit 0 or 1, never a file
outside the outputs changed, nothing at all written when the run fails.
"""
from __future__ import annotations

import os
import random
import stat
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import bad_inputs  # noqa: F401 - first: it completes the catalogue modules
from bad_inputs import BASE, snapshot, tiny_onnx
from bad_inputs_safety import FILES
from gxnpuc import cli, compress, config

VICTIM = b"a file gxnpuc must never touch\n"


def _project(tmp_path, extra: str = "COMPRESS: true\n"):
    (tmp_path / "out").mkdir(parents=True, exist_ok=True)
    (tmp_path / "model.onnx").write_bytes(tiny_onnx().SerializeToString())
    (tmp_path / "config.yaml").write_text(BASE + extra)
    (tmp_path / "victim.txt").write_bytes(VICTIM)
    return tmp_path


def _run(tmp_path, monkeypatch, capsys, *args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GXNPUC_DEBUG", raising=False)
    code = cli.main([*args, "config.yaml"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and code in (0, 1), (code, err)
    return code, out, err


# -- file-system states ------------------------------------------------------------------------------
STATES = ["absent", "regular", "link-victim", "link-model", "dangling", "fifo", "device", "folder", "hardlink-model"]


def _plant(path, state: str, root) -> None:
    if state == "absent":
        return
    if state == "regular":
        path.write_bytes(b"previous\n")
    elif state == "link-victim":
        os.symlink(root / "victim.txt", path)
    elif state == "link-model":
        os.symlink(root / "model.onnx", path)
    elif state == "dangling":
        os.symlink(root / "nowhere", path)
    elif state == "fifo":
        os.mkfifo(path)
    elif state == "device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # a copy of /dev/full
        except PermissionError:
            os.mkfifo(path)  # not root: a FIFO stands in for the device
    elif state == "folder":
        path.mkdir()
    elif state == "hardlink-model":
        os.link(root / "model.onnx", path)


def _draws(n: int, seed: int = 11):
    rng = random.Random(seed)
    for _ in range(n):
        yield {"out/model.h": rng.choice(STATES), "out/model.eval.json": rng.choice(STATES),
               "out/npu_jpgs": rng.choice(["absent", "folder", "link-victim-dir", "regular", "fifo"])}


@pytest.mark.parametrize("states", list(_draws(14)), ids=lambda s: "+".join(s.values()))
def test_fuzz_file_system_states(states, tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "index.txt").write_text("keep.jpg\tfc.weight\tmodel.h\n")
    (root / "elsewhere" / "keep.jpg").write_bytes(VICTIM)
    for rel, state in states.items():
        if state == "link-victim-dir":
            os.symlink(root / "elsewhere", root / rel)
        else:
            _plant(root / rel, state, root)
    before = snapshot(str(root))
    code, out, err = _run(root, monkeypatch, capsys, "-s", "-e", "random")
    after = snapshot(str(root))
    for rel in ("victim.txt", "model.onnx", "config.yaml", "elsewhere/index.txt", "elsewhere/keep.jpg"):
        assert after[rel] == before[rel], rel
    if code == 1:
        assert after == before, "a failed run changed files"
        assert len(err.strip().splitlines()) == 1 and err.startswith("gxnpuc: error: "), err
    else:
        for rel in ("out/model.h", "out/model.eval.json", "out/model.eval.csv"):
            assert stat.S_ISREG(os.lstat(root / rel).st_mode), rel
        assert not [k for k in after if os.path.basename(k).startswith(".")], "a temporary file stayed"
    regular = {"absent", "regular"}
    expect_ok = states["out/model.h"] in regular and states["out/model.eval.json"] in regular \
        and states["out/npu_jpgs"] in ("absent", "folder")
    assert (code == 0) == expect_ok, (states, err)


def test_planted_temporary_links_are_never_written_through(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    for name in ("model.eval.json.tmp", "model.h.tmp", f".model.h.{os.getpid()}.tmp"):
        os.symlink("../victim.txt", root / "out" / name)
    code, _, err = _run(root, monkeypatch, capsys, "-e", "random")
    assert code == 0, err
    assert (root / "victim.txt").read_bytes() == VICTIM
    assert all(os.path.islink(root / "out" / n) for n in ("model.eval.json.tmp", "model.h.tmp"))


def test_histograms_delete_only_files_the_index_says_this_output_wrote(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    jpgs = root / "out" / "npu_jpgs"
    jpgs.mkdir()
    (jpgs / "stale.jpg").write_bytes(b"ours, from an earlier run\n")
    (jpgs / "other.jpg").write_bytes(b"another model's\n")
    os.symlink(root / "victim.txt", jpgs / "linked.jpg")
    (jpgs / "index.txt").write_text("stale.jpg\told.weight\tmodel.h\nother.jpg\tw\tother.h\n"
                                    "linked.jpg\tx\tmodel.h\n../victim.txt\ty\tmodel.h\n")
    code, _, err = _run(root, monkeypatch, capsys, "-s")
    assert code == 0, err
    assert not (jpgs / "stale.jpg").exists() and (jpgs / "other.jpg").exists()
    assert os.path.islink(jpgs / "linked.jpg") and (root / "victim.txt").read_bytes() == VICTIM
    assert (jpgs / "fc.weight.jpg").exists()


def test_a_long_output_name_with_histograms(tmp_path, monkeypatch, capsys):
    """248 bytes: the temporary names are shortened, so the run succeeds and leaves no temporary file."""
    long = "m" * 246 + ".h"
    root = _project(tmp_path)
    (root / "config.yaml").write_text(f"ONNX_FILE: model.onnx\nOUTPUT_FILE: out/{long}\nCOMPRESS: true\n")
    code, _, err = _run(root, monkeypatch, capsys, "-s")
    assert code == 0, err
    assert sorted(os.listdir(root / "out")) == sorted([long, "npu_jpgs"])
    assert not [f for f in os.listdir(root / "out" / "npu_jpgs") if f.startswith(".")]


def test_concurrent_runs_on_one_output_each_succeed(tmp_path):
    root = _project(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "SOURCE_DATE_EPOCH": "0"}
    env.pop("GXNPUC_DEBUG", None)
    procs = [subprocess.Popen([sys.executable, "-m", "gxnpuc", "-s", "config.yaml"], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in errs), errs
    single = tmp_path / "single"
    _project(single)
    subprocess.run([sys.executable, "-m", "gxnpuc", "-s", "config.yaml"], cwd=single, env=env, check=True,
                   capture_output=True)
    assert snapshot(str(root / "out")) == snapshot(str(single / "out"))  # one complete set, no temporary file


# -- odd but valid: a correct model ------------------------------------------------------------------
def test_weights_of_exactly_fp16_max_compress(tmp_path, monkeypatch, capsys):
    w = np.linspace(-65504, 65504, 64, dtype=np.float32).reshape(8, 8)
    sw = compress.compress_weight("w", w, "fc")
    decoded = compress.dequantize(sw.codes, sw.lo_f16, sw.step_f16, sw.axis, np.float32).astype(np.float64)
    step = float(sw.step_f16[0])
    assert np.all(np.isfinite(decoded))
    assert np.max(np.abs(decoded - w.astype(np.float64))) <= step  # half a step, plus the top saturating
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    root = _project(tmp_path)
    (root / "model.onnx").write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                                        ir_version=8).SerializeToString())
    code, _, err = _run(root, monkeypatch, capsys)
    assert code == 0, err


def test_constant_external_data_comes_from_the_models_folder(tmp_path, monkeypatch):
    from gxnpuc import compiler

    (tmp_path / "sub").mkdir()
    FILES["sub/const.onnx"](str(tmp_path / "sub" / "const.onnx"))
    FILES["w.bin"](str(tmp_path / "sub" / "w.bin"))  # [0, 1, 2, 3]
    (tmp_path / "w.bin").write_bytes(np.full(4, 7.0, np.float32).tobytes())  # a different one here
    (tmp_path / "config.yaml").write_text("ONNX_FILE: sub/const.onnx\nOUTPUT_FILE: model.h\n")
    monkeypatch.chdir(tmp_path)
    model = compiler.compile(config.load("config.yaml"))
    consts = [t.data for t in model.graph.tensors.values() if t.is_const and t.data.size == 4]
    assert consts and all(np.array_equal(np.ravel(c), np.arange(4, dtype=np.float32)) for c in consts)


def test_retuning_a_tuned_config_in_place_is_allowed(tmp_path):
    from gxnpuc import outputs

    cfg = tmp_path / "kws.tuned.yaml"
    cfg.write_text("ONNX_FILE: model.onnx\n")
    with outputs.transaction([str(cfg)]) as tx:
        with pytest.raises(Exception, match="a file this run reads"):
            tx.check(str(cfg))
        tx.may_replace.add(str(cfg))
        tx.write(str(cfg), "# tuned\n")
    assert cfg.read_text() == "# tuned\n"
