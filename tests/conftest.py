"""Shared fixtures. Shared helpers are plain modules beside the tests: onnx_util (ONNX models
built in code, onnxruntime / reference runners), npu_util (test models, configs written or
made in code, compiling), tf_models (TensorFlow models)."""
from __future__ import annotations

import os
import textwrap

import pytest


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """tmp_path as the working folder; write(text, name, dedent=False) writes a config there and
    returns its name, relative to the working folder; write.dir is the folder."""
    monkeypatch.chdir(tmp_path)

    def write(text: str, name: str = "config.yaml", dedent: bool = False) -> str:
        (tmp_path / name).write_text(textwrap.dedent(text) if dedent else text)
        return name
    write.dir = tmp_path
    return write


@pytest.fixture(autouse=True, scope="session")
def _gxnpuc_cache(tmp_path_factory):
    """The lowered-graph cache (gxnpuc/frontend/cache.py) of this test session lives in a temporary
    folder: tests never touch the user's ~/.cache (subprocesses inherit the variable)."""
    old = os.environ.get("GXNPUC_CACHE_DIR")
    os.environ["GXNPUC_CACHE_DIR"] = str(tmp_path_factory.mktemp("gxnpuc_cache"))
    yield
    if old is None:
        os.environ.pop("GXNPUC_CACHE_DIR", None)
    else:
        os.environ["GXNPUC_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def vendor_tdnn(tmp_path_factory):
    """The Kaldi-style TF1 TDNN of tests/vendor_models.py, frozen both ways, built once:
    {"folder", "feeds", "ref", "paths"}; inputs.npz holds the feeds."""
    import numpy as np
    import vendor_models

    folder = tmp_path_factory.mktemp("vendor")
    built = vendor_models.kaldi_tdnn(str(folder))
    np.savez(folder / "inputs.npz", **built["feeds"])
    return {"folder": folder, **built}


@pytest.fixture
def emitted(monkeypatch):
    """(framework op type, IR op) of every emit while lowering, folded ones included."""
    from gxnpuc.frontend.common import LowerCtx

    seen: list[tuple[str, str]] = []
    real = LowerCtx.emit

    def watch(self, op, *args, **kw):
        seen.append((self.fnode.op_type if self.fnode else "", op))
        return real(self, op, *args, **kw)
    monkeypatch.setattr(LowerCtx, "emit", watch)
    return seen
