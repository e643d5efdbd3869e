"""A teapop-compatible POP3 view of an mbox: same messages, sizes and UIDLs, byte for byte.

Clients that "leave mail on the server" remember teapop's UIDLs, so the scan below
reproduces teapop's reader exactly (SPEC §1.8-§1.10): the file is read in chunks of at
most 1023 bytes (C fgets with a 1024-byte buffer), and every rule applies per chunk.
The rewrite at commit is Daisy's own: a new file renamed over the old one, so a crash
leaves either the old mailbox or the new one, never a mix.

Locking: the procmail-compatible locks (dotlock + fcntl + flock) are held only while
the file is scanned and while it is rewritten, so deliveries are never held up for a
whole POP3 session; one session per mailbox is ensured by a separate session lock
(flock on ``.<name>.daisymail-pop3`` beside the mbox). Mail appended during a session
lies after the scanned end and is copied over by the rewrite.

Other programs (a teapop still running, a mail reader) may rewrite the file meanwhile,
even keeping its size and its mtime (mail readers restore it). The scan keeps a digest
of every byte it counted, and the rewrite recomputes it under the lock while copying:
any difference refuses the commit and leaves the file alone, so the wrong bytes are
never deleted. mtime alone cannot decide: a delivery appending changes it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from daisymail.store.base import (
    MailboxInUse,
    MaildropView,
    MessageInfo,
    StorageError,
    ViewOptions,
)
from daisymail.store.lines import split_lines
from daisymail.store.locking import LockBusy, MboxLock
from daisymail.store.mbox_inplace import can_keep_owner, copy_into_place
from daisymail.store.mbox_inplace import recover as recover_in_place

CHUNK = 1023
"""fgets(buf, 1024, f) returns at most this many bytes."""

X_UIDL_MAX = 49
TMP_SUFFIX = ".daisymail-tmp"
SESSION_SUFFIX = ".daisymail-pop3"
LOCK_WAIT = 10.0
"""How long to wait for a delivery's lock at login and at commit."""
_READ_BLOCK = 64 * 1024
_MONTHS = (b"Jan ", b"Feb ", b"Mar ", b"Apr ", b"May ", b"Jun ",
           b"Jul ", b"Aug ", b"Sep ", b"Oct ", b"Nov ", b"Dec ")  # fmt: skip
_UIDL_SKIPPED = (b"status: ", b"x-status: ", b"lines: ", b"content-length:")
_C_SPACE = b" \t\n\v\f\r"


def _atoi(s: bytes, pos: int) -> int:
    """C atoi (glibc: strtol truncated to int) on the string starting at pos."""
    n = len(s)
    while pos < n and s[pos] in _C_SPACE:
        pos += 1
    sign = 1
    if pos < n and s[pos] in b"+-":
        sign = -1 if s[pos] == ord("-") else 1
        pos += 1
    value = 0
    while pos < n and 48 <= s[pos] <= 57:
        value = value * 10 + s[pos] - 48
        pos += 1
    value = max(-(2**63), min(2**63 - 1, sign * value))
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def is_separator(chunk: bytes) -> bool:
    """teapop's From-line test: ``From `` and a date parsed at fixed offsets (SPEC §1.8).

    The chunk is a C string, so it ends at its first NUL; running off its end fails.
    """
    if not chunk.startswith(b"From "):
        return False
    line = chunk.split(b"\0", 1)[0]
    first = line.find(b" ")
    second = line.find(b" ", first + 1)
    if second < 0:
        return False
    pos = second + 1
    while pos < len(line) and line[pos] == ord(" "):
        pos += 1
    pos += 4
    if line[pos : pos + 4] not in _MONTHS:
        return False
    pos += 4
    checks = ((1, 31), (0, 23), (0, None), (0, 59))
    for low, high in checks:
        if pos > len(line):
            return False
        value = _atoi(line, pos)
        if value < low or (high is not None and value > high):
            return False
        pos += 3
    return pos <= len(line) and _atoi(line, pos) >= 1970


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


@dataclass(frozen=True)
class MboxMessage:
    """Where a visible message lies in the file, and what POP3 reports for it.

    start: offset of its From line; body: just after the From line's first chunk;
    end: where the next From line (or the scanned part of the file) begins.
    """

    start: int
    body: int
    end: int
    info: MessageInfo


@dataclass(frozen=True)
class MboxScan:
    messages: tuple[MboxMessage, ...]
    end: int
    """Offset after the last chunk teapop counted; anything later is kept on rewrite."""


class _Building:
    def __init__(self, start: int, body: int, from_chunk: bytes) -> None:
        self.start = start
        self.body = body
        self.size = 0
        self.md5 = hashlib.md5(from_chunk.split(b"\0", 1)[0])
        self.x_uidl: str | None = None
        self.received = from_line_time(from_chunk)

    def finish(self, end: int) -> MboxMessage:
        uidl = self.x_uidl if self.x_uidl is not None else self.md5.hexdigest()
        info = MessageInfo(self.size, uidl, self.received)
        return MboxMessage(self.start, self.body, end, info)


