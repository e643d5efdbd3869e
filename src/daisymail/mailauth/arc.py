"""ARC chain validation (RFC 8617 5.2) over an injected resolver.

A forwarder or list that changes a message breaks its DKIM signature; ARC lets it
vouch for what it saw. Validation gives ``cv``: ``none`` (no ARC sets), ``pass`` or
``fail``. Only the newest ARC-Message-Signature is checked (the RFC's minimum), and
every ARC-Seal. What the chain is then worth is a local decision the result only
reports.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from daisymail.dns import Resolver, TempFail
from daisymail.mailauth.canon import header_relaxed, split_header
from daisymail.mailauth.dkim_verify import (
    BodyHashes,
    SigError,
    parse_tags,
    public_key,
    signature_ok,
    signed_headers,
    without_b,
)

MAX_INSTANCES = 50
ARC_NAMES = (b"arc-authentication-results", b"arc-message-signature", b"arc-seal")
_ARC_NAMES = frozenset(n.decode() for n in ARC_NAMES)


@dataclass(frozen=True)
class ARCResult:
    result: str  # none, pass, fail (temperror when a key could not be fetched)
    instances: int = 0
    domain: str = ""  # d= of the newest seal
    reason: str = ""


def _instance(value: bytes) -> int:
    """The i= of an ARC field: of its tags, or the AAR's leading "i=N;"."""
    tags = value.split(b";")
    for t in tags:
        name, _, v = t.partition(b"=")
        if name.strip() == b"i":
            num = v.strip()
            return int(num) if num.isdigit() else -1
    return -1


async def validate(parsed: BodyHashes, resolver: Resolver) -> ARCResult:
    """The chain validation status of a message streamed through BodyHashes."""
    sets: dict[int, dict[bytes, bytes]] = {}
    for f, lower in zip(parsed.fields, parsed.names, strict=True):
        if lower not in _ARC_NAMES:  # the names are known: most mail has no ARC field
            continue
        name, value = split_header(f)
        key = name.strip(b" \t").lower()
        if key not in ARC_NAMES:
            continue
        i = _instance(value)
        if i < 1 or i > MAX_INSTANCES:
            return ARCResult("fail", reason=f"bad instance in {key.decode()}")
        if key in sets.setdefault(i, {}):
            return ARCResult("fail", i, reason=f"two {key.decode()} for i={i}")
        sets[i][key] = f
    if not sets:
        return ARCResult("none")
    n = max(sets)
    if sorted(sets) != list(range(1, n + 1)) or any(len(sets[i]) != 3 for i in sets):
        return ARCResult("fail", n, reason="incomplete ARC sets")
    try:
        seals = [parse_tags(split_header(sets[i][b"arc-seal"])[1]) for i in range(1, n + 1)]
        domain = seals[-1].get("d", "").lower()
        if seals[-1].get("cv") == "fail":
            return ARCResult("fail", n, domain, "the chain failed before")
        for i, seal in enumerate(seals, 1):
            if seal.get("cv") != ("none" if i == 1 else "pass"):
                return ARCResult("fail", n, domain, f"cv= of seal {i} is {seal.get('cv')}")
        if not await _message_signature(sets[n][b"arc-message-signature"], parsed, resolver):
            return ARCResult("fail", n, domain, f"message signature {n} did not verify")
        for i in range(n, 0, -1):
            if not await _seal(sets, i, seals[i - 1], resolver):
                return ARCResult("fail", n, domain, f"seal {i} did not verify")
    except SigError as e:
        return ARCResult("fail", n, reason=str(e))
    except TempFail as e:
        return ARCResult("temperror", n, reason=str(e))
    return ARCResult("pass", n, domain)


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise SigError("b= or bh= is not base64") from None


def _required(tags: dict[str, str], *names: str) -> None:
    for t in names:
        if t not in tags:
            raise SigError(f"ARC field without {t}=")
    if tags["a"] not in ("rsa-sha256", "ed25519-sha256"):
        raise SigError(f"unsupported algorithm {tags['a']}")


async def _message_signature(field: bytes, parsed: BodyHashes, resolver: Resolver) -> bool:
    tags = parse_tags(split_header(field)[1])
    _required(tags, "a", "b", "bh", "d", "h", "s")
    hc, _, bc = tags.get("c", "relaxed/relaxed").partition("/")
    bc = bc or "simple"
    if hc not in ("simple", "relaxed") or bc not in ("simple", "relaxed"):
        raise SigError("unknown canonicalization")
    h = [x.lower() for x in tags["h"].split(":") if x]
    if "arc-seal" in h:
        raise SigError("ARC-Message-Signature signs ARC-Seal")
    if parsed.digest(bc) != _b64(tags["bh"]):
        return False
    d = tags["d"].lower()
    key = await public_key(resolver, tags["s"], d, tags["a"], d)
    data = signed_headers(parsed.fields, h, hc == "relaxed") + without_b(field, hc == "relaxed")
    return signature_ok(key, _b64(tags["b"]), data)


async def _seal(
    sets: dict[int, dict[bytes, bytes]], i: int, tags: dict[str, str], resolver: Resolver
) -> bool:
    """ARC-Seal i signs the ARC sets 1..i, each AAR, AMS, AS, relaxed (RFC 8617 5.1.1)."""
    _required(tags, "a", "b", "d", "s")
    if "h" in tags:
        raise SigError("ARC-Seal with h=")
    data = b""
    for j in range(1, i + 1):
        data += header_relaxed(sets[j][b"arc-authentication-results"])
        data += header_relaxed(sets[j][b"arc-message-signature"])
        if j < i:
            data += header_relaxed(sets[j][b"arc-seal"])
    data += without_b(sets[i][b"arc-seal"], True)
    d = tags["d"].lower()
    key = await public_key(resolver, tags["s"], d, tags["a"], d)
    return signature_ok(key, _b64(tags["b"]), data)
