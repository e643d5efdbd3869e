"""The POP3 view of a Maildir: a locked snapshot of its messages, sizes and UIDLs.

One POP3 session at a time holds a Maildir's ``daisymail-pop3.lock``; delivery
(store/maildir_write.py) needs no lock, so mail arriving during the session simply is not
in the snapshot. The listing comes from the listing cache when ``new/``, ``cur/`` and the
UIDL list are unchanged, so a login need not read the directories. Apart from the writing
side because delivery never takes this lock nor reads a listing: the two share only the
layout of store/maildir.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator, Sequence

from daisymail.store.base import MailboxInUse, MaildropView, MessageInfo, StorageError
from daisymail.store.durable import sync_dir
from daisymail.store.lines import split_lines
from daisymail.store.listing_cache import LISTINGS, TMP_SWEEPS, Pop3Listing
from daisymail.store.maildir import (
    CHUNK_SIZE,
    UIDLIST_NAME,
    MaildirEntry,
    _pop3_size_of_file,
    _split_name,
    clean_tmp,
    ensure_maildir,
    read_uidlist,
    scan_maildir,
    uidl_of,
    write_uidlist,
)

LOCK_NAME = "daisymail-pop3.lock"


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
