"""The Mailbox interface: durable delivery in, a POP3 maildrop view out.

store/ knows nothing of SMTP or POP3 wire formats beyond what a mailbox format needs:
messages are handed in as a spooled file with LF line endings (no dot-stuffing), and
read back as raw lines as stored (LF or CRLF); the POP3 server converts on the fly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from daisymail.directory.model import Mailbox


class StorageError(Exception):
    """Delivery could not be made durable; nothing partial was left behind. Temporary."""


class MailboxInUse(Exception):
    """Another session (or a delivery holding the lock too long) has the mailbox."""


@dataclass(frozen=True)
class Delivery:
    """One message to store.

    source: path of a spooled file holding the message with LF line endings.
    prefix: header lines to put before it (Return-Path, Received), LF-terminated.
    sender: envelope sender ("" for the null sender), for the mbox From line.
    folder: a Maildir++ folder ("Junk") instead of the inbox; mbox has none and ignores it.
    """

    source: str
    prefix: bytes
    sender: str
    folder: str = ""


@dataclass(frozen=True)
class MessageInfo:
    """A message as POP3 numbers it: size in octets as sent (CRLF, before dot-stuffing).

    received: delivery time (epoch seconds) when known, for expiry (teapop -e).
    """

    size: int
    uidl: str
    received: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ViewOptions:
    use_x_uidl: bool = False
    hide_imap_control_message: bool = False


class MaildropView(ABC):
    """A locked snapshot of one mailbox for one POP3 session.

    Messages are indexed from 0 here; POP3 numbering (from 1) is the protocol's job.
    Nothing changes on disk until commit(); close() without commit changes nothing.
    """

    @property
    @abstractmethod
    def messages(self) -> Sequence[MessageInfo]: ...

    @abstractmethod
    def lines(self, index: int) -> Iterator[bytes]:
        """The stored lines of a message, streamed from disk: each with its own line end
        (the last may lack one; a very long line may come in pieces, only the last with
        the line end). mbox: without the From line, with the separator blank."""

    @abstractmethod
    def commit(self, deleted: set[int]) -> None:
        """Remove these messages, all or nothing, crash-safe; mail that arrived during
        the session is kept. Raises StorageError on failure (nothing removed)."""

    @abstractmethod
    def close(self) -> None:
        """Release locks. Idempotent. Only closes descriptors, so servers call it on
        the event loop."""


class PendingDelivery(ABC):
    """A message being received, written straight to where it will be stored.

    Nothing is visible in any mailbox before commit(); abort() leaves nothing behind.
    """

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append message bytes (LF line ends). OSError on a write failure."""

    @abstractmethod
    def commit(self) -> None:
        """Make every copy durable, as MailboxStore.deliver does; StorageError if not."""

    @abstractmethod
    def abort(self) -> None:
        """Discard what was written. Idempotent."""


class MailboxStore(ABC):
    """Resolves Mailbox records to files and implements both formats."""

    @abstractmethod
    def deliver(self, mailboxes: Sequence[Mailbox], delivery: Delivery) -> None:
        """Store one copy per mailbox durably (file and directory entry fsync'd) before
        returning. All or nothing: on failure, raise StorageError and leave no copy."""

    @abstractmethod
    def open_delivery(
        self, mailboxes: Sequence[Mailbox], prefix: bytes, sender: str, folder: str = ""
    ) -> PendingDelivery:
        """Start a delivery that is streamed in while the message arrives, so that no
        staging copy is needed where the format allows (Maildir). ``folder`` as in
        ``Delivery``: the Maildir folder to file into (mbox copies go to the inbox)."""

    def opening_touches_files(self, mailboxes: Sequence[Mailbox]) -> bool:
        """Does open_delivery for these mailboxes (into their inbox) touch the filesystem?
        If not, a server may call it on its event loop instead of handing it to a worker
        thread."""
        return True

    @abstractmethod
    def open_view(self, mailbox: Mailbox, options: ViewOptions) -> MaildropView:
        """Lock and snapshot a mailbox for POP3; raises MailboxInUse when locked."""

    def open_cached_view(self, mailbox: Mailbox, options: ViewOptions) -> MaildropView | None:
        """open_view, when that takes no more than a few stats and a lock (the snapshot
        is remembered), so that a server may call it on its event loop; else None."""
        return None
