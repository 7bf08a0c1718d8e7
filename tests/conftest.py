"""Shared fixtures. Shared helpers are plain modules beside the tests: onnx_util (ONNX models
built in code, onnxruntime / reference runners), npu_util (test models, configs written or
made in code, compiling), tf_models (TensorFlow models)."""
from __future__ import annotations

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
