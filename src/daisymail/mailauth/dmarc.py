"""DMARC (RFC 7489) with policy discovery and organizational domains by the DNS tree
walk of RFC 9989, over an injected resolver.

The tree walk replaces the public suffix list: a record with ``psd=n`` marks an
organizational domain, one with ``psd=y`` marks a public suffix (the org domain is the
name one label below it), and otherwise the record with the fewest labels wins. The
walk asks at most eight names: the domain, then from its rightmost seven labels down
to the top-level domain.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from daisymail.dns import NotFound, Resolver, TempFail

POLICIES = ("none", "quarantine", "reject")
_DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}


@dataclass(frozen=True)
class DMARCRecord:
    p: str
    sp: str | None = None
    np: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    psd: str = "u"  # y: a public suffix; n: an organizational domain; u: unknown
    t: bool = False  # testing: apply the policy one step milder
    rua: tuple[str, ...] = ()


@dataclass(frozen=True)
class DMARCResult:
    result: str  # pass, fail, none, temperror, permerror (RFC 8601 2.7.4 uses the first four)
    from_domain: str
    policy: str = "none"  # what the domain asks to be done with this message
    record_domain: str = ""  # where the record was found
    requested: str = ""  # p (or sp/np) as published
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Identifier:
    """An authenticated domain: SPF's MAIL FROM (or HELO) domain or a DKIM d=."""

    result: str  # the SPF or DKIM result
    domain: str


@functools.lru_cache(maxsize=1024)
def parse_record(text: str) -> DMARCRecord | None:
    """A DMARC record, or None when it is not a valid one (then it is not there). Kept
    by text: a busy MX sees the same few hundred sender domains all day."""
    tags: dict[str, str] = {}
    for i, part in enumerate(text.split(";")):
        name, eq, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if i == 0:
            if name != "v" or value != "DMARC1":
                return None
            continue
        if eq and name and name not in tags:
            tags[name] = value

    def policy(key: str) -> str | None:
        v = tags.get(key, "").lower()
        return v if v in POLICIES else None

    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip())
    p = policy("p")
    if p is None:
        if not rua:
            return None
        p = "none"  # a valid record without a usable p: monitor only
    pct = tags.get("pct", "100")
    psd = tags.get("psd", "u").lower()
    return DMARCRecord(
        p=p,
        sp=policy("sp"),
        np=policy("np"),
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=min(int(pct), 100) if pct.isdigit() else 100,
        psd=psd if psd in ("y", "n") else "u",
        t=tags.get("t", "n").lower() == "y",
        rua=rua,
    )


_VERSION = re.compile(r"^\s*v\s*=\s*DMARC1\s*(;|$)")


@functools.lru_cache(maxsize=1024)
def walk_names(domain: str) -> tuple[str, ...]:
    """The names the tree walk asks, in order (RFC 9989 4.10); kept, as records are."""
    labels = domain.split(".")
    start = max(1, len(labels) - 7)
    return (domain, *(".".join(labels[i:]) for i in range(start, len(labels))))


@dataclass
class Discovery:
    """Looks up DMARC records once per name for one message."""

    resolver: Resolver
    _seen: dict[str, DMARCRecord | None] = field(default_factory=dict)

    async def record(self, domain: str) -> DMARCRecord | None:
        """The valid record at _dmarc.DOMAIN; TempFail passes through."""
        if domain not in self._seen:
            try:
                texts = await self.resolver.txt(f"_dmarc.{domain}")
            except NotFound:
                texts = []
            found = [r for r in texts if _VERSION.match(r)]
            self._seen[domain] = parse_record(found[0]) if len(found) == 1 else None
        return self._seen[domain]

    async def policy_record(self, domain: str) -> tuple[str, DMARCRecord] | None:
        for name in walk_names(domain):
            rec = await self.record(name)
            if rec is not None:
                return name, rec
        return None

    async def organizational_domain(self, domain: str) -> str:
        labels = domain.split(".")
        fewest = ""
        for name in walk_names(domain):
            rec = await self.record(name)
            if rec is None:
                continue
            if rec.psd == "n":
                return name
            if rec.psd == "y" and name != domain:
                return ".".join(labels[-(name.count(".") + 2) :])
            fewest = name
        return fewest or domain


async def aligned(disc: Discovery, a: str, b: str, mode: str) -> bool:
    if a == b:
        return True
    if mode == "s":
        return False
    return await disc.organizational_domain(a) == await disc.organizational_domain(b)


async def evaluate(
    from_domain: str,
    spf: Identifier | None,
    dkim: Sequence[Identifier],
    resolver: Resolver,
) -> DMARCResult:
    """The DMARC result and requested policy for a message whose From is in from_domain."""
    dom = from_domain.lower().rstrip(".")
    disc = Discovery(resolver)
    try:
        found = await disc.policy_record(dom)
        if found is None:
            return DMARCResult("none", dom, reason="no DMARC record")
        where, rec = found
        spf_ok = (
            spf is not None
            and spf.result == "pass"
            and await aligned(disc, spf.domain.lower(), dom, rec.aspf)
        )
        dkim_ok = False
        for d in dkim:
            if d.result == "pass" and await aligned(disc, d.domain.lower(), dom, rec.adkim):
                dkim_ok = True
                break
        if spf_ok or dkim_ok:
            return DMARCResult("pass", dom, "none", where, rec.p, spf_ok, dkim_ok)
        requested = rec.p
        if where != dom:
            requested = rec.sp or rec.p
            if rec.np and await _nonexistent(resolver, dom):
                requested = rec.np
    except TempFail as e:
        return DMARCResult("temperror", dom, reason=str(e))
    policy = _DOWNGRADE[requested] if rec.t or rec.pct == 0 else requested
    return DMARCResult("fail", dom, policy, where, requested, reason="no aligned identifier")


async def _nonexistent(resolver: Resolver, domain: str) -> bool:
    """NXDOMAIN: the name has no records of any type (RFC 9989 np=)."""
    try:
        await resolver.a(domain)
    except NotFound as e:
        return e.nxdomain
    return False
