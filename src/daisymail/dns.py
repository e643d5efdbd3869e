"""Async DNS for mail authentication and routing: one small interface, plain data out.

Evaluators (SPF, DKIM, DMARC, MX routing) take a ``Resolver`` and never see dnspython,
so they are tested against a real authoritative server on loopback and stay pure. The
errors separate what the RFCs treat differently: a name or record that does not exist
(``NotFound``; SPF counts these as "void" lookups) from a lookup that could not be done
(``TempFail``), which must never be mistaken for an answer.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver
import dns.reversename

from daisymail.config import parse_hostport


class DNSError(Exception):
    """A lookup gave no usable answer."""


class NotFound(DNSError):
    """The name does not exist (NXDOMAIN) or has no record of the type (no data)."""

    def __init__(self, name: str, rdtype: str, nxdomain: bool) -> None:
        self.name, self.rdtype, self.nxdomain = name, rdtype, nxdomain
        what = "does not exist" if nxdomain else f"has no {rdtype} record"
        super().__init__(f"{name} {what}")


class TempFail(DNSError):
    """Timeout, SERVFAIL, unreachable servers: try again later."""


@dataclass(frozen=True)
class MX:
    preference: int
    exchange: str  # without the trailing dot; "" for the null MX (RFC 7505)


class Resolver(Protocol):
    """What mail authentication needs from DNS. Names are given without trailing dot."""

    async def txt(self, name: str) -> list[str]:
        """Each TXT record with its strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        ...

    async def a(self, name: str) -> list[str]: ...

    async def aaaa(self, name: str) -> list[str]: ...

    async def mx(self, name: str) -> list[MX]: ...

    async def ptr(self, ip: str) -> list[str]:
        """Names of an IPv4 or IPv6 address (in-addr.arpa / ip6.arpa)."""
        ...


_MAX_TTL = 3600
_NEGATIVE_TTL = 60


class DnspythonResolver:
    """The Resolver over dnspython's asyncio resolver, with a timeout and a small cache.

    The cache keeps answers and NotFound for their TTL (capped), never TempFail: a
    transient failure must not stick. It is bounded (least recently used goes first).
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        timeout: float = 5.0,
        cache_size: int = 2048,
    ) -> None:
        if nameservers:
            res = dns.asyncresolver.Resolver(configure=False)
            servers: list[str | dns.nameserver.Nameserver] = []
            for ns in nameservers:
                host, port = parse_hostport(ns)
                servers.append(dns.nameserver.Do53Nameserver(host, port))
            res.nameservers = servers
        else:
            res = dns.asyncresolver.Resolver()
        res.use_edns(0, 0, 1232)
        res.cache = None
        self._res = res
        self.timeout = timeout
        self._cache: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._cache_size = cache_size

    async def _query(self, name: str, rdtype: str, convert: Any) -> list[Any]:
        """The records of ``rdtype`` at ``name`` as ``convert`` makes them from
        dnspython's; converted once and cached as such."""
        key = (name.lower().rstrip("."), rdtype)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None:
            expires, value = hit
            if expires > now:
                self._cache.move_to_end(key)
                if isinstance(value, NotFound):
                    raise value
                return list(value)
            del self._cache[key]
        try:
            answer = await self._res.resolve(
                key[0] + ".", rdtype, lifetime=self.timeout, search=False
            )
        except dns.resolver.NXDOMAIN:
            self._store(key, NotFound(key[0], rdtype, True), _NEGATIVE_TTL)
            raise NotFound(key[0], rdtype, True) from None
        except dns.resolver.NoAnswer:
            self._store(key, NotFound(key[0], rdtype, False), _NEGATIVE_TTL)
            raise NotFound(key[0], rdtype, False) from None
        except dns.exception.Timeout:
            raise TempFail(f"DNS timeout looking up {rdtype} {key[0]}") from None
        except dns.exception.DNSException as e:
            raise TempFail(f"DNS lookup of {rdtype} {key[0]} failed: {e}") from None
        records = tuple(convert(r) for r in answer)
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        self._store(key, records, min(ttl, _MAX_TTL))
        return list(records)

    def _store(self, key: tuple[str, str], value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        self._cache[key] = (time.monotonic() + ttl, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def txt(self, name: str) -> list[str]:
        return await self._query(name, "TXT", _txt)

    async def a(self, name: str) -> list[str]:
        return await self._query(name, "A", _address)

    async def aaaa(self, name: str) -> list[str]:
        return await self._query(name, "AAAA", _address)

    async def mx(self, name: str) -> list[MX]:
        return await self._query(name, "MX", _mx)

    async def ptr(self, ip: str) -> list[str]:
        rev = dns.reversename.from_address(str(ipaddress.ip_address(ip)))
        return await self._query(rev.to_text(), "PTR", _ptr)


def _txt(r: Any) -> str:
    return b"".join(r.strings).decode("utf-8", "replace")


def _address(r: Any) -> str:
    return str(r.address)


def _mx(r: Any) -> MX:
    return MX(r.preference, _text(r.exchange))


def _ptr(r: Any) -> str:
    return _text(r.target)


def _text(name: dns.name.Name) -> str:
    """A name without the trailing dot; the root is ""."""
    return "" if name == dns.name.root else name.to_text(omit_final_dot=True)


def from_config(nameservers: Sequence[str], timeout: float) -> DnspythonResolver:
    """The resolver for ``[dns]``: its nameservers when given, the system's otherwise."""
    return DnspythonResolver(nameservers, timeout)
