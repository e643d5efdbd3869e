"""What the POP3 session and its server share: the per-connection Settings, the events
the session hands to the server, and the login results the server answers with.

Plain data; Pop3Session (protocol.py) produces the events and pop3/server.py answers them.
Private to the core: _Wait, the result the session waits for, and _Reply, the -ERR
answer its command handlers raise.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from daisymail.store.base import MessageInfo


@dataclass(frozen=True)
class Settings:
    """Per-connection settings, computed by the server.

    allow_plaintext: USER/PASS and AUTH PLAIN may be used before TLS on this connection
      (loopback, or configured); once TLS is active they are always allowed.
    expire_days: None advertises EXPIRE NEVER. max_line_length counts the line end;
      RFC 2449 allows 255 octets, the rest is slack for sloppy clients.
    """

    hostname: str
    tls_active: bool = False
    stls_available: bool = False
    allow_plaintext: bool = False
    apop_enabled: bool = False
    expire_days: int | None = None
    login_delay: int | None = None
    delete_after_retr: bool = False
    delete_after_top: bool = False
    max_line_length: int = 512
    max_auth_line_length: int = 8192
    implementation: str = "Daisy"


@dataclass(frozen=True)
class StartTLS:
    """Negotiate TLS now, then call tls_started()."""


@dataclass(frozen=True)
class LoginAttempt:
    """Check a login, lock the maildrop, then call login_result().

    mechanism: "USER" (password set), "APOP" (apop_digest set: the client's hex digest
    of the greeting timestamp and the secret) or "PLAIN" (SASL; password set).
    """

    user_name: str
    password: str | None
    apop_digest: str | None
    mechanism: str


@dataclass(frozen=True)
class SendMessage:
    """Stream format_message(view.lines(index), top_lines), then ``.\\r\\n``; after a
    TOP, call top_sent() with whether the whole message went out."""

    index: int
    top_lines: int | None


@dataclass(frozen=True)
class Commit:
    """QUIT in the transaction state: remove these messages, then call commit_result()."""

    deleted: frozenset[int]


@dataclass(frozen=True)
class Close:
    """Close the connection once data_to_send() is flushed. Nothing is to be committed."""


Event = StartTLS | LoginAttempt | SendMessage | Commit | Close


@dataclass(frozen=True)
class LoginOk:
    messages: Sequence[MessageInfo]


@dataclass(frozen=True)
class LoginFailed:
    """in_use: the credentials were good but the maildrop is locked. temporary: the
    check itself failed (directory or storage trouble). Otherwise: bad credentials."""

    in_use: bool = False
    temporary: bool = False


LoginResult = LoginOk | LoginFailed


class _Wait(enum.Enum):
    NOTHING = "nothing"
    LOGIN = "login"
    COMMIT = "commit"
    TLS = "tls"


class _Reply(Exception):
    """A one-line -ERR answer raised from argument parsing."""
