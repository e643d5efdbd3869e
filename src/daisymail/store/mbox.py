"""Appending to an mbox exactly as ``procmail -Y`` does, under procmail's locks.

Format (SPEC §3.1–§3.3): ``From <sender>  <ctime>`` with two spaces, every line that
starts with ``From `` gets a ``>`` (Content-Length is never consulted or changed), and
one ``\\n`` is added unless the message already ends in ``\\n\\n``. Locking follows
procmail's order: dotlock, open, then kernel locks. Any failure truncates the file back
to its size before the append (as procmail does on a full disk), so a reader never sees
half a message.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import stat
import time
from collections.abc import Iterator
from types import TracebackType

from daisymail.store.base import Delivery, StorageError
from daisymail.store.durable import sync_dir, write_all
from daisymail.store.locking import LockBusy, MboxLock

LOCK_WAIT = 30.0
CHUNK_SIZE = 64 * 1024
MODE = 0o660
_FROM = b"From "
_UNSAFE_IN_SENDER = re.compile(r"[\x00-\x20\x7f]")


def from_line(sender: str, now: float) -> bytes:
    """The separator line. Whitespace or control characters in the sender would stop
    readers from recognising the line (§1.8), so they become ``_``."""
    name = _UNSAFE_IN_SENDER.sub("_", sender) or "MAILER-DAEMON"
    return f"From {name}  {time.ctime(now)}\n".encode("utf-8", "replace")


class FromEscaper:
    """Streams ``>``-escaping of lines starting with ``From ``, across chunk edges.

    A line start shorter than 5 bytes that could still become ``From `` is held back
    until the next chunk (or finish()) decides it.
    """

    def __init__(self) -> None:
        self._at_line_start = True
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        self._held = b""
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            if self._at_line_start:
                head = data[pos : pos + 5]
                if len(head) < 5 and _FROM.startswith(head):
                    self._held = head
                    break
                if head == _FROM:
                    out.append(b">")
            newline = data.find(b"\n", pos)
            if newline == -1:
                out.append(data[pos:])
                self._at_line_start = False
                break
            out.append(data[pos : newline + 1])
            pos = newline + 1
            self._at_line_start = True
        return b"".join(out)

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        return held


def _read_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def _separator_padding(path: str, size: int) -> bytes:
    """A newline when the file does not end in one. A writer killed mid-append (SIGKILL,
    power loss) leaves part of a line; without this the next From line would be glued
    onto that fragment and the next message lost to every reader. Procmail separates
    messages by nothing more than a line start, so a complete file needs nothing."""
    if size == 0:
        return b""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        last = os.pread(fd, 1, size - 1)
    finally:
        os.close(fd)
    return b"" if last == b"\n" else b"\n"


def _check_target(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise StorageError(f"refusing to deliver to {path}: it is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(f"refusing to deliver to {path}: not a regular file")
    if st.st_nlink > 1:
        raise StorageError(f"refusing to deliver to {path}: it has several hard links")


class MboxAppender:
    """One locked append to an mbox; undo() takes it back while the locks are held.

    Used as a context manager: entering locks and opens (creating the file 0660),
    leaving releases. Holding several appenders lets a caller append to many mboxes
    and still take all of them back if a later one fails.
    """

    def __init__(self, path: str, *, lock_wait: float = LOCK_WAIT) -> None:
        self.path = path
        self.lock_wait = lock_wait
        self._lock = MboxLock(path, None, wait=lock_wait)
        self._fd: int | None = None
        self._start = 0
        self._pad = b""
        self._appended = False

    def __enter__(self) -> MboxAppender:
        deadline = time.monotonic() + self.lock_wait
        try:
            self._lock.acquire()
            self._fd = self._open()
            self._lock.fd = self._fd
            self._lock.wait = max(0.0, deadline - time.monotonic())
            self._lock.acquire()
            opened = os.fstat(self._fd)
            _check_target(self.path, opened)
            try:
                current = os.lstat(self.path)
            except FileNotFoundError:
                current = None
            if current is None or (current.st_dev, current.st_ino) != (
                opened.st_dev,
                opened.st_ino,
            ):
                raise StorageError(f"{self.path} was replaced while being locked")
            self._start = opened.st_size
            self._pad = _separator_padding(self.path, opened.st_size)
        except LockBusy:
            self._close()
            raise StorageError(f"{self.path} is locked by another program") from None
        except OSError as e:
            self._close()
            raise StorageError(f"cannot open {self.path}: {e}") from e
        except BaseException:
            self._close()
            raise
        return self

    def _open(self) -> int:
        """Open for appending, creating the file 0660 (whatever the umask) if missing."""
        try:
            _check_target(self.path, os.lstat(self.path))
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        while True:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, MODE)
            except FileExistsError:
                pass
            else:
                try:
                    os.fchmod(fd, MODE)
                    sync_dir(os.path.dirname(os.path.abspath(self.path)))
                except BaseException:
                    os.close(fd)
                    raise
                return fd
            try:
                return os.open(self.path, flags)
            except FileNotFoundError:
                continue
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                    raise StorageError(
                        f"refusing to deliver to {self.path}: not a regular file"
                    ) from e
                raise

    def append(self, delivery: Delivery, *, now: float) -> None:
        """Write and fsync one message; on any failure truncate back and raise StorageError."""
        fd = self._require_fd()
        escaper = FromEscaper()
        tail = b""
        try:
            write_all(fd, self._pad + from_line(delivery.sender, now))
            for chunk in itertools.chain((delivery.prefix,), _read_chunks(delivery.source)):
                tail = (tail + chunk)[-2:]
                write_all(fd, escaper.feed(chunk))
            write_all(fd, escaper.finish() + (b"" if tail == b"\n\n" else b"\n"))
            os.fsync(fd)
        except BaseException as e:
            self._truncate_back(fd)
            if isinstance(e, OSError):
                raise StorageError(f"cannot write to {self.path}: {e}") from e
            raise
        self._appended = True

    def undo(self) -> None:
        """Take back a completed append (the locks are still held, so nothing follows it)."""
        if self._appended:
            self._truncate_back(self._require_fd())
            self._appended = False

    def _truncate_back(self, fd: int) -> None:
        try:
            os.ftruncate(fd, self._start)
            os.fsync(fd)
        except OSError as e:
            raise StorageError(f"cannot truncate {self.path} back after a failed write: {e}") from e

    def _require_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("MboxAppender used outside its with block")
        return self._fd

    def _close(self) -> None:
        self._lock.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()


def append_mbox(path: str, delivery: Delivery, *, now: float, lock_wait: float = LOCK_WAIT) -> None:
    """Append one message durably, as procmail -Y would; StorageError on any failure."""
    with MboxAppender(path, lock_wait=lock_wait) as appender:
        appender.append(delivery, now=now)
