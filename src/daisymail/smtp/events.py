"""What the SMTP session and its server share: the settings, what policies see (SessionInfo,
Envelope), the Policy interface, and the events the session hands to the server.

Plain data, no behaviour beyond validating Settings; ServerSession (protocol.py) produces
the events and the server (server.py) answers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Protocol

from .. import sasl
from .replies import Reply


@dataclass
class Settings:
    hostname: str
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    max_line_length: int = 2048
    max_errors: int = 10
    max_hops: int = 50
    starttls_available: bool = False
    auth_mechanisms: tuple[str, ...] = ()
    auth_requires_tls: bool = True
    require_auth_for_mail: bool = False
    chunking: bool = True
    dsn: bool = True
    smtputf8: bool = True
    eightbitmime: bool = True
    greeting_text: str = "ESMTP Daisy"

    def __post_init__(self) -> None:
        if not self.hostname or any(ch.isspace() for ch in self.hostname):
            raise ValueError(f"hostname must be one word, got {self.hostname!r}")
        if self.max_line_length < 512:
            raise ValueError("max_line_length must be at least 512 (RFC 5321 4.5.3.1.4)")
        if self.max_errors < 1 or self.max_recipients < 1 or self.max_message_size < 1:
            raise ValueError("max_errors, max_recipients and max_message_size must be positive")
        self.auth_mechanisms = tuple(m.upper() for m in self.auth_mechanisms)
        unknown = set(self.auth_mechanisms) - set(sasl.MECHANISMS)
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {sorted(unknown)}")


@dataclass
class SessionInfo:
    """What policies may look at; the session keeps it current."""

    client_ip: str
    session_id: str
    client_name: str = ""
    tls: bool = False
    authenticated_as: str | None = None


@dataclass
class Recipient:
    address: str
    params: dict[str, str] = field(default_factory=dict)
    target: object = None


@dataclass
class Envelope:
    """One mail transaction. ENVID, ORCPT and AUTH values in the params are xtext-decoded."""

    sender: str
    mail_params: dict[str, str] = field(default_factory=dict)
    recipients: list[Recipient] = field(default_factory=list)
    body_type: str = "7BIT"
    smtputf8: bool = False
    size: int = 0


@dataclass(frozen=True)
class RcptDecision:
    reply: Reply
    accepted: bool
    target: object = None


class Policy(Protocol):
    """Pure decisions the server plugs in (inbound on port 25, submission on 587/465)."""

    def check_sender(
        self, session: SessionInfo, sender: str, params: dict[str, str]
    ) -> Reply | None:
        """None accepts with 250 2.1.0; a reply of 400 or more refuses the transaction."""

    def check_recipient(
        self, session: SessionInfo, envelope: Envelope, address: str, params: dict[str, str]
    ) -> RcptDecision: ...


@dataclass(frozen=True)
class StartTLS:
    """The 220 is queued: flush it, upgrade, then call `tls_started` (or close on failure)."""


@dataclass(frozen=True)
class AuthAttempt:
    """Verify and answer with `auth_result`."""

    mechanism: str
    authzid: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class MessageStarted:
    """DATA got its 354 or the first BDAT chunk is coming: open a spool file."""

    envelope: Envelope


@dataclass(frozen=True)
class MessageData:
    """Body bytes to append: dot-unstuffed, LF line ends."""

    data: bytes


@dataclass(frozen=True)
class MessageComplete:
    """Make the message durable, then answer with `message_result`."""

    envelope: Envelope


@dataclass(frozen=True)
class MessageAborted:
    """Discard the spool file; the client gets its reply from the session."""

    reason: str


@dataclass(frozen=True)
class Close:
    """Flush `data_to_send()` and close the connection."""


Event = (
    StartTLS | AuthAttempt | MessageStarted | MessageData | MessageComplete | MessageAborted | Close
)


class _State(Enum):
    """Where a ServerSession is; private to the session and its mixins."""

    COMMAND = auto()
    SASL = auto()
    DATA = auto()
    BDAT = auto()
    AWAIT_AUTH = auto()
    AWAIT_MESSAGE = auto()
    AWAIT_TLS = auto()
    CLOSED = auto()
