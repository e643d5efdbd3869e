"""DKIM verification (RFC 6376 6), RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

One result per signature. ``l=`` (body length) is ignored for the verdict: the body hash
is always taken over the whole body, so content appended after a signed prefix makes the
signature fail instead of passing unseen. RSA-SHA1 and RSA keys under 1024 bits are not
accepted (RFC 8301).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from daisymail.dns import NotFound, Resolver, TempFail
from daisymail.mailauth.canon import (
    BodyCanon,
    HeaderSplitter,
    canon_header,
    field_name,
    split_header,
)

_TAG_WSP = b" \t\r\n"  # removed from tag names and values (bytes.translate)


@dataclass(frozen=True)
class DKIMResult:
    result: str  # pass, fail, neutral, temperror, permerror (RFC 8601 2.7.1)
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    b: str = ""  # the start of b=, to tell signatures apart in Authentication-Results
    reason: str = ""


class SigError(Exception):
    """A permanent error in a signature or its key (the result is permerror)."""


def parse_tags(value: bytes) -> dict[str, str]:
    """A DKIM tag-list (RFC 6376 3.2) with white space removed from values."""
    # White space goes from names and values alike, and ";" and "=" are never white
    # space: removed from the whole list at once (and decoded once), not part by part.
    tags: dict[str, str] = {}
    for part in value.translate(None, _TAG_WSP).decode("ascii", "replace").split(";"):
        if not part:
            continue
        key, eq, val = part.partition("=")
        if not eq or not key:
            raise SigError("malformed tag list")
        if key in tags:
            raise SigError(f"duplicate tag {key}")
        tags[key] = val
    return tags


# The body canonicalization when c= does not name one (RFC 6376 3.5; ARC as arc.py reads it)
_DEFAULT_BODY_CANON = {"dkim-signature": "simple", "arc-message-signature": "relaxed"}


class BodyHashes:
    """Streams a message once: its header fields, and the body's SHA-256 under both
    canonicalizations (only when the header has a DKIM-Signature)."""

    def __init__(self) -> None:
        self._split = HeaderSplitter(self._body)
        self._canons: dict[str, tuple[BodyCanon, Any]] | None = None
        self._tags: dict[bytes, dict[str, str] | SigError] = {}

    def tags(self, value: bytes) -> dict[str, str]:
        """A signature field's tags (SigError), parsed once for this message: its body
        canonicalization is read before the body streams, the rest at the verdict.
        Read only: callers share the dict."""
        tags = self._tags.get(value)
        if tags is None:
            try:
                tags = parse_tags(value)
            except SigError as e:
                tags = e
            self._tags[value] = tags
        if isinstance(tags, SigError):
            raise tags
        return tags

    @property
    def fields(self) -> list[bytes]:
        return self._split.fields

    @property
    def names(self) -> list[str]:
        """The fields' names, lowercased (once per message)."""
        return self._split.names

    def feed(self, chunk: bytes) -> None:
        self._split.feed(chunk)

    def _body(self, chunk: bytes) -> None:
        if self._canons is None:
            self._canons = {}
            for c in self._body_canons():
                h = hashlib.sha256()
                self._canons[c] = (BodyCanon(h.update, c == "relaxed"), h)
        for canon, _ in self._canons.values():
            canon.feed(chunk)

    def close(self) -> None:
        self._split.close()
        self._body(b"")
        assert self._canons is not None
        for canon, _ in self._canons.values():
            canon.close()

    def digest(self, canon: str) -> bytes:
        assert self._canons is not None
        return bytes(self._canons[canon][1].digest())

    def _body_canons(self) -> set[str]:
        """The body canonicalizations the message's signatures ask for: each costs a
        pass over the body, and most mail is signed with one (relaxed) only. A
        signature whose tags do not parse needs none (it fails before its body hash is
        compared)."""
        wanted: set[str] = set()
        for f, name in zip(self._split.fields, self._split.names, strict=True):
            default = _DEFAULT_BODY_CANON.get(name)
            if default is None:
                continue
            try:
                c = self.tags(split_header(f)[1]).get("c")
            except SigError:
                continue
            body = default if c is None else c.partition("/")[2] or "simple"  # relaxed: /simple
            if body in ("simple", "relaxed"):
                wanted.add(body)
        return wanted


async def verify(
    message: bytes | Iterable[bytes], resolver: Resolver, now: float | None = None
) -> list[DKIMResult]:
    """Every DKIM-Signature of the message (bytes or chunks) checked; [] when none."""
    hashes_ = BodyHashes()
    for chunk in [message] if isinstance(message, bytes) else message:
        hashes_.feed(chunk)
    hashes_.close()
    return await verify_parsed(hashes_, resolver, now)


async def verify_parsed(
    parsed: BodyHashes, resolver: Resolver, now: float | None = None
) -> list[DKIMResult]:
    """The results for a message already streamed through BodyHashes."""
    now = time.time() if now is None else now
    results = []
    for f, name in zip(parsed.fields, parsed.names, strict=True):
        if name == "dkim-signature":
            value = split_header(f)[1]
            results.append(await _verify_one(f, value, parsed, resolver, now))
    return results


