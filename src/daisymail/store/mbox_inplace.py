"""Replacing an mbox's content while keeping its owner, when a rename cannot.

On a legacy box each ``/var/spool/mail/USER`` belongs to its user (group ``mail``). A
service user in group ``mail`` may write such a file but may not give a new file away to
another user, and procmail treats a mailbox with the wrong owner as bogus. So when the
owner cannot be kept by ``fchown``, the QUIT rewrite copies the new content into the old
file (same inode, owner, group and mode) instead of renaming a new file over it.

Crash safety comes from a redo file beside the mbox (``.NAME.daisymail-redo``): the
complete new content, fsynced and renamed into place before the first byte of the mbox
is overwritten, with a trailer naming the old size and a hash of the old bytes the final
truncation removes. All of it runs under the mailbox locks. If the copy is cut short,
recover() (called under the locks before a mailbox is read) finishes it, carrying over
any mail appended after the crash; once the truncation is done the redo file is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator

from daisymail.store.base import StorageError

REDO_SUFFIX = ".daisymail-redo"
_BLOCK = 64 * 1024
_TRAILER = re.compile(rb"\nDAISYMAIL-REDO (\d+) (\d+) ([0-9a-f]{64})\n\Z")
_TRAILER_MAX = 128


def can_keep_owner(st: os.stat_result) -> bool:
    """Whether a new file of ours can be given this owner and group (fchown's rules)."""
    if os.geteuid() == 0:
        return True
    return st.st_uid == os.geteuid() and (st.st_gid == os.getegid() or st.st_gid in os.getgroups())


def redo_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{REDO_SUFFIX}")


def copy_into_place(fd: int, path: str, new_path: str, new_fd: int, unchanged: int) -> None:
    """Make the mbox open on fd (read-write, locked) hold new_path's content.

    new_fd is new_path opened for writing, complete and fsynced; its first ``unchanged``
    bytes equal the mbox's. new_path is consumed (renamed to the redo file, then removed).
    """
    old_size = os.fstat(fd).st_size
    new_size = os.fstat(new_fd).st_size
    _write_all(new_fd, _trailer(new_size, old_size, _hash_range(fd, new_size, old_size)))
    os.fsync(new_fd)
    redo = redo_path(path)
    os.rename(new_path, redo)
    _fsync_dir(path)
    _finish(fd, path, redo, new_size, unchanged)


def recover(fd: int, path: str) -> None:
    """Finish an in-place copy a crash cut short; call with the mbox locked, before reading.

    The mbox is never shorter than its old size until the final truncation, and the bytes
    that truncation removes are known by their hash, so the two states are told apart
    even when mail was appended after the crash.
    """
    redo = redo_path(path)
    try:
        rfd = os.open(redo, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StorageError(f"{redo}: cannot open the unfinished rewrite: {e.strerror}") from e
    try:
        size = os.fstat(rfd).st_size
        tail = os.pread(rfd, min(size, _TRAILER_MAX), max(0, size - _TRAILER_MAX))
        m = _TRAILER.search(tail)
        if m is None:
            raise StorageError(f"{redo}: not a complete redo file; move it away to go on")
        new_size, old_size, digest = int(m[1]), int(m[2]), m[3].decode()
        current = os.fstat(fd).st_size
        if current < old_size or _hash_range(fd, new_size, old_size) != digest:
            # The truncation happened: the mbox holds the new content (plus later mail).
            os.unlink(redo)
            _fsync_dir(path)
            return
        # Not truncated yet: the new content plus what arrived after the crash is the
        # new content of a fresh copy (old size = now), written aside and renamed over.
        total = new_size + current - old_size
        fresh = redo + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fresh)
        ofd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            for block in _pread_range(rfd, 0, new_size):
                _write_all(ofd, block)
            for block in _pread_range(fd, old_size, current):
                _write_all(ofd, block)
            _write_all(ofd, _trailer(total, current, _hash_range(fd, total, current)))
            os.fsync(ofd)
        finally:
            os.close(ofd)
        os.rename(fresh, redo)
        _fsync_dir(path)
    except OSError as e:
        raise StorageError(f"{path}: cannot finish an interrupted rewrite: {e.strerror}") from e
    finally:
        os.close(rfd)
    try:
        _finish(fd, path, redo, total, 0)
    except OSError as e:
        raise StorageError(f"{path}: cannot finish an interrupted rewrite: {e.strerror}") from e


def _finish(fd: int, path: str, redo: str, new_size: int, start: int) -> None:
    """Copy redo[start:new_size] over the mbox, truncate it, drop the redo file."""
    rfd = os.open(redo, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        pos = start
        for block in _pread_range(rfd, start, new_size):
            _pwrite_all(fd, block, pos)
            pos += len(block)
    finally:
        os.close(rfd)
    os.fsync(fd)
    os.ftruncate(fd, new_size)
    os.fsync(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(redo)
    _fsync_dir(path)


def _trailer(new_size: int, old_size: int, digest: str) -> bytes:
    return b"\nDAISYMAIL-REDO %d %d %s\n" % (new_size, old_size, digest.encode())


def _hash_range(fd: int, start: int, end: int) -> str:
    h = hashlib.sha256()
    for block in _pread_range(fd, start, end):
        h.update(block)
    return h.hexdigest()


def _pread_range(fd: int, start: int, end: int) -> Iterator[bytes]:
    while start < end:
        block = os.pread(fd, min(_BLOCK, end - start), start)
        if not block:
            return
        start += len(block)
        yield block


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: str) -> None:
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
