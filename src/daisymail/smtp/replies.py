"""SMTP replies (RFC 5321 section 4.2) with enhanced status codes (RFC 2034, 3463, 5248)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " "})


@dataclass(frozen=True)
class Reply:
    """One reply; several `lines` become a multi-line reply, each line carrying the codes."""

    code: int
    enhanced: str | None
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.enhanced is not None and (
            not _ENHANCED.fullmatch(self.enhanced) or self.enhanced[0] != str(self.code)[0]
        ):
            raise ValueError(f"enhanced code {self.enhanced!r} does not fit {self.code}")

    @property
    def positive(self) -> bool:
        return self.code < 400

    def encode(self) -> bytes:
        """Wire form; line breaks inside texts become spaces so a reply stays one reply."""
        return self._wire

    @cached_property
    def _wire(self) -> bytes:  # the shared constant replies below are encoded once
        lines = self.lines or ("",)
        last = len(lines) - 1
        out = []
        for index, text in enumerate(lines):
            sep = " " if index == last else "-"
            words = " ".join(w for w in (self.enhanced, text.translate(_LINE_BREAKS)) if w)
            out.append(f"{self.code}{sep}{words}")
        return ("\r\n".join(out) + "\r\n").encode("utf-8", "replace")


def reply(code: int, enhanced: str | None, *lines: str) -> Reply:
    return Reply(code, enhanced, lines)


OK = reply(250, "2.0.0", "Ok")
SENDER_OK = reply(250, "2.1.0", "Sender ok")
START_DATA = reply(354, None, "End data with <CR><LF>.<CR><LF>")
VRFY = reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP")
READY_TLS = reply(220, "2.0.0", "Ready to start TLS")
AUTH_OK = reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_CANCELLED = reply(501, "5.0.0", "Authentication cancelled")
AUTH_BAD_RESPONSE = reply(501, "5.5.2", "Cannot decode response")
AUTH_REQUIRED = reply(530, "5.7.0", "Authentication required")
AUTH_NEEDS_TLS = reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_UNKNOWN_MECH = reply(504, "5.5.4", "Unrecognized authentication type")

UNKNOWN_COMMAND = reply(500, "5.5.1", "Command unrecognized")
LINE_TOO_LONG = reply(500, "5.5.2", "Line too long")
BARE_LINE_END = reply(500, "5.5.2", "Bare CR or LF in command line; use CRLF")
BAD_CHARACTERS = reply(500, "5.5.2", "Invalid characters in command")
BAD_SEQUENCE = reply(503, "5.5.1", "Bad sequence of commands")
NO_RECIPIENTS = reply(554, "5.5.1", "No valid recipients")
TOO_MANY_RECIPIENTS = reply(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
TOO_MANY_HOPS = reply(554, "5.4.6", "Too many hops: mail loop detected")


def syntax(usage: str) -> Reply:
    return reply(501, "5.5.4", f"Syntax: {usage}")


def bad_sequence(text: str) -> Reply:
    return reply(503, "5.5.1", text)
