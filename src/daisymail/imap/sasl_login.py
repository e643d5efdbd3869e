"""LOGIN and AUTHENTICATE in the IMAP core: the plaintext rule, SASL PLAIN (with the
initial response on the command line, SASL-IR, or after a ``+``), and the LoginAttempt
event the server answers. A mixin of ImapSession, kept apart because it is one job.
"""

from __future__ import annotations

from daisymail.imap.events import Event, LoginAttempt, Mode, Settings
from daisymail.imap.parser import Command, ParseError, astring
from daisymail.imap.responses import tagged
from daisymail.sasl import Challenge, Credentials, Exchange, SaslError, new_exchange


class LoginCommands:
    settings: Settings
    mode: Mode
    _tag: str
    _sasl: Exchange | None
    _events: list[Event]

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _bad(self, tag: str, why: str) -> None:
        raise NotImplementedError

    def _plaintext_refused(self, tag: str) -> bool:
        if self.settings.allow_plaintext or self.settings.tls_active:
            return False
        self._send(tagged(tag, "NO", "use STARTTLS before logging in", "PRIVACYREQUIRED"))
        return True

    def _cmd_login(self, cmd: Command) -> None:
        if len(cmd.args) != 2:
            raise ParseError("LOGIN needs a user name and a password")
        user, password = astring(cmd.args[0]), astring(cmd.args[1])
        if self._plaintext_refused(cmd.tag):
            return
        self._tag = cmd.tag
        self.mode = Mode.WAITING
        self._events.append(LoginAttempt(cmd.tag, user, password, "LOGIN"))

    def _cmd_authenticate(self, cmd: Command) -> None:
        if not 1 <= len(cmd.args) <= 2 or not isinstance(cmd.args[0], str):
            raise ParseError("AUTHENTICATE needs a mechanism")
        initial = astring(cmd.args[1]) if len(cmd.args) == 2 else None
        exchange = new_exchange(cmd.args[0])
        if exchange is None or exchange.mechanism != "PLAIN":
            self._send(tagged(cmd.tag, "NO", "unsupported mechanism"))
            return
        if self._plaintext_refused(cmd.tag):
            return
        self._tag, self._sasl = cmd.tag, exchange
        try:
            self._sasl_result(exchange.start(initial))
        except SaslError:
            self._sasl = None
            self._bad(cmd.tag, "malformed SASL response")

    def _sasl_step(self, line: str) -> None:
        exchange, self._sasl = self._sasl, None
        self.mode = Mode.COMMAND
        if exchange is None:
            return
        if line == "*":
            self._send(tagged(self._tag, "BAD", "authentication cancelled"))
            return
        self._sasl = exchange
        try:
            self._sasl_result(exchange.respond(line))
        except SaslError:
            self._sasl = None
            self._bad(self._tag, "malformed SASL response")

    def _sasl_result(self, result: Challenge | Credentials) -> None:
        if isinstance(result, Challenge):
            self.mode = Mode.SASL
            self._send(b"+ " + result.data.encode("ascii") + b"\r\n")
            return
        self._sasl = None
        if result.authzid and result.authzid != result.username:
            self._send(tagged(self._tag, "NO", "cannot act as another user", "AUTHORIZATIONFAILED"))
            return
        self.mode = Mode.WAITING
        self._events.append(LoginAttempt(self._tag, result.username, result.password, "PLAIN"))
