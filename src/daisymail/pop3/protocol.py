"""The POP3 server session as a sans-I/O state machine (RFC 1939, 2449, 2595, 3206, 5034).

Bytes go in with receive_data(); next_event() works through the buffered command lines
in order, queueing replies for data_to_send(), and stops at the first command that
needs the server (a login to check, a message to send, a commit, TLS, closing). Until
the server answers with login_result(), commit_result() or tls_started(), next_event()
returns None and pipelined input waits. The server should send data_to_send() before
acting on each event and whenever next_event() returns None.

Message indexes in events are 0-based, as in store.MaildropView; POP3 numbers are 1-based.

The session's parts live beside it: settings, events and login results in events.py, the
logins in login.py, the transaction commands in transaction.py, and the message wire form
in wire.py; Pop3Session holds the state, reads and dispatches the input, and answers STLS,
CAPA and QUIT.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence

from daisymail.pop3.events import (
    Close,
    Commit,
    Event,
    LoginAttempt,
    LoginFailed,
    LoginOk,
    LoginResult,
    SendMessage,
    Settings,
    StartTLS,
    _Reply,
    _Wait,
)
from daisymail.pop3.login import LoginCommands
from daisymail.pop3.transaction import TransactionCommands
from daisymail.pop3.wire import CRLF, ReadToEnd, format_message
from daisymail.store.base import MessageInfo

__all__ = [
    "MAX_BUFFERED",
    "MAX_FAILED_LOGINS",
    "Close",
    "Commit",
    "Event",
    "LoginAttempt",
    "LoginFailed",
    "LoginOk",
    "LoginResult",
    "Pop3Session",
    "ReadToEnd",
    "SendMessage",
    "Settings",
    "StartTLS",
    "format_message",
]

MAX_FAILED_LOGINS = 3
MAX_BUFFERED = 1024 * 1024
"""Pipelined input held while a result is pending; more closes the connection."""


_Handler = Callable[[str | None], Event | None]


class _State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    CLOSED = "closed"


class _TooLong:
    """Marks an input line that exceeded the limit and was discarded."""


_TOO_LONG = _TooLong()

_AUTHORIZATION_COMMANDS = frozenset({"USER", "PASS", "APOP", "AUTH", "STLS", "CAPA", "QUIT"})
_TRANSACTION_COMMANDS = frozenset(
    {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT"}
)


class Pop3Session(LoginCommands, TransactionCommands):
    """One POP3 connection, server side."""

    def __init__(self, settings: Settings, *, timestamp_banner: str) -> None:
        self.settings = settings
        self._banner = timestamp_banner
        self._in = bytearray()
        self._out = bytearray()
        self._state = _State.AUTHORIZATION
        self._wait = _Wait.NOTHING
        self._tls = settings.tls_active
        self._discarding = False
        self._overflowed = False
        self._user: str | None = None
        self._sasl_pending = False
        self._failures = 0
        self._messages: Sequence[MessageInfo] = ()
        self._deleted: set[int] = set()
        self._read: set[int] = set()
        self._handlers: dict[str, _Handler] = {
            "USER": self._do_user,
            "PASS": self._do_pass,
            "APOP": self._do_apop,
            "AUTH": self._do_auth,
            "STLS": self._do_stls,
            "CAPA": self._do_capa,
            "QUIT": self._do_quit,
            "STAT": self._do_stat,
            "LIST": self._do_list,
            "UIDL": self._do_uidl,
            "RETR": self._do_retr,
            "TOP": self._do_top,
            "DELE": self._do_dele,
            "NOOP": self._do_noop,
            "RSET": self._do_rset,
        }

    # -- I/O side -------------------------------------------------------------------------
    def start(self) -> None:
        """Queue the greeting; its timestamp invites APOP, so it is shown only with APOP."""
        greeting = f"+OK {self.settings.hostname} POP3 server ready"
        if self.settings.apop_enabled:
            greeting += f" {self._banner}"
        self._reply(greeting)

    def receive_data(self, data: bytes) -> None:
        """Buffer input; b"" means the client went away (nothing is committed)."""
        if not data:
            self._state = _State.CLOSED
            return
        if self._state is _State.CLOSED or self._wait is _Wait.TLS or self._overflowed:
            return
        self._in += data
        if len(self._in) > MAX_BUFFERED:
            self._in.clear()
            self._overflowed = True

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def timeout(self) -> None:
        """The client was idle too long: say so and close without committing."""
        if self._state is not _State.CLOSED:
            self._reply("-ERR Autologout; idle for too long")
            self._close()

    def next_event(self) -> Event | None:
        while True:
            if self._state is _State.CLOSED:
                return Close()
            if self._wait is not _Wait.NOTHING:
                return None
            line = self._take_line()
            if line is None:
                if self._overflowed:
                    self._reply("-ERR Too much pipelined input")
                    self._close()
                    continue
                return None
            if isinstance(line, _TooLong):
                self._sasl_pending = False
                self._reply("-ERR Line too long")
                continue
            event = self._sasl_response(line) if self._sasl_pending else self._command(line)
            if event is not None:
                return event

    # -- results from the server ------------------------------------------------------------
    def login_result(self, result: LoginResult) -> None:
        if not self._expect(_Wait.LOGIN):
            return
        if isinstance(result, LoginOk):
            self._state = _State.TRANSACTION
            self._messages = tuple(result.messages)
            count, octets = self._totals()
            self._reply(f"+OK Logged in, {count} messages ({octets} octets)")
        elif result.in_use:
            self._reply("-ERR [IN-USE] Mailbox is locked by another session")
        elif result.temporary:
            self._reply("-ERR [SYS/TEMP] Temporary problem, please try again later")
        else:
            self._failures += 1
            if self._failures >= MAX_FAILED_LOGINS:
                self._reply("-ERR [AUTH] Invalid login; too many failures, closing")
                self._close()
            else:
                self._reply("-ERR [AUTH] Invalid user name or password")

    def commit_result(self, ok: bool) -> None:
        if not self._expect(_Wait.COMMIT):
            return
        if ok:
            left = len(self._messages) - len(self._to_remove())
            self._reply(f"+OK {self.settings.hostname} POP3 server signing off ({left} left)")
        else:
            self._reply("-ERR [SYS/TEMP] Some deleted messages not removed, try again later")
        self._close()

    def top_sent(self, index: int, whole: bool) -> None:
        """teapop -D: a TOP that sent the whole message counts as reading it."""
        if whole and self.settings.delete_after_top:
            self._read.add(index)

    def tls_started(self) -> None:
        if not self._expect(_Wait.TLS):
            return
        self._tls = True
        self._in.clear()

    def _expect(self, wait: _Wait) -> bool:
        """False when the session closed meanwhile (timeout, disconnect): drop the result."""
        if self._state is _State.CLOSED:
            return False
        if self._wait is not wait:
            raise RuntimeError(f"no {wait.value} result is pending")
        self._wait = _Wait.NOTHING
        return True

    # -- input ------------------------------------------------------------------------------
    def _take_line(self) -> bytes | _TooLong | None:
        limit = (
            self.settings.max_auth_line_length
            if self._sasl_pending
            else self.settings.max_line_length
        )
        end = self._in.find(b"\n")
        if self._discarding:
            if end < 0:
                self._in.clear()
                return None
            del self._in[: end + 1]
            self._discarding = False
            return _TOO_LONG
        if end < 0:
            if len(self._in) >= limit:
                self._in.clear()
                self._discarding = True
            return None
        line = bytes(self._in[:end])
        del self._in[: end + 1]
        if end + 1 > limit:
            return _TOO_LONG
        return line[:-1] if line.endswith(b"\r") else line

    def _command(self, line: bytes) -> Event | None:
        keyword, space, rest = line.partition(b" ")
        word = keyword.decode("ascii", "replace").upper()
        arg = rest.decode("utf-8", "surrogateescape") if space else None
        if word not in ("PASS", "CAPA"):
            self._user = None
        allowed = (
            _AUTHORIZATION_COMMANDS
            if self._state is _State.AUTHORIZATION
            else _TRANSACTION_COMMANDS
        )
        if word not in allowed:
            known = word in _AUTHORIZATION_COMMANDS or word in _TRANSACTION_COMMANDS
            self._reply("-ERR Command not valid in this state" if known else "-ERR Unknown command")
            return None
        try:
            return self._handlers[word](arg)
        except _Reply as reply:
            self._reply(str(reply))
            return None

    # -- STLS, CAPA and QUIT in either state ------------------------------------------------
    def _do_stls(self, arg: str | None) -> Event | None:
        if arg is not None:
            raise _Reply("-ERR Syntax: STLS")
        if self._tls:
            raise _Reply("-ERR Command not permitted when TLS active")
        if not self.settings.stls_available:
            raise _Reply("-ERR STLS is not available")
        self._reply("+OK Begin TLS negotiation")
        self._in.clear()
        self._wait = _Wait.TLS
        return StartTLS()

    def _do_capa(self, arg: str | None) -> Event | None:
        if arg is not None:
            raise _Reply("-ERR Syntax: CAPA")
        self._multiline("+OK Capability list follows", self._capabilities())
        return None

    def _capabilities(self) -> list[str]:
        s = self.settings
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._plaintext_ok():
            caps += ["USER", "SASL PLAIN"]
        if s.stls_available and not self._tls and self._state is _State.AUTHORIZATION:
            caps.append("STLS")
        if s.delete_after_retr or s.delete_after_top:
            caps.append("EXPIRE 0")
        else:
            caps.append("EXPIRE NEVER" if s.expire_days is None else f"EXPIRE {s.expire_days}")
        if s.login_delay is not None:
            caps.append(f"LOGIN-DELAY {s.login_delay}")
        if s.implementation:
            caps.append(f"IMPLEMENTATION {s.implementation}")
        return caps

    def _do_quit(self, arg: str | None) -> Event | None:
        if arg is not None:
            raise _Reply("-ERR Syntax: QUIT")
        if self._state is _State.TRANSACTION:
            self._wait = _Wait.COMMIT
            return Commit(frozenset(self._to_remove()))
        self._reply(f"+OK {self.settings.hostname} POP3 server signing off")
        self._close()
        return Close()

    # -- output -----------------------------------------------------------------------------
    def _reply(self, line: str) -> None:
        self._out += line.encode("latin-1", "replace") + CRLF

    def _multiline(self, first: str, rows: Iterable[str]) -> None:
        """Rows are numbers or capability names, so none needs dot-stuffing."""
        self._reply(first)
        for row in rows:
            self._reply(row)
        self._reply(".")

    def _close(self) -> None:
        self._state = _State.CLOSED
        self._wait = _Wait.NOTHING
        self._in.clear()