async def _verify_one(
    field: bytes, value: bytes, parsed: BodyHashes, resolver: Resolver, now: float
) -> DKIMResult:
    try:
        tags = parsed.tags(value)
    except SigError as e:
        return DKIMResult("permerror", reason=str(e))
    d, s, a = tags.get("d", "").lower(), tags.get("s", ""), tags.get("a", "")
    short = tags.get("b", "")[:8]

    def res(result: str, reason: str = "") -> DKIMResult:
        return DKIMResult(result, d, s, a, short, reason)

    try:
        for t in ("v", "a", "b", "bh", "d", "h", "s"):
            if t not in tags:
                raise SigError(f"missing {t}=")
        if tags["v"] != "1":
            raise SigError("v= is not 1")
        if a not in ("rsa-sha256", "ed25519-sha256"):
            raise SigError(f"unsupported algorithm {a}")
        h = [x.lower() for x in tags["h"].split(":") if x]
        if "from" not in h:
            raise SigError("From is not signed")
        auid = tags.get("i", "@" + d)
        idomain = auid.rpartition("@")[2].lower()
        if idomain != d and not idomain.endswith("." + d):
            raise SigError("i= is not within d=")
        if "x" in tags and tags["x"].isdigit() and int(tags["x"]) < now:
            raise SigError("signature expired")
        hc, _, bc = tags.get("c", "simple/simple").partition("/")
        bc = bc or "simple"
        if hc not in ("simple", "relaxed") or bc not in ("simple", "relaxed"):
            raise SigError("unknown canonicalization")
        try:
            sig = base64.b64decode(tags["b"], validate=True)
            bh = base64.b64decode(tags["bh"], validate=True)
        except binascii.Error:
            raise SigError("b= or bh= is not base64") from None
    except SigError as e:
        return res("permerror", str(e))

    try:
        key = await public_key(resolver, s, d, a, idomain)
    except SigError as e:
        return res("permerror", str(e))
    except TempFail as e:
        return res("temperror", str(e))

    if parsed.digest(bc) != bh:
        return res("fail", "body hash did not verify")

    data = signed_headers(parsed.fields, h, hc == "relaxed", parsed.names)
    data += without_b(field, hc == "relaxed")
    if not signature_ok(key, sig, data):
        return res("fail", "signature did not verify")
    return res("pass")


def signed_headers(
    fields: list[bytes], h: list[str], relaxed: bool, names: list[str] | None = None
) -> bytes:
    """The fields named in h, each instance taken from the bottom up (RFC 6376 5.4.2);
    ``names``: the fields' lowercased names, when the caller has them."""
    names = [field_name(f) for f in fields] if names is None else list(names)
    data = []
    for name in h:
        for i in range(len(names) - 1, -1, -1):
            if names[i] == name:
                names[i] = ""  # each instance is used once
                data.append(canon_header(fields[i], relaxed))
                break
    return b"".join(data)


_B_TAG = re.compile(rb"(;[ \t\r\n]*b[ \t\r\n]*=)[^;]*")


def _tag_name(m: re.Match[bytes]) -> bytes:
    """``;b=`` of a match, its value dropped (a function: re expands a template such as
    ``\\1`` by a Python call per match, several times the cost)."""
    return m[1]


def without_b(field: bytes, relaxed: bool) -> bytes:
    """The signature field itself with the b= value emptied, canonical, no line end."""
    fname, _, rest = field.partition(b":")
    # The pattern starts with ";" (one is put in front for a b= that comes first), so
    # re tries it only at each ";", not at every byte of a 500-byte field.
    stripped = fname + b":" + _B_TAG.sub(_tag_name, b";" + rest)[1:]
    return canon_header(stripped, relaxed).removesuffix(b"\r\n")


PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


_ED25519_TYPES: dict[type, bool] = {}


def _is_ed25519(key: PublicKey) -> bool:
    """isinstance through the key classes' ABC machinery, once per concrete type."""
    kind = type(key)
    known = _ED25519_TYPES.get(kind)
    if known is None:
        known = _ED25519_TYPES[kind] = isinstance(key, ed25519.Ed25519PublicKey)
    return known


def signature_ok(key: PublicKey, sig: bytes, data: bytes) -> bool:
    try:
        if _is_ed25519(key):
            cast(ed25519.Ed25519PublicKey, key).verify(sig, hashlib.sha256(data).digest())
        else:
            cast(rsa.RSAPublicKey, key).verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


async def public_key(resolver: Resolver, s: str, d: str, a: str, idomain: str) -> PublicKey:
    """The key at s._domainkey.d for algorithm a; SigError or TempFail."""
    try:
        records = await resolver.txt(f"{s}._domainkey.{d}")
    except NotFound:
        raise SigError(f"no key at {s}._domainkey.{d}") from None
    if len(records) != 1:
        raise SigError(f"{len(records)} TXT records at {s}._domainkey.{d}")
    tags = _key_tags(records[0])
    if not tags.get("p"):
        raise SigError("key revoked")
    if tags.get("v", "DKIM1") != "DKIM1":
        raise SigError("key record v= is not DKIM1")
    k = tags.get("k", "rsa")
    if k != a.partition("-")[0]:
        raise SigError(f"key type {k} does not match a={a}")
    if "h" in tags and "sha256" not in tags["h"].split(":"):
        raise SigError("key does not allow sha256")
    if "s" in tags.get("t", "").split(":") and idomain != d:
        raise SigError("key is for d= only (t=s)")
    return _load_key(k, tags["p"])


@functools.lru_cache(maxsize=512)
def _key_tags(record: str) -> dict[str, str]:
    """The tags of a key record, kept by value (read only)."""
    return parse_tags(record.encode())


@functools.lru_cache(maxsize=512)
def _load_key(k: str, p: str) -> PublicKey:
    """A key record's p= as a key object. Parsing DER costs more than the RSA check
    itself, and a busy MX sees the same few hundred keys all day: kept, by value."""
    try:
        raw = base64.b64decode(p, validate=True)
        if k == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        pub = serialization.load_der_public_key(raw)
    except (binascii.Error, ValueError) as e:
        raise SigError(f"bad public key: {e}") from None
    if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < 1024:
        raise SigError("not an RSA key of 1024 bits or more")
    return pub
