"""The POP3 logins (RFC 1939, 5034): USER/PASS, APOP and AUTH PLAIN (initial response on
the command line or after a ``+``), the rule that plaintext logins need TLS unless allowed,
and the LoginAttempt event the server checks and answers with login_result.

A mixin of Pop3Session (protocol.py), kept apart because it is one job.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from daisymail.pop3.events import Event, LoginAttempt, Settings, _Reply, _Wait


def _decode_plain(response: str) -> tuple[str, str, str] | None:
    """SASL PLAIN (RFC 4616): base64 of authzid NUL authcid NUL password, all UTF-8."""
    try:
        raw = base64.b64decode(response.encode("ascii"), validate=True)
        parts = [part.decode("utf-8") for part in raw.split(b"\0")]
    except ValueError:
        return None
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]


class LoginCommands:
    """The authorization commands of Pop3Session, which provides the fields and output below."""

    settings: Settings
    _tls: bool
    _user: str | None
    _sasl_pending: bool
    _wait: _Wait

    def _reply(self, line: str) -> None:
        raise NotImplementedError

    def _multiline(self, first: str, rows: Iterable[str]) -> None:
        raise NotImplementedError

    def _plaintext_ok(self) -> bool:
        return self._tls or self.settings.allow_plaintext

    def _refuse_plaintext(self) -> _Reply:
        hint = "use STLS first" if self.settings.stls_available else "use POP3 over TLS"
        return _Reply(f"-ERR [AUTH] Plaintext authentication is disallowed without TLS; {hint}")

    def _do_user(self, arg: str | None) -> Event | None:
        if not self._plaintext_ok():
            raise self._refuse_plaintext()
        if arg is None or not arg.strip(" "):
            raise _Reply("-ERR Syntax: USER name")
        self._user = arg
        self._reply("+OK Send your password")
        return None

    def _do_pass(self, arg: str | None) -> Event | None:
        user, self._user = self._user, None
        if user is None:
            raise _Reply("-ERR Send USER first")
        if not self._plaintext_ok():
            raise self._refuse_plaintext()
        if not arg:
            self._user = user
            raise _Reply("-ERR Syntax: PASS password")
        return self._attempt(LoginAttempt(user, arg, None, "USER"))

    def _do_apop(self, arg: str | None) -> Event | None:
        if not self.settings.apop_enabled:
            raise _Reply("-ERR APOP is not available")
        name, space, digest = (arg or "").partition(" ")
        if not name or not space or not digest:
            raise _Reply("-ERR Syntax: APOP name digest")
        return self._attempt(LoginAttempt(name, None, digest, "APOP"))

    def _do_auth(self, arg: str | None) -> Event | None:
        if arg is None:
            self._multiline("+OK Supported mechanisms follow", self._sasl_mechanisms())
            return None
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() != "PLAIN":
            raise _Reply("-ERR Unsupported authentication mechanism")
        if not self._plaintext_ok():
            raise self._refuse_plaintext()
        if not initial:
            self._sasl_pending = True
            self._reply("+ ")
            return None
        return self._plain("" if initial == "=" else initial)

    def _sasl_response(self, line: bytes) -> Event | None:
        self._sasl_pending = False
        response = line.decode("utf-8", "surrogateescape")
        if response == "*":
            self._reply("-ERR Authentication cancelled")
            return None
        return self._plain(response)

    def _plain(self, response: str) -> Event | None:
        decoded = _decode_plain(response)
        if decoded is None:
            self._reply("-ERR Malformed SASL PLAIN response")
            return None
        authzid, authcid, password = decoded
        if authzid not in ("", authcid):
            self._reply("-ERR [AUTH] Authorization identity must be empty or the user name")
            return None
        return self._attempt(LoginAttempt(authcid, password, None, "PLAIN"))

    def _attempt(self, attempt: LoginAttempt) -> Event:
        self._wait = _Wait.LOGIN
        return attempt

    def _sasl_mechanisms(self) -> list[str]:
        return ["PLAIN"] if self._plaintext_ok() else []
