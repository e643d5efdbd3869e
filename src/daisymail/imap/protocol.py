"""The IMAP session as a sans-I/O state machine: bytes in, events and reply bytes out.

It frames commands (lines and their literals, answering ``+`` to synchronizing ones),
parses them, checks them against the session state (not authenticated, authenticated,
selected, logout), answers what needs no mailbox (CAPABILITY, ID, ENABLE, NAMESPACE,
LOGOUT, a refused login) and hands the rest to the server as events. While an event is
outstanding, later pipelined commands wait in the buffer: replies stay in order.
"""

from __future__ import annotations

from collections.abc import Callable

from daisymail.imap.events import (
    AppendChunk,
    AppendEnd,
    AppendStart,
    Close,
    Event,
    Execute,
    IdleStart,
    LoginAttempt,
    Mode,
    Settings,
    StartCompress,
    StartTLS,
    State,
)
from daisymail.imap.framing import FrameError, Framer, StreamStart
from daisymail.imap.parser import Command, ParseError, Token, parse_command, tag_of
from daisymail.imap.responses import string, tagged, untagged
from daisymail.imap.sasl_login import LoginCommands
from daisymail.sasl import Exchange

__all__ = [
    "AppendChunk",
    "AppendEnd",
    "AppendStart",
    "Close",
    "Event",
    "Execute",
    "IdleStart",
    "ImapSession",
    "LoginAttempt",
    "Settings",
    "StartCompress",
    "StartTLS",
    "State",
]

