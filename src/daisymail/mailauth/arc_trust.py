"""Local policy over DMARC (RFC 7489 6.7, RFC 8617 7.2): trusted ARC sealers.

A list or forwarder that changes a message breaks the author's DKIM signature, so
DMARC fails here although the message was authentic when the sealer got it. When the
ARC chain validates, its newest seal is by a domain the admin trusts
(``[verify] trusted_arc_sealers``), and that sealer's ARC-Authentication-Results say
DMARC passed (or an SPF or DKIM pass that aligns with the From domain), the DMARC
policy is not applied. The decision is only this module's; it reads plain header
fields and asks DNS only for the alignment of the sealer's identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from daisymail.dns import Resolver
from daisymail.mailauth.arc import ARCResult, _instance
from daisymail.mailauth.canon import split_header
from daisymail.mailauth.dmarc import DMARCResult, Identifier, evaluate

_COMMENT = re.compile(rb"\((?:[^()\\]|\\.)*\)")
_TOKEN = re.compile(r'(?:[^\s"]|"(?:[^"\\]|\\.)*")+')  # quoted strings stay whole


@dataclass(frozen=True)
class AARResult:
    """One result of an ARC-Authentication-Results field: ``spf=pass smtp.mailfrom=x``."""

    method: str
    result: str
    props: dict[str, str]


def aar_results(field: bytes) -> list[AARResult]:
    """The results of an ARC-Authentication-Results field (RFC 8617 4.1.1), comments
    dropped; unparsable parts are skipped, never guessed."""
    value = _COMMENT.sub(b" ", split_header(field)[1]).decode("utf-8", "replace")
    parts = value.split(";")[2:]  # after "i=N" and the authserv-id
    out = []
    for part in parts:
        tokens = _TOKEN.findall(part)
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props = {}
        for t in tokens[1:]:
            name, eq, v = t.partition("=")
            if eq:
                props[name.lower()] = v[1:-1] if v.startswith('"') else v
        out.append(AARResult(method.split("/")[0].lower(), result.lower(), props))
    return out


def is_trusted(domain: str, trusted: Sequence[str]) -> bool:
    """``domain`` is one of ``trusted`` or below one of them."""
    d = domain.lower().rstrip(".")
    for t in trusted:
        t = t.lower().strip(".")
        if t and (d == t or d.endswith("." + t)):
            return True
    return False


def _newest_aar(fields: Sequence[bytes], instance: int) -> bytes | None:
    for f in fields:
        name, value = split_header(f)
        aar = name.strip(b" \t").lower() == b"arc-authentication-results"
        if aar and _instance(value) == instance:
            return f
    return None


async def override(
    arc: ARCResult,
    dmarc: DMARCResult,
    fields: Sequence[bytes],
    trusted: Sequence[str],
    resolver: Resolver,
) -> str:
    """Why a DMARC failure is overridden ("" when it is not): the trusted sealer and
    what it saw, e.g. ``arc: lists.example saw dkim=pass``."""
    if dmarc.result != "fail" or arc.result != "pass" or not trusted:
        return ""
    if not is_trusted(arc.domain, trusted):
        return ""
    aar = _newest_aar(fields, arc.instances)
    if aar is None:
        return ""
    results = aar_results(aar)
    seen = f"arc: {arc.domain} saw"
    for r in results:
        header_from = r.props.get("header.from", dmarc.from_domain).lower().rstrip(".")
        if r.method == "dmarc" and r.result == "pass" and header_from == dmarc.from_domain:
            return f"{seen} dmarc=pass"
    spf_id = next(
        (
            Identifier("pass", r.props["smtp.mailfrom"].rpartition("@")[2])
            for r in results
            if r.method == "spf" and r.result == "pass" and r.props.get("smtp.mailfrom")
        ),
        None,
    )
    dkims = [
        Identifier("pass", r.props["header.d"])
        for r in results
        if r.method == "dkim" and r.result == "pass" and r.props.get("header.d")
    ]
    if spf_id is None and not dkims:
        return ""
    again = await evaluate(dmarc.from_domain, spf_id, dkims, resolver)
    if again.result != "pass":
        return ""
    return f"{seen} {'dkim' if again.dkim_aligned else 'spf'}=pass"
