"""Converting a mailbox between mbox and Maildir without changing what POP3 clients saw.

Leave-on-server clients remember UIDLs, so each message keeps the UIDL the old format
gave it: mbox → Maildir records teapop's UIDL in the Maildir's ``daisymail-uidlist``;
Maildir → mbox puts it in an ``X-UIDL:`` header, which counts only with ``[pop3]
use_x_uidl = true`` (an mbox has no other place for it).

Order of work, so that a crash or a concurrent delivery loses nothing:

1. the POP3 session lock of the old mailbox is held throughout (an open session is
   refused with MailboxInUse); for an mbox also its delivery locks while it is read;
2. the new mailbox is built under a temporary name, fsync'd, then renamed into place;
3. the directory record is switched (format and path) in one transaction;
4. after ``settle`` seconds (running servers re-read the directory within one),
   mail that a delivery still put in the old mailbox is carried over;
5. the old mailbox is renamed aside to ``<old>.converted-<timestamp>``, never deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from daisymail.directory.base import Directory
from daisymail.directory.model import Mailbox, MailboxFormat
from daisymail.store import maildir, maildir_view, maildir_write
from daisymail.store.base import Delivery, MailboxInUse, ViewOptions
from daisymail.store.durable import sync_dir
from daisymail.store.files import FileStore, is_maildir
from daisymail.store.locking import LockBusy, MboxLock
from daisymail.store.mbox import LOCK_WAIT, MboxAppender
from daisymail.store.mbox_view import (
    CHUNK,
    X_UIDL_MAX,
    MboxMessage,
    MboxScan,
    scan_mbox,
    session_lock_path,
)

SETTLE = 2.0
"""Seconds to wait after the switch for deliveries that read the old record."""
STAGING_SUFFIX = ".daisymail-converting"
_READ_BLOCK = 64 * 1024


class ConversionError(Exception):
    """The conversion was refused or failed before the switch; nothing was changed."""


@dataclass
class ConversionResult:
    name: str
    to: MailboxFormat
    path: str
    """The mailbox's new record path (relative paths are under the mail dir)."""
    location: str
    kept_as: str
    """Where the old mailbox now is ("" when there was no file)."""
    messages: int = 0
    late: int = 0
    """Messages delivered to the old mailbox during the conversion, carried over."""
    skipped_bytes: int = 0
    """mbox bytes outside every message POP3 showed (prelude, hidden control message,
    an unterminated last line); they stay in the old file."""
    uidls_lost: int = 0
    """Maildir UIDLs longer than an X-UIDL header can carry."""
    warnings: list[str] = field(default_factory=list)


def convert_mailbox(
    directory: Directory,
    store: FileStore,
    name: str,
    to: MailboxFormat,
    options: ViewOptions,
    *,
    path: str | None = None,
    settle: float = SETTLE,
    lock_wait: float = LOCK_WAIT,
    clock: Callable[[], float] = time.time,
) -> ConversionResult:
    """Convert mailbox ``name`` to format ``to``; see the module docstring.

    path: the new record path (default: beside the old one, see ``default_path``).
    Raises ConversionError or MailboxInUse before anything changed, StorageError when
    the files cannot be read or written (also before the switch: nothing changed).
    """
    if directory.read_only:
        raise ConversionError("the directory is read-only (live legacy files)")
    old = directory.snapshot().mailboxes.get(name)
    if old is None:
        raise ConversionError(f"no such mailbox: {name}")
    if ("maildir" if is_maildir(old) else "mbox") == to:
        raise ConversionError(f"mailbox {name} is already {to}")
    new_path = default_path(store, old, to) if path is None else _check_path(path, to)
    new = Mailbox(name=old.name, format=to, path=new_path)
    source_path = store.resolve_path(old)
    target = store.resolve_path(new).rstrip("/")
    _check_target(directory, store, name, target)
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(clock()))
    result = ConversionResult(
        name, to, new_path, store.resolve_path(new), f"{source_path.rstrip('/')}.converted-{stamp}"
    )
    job = _Job(directory, old, new, source_path, target, options, lock_wait, settle, clock, result)
    if to == "maildir":
        _mbox_to_maildir(job)
    else:
        _maildir_to_mbox(job)
    return result


def default_path(store: FileStore, old: Mailbox, to: MailboxFormat) -> str:
    """Beside the old mailbox: its name without a ``.mbox``/``.maildir`` suffix when that
    is free (so converting back returns to the original place), else with the new one."""
    base = (old.path or old.name).rstrip("/")
    stem = base
    for suffix in (".maildir", ".mbox"):
        stem = stem.removesuffix(suffix)
    candidates = (stem, f"{stem}.{to}")
    for candidate in candidates:
        record = candidate + "/" if to == "maildir" else candidate
        location = store.resolve_path(Mailbox(old.name, to, record)).rstrip("/")
        if location != store.resolve_path(old).rstrip("/") and not os.path.lexists(location):
            return "" if record.rstrip("/") == old.name else record
    raise ConversionError(
        f"both {candidates[0]} and {candidates[1]} exist: choose a new place with --path"
    )


