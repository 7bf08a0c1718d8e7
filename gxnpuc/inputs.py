"""Bounded reading of every input file: kind and size are checked before a byte is read.

A FIFO would block forever, /dev/zero never ends, and a 2 MB .npz may inflate to gigabytes,
so each reader here first asks what the file is (a regular file only), how large it is, and
for .npz archives how large each member says it is and whether its .npy header agrees with
that size; nothing is inflated past the limits below.
"""
from __future__ import annotations

import os
import stat

from gxnpuc.errors import GxnpucError, ModelError

MAX_MODEL_BYTES = 512 << 20  # a model or weight-data file; the target holds 208 KB of SRAM
MAX_DATA_BYTES = 256 << 20  # -e data, all arrays inflated
_NPZ_HINT = "np.savez(path, <input name>=array of shape [samples, *input shape], labels=...)"


def _shown(path: str) -> str:
    from gxnpuc.outputs import shown

    return shown(path)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def check_file(path: str, where: str, limit: int, what: str, error=ModelError) -> os.stat_result:
    """stat() a file the run will read: it must exist, be a regular file and hold <= limit bytes."""
    from gxnpuc.outputs import kind

    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(where, f"{_shown(path)}: {exc.strerror or 'cannot be read'}", f"a readable {what}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(where, f"{_shown(path)} is {kind(st.st_mode)}, not a regular file",
                    f"a {what} on disk; gxnpuc reads no pipes or devices")
    if st.st_size > limit:
        raise error(where, f"{_shown(path)} is {_mib(st.st_size)}", f"a {what} of at most {_mib(limit)}")
    return st


def read_bytes(path: str, where: str, limit: int, what: str, error=ModelError) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (checked again on the open file)."""
    from gxnpuc.outputs import kind

    check_file(path, where, limit, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a swapped-in FIFO cannot block
    except OSError as exc:
        raise error(where, f"{_shown(path)} cannot be read ({exc.strerror})", f"a readable {what}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(where, f"{_shown(path)} is {kind(st.st_mode)}, not a regular file", f"a {what} on disk")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise error(where, f"{_shown(path)} is larger than {_mib(limit)}", f"a {what} of at most {_mib(limit)}")
    return data


# -- .npz / .npy --------------------------------------------------------------------------------
def load_arrays(path: str, limit: int = MAX_DATA_BYTES):
    """An .npz file as {name: array}, or a bare .npy as one array; sizes checked before inflating."""
    import zipfile

    import numpy as np

    check_file(path, "-e/--eval", limit, ".npz file", GxnpucError)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            _check_npy(path, "", fh, os.fstat(fh.fileno()).st_size)
        return np.load(path, allow_pickle=False)
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        total = sum(i.file_size for i in infos)
        if total > limit:
            raise GxnpucError(path, f"its arrays inflate to {_mib(total)}", f"at most {_mib(limit)} of -e data")
        for info in infos:
            with zf.open(info) as member:
                _check_npy(path, info.filename, member, info.file_size)
    return np.load(path, allow_pickle=False)


def _check_npy(path: str, member: str, fh, size: int) -> None:
    """The .npy header's shape and dtype must account for exactly the bytes that follow."""
    from numpy.lib import format as npy

    at = f"{path}: {member}" if member else path
    try:
        version = npy.read_magic(fh)
        read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}[version]
        shape, _, dtype = read(fh, max_header_size=10000)
    except Exception as exc:  # numpy raises ValueError and others for non-.npy bytes
        what = "a readable .npy array" if member else "a readable .npz file"
        raise GxnpucError(at, f"not {what} ({type(exc).__name__})", _NPZ_HINT) from None
    if dtype.hasobject:
        return  # np.load(allow_pickle=False) refuses it with its own line
    header = fh.tell()
    n = 1
    for d in shape:
        n *= int(d)
    if header + n * dtype.itemsize != size:
        raise GxnpucError(at, f"its header says shape {list(shape)} ({dtype}, {n * dtype.itemsize:,} bytes) "
                          f"but {size - header:,} bytes follow", "an array saved by np.save / np.savez")
