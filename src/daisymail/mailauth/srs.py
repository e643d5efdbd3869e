"""Sender Rewriting Scheme for forwarded mail (the SRS0/SRS1 format in common use).

A message forwarded to another provider keeps failing SPF there if its envelope
sender stays the original one. Rewriting it into our own domain makes SPF pass, and
a bounce to the rewritten address can be turned back into the original one. The
address carries a day stamp and an HMAC so that nobody can use us as a bounce relay
with made-up addresses, and old ones expire.

    SRS0=HHHH=TT=orig.example=alice@forwarder.example
    SRS1=HHHH=first.forwarder==HHHH=TT=orig.example=alice@forwarder.example
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

SECONDS_PER_DAY = 86400
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_STAMP_CYCLE = 1024  # two base32 characters of days


class SRSError(ValueError):
    """Not an SRS address of ours, or forged, or too old: refuse the bounce."""


def _day(now: float) -> int:
    return int(now // SECONDS_PER_DAY) % _STAMP_CYCLE


def _stamp(day: int) -> str:
    return _B32[day >> 5] + _B32[day & 31]


def _unstamp(text: str) -> int:
    if len(text) != 2 or any(c not in _B32 for c in text.upper()):
        raise SRSError("bad SRS time stamp")
    return _B32.index(text[0].upper()) * 32 + _B32.index(text[1].upper())


class SRS:
    def __init__(self, secret: bytes, domain: str, max_age_days: int = 21) -> None:
        if not secret:
            raise ValueError("SRS needs a secret")
        self.secret = secret
        self.domain = domain.lower().rstrip(".")
        self.max_age_days = max_age_days

    def _hash(self, *parts: str) -> str:
        mac = hmac.new(self.secret, "".join(parts).lower().encode(), hashlib.sha1).digest()
        return base64.b64encode(mac).decode()[:4].replace("+", "-").replace("/", "_")

    def forward(self, sender: str, now: float | None = None) -> str:
        """The envelope sender to use when forwarding mail from ``sender``."""
        local, at, domain = sender.rpartition("@")
        if not at or not local or domain.lower().rstrip(".") == self.domain:
            return sender  # the null sender, and our own addresses, stay as they are
        head = local[:5].upper()
        if head == "SRS1=":
            # Re-forwarding another hop's SRS1: keep the first forwarder, sign again.
            rest = local[5:]
            _hash, sep, tail = rest.partition("=")
            if sep:
                first, sep2, inner = tail.partition("==")
                if sep2:
                    return f"SRS1={self._hash(first, inner)}={first}=={inner}@{self.domain}"
        if head == "SRS0=":
            inner = local[5:]
            return f"SRS1={self._hash(domain, inner)}={domain}=={inner}@{self.domain}"
        stamp = _stamp(_day(time.time() if now is None else now))
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}@{self.domain}"

    @staticmethod
    def is_srs(address: str) -> bool:
        return address[:5].upper() in ("SRS0=", "SRS1=")

    def reverse(self, address: str, now: float | None = None) -> str:
        """Where a bounce to ``address`` goes; SRSError when it is not a valid one of ours."""
        local, at, domain = address.rpartition("@")
        if not at or domain.lower().rstrip(".") != self.domain or not self.is_srs(local):
            raise SRSError("not an SRS address of this server")
        kind, body = local[:4].upper(), local[5:]
        if kind == "SRS1":
            given, _, tail = body.partition("=")
            first, sep, inner = tail.partition("==")
            if not sep or not first or not inner:
                raise SRSError("malformed SRS1 address")
            self._check(given, self._hash(first, inner))
            return f"SRS0={inner}@{first}"
        parts = body.split("=", 3)
        if len(parts) != 4 or not all(parts):
            raise SRSError("malformed SRS0 address")
        given, stamp, orig_domain, orig_local = parts
        self._check(given, self._hash(stamp, orig_domain, orig_local))
        age = (_day(time.time() if now is None else now) - _unstamp(stamp)) % _STAMP_CYCLE
        if age > self.max_age_days:
            raise SRSError("SRS address expired")
        return f"{orig_local}@{orig_domain}"

    @staticmethod
    def _check(given: str, expected: str) -> None:
        if not hmac.compare_digest(given.lower().encode(), expected.lower().encode()):
            raise SRSError("SRS hash does not match")


class SRSKeys:
    """SRS for every hosted domain under one secret (``[srs] secret``): forwarded mail
    is rewritten into the domain of the address it was forwarded from, and a bounce to
    an SRS address in any hosted domain is turned back."""

    def __init__(self, secret: str, max_age_days: int = 21) -> None:
        if not secret:
            raise ValueError("SRS needs a secret")
        self.secret = secret.encode()
        self.max_age_days = max_age_days

    def _for(self, domain: str) -> SRS:
        return SRS(self.secret, domain, self.max_age_days)

    def forward(self, sender: str, domain: str, now: float | None = None) -> str:
        return self._for(domain).forward(sender, now)

    def reverse(self, address: str, now: float | None = None) -> str | None:
        """The original address behind an SRS address of ours, or None when forged,
        expired or malformed."""
        domain = address.rpartition("@")[2]
        try:
            return self._for(domain).reverse(address, now)
        except SRSError:
            return None


def from_config(secret: str) -> SRSKeys | None:
    """``[srs] secret`` as keys; None when it is empty (forwards keep their sender)."""
    return SRSKeys(secret) if secret else None
