"""Writing into Maildirs: lock-free durable delivery, one message into several Maildirs.

A message is streamed into the first Maildir's ``tmp/``, fsynced (or recorded in the
intake journal), then given its name in each Maildir's ``new/``: hard links where
possible, copies where not. add_message() writes one message into one Maildir (mailbox
conversion); remove_files() undoes delivered copies. Apart from the POP3 view
(store/maildir_view.py) because delivery takes no lock and never reads a listing: the
two share only the naming and size rules of store/maildir.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator, Sequence

from daisymail.store.base import Delivery, StorageError
from daisymail.store.durable import sync_dir, write_all, write_file
from daisymail.store.intake import IntakeJournal
from daisymail.store.maildir import Pop3Size, _read_chunks, ensure_maildir, unique_name

# Larger messages flush their own file: their data dominates the flush, and the journal
# would hold them in memory and write them twice.
JOURNAL_LIMIT = 256 * 1024
# errnos of link() that mean "no hard link here", so the copy is written out instead.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})


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
