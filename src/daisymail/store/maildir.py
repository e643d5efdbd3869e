"""Maildir: lock-free durable delivery, and a locked snapshot view for POP3.

Delivered files are named ``<unique>,S=<file size>,W=<POP3 size>`` in ``new/`` (the W
field as Dovecot does), so a view learns every size from the name. Files delivered by
other programs get their W field added on first view, once. The UIDL is the unique part
of the name (before the first ``,`` or ``:``), which survives moves to ``cur/`` and flag
changes by other mail readers, unless the Maildir's ``daisymail-uidlist`` names another
UIDL for it: a converted mbox keeps the UIDLs its POP3 clients saw there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import itertools
import math
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

from daisymail.store.base import (
    Delivery,
    MailboxInUse,
    MaildropView,
    MessageInfo,
    StorageError,
)
from daisymail.store.durable import make_dirs, sync_dir, write_all, write_durable, write_file
from daisymail.store.intake import IntakeJournal
from daisymail.store.lines import split_lines
from daisymail.store.listing_cache import LISTINGS, TMP_SWEEPS, Pop3Listing

CHUNK_SIZE = 64 * 1024
LOCK_NAME = "daisymail-pop3.lock"
UIDLIST_NAME = "daisymail-uidlist"
SUBDIRS = ("cur", "new", "tmp")
TMP_MAX_AGE = 36 * 3600
# Larger messages flush their own file: their data dominates the flush, and the journal
# would hold them in memory and write them twice.
JOURNAL_LIMIT = 256 * 1024

_counter = itertools.count(1)
_UIDL_OK = re.compile(rb"[\x21-\x7e]{1,70}")
# errnos of link() that mean "no hard link here", so the copy is written out instead.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})


def unique_name(when: float | None = None) -> str:
    """A Maildir unique name: ``<time>.M<usec>P<pid>Q<counter>.<host>``.

    when: the delivery time to record instead of now (a converted message keeps its
    date, which orders the view and drives expiry)."""
    now = time.time_ns() if when is None else int(when * 1e9)
    seconds, usec = divmod(now // 1000, 1_000_000)
    return f"{seconds}.M{usec:06d}P{os.getpid()}Q{next(_counter)}.{_host()}"


@functools.cache
def _host() -> str:
    """The host part of unique names (looked up once: it is on every delivery's path)."""
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


class Pop3Size:
    """Counts octets as POP3 sends them: a ``\\n`` not preceded by ``\\r`` counts 2."""

    def __init__(self) -> None:
        self.octets = 0
        self.size = 0
        self._last_cr = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        bare = data.count(b"\n") - data.count(b"\r\n")
        if self._last_cr and data[:1] == b"\n":
            bare -= 1
        self.size += len(data)
        self.octets += len(data) + bare
        self._last_cr = data[-1:] == b"\r"


def _read_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def ensure_maildir(path: str) -> None:
    for sub in SUBDIRS:
        make_dirs(os.path.join(path, sub))


class MaildirWriter:
    """One message streamed into the first Maildir's ``tmp/``; commit() fsyncs it and
    puts a copy in each Maildir's ``new/`` (hard links where possible), then syncs
    those directories. On failure nothing is left behind and StorageError is raised.

    The first BUFFER_LIMIT bytes are held in memory and the file is made only once
    more arrives, or at commit: most mail is small, and then creating, writing and
    fsyncing the file all happen in commit(), which runs in a worker thread, instead
    of blocking the event loop on the filesystem while other sessions' fsyncs run.
    Memory stays bounded per session, and a larger message streams to disk as before.
    """

    BUFFER_LIMIT = 64 * 1024

    def __init__(
        self, maildirs: Sequence[str], prefix: bytes = b"", journal: IntakeJournal | None = None
    ) -> None:
        self.maildirs = list(maildirs)
        self.journal = journal
        self.counter = Pop3Size()
        self.created: list[str] = []
        self.tmp = ""
        self.fd: int | None = None
        self.buffer = bytearray()
        self.done = False
        self.write(prefix)

    def write(self, data: bytes) -> None:
        """Raises OSError (a full disk, say) once the message spills to its file."""
        assert not self.done
        self.counter.feed(data)
        if self.fd is None:
            self.buffer += data
            if len(self.buffer) <= self.BUFFER_LIMIT:
                return
            self.fd = self._open()
            data, self.buffer = bytes(self.buffer), bytearray()
        write_all(self.fd, data)

    def _open(self) -> int:
        """Create the tmp/ file; the Maildir itself is made only when it is missing."""
        self.tmp = os.path.join(self.maildirs[0], "tmp", unique_name())
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        try:
            return os.open(self.tmp, flags, 0o600)
        except FileNotFoundError:
            ensure_maildir(self.maildirs[0])
            return os.open(self.tmp, flags, 0o600)

    def commit(self) -> list[str]:
        """The files made, all durable (their bytes in the intake journal, when there is
        one: see store/intake.py)."""
        assert not self.done
        try:
            content = b""
            if self.fd is None:
                self.fd = self._open()
                write_all(self.fd, self.buffer)
                content, self.buffer = bytes(self.buffer), bytearray()
            journal = self.journal
            if journal is not None and (not journal.ready or self.counter.size > JOURNAL_LIMIT):
                journal = None
            if journal is None:
                try:
                    os.fsync(self.fd)
                finally:
                    os.close(self.fd)
                    self.fd = None
            self._link()
            if journal is None:
                for directory in dict.fromkeys(os.path.dirname(p) for p in self.created):
                    sync_dir(directory)
            else:
                assert self.fd is not None
                if not content and self.counter.size:
                    content = os.pread(self.fd, self.counter.size, 0)
                journal.record(self.created, self.fd, content)
                self.fd = None  # the journal's syncer flushes and closes it
        except OSError as e:
            self.abort()
            raise StorageError(f"Maildir delivery failed: {e}") from e
        self.done = True
        return self.created

    def _link(self) -> None:
        """Give the tmp/ file its name in each Maildir's new/, then drop the tmp/ name."""
        name = f"{os.path.basename(self.tmp)},S={self.counter.size},W={self.counter.octets}"
        for maildir in self.maildirs:
            dest = os.path.join(maildir, "new", name)
            try:
                _link_or_copy(self.tmp, maildir, dest)
            except FileNotFoundError:
                ensure_maildir(maildir)
                _link_or_copy(self.tmp, maildir, dest)
            self.created.append(dest)
        os.unlink(self.tmp)

    def abort(self) -> None:
        self.done = True
        self.buffer = bytearray()
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
        remove_files(self.created)
        self.created = []


def deliver_maildirs(
    maildirs: Sequence[str], delivery: Delivery, journal: IntakeJournal | None = None
) -> list[str]:
    """Store one copy of a spooled message in each Maildir; returns the files made."""
    writer = MaildirWriter(maildirs, delivery.prefix, journal)
    try:
        for chunk in _read_chunks(delivery.source):
            writer.write(chunk)
    except OSError as e:
        writer.abort()
        raise StorageError(f"Maildir delivery failed: {e}") from e
    return writer.commit()


def add_message(maildir: str, chunks: Iterable[bytes], *, when: float | None = None) -> str:
    """Write one message into ``new/`` (via ``tmp/``, file fsync'd) and return its unique
    name. The caller syncs ``new/`` once after a batch."""
    counter = Pop3Size()

    def counted() -> Iterator[bytes]:
        for chunk in chunks:
            counter.feed(chunk)
            yield chunk

    tmp = os.path.join(maildir, "tmp", unique_name(when))
    write_file(tmp, counted())
    try:
        while True:
            unique = os.path.basename(tmp)
            dest = os.path.join(maildir, "new", f"{unique},S={counter.size},W={counter.octets}")
            try:
                os.link(tmp, dest)
                return unique
            except FileExistsError:
                renamed = os.path.join(maildir, "tmp", unique_name(when))
                os.rename(tmp, renamed)
                tmp = renamed
    finally:
        os.unlink(tmp)


def read_uidlist(maildir: str) -> dict[str, str]:
    """``<unique> <uidl>`` lines: the UIDLs that override those derived from names."""
    try:
        with open(os.path.join(maildir, UIDLIST_NAME), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    entries: dict[str, str] = {}
    for line in data.split(b"\n"):
        unique, space, uidl = line.partition(b" ")
        if space and unique and uidl:
            entries[os.fsdecode(unique)] = uidl.decode("latin-1")
    return entries


def write_uidlist(maildir: str, entries: Mapping[str, str]) -> None:
    """Replace the list atomically and durably (an empty list removes the file)."""
    path = os.path.join(maildir, UIDLIST_NAME)
    if not entries:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        sync_dir(maildir)
        return
    lines = (os.fsencode(u) + b" " + v.encode("latin-1") + b"\n" for u, v in entries.items())
    write_durable(path, [b"".join(lines)])


def _link_or_copy(src: str, maildir: str, dest: str) -> None:
    try:
        os.link(src, dest)
        return
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
    copy = os.path.join(maildir, "tmp", unique_name())
    write_file(copy, _read_chunks(src))
    try:
        os.link(copy, dest)
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
        os.rename(copy, dest)
    else:
        os.unlink(copy)


def remove_files(paths: Iterable[str]) -> None:
    """Best-effort undo of delivered copies: unlink them and sync their directories."""
    directories: dict[str, None] = {}
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        directories[os.path.dirname(path)] = None
    for directory in directories:
        try:
            sync_dir(directory)
        except OSError:
            pass


def _split_name(name: str) -> tuple[str, str, str]:
    """(unique, fields, info): ``u,S=1,W=2:2,S`` → (``u``, ``,S=1,W=2``, ``:2,S``)."""
    head, colon, info = name.partition(":")
    unique, comma, fields = head.partition(",")
    return unique, comma + fields, colon + info


def uidl_of(unique: str) -> str:
    """The UIDL a name gives: its unique part, or the MD5 of it when POP3 cannot carry it."""
    raw = unique.encode("utf-8", "surrogateescape")
    if _UIDL_OK.fullmatch(raw):
        return unique
    return hashlib.md5(raw).hexdigest()


def _pop3_size_of_file(path: str) -> int:
    counter = Pop3Size()
    for chunk in _read_chunks(path):
        counter.feed(chunk)
    return counter.octets


_OURS = re.compile(r"(\d+)\.M(\d+)P\d+Q(\d+)\.")


def _sort_key(directory: str, name: str) -> tuple[float, int, str]:
    """Delivery order: our names carry seconds, microseconds and a per-process counter;
    other names start with seconds at least (else the file's mtime is used)."""
    ours = _OURS.match(name)
    if ours:
        return int(ours[1]) + int(ours[2]) / 1e6, int(ours[3]), name
    digits = re.match(r"\d+", name)
    if digits:
        return float(digits.group()), 0, name
    return os.stat(os.path.join(directory, name)).st_mtime, 0, name


class MaildirEntry:
    """A message file found in ``new/`` or ``cur/``; received: its delivery time."""

    def __init__(self, directory: str, name: str, received: float) -> None:
        self.directory = directory
        self.name = name
        self.unique = _split_name(name)[0]
        self.received = received

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


def scan_maildir(path: str) -> list[MaildirEntry]:
    """The messages of a Maildir in delivery order; ``tmp/`` is never looked at.

    new/ is listed before cur/: a file moved between the two listings shows up twice
    (kept once), not never."""
    found: dict[str, MaildirEntry] = {}
    keys: dict[str, tuple[float, int, str]] = {}
    for sub in ("new", "cur"):
        directory = os.path.join(path, sub)
        for name in os.listdir(directory):
            if name.startswith("."):
                continue
            try:
                key = _sort_key(directory, name)
            except FileNotFoundError:
                continue
            entry = MaildirEntry(directory, name, key[0])
            keys[entry.unique] = key
            found[entry.unique] = entry
    return sorted(found.values(), key=lambda e: keys[e.unique])


def clean_tmp(maildir: str) -> float:
    """Remove what deliveries cut off by a crash or kill left in ``tmp/``; returns when
    the oldest file left there becomes due (inf when none), so that a caller may skip
    sweeps until then while ``tmp/`` is unchanged (a file written since only gets younger).

    Only files untouched for TMP_MAX_AGE go (the Maildir convention's 36 hours): a
    delivery in progress writes its tmp file continuously, and one never takes that
    long."""
    cutoff = time.time() - TMP_MAX_AGE
    oldest = math.inf
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(os.path.join(maildir, "tmp")):
            with contextlib.suppress(FileNotFoundError):
                if not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat().st_mtime
                if mtime < cutoff:
                    os.unlink(entry.path)
                else:
                    oldest = min(oldest, mtime)
    return oldest + TMP_MAX_AGE


class NotCached(Exception):
    """A view was asked for from the listing cache alone, and the Maildir must be read."""


class MaildirView(MaildropView):
    """One POP3 session's snapshot of a Maildir, exclusive among Daisy sessions.

    Delivery needs no lock, so mail arriving during the session simply is not in the
    snapshot and is never touched by commit(). Other mail readers may move or rename
    files meanwhile; files are found again by their unique name.
    """

    def __init__(self, path: str, *, cached_only: bool = False) -> None:
        """cached_only: raise NotCached rather than read more than a few stats (the
        listing and tmp/ sweep are remembered), so the caller may open on its event loop."""
        self.path = path
        self._cached_only = cached_only
        lock = os.path.join(path, LOCK_NAME)
        try:
            try:
                self._lock_fd: int | None = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:
                if cached_only:
                    raise NotCached(path) from None
                ensure_maildir(path)
                self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StorageError(f"cannot open Maildir {path}: {e}") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise MailboxInUse(path) from None
        try:
            self._sweep_tmp()
            self._listing = self._load()
        except OSError as e:
            self.close()
            raise StorageError(f"cannot read Maildir {path}: {e}") from e
        except BaseException:
            self.close()
            raise
        self._uidlist = self._listing.uidlist
        self._entries: dict[int, MaildirEntry] = {}  # made when a message is first used

    def _sweep_tmp(self) -> None:
        """clean_tmp, skipped while tmp/ is as it was and nothing in it can be due yet."""
        stamp = TMP_SWEEPS.stamp([os.path.join(self.path, "tmp")])
        if stamp.missing:
            self._must_read()
            ensure_maildir(self.path)
            stamp = TMP_SWEEPS.stamp([os.path.join(self.path, "tmp")])
        due = TMP_SWEEPS.get(self.path, stamp)
        if due is None or time.time() >= due:
            self._must_read()
            TMP_SWEEPS.put(self.path, stamp, clean_tmp(self.path))

    def _load(self) -> Pop3Listing:
        """The listing, from LISTINGS when new/, cur/ and the UIDL list are unchanged
        since it was read (the lock is held: no other Daisy session changes them now)."""
        paths = [os.path.join(self.path, part) for part in ("new", "cur", UIDLIST_NAME)]
        stamp = LISTINGS.stamp(paths)
        if None in stamp.keys[:2]:
            self._must_read()
            ensure_maildir(self.path)
            stamp = LISTINGS.stamp(paths)
        listing = LISTINGS.get(self.path, stamp)
        if listing is None:
            self._must_read()
            listing = self._scan()
            LISTINGS.put(self.path, stamp, listing, len(listing.rows) + 1)
        return listing

    def _must_read(self) -> None:
        if self._cached_only:
            raise NotCached(self.path)

    def _scan(self) -> Pop3Listing:
        uidlist = read_uidlist(self.path)
        rows: list[tuple[str, str, float]] = []
        messages: list[MessageInfo] = []
        for entry in scan_maildir(self.path):
            try:
                size = self._pop3_size(entry)
            except FileNotFoundError:
                continue
            rows.append((entry.directory, entry.name, entry.received))
            uidl = uidlist.get(entry.unique) or uidl_of(entry.unique)
            messages.append(MessageInfo(size, uidl, entry.received))
        return Pop3Listing(tuple(rows), tuple(messages), uidlist)

    def _entry(self, index: int) -> MaildirEntry:
        entry = self._entries.get(index)
        if entry is None:
            entry = self._entries[index] = MaildirEntry(*self._listing.rows[index])
        return entry

    def _pop3_size(self, entry: MaildirEntry) -> int:
        unique, fields, info = _split_name(entry.name)
        for field in fields.split(","):
            if field.startswith("W=") and field[2:].isdigit():
                return int(field[2:])
        size = _pop3_size_of_file(self._current_path(entry))
        cached = f"{unique}{fields},W={size}{info}"
        try:
            os.rename(entry.path, os.path.join(entry.directory, cached))
            entry.name = cached
        except OSError:
            pass
        return size

    def _current_path(self, entry: MaildirEntry) -> str:
        """The entry's path now, following a move or rename by another mail reader."""
        if os.path.exists(entry.path):
            return entry.path
        for sub in ("cur", "new"):
            directory = os.path.join(self.path, sub)
            for name in os.listdir(directory):
                if _split_name(name)[0] == entry.unique:
                    entry.directory, entry.name = directory, name
                    return entry.path
        raise FileNotFoundError(errno.ENOENT, "message vanished", entry.path)

    @property
    def messages(self) -> Sequence[MessageInfo]:
        return self._listing.messages

    def unique(self, index: int) -> str:
        return self._entry(index).unique

    def file_path(self, index: int) -> str:
        """Where the message's file is now (other mail readers may have moved it)."""
        try:
            return self._current_path(self._entry(index))
        except OSError as e:
            raise StorageError(f"cannot find message: {e}") from e

    def lines(self, index: int) -> Iterator[bytes]:
        """Read in CHUNK_SIZE blocks (memory stays bounded for one huge line). A file
        that is shorter at its end than when opened was cut short by another program:
        StorageError, rather than a message silently missing its end."""
        try:
            with open(self._current_path(self._entry(index)), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                read = 0

                def blocks() -> Iterator[bytes]:
                    nonlocal read
                    while block := f.read(CHUNK_SIZE):
                        read += len(block)
                        yield block

                yield from split_lines(blocks(), CHUNK_SIZE)
                if read < size:
                    raise StorageError(f"message file shrank while being read ({read} of {size})")
        except OSError as e:
            raise StorageError(f"cannot read message: {e}") from e

    def commit(self, deleted: set[int]) -> None:
        """Unlink the chosen files and sync their directories.

        Several unlinks cannot be one atomic step; a crash midway leaves some of the
        chosen messages in place, each either whole or gone. UIDL list entries of deleted
        messages are dropped afterwards, best effort: a stale entry names no file.
        """
        directories: dict[str, None] = {}
        try:
            for index in sorted(deleted):
                entry = self._entry(index)
                try:
                    os.unlink(self._current_path(entry))
                except FileNotFoundError:
                    continue
                directories[entry.directory] = None
            for directory in directories:
                sync_dir(directory)
        except OSError as e:
            raise StorageError(f"cannot delete from Maildir {self.path}: {e}") from e
        gone = {self._entry(i).unique for i in deleted} & self._uidlist.keys()
        if gone:
            kept = {u: v for u, v in self._uidlist.items() if u not in gone}
            try:
                write_uidlist(self.path, kept)
                self._uidlist = kept
            except OSError:
                pass

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
