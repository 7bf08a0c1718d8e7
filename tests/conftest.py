"""Shared fixtures."""
from __future__ import annotations

import os

import pytest


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