def from_line_time(line: bytes) -> float | None:
    """The ctime date of a From line as local time (teapop -e), None when unusual."""
    parts = line.split(b" ", 2)
    if len(parts) < 3:
        return None
    text = parts[2].strip().decode("ascii", "replace")
    try:
        return time.mktime(time.strptime(" ".join(text.split()[:5]), "%a %b %d %H:%M:%S %Y"))
    except (ValueError, OverflowError):
        return None


def scan_mbox(
    chunks: Iterator[bytes], options: ViewOptions, digest: Digest | None = None
) -> MboxScan:
    """Split an mbox, given as fgets-style chunks, into messages as teapop numbers them.

    Reproduced quirks that change numbers or UIDLs: a final chunk cut short by end of
    file is ignored; the chunk after a long From line counts as a line start; the
    "in header" flag is not reset for the first visible message (so a blank line in
    the prelude or a hidden control message before it disables its X-UIDL); messages
    holding ``X-IMAP: `` are hidden one after another while none has been shown.
    Not reproduced: an ``X-UIDL:`` seen in the prelude or in a hidden message, which
    gave teapop an empty UIDL; an empty X-UIDL value, which did the same.

    digest: fed every byte up to the returned end (what a later commit must find again).
    """
    found: list[MboxMessage] = []
    current: _Building | None = None
    pos = 0
    continuing = False
    in_header = True
    control = False
    for raw in chunks:
        if len(raw) < CHUNK and not raw.endswith(b"\n"):
            break
        if digest is not None:
            digest.update(raw)
        start, pos = pos, pos + len(raw)
        if not continuing and is_separator(raw):
            if current is not None and not control:
                found.append(current.finish(start))
                in_header = True
            control = False
            current = _Building(start, pos, raw)
            continue
        if (
            options.hide_imap_control_message
            and not continuing
            and not found
            and raw.startswith(b"X-IMAP: ")
        ):
            control = True
        chunk = raw.replace(b"\0", b"?")
        if current is not None:
            current.size += len(chunk) + (
                1 if chunk.endswith(b"\n") and not chunk.endswith(b"\r\n") else 0
            )
            if not continuing:
                _hash_line(current, chunk, in_header, options)
        if not continuing and chunk.startswith(b"\n"):
            in_header = False
        continuing = not chunk.endswith(b"\n")
    if current is not None and not control:
        found.append(current.finish(pos))
    return MboxScan(tuple(found), pos)


def _hash_line(msg: _Building, chunk: bytes, in_header: bool, options: ViewOptions) -> None:
    if msg.x_uidl is not None:
        return
    if options.use_x_uidl and in_header and chunk[:8].lower() == b"x-uidl: ":
        value = chunk[8 : 8 + X_UIDL_MAX].split(b"\n", 1)[0]
        if value:
            msg.x_uidl = value.decode("latin-1")
            return
    if not chunk.lower().startswith(_UIDL_SKIPPED):
        msg.md5.update(chunk)


def _chunks(fd: int) -> Iterator[bytes]:
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        while chunk := f.readline(CHUNK):
            yield chunk


def _pread_range(fd: int, start: int, end: int) -> Iterator[bytes]:
    while start < end:
        block = os.pread(fd, min(_READ_BLOCK, end - start), start)
        if not block:
            return
        start += len(block)
        yield block


