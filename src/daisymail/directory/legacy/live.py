"""The legacy files served live: ``[directory] backend = "legacy"``.

The snapshot is built by the importer's own reader, so routing and logins behave exactly
as after an import. A file edit (mtime, size or inode of any file read, or of one that
was missing) is picked up at the next snapshot() after at most refresh_interval seconds.
Passwords are checked against the files as they are: cleartext stays cleartext.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from daisymail.directory.base import Directory, ReadOnly
from daisymail.directory.legacy.importer import Plan, read_legacy
from daisymail.directory.legacy.sources import LegacyPaths, signature
from daisymail.directory.model import (
    AddressRule,
    Domain,
    Login,
    Mailbox,
    RelayRule,
    SenderRule,
    Snapshot,
)

log = logging.getLogger(__name__)


class LegacyDirectory(Directory):
    def __init__(
        self,
        paths: LegacyPaths,
        *,
        refresh_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = paths
        self.refresh_interval = refresh_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._plan = self._read()
        self._snapshot = self._plan.snapshot()
        self._checked = clock()

    def _read(self) -> Plan:
        plan = read_legacy(self.paths, drift=False)
        problems = [f for f in plan.findings if f.severity == "error"]
        for finding in problems:
            log.warning("legacy directory: %s", finding)
        return plan

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self.clock()
            if now - self._checked >= self.refresh_interval:
                self._checked = now
                if self._changed():
                    self._plan = self._read()
                    self._snapshot = self._plan.snapshot()
                    log.info("legacy directory: files changed, re-read")
            return self._snapshot

    def _changed(self) -> bool:
        return any(signature(path) != sig for path, sig in self._plan.watched.items())

    def close(self) -> None:
        pass

    @property
    def read_only(self) -> bool:
        return True

    def _read_only(self) -> NoReturn:
        raise ReadOnly(
            'the directory is served from the legacy files (directory.backend = "legacy"): '
            "edit those files, or import them with `daisymail import legacy` and switch the "
            'backend to "sql"'
        )

    def add_domain(self, domain: Domain) -> None:
        self._read_only()

    def update_domain(self, domain: Domain) -> None:
        self._read_only()

    def remove_domain(self, name: str) -> None:
        self._read_only()

    def add_mailbox(self, mailbox: Mailbox) -> None:
        self._read_only()

    def update_mailbox(self, mailbox: Mailbox) -> None:
        self._read_only()

    def remove_mailbox(self, name: str) -> None:
        self._read_only()

    def add_address_rule(self, rule: AddressRule) -> None:
        self._read_only()

    def remove_address_rule(self, pattern: str) -> None:
        self._read_only()

    def add_sender_rule(self, rule: SenderRule) -> None:
        self._read_only()

    def remove_sender_rule(self, pattern: str) -> None:
        self._read_only()

    def add_relay_rule(self, rule: RelayRule) -> None:
        self._read_only()

    def remove_relay_rule(self, pattern: str) -> None:
        self._read_only()

    def add_login(self, login: Login) -> None:
        self._read_only()

    def set_password(self, user: str, domain: str, password_hash: str) -> None:
        self._read_only()

    def remove_login(self, user: str, domain: str) -> None:
        self._read_only()
