"""MailboxStore on local files: Maildir and procmail-style mbox under one mail dir.

A mailbox is a Maildir when its format says so or its path ends in ``/`` (the teapop
rule, SPEC §1.7); otherwise an mbox. Paths are absolute or relative to the mail dir; an
empty path means ``<mail_dir>/<name>/`` (Maildir) or ``<mail_dir>/<name>`` (mbox).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence

from daisymail.directory.model import Mailbox
from daisymail.store.base import (
    Delivery,
    MailboxStore,
    MaildropView,
    PendingDelivery,
    StorageError,
    ViewOptions,
)
from daisymail.store.durable import make_dirs, write_all
from daisymail.store.imap_folders import folder_for_delivery
from daisymail.store.intake import IntakeJournal
from daisymail.store.maildir_view import MaildirView, NotCached
from daisymail.store.maildir_write import MaildirWriter, deliver_maildirs, remove_files
from daisymail.store.mbox import LOCK_WAIT, MboxAppender


def is_maildir(mailbox: Mailbox) -> bool:
    return mailbox.format == "maildir" or mailbox.path.endswith("/")


class FileStore(MailboxStore):
    """clock gives the delivery time for mbox From lines (seconds since the epoch)."""

    def __init__(
        self,
        mail_dir: str,
        *,
        lock_wait: float = LOCK_WAIT,
        clock: Callable[[], float] = time.time,
        journal: IntakeJournal | None = None,
    ) -> None:
        """journal: the intake journal Maildir deliveries share their flush through
        (store/intake.py); None: each delivery flushes its own file and directory."""
        self.mail_dir = mail_dir
        self.journal = journal
        self.lock_wait = lock_wait
        self.clock = clock

    def resolve_path(self, mailbox: Mailbox) -> str:
        """The file (mbox) or directory (Maildir, with a trailing ``/``) of a mailbox."""
        maildir = is_maildir(mailbox)
        path = mailbox.path
        if not path:
            if mailbox.name in ("", ".", "..") or "/" in mailbox.name or "\0" in mailbox.name:
                raise StorageError(f"mailbox name {mailbox.name!r} cannot be a file name")
            path = mailbox.name
        path = os.path.join(self.mail_dir, path)
        if maildir and not path.endswith("/"):
            path += "/"
        return path

    def deliver(self, mailboxes: Sequence[Mailbox], delivery: Delivery) -> None:
        """Maildir copies first (no locks needed), then every mbox under its locks, held
        until all copies are durable so that a failure can still truncate each one back.
        A mailbox listed twice gets one copy. Missing directories are created (0700)."""
        paths = {self.resolve_path(m): is_maildir(m) for m in mailboxes}
        maildirs = [p for p, m in paths.items() if m]
        if delivery.folder:
            try:
                maildirs = [folder_for_delivery(p, delivery.folder) for p in maildirs]
            except OSError as e:
                raise StorageError(f"cannot create folder {delivery.folder}: {e}") from e
        mboxes = sorted(p for p, m in paths.items() if not m)
        created = deliver_maildirs(maildirs, delivery, self.journal) if maildirs else []
        now = self.clock()
        try:
            for directory in dict.fromkeys(os.path.dirname(p) for p in mboxes):
                try:
                    make_dirs(directory)
                except OSError as e:
                    raise StorageError(f"cannot create {directory}: {e}") from e
            with contextlib.ExitStack() as stack:
                done: list[MboxAppender] = []
                try:
                    for path in mboxes:
                        appender = stack.enter_context(MboxAppender(path, lock_wait=self.lock_wait))
                        appender.append(delivery, now=now)
                        done.append(appender)
                except BaseException:
                    for appender in done:
                        with contextlib.suppress(StorageError):
                            appender.undo()
                    raise
        except BaseException:
            remove_files(created)
            raise

    def open_delivery(
        self, mailboxes: Sequence[Mailbox], prefix: bytes, sender: str, folder: str = ""
    ) -> PendingDelivery:
        """Only-Maildir deliveries stream into the first Maildir's tmp/ (no staging
        copy); anything with an mbox is staged in ``<mail_dir>/.staging`` and appended
        at commit, so mbox locks are never held while a client is still sending."""
        if mailboxes and all(is_maildir(m) for m in mailboxes):
            paths = list(dict.fromkeys(self.resolve_path(m) for m in mailboxes))
            if folder:
                try:
                    paths = [folder_for_delivery(p, folder) for p in paths]
                except OSError as e:
                    raise StorageError(f"cannot create folder {folder}: {e}") from e
            return _MaildirPending(MaildirWriter(paths, prefix, self.journal))
        return _StagedPending(self, list(mailboxes), prefix, sender, folder)

    def opening_touches_files(self, mailboxes: Sequence[Mailbox]) -> bool:
        # A Maildir-only delivery holds its first 64 KiB (the trace headers, and most
        # messages) in memory: its file is made later, in commit() or once it spills.
        return not (mailboxes and all(is_maildir(m) for m in mailboxes))

    def open_view(self, mailbox: Mailbox, options: ViewOptions) -> MaildropView:
        path = self.resolve_path(mailbox)
        if is_maildir(mailbox):
            return MaildirView(path)
        from daisymail.store.mbox_view import open_mbox_view

        return open_mbox_view(path, options)  # type: ignore[no-any-return, unused-ignore]

    def open_cached_view(self, mailbox: Mailbox, options: ViewOptions) -> MaildropView | None:
        """Maildirs only: their listing cache (store/listing_cache.py)."""
        if not is_maildir(mailbox):
            return None
        try:
            return MaildirView(self.resolve_path(mailbox), cached_only=True)
        except NotCached:
            return None


class _MaildirPending(PendingDelivery):
    def __init__(self, writer: MaildirWriter) -> None:
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def commit(self) -> None:
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()


class _StagedPending(PendingDelivery):
    def __init__(
        self, store: FileStore, mailboxes: list[Mailbox], prefix: bytes, sender: str, folder: str
    ) -> None:
        self.store, self.mailboxes, self.prefix, self.sender = store, mailboxes, prefix, sender
        self.folder = folder
        staging = os.path.join(store.mail_dir, ".staging")
        try:
            make_dirs(staging)
            self.path = os.path.join(staging, f"{time.time_ns()}.{os.getpid()}.{id(self)}")
            self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise StorageError(f"cannot stage the message: {e}") from e

    def write(self, data: bytes) -> None:
        assert self.fd is not None
        write_all(self.fd, data)

    def commit(self) -> None:
        assert self.fd is not None
        os.close(self.fd)
        self.fd = None
        try:
            delivery = Delivery(self.path, self.prefix, self.sender, folder=self.folder)
            self.store.deliver(self.mailboxes, delivery)
        finally:
            self.abort()

    def abort(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