def _check_path(path: str, to: MailboxFormat) -> str:
    if not path.strip("/"):
        raise ConversionError(f"bad path {path!r}")
    if to == "maildir":
        return path if path.endswith("/") else path + "/"
    if path.endswith("/"):
        raise ConversionError(f"an mbox path cannot end in '/': {path}")
    return path


def _check_target(directory: Directory, store: FileStore, name: str, target: str) -> None:
    if os.path.lexists(target):
        raise ConversionError(f"{target} already exists: choose another place with --path")
    for other in directory.snapshot().mailboxes.values():
        if other.name != name and store.resolve_path(other).rstrip("/") == target:
            raise ConversionError(f"{target} is the mailbox of {other.name}")


@dataclass
class _Job:
    directory: Directory
    old: Mailbox
    new: Mailbox
    source: str
    target: str
    options: ViewOptions
    lock_wait: float
    settle: float
    clock: Callable[[], float]
    result: ConversionResult


# -- mbox → Maildir -----------------------------------------------------------------------
def _mbox_to_maildir(job: _Job) -> None:
    source, target, result = job.source, job.target, job.result
    session = _mbox_session_lock(source)
    try:
        fd = _open_mbox(source)
        try:
            lock = MboxLock(source, None, wait=job.lock_wait)
            _acquire(lock, fd, source)
            try:
                scan = scan_mbox(_chunks(fd), job.options) if fd is not None else MboxScan((), 0)
                size = os.fstat(fd).st_size if fd is not None else 0
                result.messages = len(scan.messages)
                result.skipped_bytes = size - sum(m.end - m.start for m in scan.messages)
                staging = target + STAGING_SUFFIX
                _remove_staging(staging)
                try:
                    maildir.ensure_maildir(staging)
                    uidls: dict[str, str] = {}
                    for message, when in zip(scan.messages, _dates(scan.messages), strict=True):
                        assert fd is not None  # a missing file has no messages
                        unique = maildir_write.add_message(staging, _body(fd, message), when=when)
                        uidls[unique] = message.info.uidl
                        lock.refresh()
                    maildir.write_uidlist(staging, uidls)
                    sync_dir(os.path.join(staging, "new"))
                    _match_owner(staging, os.fstat(fd) if fd is not None else None)
                    _publish(staging, target)
                except BaseException:
                    _remove_staging(staging)
                    raise
                _switch(job.directory, job.old, job.new, target)
            finally:
                lock.release()
            time.sleep(job.settle)
            if fd is None:
                result.kept_as = ""
            else:
                _carry_over_mbox(job, lock, fd, scan.end)
        finally:
            if fd is not None:
                os.close(fd)
    finally:
        os.close(session)
    _check_reappeared(source, result)


def _carry_over_mbox(job: _Job, lock: MboxLock, fd: int, scanned_end: int) -> None:
    """Under the locks again: copy what was appended since the scan, then rename aside."""
    _acquire(lock, fd, job.source)
    try:
        later = scan_mbox(_chunks(fd), job.options).messages
        late = [m for m in later if m.start >= scanned_end]
        for message in late:
            maildir_write.add_message(job.target, _body(fd, message), when=message.info.received)
        if late:
            sync_dir(os.path.join(job.target, "new"))
        job.result.late = len(late)
        _rename_aside(job.source, job.result.kept_as)
    finally:
        lock.release()


