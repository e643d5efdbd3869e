"""mbox locks that interlock with procmail and teapop: ``<mbox>.lock`` + fcntl + flock.

procmail takes the dotlock (via link(), NFS-safe) and then an fcntl lock; a stock
teapop took flock. Holding all three keeps every legacy program out while Daisy
writes or rewrites the file. Dotlocks older than STALE_AFTER seconds are broken,
as procmail does (LOCKTIMEOUT 1024 s); long holders call refresh().

A dotlock is removed only by its owner: the lock remembers the inode of the file it
linked into place and unlinks ``<mbox>.lock`` only while that name still holds it.
If ours was broken as stale and someone else locked since, theirs is left alone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import time
from types import TracebackType

STALE_AFTER = 1024.0
RETRY_INTERVAL = 0.05


class LockBusy(Exception):
    """The mailbox is locked by someone else and did not come free in time."""


Identity = tuple[int, int, int]
"""(st_dev, st_ino, st_ctime_ns) of a dotlock file: each maker links its own file, and
the ctime tells a new file apart from ours when the filesystem reuses our inode."""


def _try_dotlock(lock_path: str) -> Identity | None:
    """Create lock_path atomically with link() from a unique temp file; the identity of
    the lock made, or None when another one exists."""
    directory = os.path.dirname(lock_path) or "."
    tmp = os.path.join(
        directory,
        f"_{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.{socket.gethostname()}.lk",
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        made = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, lock_path)
    except FileExistsError:
        return None
    finally:
        os.unlink(tmp)
    identity = _identity(lock_path)  # after the unlink, which changed its ctime
    if identity is None or identity[:2] != (made.st_dev, made.st_ino):
        return None  # broken and replaced already: not ours to hold or remove
    return identity


def _identity(path: str) -> Identity | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _unlink_if(path: str, identity: Identity) -> bool:
    """Unlink path only while it is still that file; False when it is another one now.

    A check then an unlink leaves a window of a few instructions, against the whole
    session that an unchecked unlink would leave open."""
    if _identity(path) != identity:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _owner_is_gone(lock_path: str) -> bool:
    """True when the dotlock names a process on this host that no longer exists, as a
    killed server leaves it; waiting out STALE_AFTER would hold up its mailbox."""
    try:
        with open(lock_path, "rb") as f:
            fields = f.read(256).split()
    except OSError:
        return False
    if len(fields) != 2 or not fields[0].isdigit():
        return False
    if fields[1].decode(errors="replace") != socket.gethostname():
        return False
    try:
        os.kill(int(fields[0]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _break_if_stale(lock_path: str) -> None:
    """Remove a dotlock left by a dead or stuck holder; only the very lock judged stale
    (not one a live process created meanwhile) is removed."""
    try:
        st = os.lstat(lock_path)
    except FileNotFoundError:
        return
    if time.time() - st.st_mtime > STALE_AFTER or _owner_is_gone(lock_path):
        _unlink_if(lock_path, (st.st_dev, st.st_ino, st.st_ctime_ns))


class MboxLock:
    """Exclusive lock on an mbox file for appends and rewrites.

    fd: an open descriptor of the mbox to fcntl/flock (None when the file does not
    exist, e.g. a POP3 view of a missing mailbox: then only the dotlock is taken).
    wait: seconds to keep retrying before LockBusy (0: try once).
    """

    def __init__(self, path: str, fd: int | None = None, *, wait: float = 10.0) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self.fd = fd
        self.wait = wait
        self._dotlock: Identity | None = None  # the dotlock we made, while we hold it
        self._kernel_locked = False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            if self._try_once():
                return
            if time.monotonic() >= deadline:
                raise LockBusy(self.path)
            time.sleep(RETRY_INTERVAL)

    def _try_once(self) -> bool:
        if self._dotlock is None:
            _break_if_stale(self.lock_path)
            self._dotlock = _try_dotlock(self.lock_path)
            if self._dotlock is None:
                return False
        if self.fd is not None and not self._kernel_locked:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EAGAIN):
                    return False
                raise
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return False
                raise
            self._kernel_locked = True
        return True

    def refresh(self) -> None:
        """Touch the dotlock so procmail does not think it stale during long sessions
        (only while it is still ours)."""
        if self._dotlock is not None and _identity(self.lock_path) == self._dotlock:
            try:
                os.utime(self.lock_path)
            except FileNotFoundError:
                return
            self._dotlock = _identity(self.lock_path)  # utime changed its ctime

    def release(self) -> None:
        if self._kernel_locked and self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            self._kernel_locked = False
        if self._dotlock is not None:
            _unlink_if(self.lock_path, self._dotlock)
            self._dotlock = None

    def __enter__(self) -> MboxLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
