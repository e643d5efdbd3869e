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
from typing import Generic, TypeVar

_COPY_SIZE = 256 * 1024


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


T = TypeVar("T")


class _Batch(Generic[T]):
    """Callers one flush will cover: what they added, and how the flush ended."""

    def __init__(self, data: T) -> None:
        self.data = data
        self.finished = False
        self.ok = False
        self.error: OSError | None = None


class GroupFlush(Generic[T]):
    """Group commit: at most one flush running and at most one batch waiting.

    A caller that has made its change joins the waiting batch (or starts one), adding
    what the flush must cover to the batch's data. When no flush is running, the first
    caller of the waiting batch takes the whole batch and runs the flush for everyone
    in it; callers that arrive meanwhile form the next batch. Joining happens under the
    lock before the batch's flush starts, and each caller made its change before
    joining, so the flush began after every covered change: when join() returns, the
    caller's change is on stable storage. A failed flush fails its whole batch (each
    caller gets its own OSError, with the flush's errno); later batches try again with
    a fresh flush.
    """

    def __init__(self, new_data: Callable[[], T], flush: Callable[[T], None], what: str) -> None:
        self._new_data = new_data
        self._flush = flush
        self._what = what
        self._cond = threading.Condition()
        self._pending: _Batch[T] | None = None
        self._running = False

    def join(self, add: Callable[[T], None] | None = None) -> None:
        with self._cond:
            batch = self._pending
            if batch is None:
                batch = self._pending = _Batch(self._new_data())
            if add is not None:
                add(batch.data)
            while not batch.finished:
                if not self._running and self._pending is batch:
                    self._running = True
                    self._pending = None
                    self._cond.release()
                    try:
                        self._flush(batch.data)
                        batch.ok = True
                    except OSError as e:
                        batch.error = e
                    finally:
                        self._cond.acquire()
                        batch.finished = True
                        self._running = False
                        self._cond.notify_all()
                else:
                    self._cond.wait()
        if not batch.ok:
            error = batch.error
            raise OSError(error.errno if error else None, f"{self._what} failed: {error}")


class _DirState:
    def __init__(self, path: str) -> None:
        self.flush: GroupFlush[None] = GroupFlush(
            lambda: None, lambda _: fsync_dir(path), f"fsync of directory {path}"
        )
        self.users = 0


class DirectorySync:
    """Group commit of directory fsyncs across threads: one GroupFlush per directory.

    One fsync of a directory covers every entry changed in it before that fsync
    started, so concurrent deliveries into the same directory share it. An entry made
    while an fsync is already running is never counted as covered by it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[str, _DirState] = {}

    def sync(self, path: str) -> None:
        key = os.path.abspath(path)
        with self._lock:
            state = self._dirs.get(key)
            if state is None:
                state = self._dirs[key] = _DirState(key)
            state.users += 1
        try:
            state.flush.join()
        finally:
            with self._lock:
                state.users -= 1
                if state.users == 0:
                    del self._dirs[key]


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
