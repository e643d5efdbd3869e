"""Inbound verdicts for mail on port 25: SPF, DKIM and DMARC in, one decision out.

The SMTP server streams the message into ``InboundCheck.feed`` as it arrives and asks
``verdict()`` after the final dot, before its reply. The verdict carries the
Authentication-Results field to prepend and what to do: accept, file in Junk, refuse
with 550, or ask for a retry with 451. Trusted relay networks and authenticated
submission do not come here at all (the caller skips them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daisymail.dns import Resolver
from daisymail.mailauth.arc import ARCResult, validate
from daisymail.mailauth.arc_trust import override as arc_override
from daisymail.mailauth.dkim_verify import BodyHashes, DKIMResult, verify_parsed
from daisymail.mailauth.dmarc import DMARCResult, Identifier, evaluate
from daisymail.mailauth.results import arc_result, authentication_results, spf_result
from daisymail.mailauth.signing import from_domain
from daisymail.mailauth.spf import SPFResult, check_host


@dataclass(frozen=True)
class InboundPolicy:
    """What to do with each outcome; the defaults mark rather than refuse when unsure."""

    dmarc_reject: bool = True  # p=reject and DMARC fails: 550 5.7.1 (else file in Junk)
    dmarc_quarantine: bool = True  # p=quarantine and DMARC fails: Junk (else just mark)
    spf_fail_without_dmarc: str = "mark"  # SPF -all fail, no DMARC record: mark/junk/reject
    temperror: str = "mark"  # a DNS failure decided nothing: mark, or defer (451 4.7.x)
    trusted_arc_sealers: tuple[str, ...] = ()  # their ARC pass overrides a DMARC failure


@dataclass(frozen=True)
class Verdict:
    action: str  # accept, junk, reject, defer
    header: bytes  # the Authentication-Results field, CRLF-terminated
    reply: tuple[int, str, str] | None  # (code, enhanced status, text) for reject/defer
    spf: SPFResult
    dkim: list[DKIMResult]
    dmarc: DMARCResult
    arc: ARCResult
    override: str = ""  # why the DMARC policy was not applied (a trusted ARC sealer)


@dataclass(frozen=True)
class Judgement:
    """What the SMTP server acts on and logs of a verdict. A verdict worker sends one
    as a plain tuple (``wire``): a few strings cost far less to pass between processes
    than the verdict's tree of results."""

    action: str
    header: bytes
    reply: tuple[int, str, str] | None
    spf: str  # the SPF result
    dkim: str  # "RESULT:DOMAIN,..." for each signature, or "none"
    dmarc: str  # "RESULT:FROM-DOMAIN"
    override: str
    forged: bool  # the message claims Authentication-Results of ours: remove them
    by: str = "server"  # judged by a verdict worker ("worker") or the server

    @classmethod
    def of(cls, v: Verdict, forged: bool) -> Judgement:
        dkim = ",".join(f"{d.result}:{d.domain}" for d in v.dkim) or "none"
        dmarc = f"{v.dmarc.result}:{v.dmarc.from_domain}"
        return cls(v.action, v.header, v.reply, v.spf.result, dkim, dmarc, v.override, forged)

    @classmethod
    def from_wire(cls, values: tuple[Any, ...], by: str) -> Judgement:
        action, header, reply, spf, dkim, dmarc, override, forged = values
        return cls(action, header, reply, spf, dkim, dmarc, override, forged, by)

    def wire(self) -> tuple[object, ...]:
        return (
            self.action, self.header, self.reply, self.spf, self.dkim, self.dmarc,
            self.override, self.forged,
        )  # fmt: skip


class InboundCheck:
    """One message: feed its bytes, then ask for the verdict."""

    def __init__(
        self,
        resolver: Resolver,
        authserv_id: str,
        *,
        ip: str,
        helo: str,
        mailfrom: str,
        policy: InboundPolicy | None = None,
    ) -> None:
        self.resolver = resolver
        self.authserv_id = authserv_id
        self.ip, self.helo, self.mailfrom = ip, helo, mailfrom
        self.policy = policy or InboundPolicy()
        self._parsed = BodyHashes()

    def feed(self, chunk: bytes) -> None:
        self._parsed.feed(chunk)

    @property
    def fields(self) -> list[bytes]:
        """The header fields fed so far (all of them once the body has begun)."""
        return self._parsed.fields

    async def verdict(self, now: float | None = None) -> Verdict:
        self._parsed.close()
        spf_domain = self.mailfrom.rpartition("@")[2] if self.mailfrom else self.helo
        spf = await check_host(
            self.ip, spf_domain, self.mailfrom, self.resolver, helo=self.helo, now=now
        )
        dkim = await verify_parsed(self._parsed, self.resolver, now)
        arc = await validate(self._parsed, self.resolver)
        parsed = self._parsed
        froms = [f for f, n in zip(parsed.fields, parsed.names, strict=True) if n == "from"]
        author = from_domain(froms) if len(froms) == 1 else ""
        if not author:
            why = "no From domain" if not froms else "not exactly one From"
            dmarc = DMARCResult("permerror", "", reason=why)
        else:
            dmarc = await evaluate(
                author,
                Identifier(spf.result, spf_domain),
                [Identifier(d.result, d.domain) for d in dkim],
                self.resolver,
            )
        trusted = self.policy.trusted_arc_sealers
        why = await arc_override(arc, dmarc, self._parsed.fields, trusted, self.resolver)
        header = authentication_results(
            self.authserv_id,
            spf=spf_result(spf, self.mailfrom, self.helo),
            dkim=dkim,
            dmarc=dmarc if author else None,
            dmarc_override=why,
            extra=[arc_result(arc)],
        )
        action, reply = ("accept", None) if why else self._decide(spf, dmarc)
        return Verdict(action, header, reply, spf, dkim, dmarc, arc, why)

    def _decide(
        self, spf: SPFResult, dmarc: DMARCResult
    ) -> tuple[str, tuple[int, str, str] | None]:
        p = self.policy
        if dmarc.result == "fail":
            if dmarc.policy == "reject":
                if p.dmarc_reject:
                    text = f"DMARC policy of {dmarc.from_domain} rejects this message"
                    return "reject", (550, "5.7.1", text)
                return "junk", None
            if dmarc.policy == "quarantine" and p.dmarc_quarantine:
                return "junk", None
            return "accept", None
        if dmarc.result == "none" and spf.result == "fail":
            if p.spf_fail_without_dmarc == "reject":
                text = spf.explanation or f"SPF of {spf.domain} does not allow this host"
                return "reject", (550, "5.7.23", text)
            if p.spf_fail_without_dmarc == "junk":
                return "junk", None
        if p.temperror == "defer" and "temperror" in (spf.result, dmarc.result):
            return "defer", (451, "4.7.24", "temporary DNS failure checking the sender")
        return "accept", None
