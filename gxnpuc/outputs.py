"""The one writer of every file gxnpuc writes: model.h / raw, -s pictures and their index,
-e reports and dumps, -t tuned configs and plots.

A run is one transaction (`with outputs.transaction(): ...`, opened by the CLI):

- every output is written at once into an exclusive temporary file beside its target
  (O_CREAT | O_EXCL | O_NOFOLLOW, a name unique to the process), so disk errors surface early,
  but nothing the user sees changes until `commit()`, which runs only when the whole run
  succeeded; a failed run removes its temporary files and the folders it created;
- a target must be absent or a regular file: folders, symbolic links, FIFOs and devices are
  refused, and so is any file the run reads (the model, its external weights, -e data, the
  config), also through a hard link;
- folders the tool names itself (npu_jpgs/, the --dump-dir sub-folders) are never symbolic
  links; inside them an entry in the way (a planted link) is renamed over, never followed,
  and files are only deleted there by name, regular files only, never through a link.

Outside a transaction (library callers) `write()` commits at once.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from gxnpuc.errors import OutputError

NAME_MAX = 255  # bytes of one file name on every file system gxnpuc runs on
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
_current: Transaction | None = None


def shown(path: str) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def kind(mode: int) -> str:
    """What a non-regular file is, in words ("" for a regular file)."""
    return next((word for test, word in _KINDS if test(mode)), "" if stat.S_ISREG(mode) else "not a file")


@dataclass
class _Staged:
    path: str  # absolute target
    dir_fd: int
    name: str  # target name inside dir_fd
    tmp: str  # temporary name inside dir_fd


@dataclass
class Transaction:
    """Outputs staged beside their targets; committed together or not at all."""
    inputs: dict = field(default_factory=dict)  # (st_dev, st_ino) -> path of a file the run reads
    staged: list = field(default_factory=list)
    removals: list = field(default_factory=list)  # (dir_fd, name)
    made: list = field(default_factory=list)  # (parent fd or None, name or path) of created folders
    fds: dict = field(default_factory=dict)  # folder path -> open fd
    may_replace: set = field(default_factory=set)  # inputs a run replaces on purpose (retune in place)
    done: bool = False

    # -- inputs ---------------------------------------------------------------------------
    def add_input(self, path: str) -> None:
        """A file (or every file of a folder) the run reads: never replaced by an output."""
        if not path or path.startswith("<"):
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        self.inputs[(st.st_dev, st.st_ino)] = os.path.abspath(path)
        if stat.S_ISDIR(st.st_mode):
            for folder, _, files in os.walk(path):
                for f in files:
                    self.add_input(os.path.join(folder, f))

    # -- folders --------------------------------------------------------------------------
    def folder(self, path: str, own: bool = False) -> int:
        """An open fd of the folder `path`, created when absent. `own`: a folder the tool
        names itself (npu_jpgs/): created beside its parent, and never a symbolic link."""
        path = os.path.abspath(path)
        if path in self.fds:
            return self.fds[path]
        if own:
            parent, name = self.folder(os.path.dirname(path)), os.path.basename(path)
            fd = self._own_folder(parent, name, path)
        else:
            fd = self._user_folder(path)
        self.fds[path] = fd
        return fd

    def _own_folder(self, parent: int, name: str, path: str) -> int:
        try:
            os.mkdir(name, 0o777, dir_fd=parent)
            self.made.append((parent, name))
        except FileExistsError:
            pass
        except OSError as exc:
            raise OutputError(shown(path), f"cannot create the folder ({exc.strerror})",
                              "a writable folder next to OUTPUT_FILE") from None
        try:
            return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=parent)
        except OSError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            raise OutputError(shown(path), f"is {kind(st.st_mode) or 'a file'}, not a folder of gxnpuc's own",
                              "gxnpuc writes into and deletes from it, so it follows no link: "
                              "remove or rename it") from None

    def _user_folder(self, path: str) -> int:
        if os.path.lexists(path) and not os.path.isdir(path):
            raise OutputError(shown(path), "is a file, not a folder", "a folder path")
        missing = []
        probe = path
        while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
            missing.append(probe)
            probe = os.path.dirname(probe)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise OutputError(shown(path), f"cannot create the folder ({exc.strerror})",
                              "a writable folder") from None
        self.made.extend((None, p) for p in reversed(missing))
        try:
            return os.open(path, os.O_RDONLY | _DIRECTORY)
        except OSError:
            raise OutputError(shown(path), "is a file, not a folder", "a folder path") from None

    # -- files ----------------------------------------------------------------------------
    def check(self, path: str, own_folder: bool = False) -> tuple[int, str]:
        """(folder fd, name) of a target that may be replaced; an OutputError otherwise."""
        path = os.path.abspath(path)
        name = os.path.basename(path)
        if len(os.fsencode(name)) > NAME_MAX:
            raise OutputError(shown(path), f"the file name is {len(os.fsencode(name))} bytes long",
                              f"at most {NAME_MAX} bytes per file name")
        if any(s.path == path for s in self.staged):
            raise OutputError(shown(path), "is named twice as an output of this run",
                              "different output paths")
        dir_fd = self.folder(os.path.dirname(path), own_folder)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return dir_fd, name
        what = kind(st.st_mode)
        if what and own_folder and not stat.S_ISDIR(st.st_mode):
            return dir_fd, name  # a planted link or node in a folder of ours: renamed over, never followed
        if what:
            raise OutputError(shown(path), f"is {what}; gxnpuc replaces only regular files",
                              "a path that is a regular file or does not exist yet")
        read = self.inputs.get((st.st_dev, st.st_ino))
        if read and read not in self.may_replace:
            same = "" if read == path else f" ({shown(read)})"
            raise OutputError(shown(path), f"is a file this run reads{same}; writing would destroy it",
                              "an output path different from the model, its weights, -e data and the config")
        return dir_fd, name

    def write(self, path: str, data, own_folder: bool = False) -> str:
        """Stage bytes, text or an iterable of byte chunks for `path`; return its absolute path."""
        path = os.path.abspath(path)
        dir_fd, name = self.check(path, own_folder)
        tmp = self._create(dir_fd, name, path)
        self.staged.append(_Staged(path, dir_fd, name, tmp))
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | _NOFOLLOW, dir_fd=dir_fd), "wb") as fh:
                for piece in _pieces(data):
                    fh.write(piece)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OutputError(shown(path), f"cannot write ({exc.strerror or exc})",
                              "a writable file path with free space") from None
        return path

    def _create(self, dir_fd: int, name: str, path: str) -> str:
        for _ in range(16):
            stem = os.fsdecode(os.fsencode(name)[:NAME_MAX - 40])  # room for the unique suffix
            tmp = f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666, dir_fd=dir_fd))
                return tmp
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(shown(path), f"cannot write ({exc.strerror or exc})",
                                  "a writable file path") from None
        raise OutputError(shown(path), "no free temporary name beside it", "a writable folder")

    def remove(self, path: str) -> None:
        """Delete `path` at commit when it is then a regular file (a file the tool wrote)."""
        dir_fd = self.folder(os.path.dirname(os.path.abspath(path)), own=True)
        self.removals.append((dir_fd, os.path.basename(path)))

    def read_own(self, path: str, limit: int) -> bytes | None:
        """A small regular file in a folder of the tool's own (an index), or None when absent."""
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return None
        dir_fd = self.folder(os.path.dirname(os.path.abspath(path)), own=True)
        try:
            fd = os.open(os.path.basename(path), os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return fh.read(limit)

    # -- the end --------------------------------------------------------------------------
    def commit(self) -> None:
        """Rename every staged file over its target and do the deletions; then close."""
        if self.done:
            return
        targets = {(s.dir_fd, s.name) for s in self.staged}
        try:
            for s in self.staged:
                os.replace(s.tmp, s.name, src_dir_fd=s.dir_fd, dst_dir_fd=s.dir_fd)
            for dir_fd, name in self.removals:
                if (dir_fd, name) not in targets:
                    _remove_regular(dir_fd, name)
        except OSError as exc:
            self.abort()
            raise OutputError(shown(exc.filename or "output"), f"cannot write ({exc.strerror or exc})",
                              "a writable folder") from None
        self.made.clear()
        self._close()

    def abort(self) -> None:
        """Remove every temporary file and every folder this run created; close."""
        if self.done:
            return
        for s in self.staged:
            with contextlib.suppress(OSError):
                os.unlink(s.tmp, dir_fd=s.dir_fd)
        for parent, name in reversed(self.made):
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=parent) if parent is not None else os.rmdir(name)
        self._close()

    def _close(self) -> None:
        self.done = True
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _pieces(data) -> Iterator[bytes]:
    if isinstance(data, str):
        yield data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
    else:
        yield from data


