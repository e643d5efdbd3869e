"""Making files and directory entries reach stable storage, with shared directory fsyncs.

A new file is durable only once its data is fsync'd AND the directory holding its name
is fsync'd after the name was made (rename/link/create). File fsyncs cannot be shared,
but directory fsyncs can: one fsync of a directory covers every entry changed in it
before that fsync started. DirectorySync uses that to let concurrent deliveries into the
same directory share one fsync (group commit); see its docstring for the scheme.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable

_COPY_SIZE = 256 * 1024


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Batch:
    """Callers whose entries one fsync will cover; ok is set only after it succeeded."""

    def __init__(self) -> None:
        self.finished = False
        self.ok = False


class _DirState:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: _Batch | None = None
        self.running = False
        self.users = 0


class DirectorySync:
    """Group commit of directory fsyncs across threads.

    Per directory there is at most one fsync running and at most one batch waiting.
    A caller that has made its directory entry joins the waiting batch (or starts one).
    When no fsync is running, the first caller of the waiting batch takes the whole
    batch and runs the fsync for everyone in it; callers that arrive meanwhile form the
    next batch. Joining happens under the lock before the batch's fsync starts, and each
    caller made its entry before joining, so the fsync began after every covered entry
    existed: when sync() returns without error, the caller's entry is on stable storage.
    An entry made while an fsync is already running is never counted as covered by it.
    A failed fsync fails its whole batch (each caller gets its own OSError); later
    batches try again with a fresh fsync.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[str, _DirState] = {}

    def sync(self, path: str) -> None:
        key = os.path.abspath(path)
        with self._lock:
            state = self._dirs.setdefault(key, _DirState())
            state.users += 1
        try:
            self._sync(key, state)
        finally:
            with self._lock:
                state.users -= 1
                if state.users == 0:
                    del self._dirs[key]

    @staticmethod
    def _sync(path: str, state: _DirState) -> None:
        with state.cond:
            batch = state.pending
            if batch is None:
                batch = state.pending = _Batch()
            while not batch.finished:
                if not state.running and state.pending is batch:
                    state.running = True
                    state.pending = None
                    state.cond.release()
                    try:
                        fsync_dir(path)
                        batch.ok = True
                    finally:
                        state.cond.acquire()
                        batch.finished = True
                        state.running = False
                        state.cond.notify_all()
                else:
                    state.cond.wait()
        if not batch.ok:
            raise OSError(f"fsync of directory {path} failed")


DIRECTORY_SYNC = DirectorySync()


def sync_dir(path: str) -> None:
    """fsync a directory, sharing the fsync with concurrent callers in this process."""
    DIRECTORY_SYNC.sync(path)


def write_file(path: str, chunks: Iterable[bytes], mode: int = 0o600) -> None:
    """Create path (it must not exist), write all chunks and fsync the data.

    The directory entry is not synced here; on any error the file is removed.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            for chunk in chunks:
                write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_durable(path: str, chunks: Iterable[bytes], mode: int = 0o600) -> None:
    """Replace path atomically: temp file in the same directory, fsync, rename, fsync dir."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp"
    )
    write_file(tmp, chunks, mode)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    sync_dir(directory)


def make_dirs(path: str, mode: int = 0o700) -> None:
    """Create path and missing parents, fsyncing each parent that got a new entry."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        make_dirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    sync_dir(parent)


def rewrite_header(path: str, edit: Callable[[bytes], bytes | None]) -> bool:
    """Give the header of the message in ``path`` (up to its blank line) to ``edit``; when
    it returns new header bytes, the file is rewritten with them (a new file renamed over
    this one, the body copied in pieces). True if it was rewritten. Blocking.

    For staging files before their hand-off: nothing is fsync'd here, the hand-off does.
    """
    with open(path, "rb") as f:
        header = bytearray()
        for line in f:
            if line in (b"\n", b"\r\n"):
                break
            header += line
        else:
            line = b""
        new = edit(bytes(header))
        if new is None:
            return False
        tmp = path + ".new"
        try:
            with open(tmp, "wb") as out:
                out.write(new)
                out.write(line)
                while chunk := f.read(_COPY_SIZE):
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return True
