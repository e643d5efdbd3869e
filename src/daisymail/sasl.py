"""SASL PLAIN (RFC 4616) and LOGIN exchanges shared by SMTP AUTH, POP3 AUTH and IMAP.

The exchanges only decode what the client sends; verifying the password is the caller's
job. Each protocol wraps the base64 challenges in its own framing (`334 ` in SMTP, `+ ` in
POP3 and IMAP), so an exchange speaks in base64 text and leaves the framing alone.
"""

from __future__ import annotations

import base64
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = [
    "MECHANISMS",
    "Challenge",
    "Credentials",
    "Exchange",
    "LoginExchange",
    "PlainExchange",
    "SaslCancelled",
    "SaslError",
    "decode_base64",
    "decode_plain",
    "new_exchange",
]

_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class SaslError(ValueError):
    """The client's response is not valid base64, UTF-8 or mechanism syntax."""


class SaslCancelled(SaslError):
    """The client answered a challenge with `*` (RFC 4954 section 4)."""


@dataclass(frozen=True)
class Credentials:
    """What the client claims; `authzid` is "" when it asks for no other identity."""

    authzid: str
    username: str
    password: str


@dataclass(frozen=True)
class Challenge:
    """Base64 text to send to the client, which must answer with one line."""

    data: str


def decode_base64(text: str) -> bytes:
    """Decode canonical base64 only: padding required, no whitespace, no stray characters."""
    if not _BASE64.fullmatch(text):
        raise SaslError("invalid base64")
    return base64.b64decode(text, validate=True)


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SaslError("invalid UTF-8") from exc


def decode_plain(b64: str) -> tuple[str, str, str]:
    """Split a PLAIN message `[authzid] NUL authcid NUL passwd` into its three parts."""
    parts = decode_base64(b64).split(b"\0")
    if len(parts) != 3:
        raise SaslError("PLAIN needs exactly two NUL separators")
    authzid, authcid, password = (_utf8(part) for part in parts)
    if not authcid or not password:
        raise SaslError("PLAIN needs a user name and a password")
    return authzid, authcid, password


class Exchange(ABC):
    """One authentication exchange; `start` once, then `respond` to each challenge."""

    mechanism: str

    @abstractmethod
    def start(self, initial_response: str | None) -> Challenge | Credentials:
        """Begin; `initial_response` is None when absent and "=" when empty (RFC 4954)."""

    @abstractmethod
    def respond(self, line: str) -> Challenge | Credentials:
        """Take the client's answer to the last challenge."""

    @staticmethod
    def _check_cancel(line: str) -> None:
        if line == "*":
            raise SaslCancelled("authentication cancelled")


def _initial(initial_response: str) -> str:
    return "" if initial_response == "=" else initial_response


class PlainExchange(Exchange):
    """PLAIN: one message carries everything; without an initial response, ask with ""."""

    mechanism = "PLAIN"

    def start(self, initial_response: str | None) -> Challenge | Credentials:
        if initial_response is None:
            return Challenge("")
        return Credentials(*decode_plain(_initial(initial_response)))

    def respond(self, line: str) -> Challenge | Credentials:
        self._check_cancel(line)
        return Credentials(*decode_plain(line))


_USERNAME = base64.b64encode(b"Username:").decode("ascii")
_PASSWORD = base64.b64encode(b"Password:").decode("ascii")


class LoginExchange(Exchange):
    """LOGIN: the de-facto mechanism of Outlook and friends, user name then password."""

    mechanism = "LOGIN"

    def __init__(self) -> None:
        self._username: str | None = None

    def start(self, initial_response: str | None) -> Challenge | Credentials:
        if initial_response is None:
            return Challenge(_USERNAME)
        return self._take_username(_initial(initial_response))

    def respond(self, line: str) -> Challenge | Credentials:
        self._check_cancel(line)
        if self._username is None:
            return self._take_username(line)
        return Credentials("", self._username, _utf8(decode_base64(line)))

    def _take_username(self, b64: str) -> Challenge:
        username = _utf8(decode_base64(b64))
        if not username:
            raise SaslError("LOGIN needs a user name")
        self._username = username
        return Challenge(_PASSWORD)


MECHANISMS: dict[str, type[Exchange]] = {"PLAIN": PlainExchange, "LOGIN": LoginExchange}


def new_exchange(mechanism: str) -> Exchange | None:
    """A fresh exchange for a mechanism name (any case), or None if it is not supported."""
    factory = MECHANISMS.get(mechanism.upper())
    return factory() if factory is not None else None