def _remove_regular(dir_fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


# -- the API the rest of gxnpuc calls ---------------------------------------------------------
@contextlib.contextmanager
def transaction(inputs: Iterable[str] = ()) -> Iterator[Transaction]:
    """The run's outputs: committed when the block ends normally, removed when it raises."""
    global _current
    outer, tx = _current, Transaction()
    for path in inputs:
        tx.add_input(path)
    _current = tx
    try:
        yield tx
    except BaseException:
        tx.abort()
        raise
    else:
        tx.commit()
    finally:
        _current = outer


def current() -> Transaction | None:
    return _current


def add_input(path: str) -> None:
    """Record a file the run reads (external weights found while loading, -e data)."""
    if _current is not None:
        _current.add_input(path)


def write(path: str, data, own_folder: bool = False) -> str:
    """Stage (inside a transaction) or atomically write (outside one) an output file."""
    if _current is not None:
        return _current.write(path, data, own_folder)
    with transaction() as tx:
        return tx.write(path, data, own_folder)


def check(path: str) -> None:
    """Fail now, before any work, if `path` could not be written as an output."""
    tx = _current or Transaction()
    try:
        tx.check(path)
    finally:
        if tx is not _current:
            tx.abort()


def remove(path: str) -> None:
    if _current is not None:
        return _current.remove(path)
    with transaction() as tx:
        tx.remove(path)


def read_own(path: str, limit: int) -> bytes | None:
    tx = _current or Transaction()
    try:
        return tx.read_own(path, limit)
    finally:
        if tx is not _current:
            tx.abort()