def _mbox_session_lock(path: str) -> int:
    """The flock a POP3 session holds beside the mbox (see mbox_view)."""
    fd = os.open(session_lock_path(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MailboxInUse(path) from None
    return fd


def _open_mbox(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConversionError(f"{path} is not a regular file")
    return fd


def _acquire(lock: MboxLock, fd: int | None, path: str) -> None:
    """procmail's order: dotlock, then the kernel locks on the open file."""
    try:
        lock.fd = None
        lock.acquire()
        lock.fd = fd
        lock.acquire()
    except LockBusy:
        lock.release()
        raise MailboxInUse(path) from None


def _chunks(fd: int) -> Iterator[bytes]:
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        while chunk := f.readline(CHUNK):
            yield chunk


def _body(fd: int, message: MboxMessage) -> Iterator[bytes]:
    """The message as POP3 sends it from the mbox: no From line, NUL bytes as ``?``."""
    pos = message.body
    while pos < message.end:
        block = os.pread(fd, min(_READ_BLOCK, message.end - pos), pos)
        if not block:
            return
        pos += len(block)
        yield block.replace(b"\0", b"?")


def _dates(messages: tuple[MboxMessage, ...]) -> Iterator[float]:
    """Each message's From-line date, never before the previous one nor in the future, so
    the Maildir lists them in mbox order and expiry sees the original dates."""
    now = time.time()
    last = 0.0
    for message in messages:
        when = message.info.received
        last = min(now, max(last, when if when is not None else last))
        yield last


# -- Maildir → mbox -----------------------------------------------------------------------
def _maildir_to_mbox(job: _Job) -> None:
    source, target, result = job.source.rstrip("/"), job.target, job.result
    if not os.path.isdir(source):
        raise ConversionError(f"{source} is not a Maildir")
    view = maildir_view.MaildirView(source)
    try:
        uidlist = maildir.read_uidlist(source)
        result.messages = len(view.messages)
        staging = target + STAGING_SUFFIX
        _remove_staging(staging)
        seen: set[str] = set()
        try:
            with MboxAppender(staging, lock_wait=job.lock_wait) as appender:
                for index, info in enumerate(view.messages):
                    item = _mbox_delivery(view.file_path(index), info.uidl, result)
                    appender.append(item, now=info.received or job.clock())
                    seen.add(view.unique(index))
            _match_owner(staging, os.stat(source))
            _publish(staging, target)
        except BaseException:
            _remove_staging(staging)
            raise
        _switch(job.directory, job.old, job.new, target)
        time.sleep(job.settle)
        late = _carry_over(source, job, seen, uidlist)
        _rename_aside(source, result.kept_as)
        late += _carry_over(result.kept_as, job, seen, uidlist)
        result.late = late
    finally:
        view.close()
    _check_reappeared(source, result)


def _carry_over(source: str, job: _Job, seen: set[str], uidlist: dict[str, str]) -> int:
    """Append messages delivered to the old Maildir since the snapshot to the live mbox."""
    count = 0
    for entry in maildir.scan_maildir(source):
        if entry.unique in seen:
            continue
        uidl = uidlist.get(entry.unique) or maildir.uidl_of(entry.unique)
        try:
            item = _mbox_delivery(entry.path, uidl, job.result)
        except FileNotFoundError:
            continue
        with MboxAppender(job.target, lock_wait=job.lock_wait) as appender:
            appender.append(item, now=entry.received or job.clock())
        seen.add(entry.unique)
        count += 1
    return count


def _mbox_delivery(path: str, uidl: str, result: ConversionResult) -> Delivery:
    """The message with an X-UIDL header first (unless it already has that one), and its
    Return-Path as the From line's sender."""
    with open(path, "rb") as f:
        first = f.readline()
        header = [first]
        while header[-1] not in (b"\n", b"\r\n", b""):
            header.append(f.readline())
    header_uidl = b"X-UIDL: " + uidl.encode("latin-1")
    prefix = b""
    if len(uidl) > X_UIDL_MAX:
        result.uidls_lost += 1
    elif first.rstrip(b"\r\n") != header_uidl:
        prefix = header_uidl + b"\n"
    return Delivery(source=path, prefix=prefix, sender=_return_path(header))


def _return_path(header: list[bytes]) -> str:
    for line in header:
        if line[:12].lower() == b"return-path:":
            value = line[12:].strip().decode("utf-8", "replace")
            return value.removeprefix("<").removesuffix(">")
    return ""


# -- shared steps ---------------------------------------------------------------------------
def _remove_staging(staging: str) -> None:
    """A build left by a crash (never in use: the record did not point at it)."""
    if os.path.isdir(staging) and not os.path.islink(staging):
        shutil.rmtree(staging)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging + ".lock")


def _match_owner(path: str, st: os.stat_result | None) -> None:
    """Give the new mailbox the old one's owner (the CLI may run as root) and fsync it."""
    if st is None or (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()):
        return
    paths = [path]
    if os.path.isdir(path):
        for folder, dirs, files in os.walk(path):
            paths.extend(os.path.join(folder, n) for n in dirs + files)
    for p in paths:
        os.chown(p, st.st_uid, st.st_gid, follow_symlinks=False)
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(staging: str, target: str) -> None:
    if os.path.lexists(target):
        raise ConversionError(f"{target} appeared during the conversion")
    os.rename(staging, target)
    sync_dir(os.path.dirname(target))


def _switch(directory: Directory, old: Mailbox, new: Mailbox, target: str) -> None:
    """Point the record at the new mailbox; undo the publication if that fails."""
    try:
        directory.update_mailbox(new)
    except BaseException:
        _remove_published(target)
        raise


def _remove_published(target: str) -> None:
    if os.path.isdir(target):
        shutil.rmtree(target)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)


def _rename_aside(source: str, kept_as: str) -> None:
    os.rename(source, kept_as)
    sync_dir(os.path.dirname(source) or ".")


def _check_reappeared(source: str, result: ConversionResult) -> None:
    if os.path.lexists(source.rstrip("/")):
        result.warnings.append(
            f"{source} was created again by a late delivery: move its mail by hand"
        )