ANY_STATE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
NOT_AUTH = frozenset({"STARTTLS", "LOGIN", "AUTHENTICATE"})
AUTH = frozenset(
    {
        "ENABLE",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "DELETE",
        "RENAME",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "LIST",
        "LSUB",
        "STATUS",
        "APPEND",
        "NAMESPACE",
        "IDLE",
        "GETQUOTA",
        "GETQUOTAROOT",
        "SETQUOTA",
        "COMPRESS",
    }
)
SELECTED = frozenset(
    {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID"}
)
UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE"})
KNOWN = ANY_STATE | NOT_AUTH | AUTH | SELECTED

CAPS_AFTER_LOGIN = (
    "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT "
    "CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES "
    "STATUS=SIZE CONDSTORE QRESYNC UTF8=ACCEPT QUOTA QUOTA=RES-STORAGE BINARY"
)
CAPS_BEFORE_LOGIN = ("IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE")


class ImapSession(LoginCommands):
    def __init__(self, settings: Settings, *, server_id: str = "Daisy") -> None:
        self.settings = settings
        self.server_id = server_id
        self.state = State.NOT_AUTHENTICATED
        self.mode = Mode.COMMAND
        self._framer = Framer(settings.max_line)
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._errors = 0
        self._commands = 0
        self._tag = ""
        self._sasl: Exchange | None = None
        self._eof = False
        self._stream_left = 0
        self._stream_drop = False
        self._stream_pending: StreamStart | None = None
        self._stream_close = b""  # what must follow a streamed literal: ")" after UTF8 (
        self.compressed = False

    # -- I/O side -------------------------------------------------------------------------
    def start(self) -> None:
        caps = self.capabilities()
        self._send(untagged(f"OK [CAPABILITY {caps}] {self.settings.hostname} Daisy IMAP ready"))

    def receive_data(self, data: bytes) -> None:
        """Feed client bytes; b"" means the client closed the connection."""
        if not data:
            self._eof = True
        self._framer.feed(data)

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    @property
    def idling(self) -> bool:
        return self.mode is Mode.IDLE

    def next_event(self) -> Event | None:
        while not self._events:
            if self.state is State.LOGOUT or self.mode is Mode.WAITING:
                return None
            if not self._step():
                if self._events:
                    break
                if self._eof:
                    self.state = State.LOGOUT
                    self._events.append(Close())
                    break
                return None
        return self._events.pop(0)

    def _send(self, data: bytes) -> None:
        self._out.append(data)

    # -- answers from the server ----------------------------------------------------------
    def tls_started(self) -> None:
        self.settings.tls_active = True
        self.settings.starttls_available = False
        self.settings.allow_plaintext = True
        self.mode = Mode.COMMAND

    def login_result(self, ok: bool, code: str = "", text: str = "") -> None:
        """A failed login says the same whether the user or the password was wrong."""
        if ok:
            self.state = State.AUTHENTICATED
            self._send(tagged(self._tag, "OK", "logged in", f"CAPABILITY {self.capabilities()}"))
        else:
            reason = text or "invalid credentials"
            self._send(tagged(self._tag, "NO", reason, code or "AUTHENTICATIONFAILED"))
        self.mode = Mode.COMMAND

    def executed(self, output: bytes, selected: bool | None = None) -> None:
        """The server's untagged and tagged replies; selected: the new state, if changed."""
        self._send(output)
        if selected is True:
            self.state = State.SELECTED
        elif selected is False:
            self.state = State.AUTHENTICATED
        if self.mode is Mode.WAITING:
            self.mode = Mode.COMMAND

    def append_accepted(self) -> None:
        """The streamed APPEND may go on: its octets come as AppendChunk events."""
        start, self._stream_pending = self._stream_pending, None
        assert start is not None
        if not start.nonsync:
            self._send(b"+ Ready for literal data\r\n")
        self._stream_left, self._stream_drop = start.size, False
        self.mode = Mode.STREAM

    def append_refused(self, output: bytes) -> None:
        """A NO before the literal: a waiting client never sends it; a LITERAL+ one
        does, and it is read and dropped before the next command."""
        start, self._stream_pending = self._stream_pending, None
        assert start is not None
        self._send(output)
        if start.nonsync:
            self._stream_left, self._stream_drop = start.size, True
            self.mode = Mode.STREAM
        else:
            self.mode = Mode.COMMAND

    def idle_started(self) -> None:
        self._send(b"+ idling\r\n")
        self.mode = Mode.IDLE

    def updates(self, output: bytes) -> None:
        """Untagged news sent while idling."""
        self._send(output)

    def timeout(self) -> None:
        self._send(untagged("BYE autologout, idle for too long"))
        self.state = State.LOGOUT
        self._events.append(Close())

    def capabilities(self) -> str:
        s = self.settings
        if self.state in (State.AUTHENTICATED, State.SELECTED):
            compress = "" if self.compressed else " COMPRESS=DEFLATE"
            return f"{CAPS_AFTER_LOGIN} APPENDLIMIT={s.max_literal}{compress}"
        caps = list(CAPS_BEFORE_LOGIN)
        if s.starttls_available and not s.tls_active:
            caps.append("STARTTLS")
        if s.allow_plaintext or s.tls_active:
            caps.append("AUTH=PLAIN")
        else:
            caps.append("LOGINDISABLED")
        return " ".join(caps)

    # -- framing --------------------------------------------------------------------------
    def _framed(self, line_only: bool) -> bytes | StreamStart | None:
        """The next line (IDLE, SASL) or whole command, or None; a broken stream ends
        the session."""
        error = None
        data: bytes | StreamStart | None
        try:
            if line_only:
                data = self._framer.line()
            else:
                authed = self.state in (State.AUTHENTICATED, State.SELECTED)
                stream_over = self.settings.stream_over if authed else None
                data = self._framer.command(self._literal_limit(), stream_over)
        except FrameError as e:
            data, error = None, str(e)
        self._out.extend(self._framer.replies)
        self._framer.replies.clear()
        if error is not None:
            self._fatal(error)
        return data

    def _literal_limit(self) -> int:
        """Messages (APPEND) only after login: before it, a literal is a name or password."""
        if self.state in (State.AUTHENTICATED, State.SELECTED):
            return self.settings.max_literal
        return min(self.settings.max_literal, 8192)

    def _fatal(self, why: str) -> None:
        self._send(untagged(f"BYE {why}"))
        self.state = State.LOGOUT
        self._events.append(Close())

    # -- commands -------------------------------------------------------------------------
    def _step(self) -> bool:
        """Handle one line or command if a whole one is buffered; False if none is."""
        if self.mode is Mode.STREAM:
            return self._stream_step()
        if self.mode is Mode.IDLE:
            line = self._framed(line_only=True)
            if not isinstance(line, bytes):
                return False
            self.mode = Mode.COMMAND
            if line.rstrip(b"\r\n").upper() == b"DONE":
                self._send(tagged(self._tag, "OK", "IDLE terminated"))
            else:
                self._send(tagged(self._tag, "BAD", "expected DONE"))
            return True
        if self.mode is Mode.SASL:
            line = self._framed(line_only=True)
            if not isinstance(line, bytes):
                return False
            self._sasl_step(line.rstrip(b"\r\n").decode("ascii", "replace"))
            return True
        data = self._framed(line_only=False)
        if data is None:
            return False
        if isinstance(data, StreamStart):
            self._stream_start(data)
            return True
        if not data.strip():
            return True
        self._commands += 1
        if self._commands > self.settings.max_commands:
            self._fatal("too many commands in one session")
            return True
        try:
            cmd = parse_command(data)
        except ParseError as e:
            self._bad(tag_of(data), str(e))
            return True
        try:
            self._dispatch(cmd)
        except ParseError as e:
            self._bad(cmd.tag, str(e))
        return True

    def _stream_start(self, start: StreamStart) -> None:
        """An APPEND with a big literal: the server checks the folder and the size first."""
        self._commands += 1
        tag = tag_of(start.line)
        self._tag = tag
        self._stream_pending = start
        line, self._stream_close = start.line, b""
        stripped = line.rstrip()
        if stripped[-6:].upper() == b"UTF8 (":  # RFC 6855 ``UTF8 (~{n}...)``
            line, self._stream_close = stripped[:-6], b")"
        try:
            cmd = parse_command(line)
            if not 1 <= len(cmd.args) <= 3:
                raise ParseError("bad APPEND arguments")
        except ParseError as e:  # refused, and a LITERAL+ literal dropped
            self.append_refused(tagged(tag, "BAD", str(e)))
            return
        self.mode = Mode.WAITING
        self._events.append(AppendStart(tag, cmd.args, start.size))

    def _stream_step(self) -> bool:
        if self._stream_left:
            data = self._framer.take(self._stream_left)
            if not data:
                return False
            self._stream_left -= len(data)
            if not self._stream_drop:
                self._events.append(AppendChunk(data))
            return True
        line = self._framed(line_only=True)
        if not isinstance(line, bytes):
            return False
        self.mode = Mode.COMMAND
        if self._stream_drop:
            return True
        ok = line.strip() == self._stream_close
        self.mode = Mode.WAITING
        self._events.append(AppendEnd(self._tag, ok))
        return True

    def _bad(self, tag: str, why: str) -> None:
        self._errors += 1
        self._send(tagged(tag, "BAD", why))
        if self._errors >= self.settings.max_errors:
            self._fatal("too many errors")

    def _dispatch(self, cmd: Command) -> None:
        name, tag = cmd.name, cmd.tag
        if name not in KNOWN:
            raise ParseError(f"unknown command {name[:30]}")
        allowed = name in ANY_STATE or (
            (name in NOT_AUTH and self.state is State.NOT_AUTHENTICATED)
            or (name in AUTH and self.state in (State.AUTHENTICATED, State.SELECTED))
            or (name in SELECTED and self.state is State.SELECTED)
        )
        if not allowed:
            raise ParseError(f"{name} is not allowed {self.state.value}")
        handler: Callable[[Command], None] | None = getattr(self, "_cmd_" + name.lower(), None)
        if handler is not None:
            handler(cmd)
            return
        uid = False
        args: list[Token] = list(cmd.args)
        if name == "UID":
            if not args or not isinstance(args[0], str) or args[0].upper() not in UID_COMMANDS:
                raise ParseError("UID needs FETCH, STORE, COPY, MOVE, SEARCH or EXPUNGE")
            name, uid, args = args[0].upper(), True, args[1:]
        self._tag = tag
        self.mode = Mode.WAITING
        self._events.append(Execute(tag, name, uid, args, self.state))

    def _cmd_capability(self, cmd: Command) -> None:
        self._no_args(cmd)
        self._send(untagged(f"CAPABILITY {self.capabilities()}"))
        self._send(tagged(cmd.tag, "OK", "CAPABILITY completed"))

    def _cmd_noop(self, cmd: Command) -> None:
        self._no_args(cmd)
        if self.state is State.SELECTED:
            self._tag = cmd.tag
            self.mode = Mode.WAITING
            self._events.append(Execute(cmd.tag, "NOOP", False, [], self.state))
            return
        self._send(tagged(cmd.tag, "OK", "NOOP completed"))

    def _cmd_logout(self, cmd: Command) -> None:
        self._no_args(cmd)
        self._send(untagged("BYE logging out"))
        self._send(tagged(cmd.tag, "OK", "LOGOUT completed"))
        self.state = State.LOGOUT
        self._events.append(Close())

    def _cmd_id(self, cmd: Command) -> None:
        if len(cmd.args) != 1:
            raise ParseError("ID takes one argument")
        self._send(untagged(b'ID ("name" ' + string(self.server_id) + b")"))
        self._send(tagged(cmd.tag, "OK", "ID completed"))

    def _cmd_namespace(self, cmd: Command) -> None:
        self._no_args(cmd)
        self._send(untagged('NAMESPACE (("" ".")) NIL NIL'))
        self._send(tagged(cmd.tag, "OK", "NAMESPACE completed"))

    def _cmd_starttls(self, cmd: Command) -> None:
        self._no_args(cmd)
        if not self.settings.starttls_available or self.settings.tls_active:
            self._send(tagged(cmd.tag, "NO", "TLS is not available here"))
            return
        self._send(tagged(cmd.tag, "OK", "begin TLS negotiation now"))
        self._framer.clear()  # nothing sent before the handshake may be acted on after it
        self.mode = Mode.WAITING
        self._events.append(StartTLS())

    def _cmd_compress(self, cmd: Command) -> None:
        """RFC 4978: the OK goes out uncompressed, everything after it compressed."""
        if len(cmd.args) != 1 or not isinstance(cmd.args[0], str):
            raise ParseError("COMPRESS needs a mechanism")
        if cmd.args[0].upper() != "DEFLATE":
            raise ParseError("unknown compression mechanism")
        if self.compressed:
            self._send(tagged(cmd.tag, "NO", "compression is already on", "COMPRESSIONACTIVE"))
            return
        self._send(tagged(cmd.tag, "OK", "DEFLATE active"))
        self.compressed = True
        self._events.append(StartCompress(self._framer.take(len(self._framer.buffer))))

    def _cmd_idle(self, cmd: Command) -> None:
        self._no_args(cmd)
        self._tag = cmd.tag
        self.mode = Mode.WAITING
        self._events.append(IdleStart(cmd.tag))

    @staticmethod
    def _no_args(cmd: Command) -> None:
        if cmd.args:
            raise ParseError(f"{cmd.name} takes no arguments")
