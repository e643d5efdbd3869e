"""AUTH in the SMTP session (RFC 4954): when it is allowed, and the SASL exchange
(initial response, 334 challenges, cancel) that ends in an AuthAttempt for the server
to verify; the server answers with ServerSession.auth_result.

A mixin of ServerSession (protocol.py), kept apart because it is one job.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import sasl
from . import replies as R
from .events import AuthAttempt, _State
from .replies import reply
from .session_parts import SessionParts

_SaslStep = Callable[[], sasl.Challenge | sasl.Credentials]


class SaslAuth(SessionParts):
    """The AUTH command and the SASL state of ServerSession, which provides the fields and
    plumbing below."""

    def _cmd_auth(self, arg: str) -> None:
        s = self.settings
        words = arg.split(" ")
        if not s.auth_mechanisms:
            self._error(R.bad_sequence("Authentication not enabled"))
        elif not self._ehlo:
            self._error(R.bad_sequence("Send EHLO first"))
        elif self.info.authenticated_as is not None:
            self._error(R.bad_sequence("Already authenticated"))
        elif self._envelope is not None:
            self._error(R.bad_sequence("MAIL transaction in progress"))
        elif s.auth_requires_tls and not self.info.tls:
            self._error(R.AUTH_NEEDS_TLS)
        elif not 1 <= len(words) <= 2 or not all(words):
            self._error(R.syntax("AUTH mechanism [initial-response]"))
        elif words[0].upper() not in s.auth_mechanisms:
            self._error(R.AUTH_UNKNOWN_MECH)
        else:
            exchange = sasl.new_exchange(words[0])
            assert exchange is not None
            self._exchange = exchange
            self._sasl_step(lambda: exchange.start(words[1] if len(words) == 2 else None))

    def _sasl_response(self, raw: bytes) -> None:
        exchange = self._exchange
        assert exchange is not None
        line = raw.decode("ascii", "replace")
        self._sasl_step(lambda: exchange.respond(line))

    def _sasl_step(self, step: _SaslStep) -> None:
        exchange = self._exchange
        assert exchange is not None
        self._state = _State.COMMAND
        try:
            result = step()
        except sasl.SaslCancelled:
            self._exchange = None
            self._error(R.AUTH_CANCELLED)
            return
        except sasl.SaslError:
            self._exchange = None
            self._error(R.AUTH_BAD_RESPONSE)
            return
        if isinstance(result, sasl.Challenge):
            self._send(reply(334, None, result.data))
            self._state = _State.SASL
        else:
            self._exchange = None
            self._state = _State.AWAIT_AUTH
            self._auth_username = result.username
            self._events.append(
                AuthAttempt(exchange.mechanism, result.authzid, result.username, result.password)
            )
