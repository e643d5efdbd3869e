"""The ESMTP server session as a sans-I/O state machine: bytes in, events and replies out.

Written in the style of h11: the server feeds received bytes with `receive_data`, drains
events with `next_event` until it returns None, then writes `data_to_send()`. Anything that
needs I/O or a decision with side effects (TLS, password checks, storing a message) comes
out as an event, and the session waits for the server's answer before reading further
input; pipelined commands simply stay in the buffer until then.

Not aiosmtpd: it lacks PIPELINING, CHUNKING, DSN and ENHANCEDSTATUSCODES, holds each
message in memory, and offers no AUTH on implicit TLS. Here a message streams out as
`MessageData` chunks and nothing larger than one command line is ever buffered.

Extensions: PIPELINING (RFC 2920), SIZE (1870), 8BITMIME (6152), SMTPUTF8 (6531),
ENHANCEDSTATUSCODES (2034, 3463, 5248), STARTTLS (3207), CHUNKING (3030), DSN (3461) and
AUTH PLAIN/LOGIN (4954). BINARYMIME is not offered: mailboxes store LF line ends, which
would corrupt binary bodies.

The session's parts live beside it: the shared types and events in events.py, the command
handlers in commands.py, AUTH and its SASL exchange in sasl_auth.py, and DATA/BDAT bodies
in bodies.py; ServerSession holds the state and the plumbing and reads the input.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import ClassVar

from .. import sasl
from . import replies as R
from .bodies import BodyReader
from .commands import Commands
from .data import CrlfDecoder, DotDecoder, HopCounter
from .events import (
    AuthAttempt,
    Close,
    Envelope,
    Event,
    MessageAborted,
    MessageComplete,
    MessageData,
    MessageStarted,
    Policy,
    RcptDecision,
    Recipient,
    SessionInfo,
    Settings,
    StartTLS,
    _State,
)
from .replies import Reply, reply
from .sasl_auth import SaslAuth

__all__ = [
    "AuthAttempt",
    "Close",
    "Envelope",
    "Event",
    "MessageAborted",
    "MessageComplete",
    "MessageData",
    "MessageStarted",
    "Policy",
    "RcptDecision",
    "Recipient",
    "Reply",
    "ServerSession",
    "SessionInfo",
    "Settings",
    "StartTLS",
]

AUTH_LINE_LIMIT = 12288
"""RFC 4954 section 4: AUTH lines and SASL responses may be this long, whatever the limit."""

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


_Handler = Callable[["ServerSession", str], None]


class ServerSession(Commands, SaslAuth, BodyReader):
    """One SMTP connection, from greeting to close."""

    def __init__(self, settings: Settings, policy: Policy, info: SessionInfo) -> None:
        self.settings = settings
        self.policy = policy
        self.info = info
        self._state = _State.COMMAND
        self._in = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._eof = False
        self._started = False
        self._discarding = False
        self._errors = 0
        self._ehlo = False
        self._envelope: Envelope | None = None
        self._exchange: sasl.Exchange | None = None
        self._auth_username = ""
        self._dot: DotDecoder | None = None
        self._too_big = False
        self._hops: HopCounter | None = None
        self._chunks: CrlfDecoder | None = None
        self._bdat_left = 0
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_refusal: Reply | None = None

    # ---- the server's side -------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._started = True
            s = self.settings
            self._send(reply(220, None, f"{s.hostname} {s.greeting_text}"))

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" means the client closed its side."""
        if self._state in (_State.CLOSED, _State.AWAIT_TLS):
            return
        if data:
            self._in += data
        else:
            self._eof = True

    def next_event(self) -> Event | None:
        while not self._events and self._step():
            pass
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def awaiting_result(self) -> bool:
        """Waiting on tls_started, auth_result or message_result: stop reading meanwhile."""
        return self._state in (_State.AWAIT_AUTH, _State.AWAIT_MESSAGE, _State.AWAIT_TLS)

    def timeout(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._abort_message("timeout")
        self._send(reply(421, "4.4.2", f"{self.settings.hostname} Timeout, closing connection"))
        self._close()

    def tls_started(self) -> None:
        """The handshake succeeded: forget everything said in plain text (RFC 3207 4.2)."""
        self._expect(_State.AWAIT_TLS)
        self.info.tls = True
        self.info.client_name = ""
        self.info.authenticated_as = None
        self._ehlo = False
        self._envelope = None
        self._state = _State.COMMAND

    def auth_result(
        self, ok: bool, identity: str | None = None, error: Reply | None = None
    ) -> None:
        """Answer an AuthAttempt; `error` replaces 535 (say 454 4.7.0 when the check failed)."""
        self._expect(_State.AWAIT_AUTH)
        self._state = _State.COMMAND
        if ok:
            self.info.authenticated_as = identity or self._auth_username
            self._send(R.AUTH_OK)
        else:
            self._error(error or R.AUTH_FAILED)

    def message_result(self, result: Reply) -> None:
        """Answer a MessageComplete with 250 once durable, or with a 4xx/5xx."""
        self._expect(_State.AWAIT_MESSAGE)
        self._state = _State.COMMAND
        self._envelope = None
        self._send(result)

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            raise RuntimeError(f"session is in state {self._state.name}, not {state.name}")

    # ---- plumbing ----------------------------------------------------------------------

    def _send(self, answer: Reply) -> None:
        self._out += answer.encode()

    def _error(self, answer: Reply) -> None:
        """A client mistake: reply, and hang up on a client that keeps making them."""
        self._send(answer)
        self._errors += 1
        if self._errors >= self.settings.max_errors and self._state is not _State.CLOSED:
            self._abort_message("too many errors")
            self._send(reply(421, "4.7.0", f"{self.settings.hostname} Too many errors"))
            self._close()

    def _close(self) -> None:
        self._state = _State.CLOSED
        self._in.clear()
        self._events.append(Close())

    def _abort_message(self, reason: str) -> None:
        """Drop a message whose body is being received, if there is one."""
        receiving = (self._state is _State.DATA and not self._too_big) or (
            self._chunks is not None and self._bdat_refusal is None
        )
        if receiving:
            self._events.append(MessageAborted(reason))
        self._dot = None
        self._chunks = None
        self._hops = None
        self._envelope = None

    def _reset_transaction(self) -> None:
        self._abort_message("reset")

    def _step(self) -> bool:
        """Process one unit of input; False when nothing more can be done now."""
        state = self._state
        if state is _State.DATA:
            return self._step_data()
        if state is _State.BDAT:
            return self._step_bdat()
        if state not in (_State.COMMAND, _State.SASL):
            return False
        line = self._read_line()
        if line is None:
            if not self._eof:
                return False
            self._abort_message("connection closed")
            self._close()
        elif isinstance(line, Reply):
            self._state = _State.COMMAND
            self._exchange = None
            self._error(line)
        elif state is _State.SASL:
            self._sasl_response(line)
        else:
            self._command(line)
        return True

    def _line_limit(self) -> int:
        limit = self.settings.max_line_length
        if self._state is _State.SASL or bytes(self._in[:5]).upper() == b"AUTH ":
            return max(limit, AUTH_LINE_LIMIT)
        return limit

    def _read_line(self) -> bytes | Reply | None:
        """The next CRLF-terminated line without its CRLF, an error reply, or None."""
        buf = self._in
        if self._discarding:
            newline = buf.find(b"\n")
            if newline < 0:
                buf.clear()
                return None
            del buf[: newline + 1]
            self._discarding = False
        limit = self._line_limit()
        newline = buf.find(b"\n", 0, limit)
        if newline < 0:
            if len(buf) < limit:
                return None
            self._discarding = True
            return R.LINE_TOO_LONG
        line = bytes(buf[: newline + 1])
        del buf[: newline + 1]
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            return R.BARE_LINE_END
        return line[:-2]

    # ---- commands ----------------------------------------------------------------------

    def _command(self, raw: bytes) -> None:
        if _CONTROL.search(raw):
            self._error(R.BAD_CHARACTERS)
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._error(R.BAD_CHARACTERS)
            return
        verb, _, arg = line.partition(" ")
        handler = self._handlers.get(verb.upper())
        if handler is None:
            self._error(R.UNKNOWN_COMMAND)
        else:
            handler(self, arg)

    _handlers: ClassVar[dict[str, _Handler]] = {
        "EHLO": Commands._cmd_ehlo,
        "HELO": Commands._cmd_helo,
        "MAIL": Commands._cmd_mail,
        "RCPT": Commands._cmd_rcpt,
        "DATA": Commands._cmd_data,
        "BDAT": Commands._cmd_bdat,
        "RSET": Commands._cmd_rset,
        "NOOP": Commands._cmd_noop,
        "QUIT": Commands._cmd_quit,
        "VRFY": Commands._cmd_vrfy,
        "HELP": Commands._cmd_help,
        "STARTTLS": Commands._cmd_starttls,
        "AUTH": SaslAuth._cmd_auth,
    }
