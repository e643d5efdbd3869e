"""Signing outgoing mail: the one call the queue makes before a message leaves.

The signing domain is the From header's domain when it has a key (that signature is
what DMARC aligns with), else the envelope sender's. A domain with no key is sent
unsigned; a key that cannot be read is logged and the message still goes out
unsigned, because losing mail over a signature would be worse.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from daisymail.config import Config
from daisymail.mailauth.arc_seal import arc_set
from daisymail.mailauth.canon import field_name
from daisymail.mailauth.dkim import Signer
from daisymail.mailauth.keystore import KeyStore, KeyStoreError

log = logging.getLogger("daisymail.dkim")
_ADDR_DOMAIN = re.compile(rb"@([A-Za-z0-9.-]+)")
_ANGLE = re.compile(rb"<([^>]*)>")


def store_for(cfg: Config) -> KeyStore:
    return KeyStore(cfg.path(cfg.dkim.dir))


def from_domain(fields: list[bytes]) -> str:
    """The domain of the (first) From header's address; "" when there is none."""
    for f in fields:
        if field_name(f) == "from":
            value = f.partition(b":")[2]
            angle = _ANGLE.search(value)
            m = _ADDR_DOMAIN.search(angle.group(1) if angle else value)
            return m.group(1).decode("ascii").lower().rstrip(".") if m else ""
    return ""


def sign_message(
    store: KeyStore,
    message: bytes | Iterable[bytes],
    envelope_sender: str,
    now: float | None = None,
    authserv_id: str = "",
) -> bytes:
    """DKIM-Signature fields to put in front of the message; b"" when not signed.

    A forward (an SRS envelope sender, see mailauth.srs) whose domain has a key is
    also ARC-sealed, with ``authserv_id``'s Authentication-Results as what Daisy saw.
    The fields use the message's own line ending (CRLF or LF). CPU-bound: call it in
    a worker thread from the event loop.
    """
    if store.empty():
        return b""
    signer = Signer(now)
    first = b""
    for chunk in [message] if isinstance(message, bytes) else message:
        if b"\n" not in first and len(first) < 1000:
            first += chunk[:1000]
        signer.feed(chunk)
    t = time.time() if now is None else now
    sender_domain = envelope_sender.rpartition("@")[2].rstrip(".")
    try:
        keys = store.signing_keys(from_domain(signer.fields), t)
        if not keys:
            keys = store.signing_keys(sender_domain, t)
        forwarded = envelope_sender[:5].upper() in ("SRS0=", "SRS1=") and authserv_id
        sealers = store.signing_keys(sender_domain, t) if forwarded else []
    except KeyStoreError as e:
        log.error("dkim.key_unreadable error=%s", e)
        return b""
    if not keys:
        return b""
    out = signer.finish(keys)
    if sealers:
        sealer = next((k for k in sealers if k.algorithm == "rsa"), sealers[0])
        out = arc_set(signer.fields, signer.body_hash, sealer, authserv_id, signer.now) + out
    line_end = first.find(b"\n")
    if line_end > 0 and first[line_end - 1 : line_end] != b"\r":
        out = out.replace(b"\r\n", b"\n")
    return out
