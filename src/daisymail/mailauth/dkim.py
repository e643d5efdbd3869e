"""DKIM signing (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

The message is fed in chunks: the header section is kept, the body goes through the
relaxed canonicalizer straight into one SHA-256 that every signature shares, so a large
message is never held whole. Signatures are made with ``cryptography`` (C speed).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from daisymail.mailauth.canon import (
    BodyCanon,
    HeaderSplitter,
    field_name,
    header_relaxed,
)

# Signed when present; From is signed once more than it occurs, so no From can be added.
SIGNED_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
OVERSIGNED = ("from",)

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
ALGORITHM_TAG = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private: PrivateKey


def public_key_record(private: PrivateKey) -> str:
    """The TXT record to publish at SELECTOR._domainkey.DOMAIN."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def zone_txt(name: str, value: str, ttl: int = 3600) -> str:
    """A TXT record in zone file syntax, the value split into strings of 255 bytes."""
    parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    strings = " ".join(f'"{p}"' for p in parts)
    return f"{name.rstrip('.')}. {ttl} IN TXT {strings}"


def sign_data(private: PrivateKey, data: bytes) -> bytes:
    """RSA signs the data with SHA-256; Ed25519 signs its SHA-256 digest (RFC 8463 3)."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(hashlib.sha256(data).digest())
    return private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def select_headers(fields: Sequence[bytes], names: Iterable[str]) -> tuple[list[str], bytes]:
    """The h= list for the fields present, and their canonical bytes in that order.

    Each name is listed once per occurrence (taken from the bottom up, RFC 6376
    5.4.2), plus once more for the oversigned names.
    """
    h: list[str] = []
    out: list[bytes] = []
    for name in names:
        found = [f for f in fields if field_name(f) == name]
        for f in reversed(found):
            h.append(name)
            out.append(header_relaxed(f))
        if name in OVERSIGNED:
            h.append(name)
    return h, b"".join(out)


def fold_b64(value: str, width: int = 72) -> str:
    return "\r\n\t".join(value[i : i + width] for i in range(0, len(value), width))


class Signer:
    """Feed a message in chunks, then ``finish(keys)`` for the DKIM-Signature fields.

    The keys are chosen at the end so a caller can pick them by the From header
    (``fields``), which is known only once the header section has been read.
    """

    def __init__(self, now: float | None = None) -> None:
        self.now = int(time.time() if now is None else now)
        self._hash = hashlib.sha256()
        self._body = BodyCanon(self._hash.update, relaxed=True)
        self._split = HeaderSplitter(self._body.feed)
        self.body_hash = b""  # the relaxed body's SHA-256, once finished

    @property
    def fields(self) -> list[bytes]:
        return self._split.fields

    def feed(self, chunk: bytes) -> None:
        self._split.feed(chunk)

    def finish(self, keys: Sequence[SigningKey]) -> bytes:
        """The fields to prepend, CRLF line ends; one per key."""
        if not self.body_hash:
            self._split.close()
            self._body.close()
            self.body_hash = self._hash.digest()
        bh = base64.b64encode(self.body_hash).decode()
        h, signed = select_headers(self._split.fields, SIGNED_HEADERS)
        out = []
        for key in keys:
            head = (
                f"DKIM-Signature: v=1; a={ALGORITHM_TAG[key.algorithm]}; c=relaxed/relaxed;"
                f" d={key.domain}; s={key.selector};\r\n\tt={self.now}; h={':'.join(h)};"
                f"\r\n\tbh={bh};\r\n\tb="
            )
            data = signed + header_relaxed(head.encode())[:-2]
            b = base64.b64encode(sign_data(key.private, data)).decode()
            out.append(head + fold_b64(b) + "\r\n")
        return "".join(out).encode()


def signatures(
    message: bytes | Iterable[bytes], keys: Sequence[SigningKey], now: float | None = None
) -> bytes:
    """The DKIM-Signature fields for a message (bytes or chunks); b"" without keys."""
    if not keys:
        return b""
    signer = Signer(now)
    for chunk in [message] if isinstance(message, bytes) else message:
        signer.feed(chunk)
    return signer.finish(keys)
