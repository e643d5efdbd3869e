"""The SMTP commands other than AUTH, as the session runs them: EHLO and what it offers,
HELO, MAIL and RCPT (asking the Policy), DATA and BDAT (starting a message), RSET, NOOP,
QUIT, VRFY, HELP and STARTTLS.

A mixin of ServerSession (protocol.py), which reads the command lines and dispatches them
here through its handler table.
"""

from __future__ import annotations

import re

from . import replies as R
from .data import CrlfDecoder, DotDecoder, HopCounter
from .events import (
    Envelope,
    MessageStarted,
    Recipient,
    StartTLS,
    _State,
)
from .params import CommandError, parse_mail, parse_rcpt
from .replies import Reply, reply
from .session_parts import SessionParts

_BDAT = re.compile(r"(\d{1,20})(?: +(LAST))? *", re.IGNORECASE)


class Commands(SessionParts):
    """The command handlers of ServerSession, which provides what SessionParts declares."""

    def _ehlo_lines(self) -> list[str]:
        s = self.settings
        lines = ["PIPELINING", f"SIZE {s.max_message_size}"]
        if s.eightbitmime:
            lines.append("8BITMIME")
        if s.smtputf8:
            lines.append("SMTPUTF8")
        lines.append("ENHANCEDSTATUSCODES")
        if s.starttls_available and not self.info.tls:
            lines.append("STARTTLS")
        if s.chunking:
            lines.append("CHUNKING")
        if s.dsn:
            lines.append("DSN")
        if s.auth_mechanisms and (self.info.tls or not s.auth_requires_tls):
            lines.append("AUTH " + " ".join(s.auth_mechanisms))
        return lines

    def _offered(self) -> frozenset[str]:
        """EHLO keywords in force: none after HELO, so no ESMTP parameters either."""
        if not self._ehlo:
            return frozenset()
        return frozenset(line.split(" ", 1)[0] for line in self._ehlo_lines())

    def _greet(self, arg: str, verb: str) -> bool:
        name = arg.strip(" ")
        if not name or " " in name:
            self._error(R.syntax(f"{verb} hostname"))
            return False
        self._reset_transaction()
        self.info.client_name = name
        return True

    def _cmd_ehlo(self, arg: str) -> None:
        if self._greet(arg, "EHLO"):
            self._ehlo = True
            self._send(Reply(250, None, (self.settings.hostname, *self._ehlo_lines())))

    def _cmd_helo(self, arg: str) -> None:
        if self._greet(arg, "HELO"):
            self._ehlo = False
            self._send(reply(250, None, self.settings.hostname))

    def _cmd_mail(self, arg: str) -> None:
        if not self.info.client_name:
            self._error(R.bad_sequence("Send HELO/EHLO first"))
        elif self._envelope is not None:
            self._error(R.bad_sequence("Nested MAIL command"))
        elif self.settings.require_auth_for_mail and self.info.authenticated_as is None:
            self._error(R.AUTH_REQUIRED)
        else:
            try:
                args = parse_mail(
                    arg, offered=self._offered(), max_size=self.settings.max_message_size
                )
            except CommandError as exc:
                self._error(exc.reply)
                return
            answer = self.policy.check_sender(self.info, args.sender, args.params)
            answer = answer or R.SENDER_OK
            if answer.positive:
                self._envelope = Envelope(
                    args.sender, args.params, [], args.body_type, args.smtputf8
                )
            self._send(answer)

    def _cmd_rcpt(self, arg: str) -> None:
        envelope = self._envelope
        if envelope is None:
            self._error(R.bad_sequence("Need MAIL command"))
        elif self._chunks is not None:
            self._error(R.bad_sequence("RCPT not allowed during BDAT"))
        else:
            try:
                args = parse_rcpt(arg, offered=self._offered(), smtputf8=envelope.smtputf8)
            except CommandError as exc:
                self._error(exc.reply)
                return
            if len(envelope.recipients) >= self.settings.max_recipients:
                self._send(R.TOO_MANY_RECIPIENTS)
                return
            decision = self.policy.check_recipient(self.info, envelope, args.address, args.params)
            if decision.accepted:
                envelope.recipients.append(Recipient(args.address, args.params, decision.target))
            self._send(decision.reply)

    def _cmd_data(self, arg: str) -> None:
        envelope = self._envelope
        if arg.strip(" "):
            self._error(R.syntax("DATA"))
        elif envelope is None:
            self._error(R.bad_sequence("Need MAIL command"))
        elif self._chunks is not None:
            self._error(R.bad_sequence("DATA not allowed after BDAT"))
        elif not envelope.recipients:
            self._error(R.NO_RECIPIENTS)
        else:
            self._send(R.START_DATA)
            self._state = _State.DATA
            self._dot = DotDecoder()
            self._too_big = False
            self._hops = HopCounter(self.settings.max_hops)
            self._events.append(MessageStarted(envelope))

    def _cmd_bdat(self, arg: str) -> None:
        if "CHUNKING" not in self._offered():
            self._error(R.UNKNOWN_COMMAND)
            return
        match = _BDAT.fullmatch(arg)
        if match is None:
            self._error(R.syntax("BDAT size [LAST]"))
            return
        self._bdat_size = self._bdat_left = int(match.group(1))
        self._bdat_last = match.group(2) is not None
        self._bdat_refusal = None
        envelope = self._envelope
        if envelope is None:
            self._bdat_refusal = R.bad_sequence("Need MAIL command")
        elif not envelope.recipients:
            self._bdat_refusal = R.NO_RECIPIENTS
        elif self._chunks is None:
            self._chunks = CrlfDecoder()
            self._hops = HopCounter(self.settings.max_hops)
            self._events.append(MessageStarted(envelope))
        self._state = _State.BDAT

    def _cmd_rset(self, arg: str) -> None:
        if arg.strip(" "):
            self._error(R.syntax("RSET"))
        else:
            self._reset_transaction()
            self._send(R.OK)

    def _cmd_noop(self, arg: str) -> None:
        self._send(R.OK)

    def _cmd_quit(self, arg: str) -> None:
        if arg.strip(" "):
            self._error(R.syntax("QUIT"))
        else:
            self._reset_transaction()
            self._send(reply(221, "2.0.0", f"{self.settings.hostname} Bye"))
            self._close()

    def _cmd_vrfy(self, arg: str) -> None:
        if arg.strip(" "):
            self._send(R.VRFY)
        else:
            self._error(R.syntax("VRFY address"))

    def _cmd_help(self, arg: str) -> None:
        self._send(R.HELP)

    def _cmd_starttls(self, arg: str) -> None:
        if not self.settings.starttls_available:
            self._error(R.UNKNOWN_COMMAND)
        elif arg.strip(" "):
            self._error(R.syntax("STARTTLS"))
        elif self.info.tls:
            self._error(R.bad_sequence("TLS already active"))
        elif not self._ehlo:
            self._error(R.bad_sequence("Send EHLO first"))
        elif self._envelope is not None:
            self._error(R.bad_sequence("MAIL transaction in progress"))
        else:
            self._send(R.READY_TLS)
            self._in.clear()  # plaintext pipelined after STARTTLS is an injection (CVE-2011-0411)
            self._state = _State.AWAIT_TLS
            self._events.append(StartTLS())