def _fsync_dir(path: str) -> None:
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class MboxView(MaildropView):
    """An mbox scanned for one POP3 session; the session lock is held until close()."""

    def __init__(
        self,
        path: str,
        fd: int | None,
        session: int,
        scan: MboxScan,
        lock_wait: float,
        digest: bytes,
    ) -> None:
        """digest: SHA-256 of the file's first scan.end bytes, as scanned."""
        self.path = path
        self._digest = digest
        self._fd = fd
        self._session = session
        self._scan = scan
        self._lock_wait = lock_wait
        self._infos = tuple(m.info for m in scan.messages)
        self._closed = False

    @property
    def messages(self) -> Sequence[MessageInfo]:
        return self._infos

    def lines(self, index: int) -> Iterator[bytes]:
        """Lines as stored, NUL bytes sent as ``?``, read in fixed-size blocks (a line
        longer than 64 KiB comes in pieces; see split_lines).

        StorageError when the file no longer holds the message where the scan found it
        (another program rewrote or truncated it): its From line is gone, or the file
        ends early."""
        msg = self._scan.messages[index]
        if self._fd is None:
            return
        try:
            head = os.pread(self._fd, msg.body - msg.start, msg.start)
        except OSError as e:
            raise StorageError(f"{self.path}: cannot read: {e.strerror or e}") from e
        if len(head) != msg.body - msg.start or not is_separator(head):
            raise StorageError(f"{self.path}: the mailbox was changed during the session")
        yield from split_lines(self._blocks(msg.body, msg.end), _READ_BLOCK)

    def _blocks(self, start: int, end: int) -> Iterator[bytes]:
        assert self._fd is not None
        try:
            for block in _pread_range(self._fd, start, end):
                yield block.replace(b"\0", b"?")
                start += len(block)
        except OSError as e:
            raise StorageError(f"{self.path}: cannot read: {e.strerror or e}") from e
        if start < end:
            raise StorageError(f"{self.path}: the mailbox was cut short during the session")

    def commit(self, deleted: set[int]) -> None:
        """After a rewrite the view describes the old file: the session is over, close it."""
        doomed = sorted(i for i in deleted if 0 <= i < len(self._scan.messages))
        if not doomed or self._fd is None:
            return
        lock = MboxLock(self.path, self._fd, wait=self._lock_wait)
        try:
            lock.acquire()
        except LockBusy:
            raise StorageError(f"{self.path}: locked by a delivery, try again") from None
        except OSError as e:
            raise StorageError(f"{self.path}: cannot lock: {e.strerror or e}") from e
        try:
            self._check_unchanged()
            self._rewrite(doomed)
        except OSError as e:
            raise StorageError(f"{self.path}: rewrite failed: {e.strerror or e}") from e
        finally:
            lock.release()

    def _check_unchanged(self) -> None:
        """Only appends may have happened since the scan; anything else is refused."""
        assert self._fd is not None
        mine = os.fstat(self._fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise StorageError(f"{self.path}: the mailbox was removed during the session") from None
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino) or mine.st_size < self._scan.end:
            raise StorageError(f"{self.path}: the mailbox was rewritten during the session")

    def _rewrite(self, doomed: list[int]) -> None:
        """Copy all but the doomed messages to a new file and rename it over the old one,
        reading every scanned byte on the way: the digest must match the scan's, or
        the new file is dropped (StorageError) and the mailbox stays as it is."""
        assert self._fd is not None
        segments: list[tuple[int, int, bool]] = []  # (start, end, keep)
        pos = 0
        for i in doomed:
            msg = self._scan.messages[i]
            segments += [(pos, msg.start, True), (msg.start, msg.end, False)]
            pos = msg.end
        segments.append((pos, self._scan.end, True))
        tmp = self.path + TMP_SUFFIX
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        st = os.fstat(self._fd)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            digest = hashlib.sha256()
            for start, end, keep in segments:
                for block in _pread_range(self._fd, start, end):
                    digest.update(block)
                    if keep:
                        _write_all(out, block)
            if digest.digest() != self._digest:
                raise StorageError(
                    f"{self.path}: the mailbox was changed by another program during the"
                    " session; nothing was deleted"
                )
            for block in _pread_range(self._fd, self._scan.end, os.fstat(self._fd).st_size):
                _write_all(out, block)
            os.fsync(out)
            if not can_keep_owner(st):
                # A service user cannot give a new file to the mailbox's owner.
                copy_into_place(self._fd, self.path, tmp, out, segments[0][1])
            else:
                os.fchmod(out, st.st_mode & 0o7777)
                _keep_owner(out, st.st_uid, st.st_gid)
                os.rename(tmp, self.path)
        except BaseException:
            os.close(out)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(out)
        _fsync_dir(self.path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            os.close(self._session)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _keep_owner(fd: int, uid: int, gid: int) -> None:
    """procmail renames a mailbox with the wrong owner away as bogus, so failing to keep
    the owner must fail the rewrite (PermissionError) rather than change it."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) == (uid, gid):
        return
    os.fchown(fd, uid, gid)


def session_lock_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{SESSION_SUFFIX}")


def _session_lock(path: str) -> int:
    """flock a per-mailbox file beside the mbox: one POP3 session at a time."""
    fd = os.open(session_lock_path(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MailboxInUse(path) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_mbox_view(path: str, options: ViewOptions, *, lock_wait: float = LOCK_WAIT) -> MboxView:
    """Lock and scan an mbox. A missing file is an empty mailbox and is not created.

    Raises MailboxInUse when another session has it, or a delivery or legacy program
    keeps it locked longer than lock_wait; StorageError when the file or its directory
    cannot be used.
    """
    try:
        session = _session_lock(path)
    except OSError as e:
        raise StorageError(f"{path}: {e.strerror or e}") from e
    lock = MboxLock(path, None, wait=lock_wait)
    fd: int | None = None
    digest = hashlib.sha256()
    try:
        lock.acquire()
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageError(f"{path}: not a regular file")
            lock.fd = fd
            lock.acquire()
            recover_in_place(fd, path)
            scan = scan_mbox(_chunks(fd), options, digest)
        else:
            scan = MboxScan((), 0)
        lock.release()
    except LockBusy as e:
        _abandon(lock, fd, session)
        raise MailboxInUse(path) from e
    except OSError as e:
        _abandon(lock, fd, session)
        raise StorageError(f"{path}: {e.strerror or e}") from e
    except BaseException:
        _abandon(lock, fd, session)
        raise
    return MboxView(path, fd, session, scan, lock_wait, digest.digest())


def _abandon(lock: MboxLock, fd: int | None, session: int) -> None:
    lock.release()
    if fd is not None:
        os.close(fd)
    os.close(session)
