"""ARC sealing (RFC 8617) of mail Daisy forwards: one ARC set added as it leaves.

A forward keeps the original From, so the author's DMARC can only pass at the
destination through DKIM, and a changed message loses that too. The ARC set records
what Daisy saw when the message arrived (its own Authentication-Results, as the
ARC-Authentication-Results), signs the message as it leaves (ARC-Message-Signature)
and seals the whole chain (ARC-Seal), so the destination can trust Daisy's verdict
if it trusts Daisy. Keys are the forwarding domain's DKIM keys; RSA when it has one,
since more receivers check RSA seals than Ed25519 ones.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

from daisymail.mailauth.arc import ARC_NAMES, MAX_INSTANCES, _instance
from daisymail.mailauth.canon import header_relaxed, split_header
from daisymail.mailauth.dkim import (
    ALGORITHM_TAG,
    SIGNED_HEADERS,
    SigningKey,
    fold_b64,
    select_headers,
    sign_data,
)

_ARC_RESULT = re.compile(rb"\barc=(none|pass|fail)\b", re.I)


def _own_results(fields: Sequence[bytes], authserv_id: str) -> bytes:
    """The result part of our own Authentication-Results field; b"" without one."""
    for f in fields:
        name, value = split_header(f)
        if name.strip(b" \t").lower() != b"authentication-results":
            continue
        ident, sep, rest = value.partition(b";")
        if sep and ident.strip().lower() == authserv_id.lower().encode():
            return b" ".join(rest.split())
    return b""


def arc_set(
    fields: Sequence[bytes], body_hash: bytes, key: SigningKey, authserv_id: str, now: int
) -> bytes:
    """ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results to prepend (CRLF),
    for a message with these header fields and relaxed body hash; b"" when the chain is
    already at its limit."""
    sets: dict[int, dict[bytes, bytes]] = {}
    for f in fields:
        name = split_header(f)[0].strip(b" \t").lower()
        if name in ARC_NAMES:
            sets.setdefault(_instance(split_header(f)[1]), {})[name] = f
    n = max(sets, default=0)
    if n >= MAX_INSTANCES:
        return b""
    results = _own_results(fields, authserv_id)
    if n == 0:
        cv = "none"
    else:
        complete = sorted(sets) == list(range(1, n + 1)) and all(len(s) == 3 for s in sets.values())
        seen = _ARC_RESULT.search(results)
        cv = "pass" if complete and seen and seen.group(1).lower() == b"pass" else "fail"
    i = n + 1
    a = ALGORITHM_TAG[key.algorithm]
    text = results.decode("utf-8", "replace") or "none"
    aar = f"ARC-Authentication-Results: i={i}; {authserv_id};\r\n\t{text}\r\n".encode()

    h, signed = select_headers(fields, SIGNED_HEADERS)
    bh = base64.b64encode(body_hash).decode()
    ams_head = (
        f"ARC-Message-Signature: i={i}; a={a}; c=relaxed/relaxed; d={key.domain};"
        f" s={key.selector};\r\n\tt={now}; h={':'.join(h)};\r\n\tbh={bh};\r\n\tb="
    )
    b = sign_data(key.private, signed + header_relaxed(ams_head.encode())[:-2])
    ams = (ams_head + fold_b64(base64.b64encode(b).decode()) + "\r\n").encode()

    seal_head = (
        f"ARC-Seal: i={i}; a={a}; cv={cv}; d={key.domain}; s={key.selector};\r\n\tt={now}; b="
    )
    data = b""
    if cv != "fail":  # a failed chain is sealed over the new set only (RFC 8617 5.1.2)
        for j in range(1, n + 1):
            for name in ARC_NAMES:
                data += header_relaxed(sets[j][name])
    data += header_relaxed(aar) + header_relaxed(ams) + header_relaxed(seal_head.encode())[:-2]
    b = sign_data(key.private, data)
    seal = (seal_head + fold_b64(base64.b64encode(b).decode()) + "\r\n").encode()
    return seal + ams + aar
