"""The Directory interface: what servers read and what admin commands write.

Servers only call snapshot() (cheap; backends cache and refresh on change; with
refresh_in_background() it does no I/O at all) and set_password() to upgrade a legacy
hash after a good login. The admin write API
raises DirectoryError subclasses with a one-line message suitable for the CLI.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext

from daisymail.directory.model import (
    AddressRule,
    Domain,
    Login,
    Mailbox,
    RelayRule,
    SenderRule,
    Snapshot,
)


class DirectoryError(Exception):
    """A directory operation failed; str(e) is a one-line explanation."""


class NotFound(DirectoryError):
    pass


class Conflict(DirectoryError):
    pass


class ReadOnly(DirectoryError):
    pass


class Directory(ABC):
    @abstractmethod
    def snapshot(self) -> Snapshot:
        """The current data; refreshed when another process (the CLI) changed it."""

    @abstractmethod
    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise when the backing store cannot be read now (readiness probes)."""
        self.snapshot()

    @property
    def poll_interval(self) -> float:
        """How often poll() is worth calling."""
        return 1.0

    def refresh_in_background(self) -> bool:
        """Make snapshot() serve from memory without I/O from now on, kept current by
        poll() calls from a worker thread. False: the backend refreshes inside
        snapshot() itself (and poll() need not be called)."""
        return False

    def poll(self) -> bool:
        """Bring the snapshot up to date; blocking I/O, for a worker thread. True when
        a new snapshot is in service (False also when the backend cannot tell)."""
        self.snapshot()
        return False

    @property
    def read_only(self) -> bool:
        """True when writes always fail (live legacy files): callers skip rehashing."""
        return False

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes so they apply together or not at all (where the backend can)."""
        return nullcontext()

    # -- writes (admin API) -------------------------------------------------------------
    @abstractmethod
    def add_domain(self, domain: Domain) -> None: ...

    @abstractmethod
    def update_domain(self, domain: Domain) -> None: ...

    @abstractmethod
    def remove_domain(self, name: str) -> None: ...

    @abstractmethod
    def add_mailbox(self, mailbox: Mailbox) -> None: ...

    @abstractmethod
    def update_mailbox(self, mailbox: Mailbox) -> None:
        """Change a mailbox's format and path (after a conversion)."""

    @abstractmethod
    def remove_mailbox(self, name: str) -> None: ...

    @abstractmethod
    def add_address_rule(self, rule: AddressRule) -> None: ...

    @abstractmethod
    def remove_address_rule(self, pattern: str) -> None: ...

    @abstractmethod
    def add_sender_rule(self, rule: SenderRule) -> None: ...

    @abstractmethod
    def remove_sender_rule(self, pattern: str) -> None: ...

    @abstractmethod
    def add_relay_rule(self, rule: RelayRule) -> None: ...

    @abstractmethod
    def remove_relay_rule(self, pattern: str) -> None: ...

    @abstractmethod
    def add_login(self, login: Login) -> None: ...

    @abstractmethod
    def set_password(self, user: str, domain: str, password_hash: str) -> None:
        """Replace a login's hash (passwd command, and upgrade of legacy hashes)."""

    @abstractmethod
    def remove_login(self, user: str, domain: str) -> None: ...
