"""What the IMAP core hands to the server (events) and what it is configured with."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from daisymail.imap.parser import Token


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Mode(enum.Enum):
    COMMAND = 1
    SASL = 2  # waiting for a line answering an AUTHENTICATE challenge
    IDLE = 3  # waiting for DONE
    WAITING = 4  # an event is with the server
    STREAM = 5  # passing an APPEND literal on (or dropping a refused one)


@dataclass
class Settings:
    hostname: str = "localhost"
    tls_active: bool = False
    starttls_available: bool = True
    allow_plaintext: bool = False  # LOGIN / AUTHENTICATE before TLS (loopback, or the setting)
    max_line: int = 64 * 1024
    max_literal: int = 50 * 1024 * 1024
    stream_over: int = 1024 * 1024  # APPEND literals larger than this go to disk as they come
    max_errors: int = 20
    max_commands: int = 1_000_000


# -- events the server answers -------------------------------------------------------------


@dataclass(frozen=True)
class StartTLS:
    """Send what is queued, then start TLS and call tls_started()."""


@dataclass(frozen=True)
class LoginAttempt:
    """Check these credentials; answer with login_result()."""

    tag: str
    user: str
    password: str
    mechanism: str  # "LOGIN" or "PLAIN"


@dataclass(frozen=True)
class Execute:
    """A command that needs the mailboxes; answer with executed().

    name is the command (``FETCH``), uid tells ``UID FETCH`` from ``FETCH``."""

    tag: str
    name: str
    uid: bool
    args: list[Token] = field(hash=False)
    state: State = State.AUTHENTICATED


@dataclass(frozen=True)
class IdleStart:
    """Announce mailbox changes as they happen until the client ends the IDLE."""

    tag: str


@dataclass(frozen=True)
class Close:
    """Send what is queued and close the connection."""


@dataclass(frozen=True)
class StartCompress:
    """COMPRESS=DEFLATE (RFC 4978) from now on, both ways; ``pending`` is what the client
    sent after the command, already compressed: inflate it and feed it back."""

    pending: bytes


@dataclass(frozen=True)
class AppendStart:
    """An APPEND of a message too big to buffer: check it, then answer append_accepted()
    (the octets follow as AppendChunk events) or append_refused()."""

    tag: str
    args: list[Token] = field(hash=False)  # folder, optional flags and date
    size: int


@dataclass(frozen=True)
class AppendChunk:
    """The next octets of the message being appended."""

    data: bytes


@dataclass(frozen=True)
class AppendEnd:
    """The literal is complete; ok is False when the command did not end after it."""

    tag: str
    ok: bool


Event = (
    StartCompress
    | StartTLS
    | LoginAttempt
    | Execute
    | IdleStart
    | Close
    | AppendStart
    | AppendChunk
    | AppendEnd
)
