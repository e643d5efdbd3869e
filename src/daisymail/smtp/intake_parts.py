"""What message intake relies on: its listener's Service, and the fields of MessageIntake
(smtp/message.py) that its mixins use, declared once (as smtp/session_parts.py does for
the session). Kept apart so that the mixins and MessageIntake share them without
importing one another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from daisymail.delivery import Handoff, Injector
from daisymail.directory.base import Directory
from daisymail.filter.rspamd import SpamFilter
from daisymail.mailauth.service import MailAuth
from daisymail.mailauth.srs import SRSKeys
from daisymail.queue.spool import QueuedRecipient
from daisymail.quota import Quotas
from daisymail.smtp.filework import FileWork


class Service(Protocol):
    """What intake reads of its listener (smtp/server.py ``SmtpService``), named here so
    that intake does not depend on the one that drives it. Read live: a reload
    replaces some of them."""

    @property
    def directory(self) -> Directory: ...
    @property
    def spool_dir(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def on_queued(self) -> Callable[[], None]: ...
    @property
    def submission(self) -> bool: ...
    @property
    def masquerade_envelope(self) -> Callable[[], bool]: ...
    @property
    def injector(self) -> Injector | None: ...
    @property
    def mail_auth(self) -> MailAuth | None: ...
    @property
    def spam_filter(self) -> SpamFilter | None: ...
    @property
    def relay_networks(self) -> Callable[[], Sequence[str]]: ...
    @property
    def srs(self) -> SRSKeys | None: ...
    @property
    def quotas(self) -> Quotas | None: ...
    @property
    def handoff(self) -> Handoff: ...


class IntakeParts:
    """The fields of MessageIntake its mixins read (set by MessageIntake.__init__)."""

    svc: Service
    ip: str
    sid: str
    io: FileWork
    notice_rcpts: list[QueuedRecipient]
    header: bytearray
