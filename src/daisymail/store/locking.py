"""mbox locks that interlock with procmail and teapop: ``<mbox>.lock`` + fcntl + flock.

procmail takes the dotlock (via link(), NFS-safe) and then an fcntl lock; a stock
teapop took flock. Holding all three keeps every legacy program out while Daisy
writes or rewrites the file. Dotlocks older than STALE_AFTER seconds are broken,
as procmail does (LOCKTIMEOUT 1024 s); long holders call refresh().
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


def _try_dotlock(lock_path: str) -> bool:
    """Create lock_path atomically with link() from a unique temp file."""
    directory = os.path.dirname(lock_path) or "."
    tmp = os.path.join(
        directory,
        f"_{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.{socket.gethostname()}.lk",
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, lock_path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


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
    try:
        age = time.time() - os.stat(lock_path).st_mtime
    except FileNotFoundError:
        return
    if age > STALE_AFTER or _owner_is_gone(lock_path):
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            pass


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
        self._dotlocked = False
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
        if not self._dotlocked:
            _break_if_stale(self.lock_path)
            if not _try_dotlock(self.lock_path):
                return False
            self._dotlocked = True
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
        """Touch the dotlock so procmail does not think it stale during long sessions."""
        if self._dotlocked:
            try:
                os.utime(self.lock_path)
            except FileNotFoundError:
                pass

    def release(self) -> None:
        if self._kernel_locked and self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            self._kernel_locked = False
        if self._dotlocked:
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
            self._dotlocked = False

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
