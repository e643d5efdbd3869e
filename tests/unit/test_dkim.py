"""DKIM: canonicalization vectors, signing checked by dkimpy and by Daisy's verifier."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import dkim as dkimpy
import dns.resolver
import pytest

from daisymail.dns import DnspythonResolver
from daisymail.mailauth.canon import (
    BodyCanon,
    HeaderSplitter,
    canon_header,
    end_of_header,
    split_fields,
)
from daisymail.mailauth.dkim import signatures
from daisymail.mailauth.dkim_verify import DKIMResult, verify, without_b
from daisymail.mailauth.keystore import KeyStore, KeyStoreError
from tests.conftest import free_port
from tests.dns_server import DNSServer, serve

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject:   Hello\r\n  folded\t there\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"X-Not-Signed: yes\r\n"
    b"\r\n"
    b"Hi Bob,  \r\n"
    b"\r\n"
    b"a line\twith  spaces\r\n"
    b"\r\n\r\n"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    ks = KeyStore(tmp_path_factory.mktemp("keys") / "dkim")
    ks.generate("example.org", "r1", "rsa")
    ks.generate("example.org", "e1", "ed25519")
    return ks


@pytest.fixture(scope="module")
def server(store: KeyStore) -> Iterator[DNSServer]:
    zone = {f"{k.selector}._domainkey": [("TXT", k.record)] for k in store.keys("example.org")}
    zone["broken._domainkey"] = [("TXT", "v=DKIM1; k=rsa; p=")]
    srv = serve(free_port(), [("example.org", zone)])
    yield srv
    srv.stop()


def dkimpy_dns(server: DNSServer):  # type: ignore[no-untyped-def]
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = server.port

    def get_txt(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = res.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(next(iter(answer)).strings)

    return get_txt


def signed(store: KeyStore, message: bytes = MESSAGE) -> bytes:
    return signatures(message, store.signing_keys("example.org")) + message


def ours(server: DNSServer, message: bytes) -> list[DKIMResult]:
    return asyncio.run(verify(message, DnspythonResolver([server.address], timeout=2)))


# -- canonicalization (RFC 6376 3.4.5) ------------------------------------------------


def canon_body(body: bytes, relaxed: bool, chunk: int | None = None) -> bytes:
    out: list[bytes] = []
    c = BodyCanon(out.append, relaxed)
    step = chunk or max(len(body), 1)
    for i in range(0, len(body), step):
        c.feed(body[i : i + step])
    c.close()
    return b"".join(out)


def test_rfc6376_example() -> None:
    assert canon_header(b"A: X\r\n", True) == b"a:X\r\n"
    assert canon_header(b"B : Y\t\r\n\tZ  \r\n", True) == b"b:Y Z\r\n"
    assert canon_header(b"B : Y\t\r\n\tZ  \r\n", False) == b"B : Y\t\r\n\tZ  \r\n"
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert canon_body(body, True) == b" C\r\nD E\r\n"
    assert canon_body(body, False) == b" C \r\nD \t E\r\n"


@pytest.mark.parametrize(
    ("body", "relaxed", "expected"),
    [
        (b"", True, b""),
        (b"", False, b"\r\n"),
        (b"\r\n\r\n", False, b"\r\n"),
        (b"no newline", True, b"no newline\r\n"),
        (b"lf only\n\n", True, b"lf only\r\n"),
        (b"a  \r\n\r\nb\r\n", True, b"a\r\n\r\nb\r\n"),
    ],
)
def test_body_vectors(body: bytes, relaxed: bool, expected: bytes) -> None:
    assert canon_body(body, relaxed) == expected
    assert canon_body(body, relaxed, chunk=1) == expected


def test_end_of_header_matches_the_rule() -> None:
    """The blank line ending the header: at the very start or right after a line end,
    LF or CRLF; the first one wins. Checked against the rule as a regular expression."""
    rule = re.compile(rb"\A\r?\n|(?<=\n)\r?\n")
    rng = random.Random(5322)
    for _ in range(5000):
        buf = b"".join(
            rng.choice([b"a", b":", b" ", b"\r", b"\n"]) for _ in range(rng.randrange(12))
        )
        m = rule.search(buf)
        assert end_of_header(buf) == (None if m is None else (m.start(), m.end())), buf


def reference_body(body: bytes, relaxed: bool) -> bytes:
    """RFC 6376 3.4.3/3.4.4 written out line by line: the oracle for BodyCanon."""
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        line = line[:-1] if line.endswith(b"\r") else line
        if relaxed:
            line = re.sub(rb"[ \t]+", b" ", line).rstrip(b" ")
        out.append(line)
    while out and out[-1] == b"":
        out.pop()
    if not out:
        return b"" if relaxed else b"\r\n"
    return b"".join(line + b"\r\n" for line in out)


@pytest.mark.parametrize("relaxed", [False, True])
def test_body_matches_line_by_line_oracle(relaxed: bool) -> None:
    """Random bodies of the awkward bytes (WSP, bare CR, bare LF, CRLF), cut into
    random chunks: the block-at-once canonicalizer agrees with the line-by-line rule."""
    rng = random.Random(6376)
    alphabet = [b"a", b"b", b" ", b"\t", b"\r", b"\n", b"\r\n", b"  \r\n", b"\r\n\r\n"]
    crlf_only = [b"a", b" ", b"\t", b"\r", b"\r\n", b" \r\n", b"\t\r\n"]  # no bare LF
    for i in range(4000):
        pieces = crlf_only if i % 4 == 0 else alphabet
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))
        want = reference_body(body, relaxed)
        assert canon_body(body, relaxed) == want, body
        chunk = rng.randrange(1, 8)
        assert canon_body(body, relaxed, chunk=chunk) == want, (body, chunk)


def reference_header(raw: bytes) -> bytes:
    """RFC 6376 3.4.2 as substitutions: unfold, WSP runs to one SP, trim; the oracle
    for canon_header, which takes bytes-method shortcuts where they do the same."""
    name, _, value = raw.partition(b":")
    value = re.sub(rb"\r?\n(?=[ \t])", b"", value).rstrip(b"\r\n")
    value = re.sub(rb"[ \t]+", b" ", value).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def test_relaxed_header_matches_oracle() -> None:
    """Random fields of folds (CRLF and bare LF), WSP runs, bare CRs."""
    rng = random.Random(34)
    alphabet = [b"a", b"B", b" ", b"\t", b"  ", b"\r", b"\n", b"\r\n", b"\r\n ", b"\n\t", b":"]
    crlf_only = [b"a", b" ", b"\t", b"\r\n ", b"\r\n\t", b"\r\n", b";"]
    for i in range(20000):
        pieces = crlf_only if i % 2 else alphabet
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 16)))
        assert canon_header(raw, True) == reference_header(raw), raw


def test_without_b_matches_oracle() -> None:
    """The b= tag emptied wherever it is (first, last, between folds), as the pattern
    of RFC 6376 3.7 would; other tags untouched."""
    rng = random.Random(37)
    alphabet = [b"b", b"bh", b"=", b";", b" ", b"\t", b"\r\n ", b"x", b"Yz"]
    for _ in range(20000):
        value = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 14)))
        field = b"DKIM-Signature:" + value + b"\r\n"
        empty = re.sub(rb"((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*", rb"\1", value)
        for relaxed in (True, False):
            want = canon_header(b"DKIM-Signature:" + empty + b"\r\n", relaxed)
            assert without_b(field, relaxed) == want.removesuffix(b"\r\n"), value


def test_split_fields_matches_line_pattern() -> None:
    """Fields as lines (each with its LF, the last maybe without), continuation lines
    joined to the field before, empty lines dropped: split by LF as by the pattern."""
    rng = random.Random(5322)
    alphabet = [b"a", b"X:", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n ", b"\n\t"]
    for _ in range(20000):
        head = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 14)))
        want: list[bytes] = []
        for line in re.findall(rb"[^\n]*\n|[^\n]+\Z", head):
            if line[:1] in (b" ", b"\t") and want:
                want[-1] += line
            elif line.strip(b"\r\n"):
                want.append(line)
        assert split_fields(head) == want, head


def test_header_splitter_by_byte() -> None:
    body: list[bytes] = []
    hs = HeaderSplitter(body.append)
    for i in range(len(MESSAGE)):
        hs.feed(MESSAGE[i : i + 1])
    hs.close()
    assert len(hs.fields) == 6 and hs.fields[2].startswith(b"Subject:")
    assert hs.fields[2].endswith(b"there\r\n")
    assert b"".join(body) == MESSAGE.split(b"\r\n\r\n", 1)[1]


# -- signing ----------------------------------------------------------------------------


def test_keys_are_private_and_listed(store: KeyStore) -> None:
    for pem in store.root.glob("example.org/*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    keys = store.keys("example.org")
    assert {(k.selector, k.algorithm, k.state) for k in keys} == {
        ("r1", "rsa", "active"),
        ("e1", "ed25519", "active"),
    }
    with pytest.raises(KeyStoreError, match="exists already"):
        store.generate("example.org", "r1", "ed25519")
    with pytest.raises(KeyStoreError, match="not a domain"):
        store.generate("../etc", "x", "rsa")


def test_signature_fields(store: KeyStore) -> None:
    sigs = signatures(MESSAGE, store.signing_keys("example.org"), now=1_800_000_000)
    text = sigs.decode()
    assert text.count("DKIM-Signature:") == 2
    assert "a=rsa-sha256" in text and "a=ed25519-sha256" in text
    assert "c=relaxed/relaxed" in text and "t=1800000000" in text
    assert "h=from:from:to:subject:date:message-id;" in text
    assert all(len(line) <= 998 for line in text.split("\r\n"))


def test_streamed_equals_whole(store: KeyStore) -> None:
    keys = store.signing_keys("example.org")
    chunks = [MESSAGE[i : i + 7] for i in range(0, len(MESSAGE), 7)]
    assert signatures(chunks, keys, now=1) == signatures(MESSAGE, keys, now=1)


def test_dkimpy_verifies_both(store: KeyStore, server: DNSServer) -> None:
    msg = signed(store)
    d = dkimpy.DKIM(msg)
    for idx in (0, 1):
        assert d.verify(idx=idx, dnsfunc=dkimpy_dns(server)), idx


def test_dkimpy_verifies_large_lf_message(store: KeyStore, server: DNSServer) -> None:
    body = b"".join(b"line %d  of a big message \n" % i for i in range(50000))
    raw = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n" + body
    chunks = [raw[i : i + 65536] for i in range(0, len(raw), 65536)]
    sigs = signatures(chunks, store.signing_keys("example.org"))
    wire = sigs + raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    d = dkimpy.DKIM(wire)
    assert d.verify(idx=0, dnsfunc=dkimpy_dns(server))
    assert d.verify(idx=1, dnsfunc=dkimpy_dns(server))


def test_our_verifier_passes_both(store: KeyStore, server: DNSServer) -> None:
    results = ours(server, signed(store))
    assert [(r.result, r.algorithm, r.selector) for r in results] == [
        ("pass", "rsa-sha256", "r1"),
        ("pass", "ed25519-sha256", "e1"),
    ]
    assert ours(server, MESSAGE) == []


def test_our_verifier_passes_dkimpy_simple_signature(store: KeyStore, server: DNSServer) -> None:
    pem = (store.root / "example.org" / "r1.rsa.pem").read_bytes()
    sig = dkimpy.sign(MESSAGE, b"r1", b"example.org", pem, canonicalize=(b"simple", b"simple"))
    assert [r.result for r in ours(server, sig + MESSAGE)] == ["pass"]


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"a line", b"A line", "body hash"),
        (b"Subject:   Hello", b"Subject: Goodbye", "signature did not verify"),
        (b"From: Alice", b"From: Mallory <m@evil.test>\r\nFrom: Alice", "signature"),
        (b"\r\n\r\n", b"\r\n\r\nappended\r\n\r\n", "body hash"),
    ],
)
def test_tampered_fails(
    store: KeyStore, server: DNSServer, old: bytes, new: bytes, reason: str
) -> None:
    msg = signed(store)
    cut = msg.index(b"From: Alice")
    tampered = msg[:cut] + msg[cut:].replace(old, new, 1)
    if old == b"\r\n\r\n":
        tampered = msg + b"appended\r\n"
    results = ours(server, tampered)
    assert [r.result for r in results] == ["fail", "fail"]
    assert all(reason in r.reason for r in results)
    d = dkimpy.DKIM(tampered)
    try:
        verdict = d.verify(idx=0, dnsfunc=dkimpy_dns(server))
    except dkimpy.ValidationError:
        verdict = False
    assert not verdict


def test_length_tag_is_ignored_for_the_verdict(store: KeyStore, server: DNSServer) -> None:
    pem = (store.root / "example.org" / "r1.rsa.pem").read_bytes()
    sig = dkimpy.sign(MESSAGE, b"r1", b"example.org", pem, length=True)
    assert b"l=" in sig
    assert [r.result for r in ours(server, sig + MESSAGE)] == ["pass"]
    # dkimpy accepts the appended text under l=; Daisy does not.
    appended = sig + MESSAGE + b"Click here: http://evil.test/\r\n"
    assert dkimpy.verify(appended, dnsfunc=dkimpy_dns(server))
    assert [r.result for r in ours(server, appended)] == ["fail"]


@pytest.mark.parametrize(
    ("sig", "result"),
    [
        (b"v=1; a=rsa-sha256; d=example.org; s=missing; h=from; bh=AA==; b=AA==", "permerror"),
        (b"v=1; a=rsa-sha1; d=example.org; s=r1; h=from; bh=AA==; b=AA==", "permerror"),
        (b"v=1; a=rsa-sha256; d=example.org; s=r1; h=to; bh=AA==; b=AA==", "permerror"),
        (b"v=1; a=rsa-sha256; d=example.org; s=r1; h=from; b=AA==", "permerror"),
    ],
)
def test_bad_signatures(server: DNSServer, sig: bytes, result: str) -> None:
    assert [r.result for r in ours(server, b"DKIM-Signature: " + sig + b"\r\n" + MESSAGE)] == [
        result
    ]


def test_missing_and_revoked_keys(store: KeyStore, server: DNSServer) -> None:
    msg = signed(store).replace(b"s=r1;", b"s=gone;").replace(b"s=e1;", b"s=broken;")
    results = ours(server, msg)
    assert [r.result for r in results] == ["permerror", "permerror"]
    assert "no key" in results[0].reason and "revoked" in results[1].reason


def test_unsigned_domain_has_no_keys(store: KeyStore, tmp_path: Path) -> None:
    assert store.signing_keys("example.net") == []
    assert store.signing_keys("../../etc") == []
    assert KeyStore(tmp_path / "none").signing_keys("example.org") == []


def test_key_lookup_failure_is_temperror(store: KeyStore, server: DNSServer) -> None:
    server.servfail.add("r1._domainkey.example.org")
    try:
        results = ours(server, signed(store))
    finally:
        server.servfail.discard("r1._domainkey.example.org")
    assert [r.result for r in results] == ["temperror", "pass"]


# -- the outbound hook ---------------------------------------------------------------------


def test_outbound_signs_by_from_then_envelope(store: KeyStore, server: DNSServer) -> None:
    from daisymail.mailauth.signing import sign_message

    sigs = sign_message(store, MESSAGE, "bounce@other.test")
    assert sigs.count(b"d=example.org;") == 2
    d = dkimpy.DKIM(sigs + MESSAGE)
    assert d.verify(idx=0, dnsfunc=dkimpy_dns(server))
    assert d.verify(idx=1, dnsfunc=dkimpy_dns(server))

    foreign = MESSAGE.replace(b"alice@example.org", b"alice@elsewhere.test")
    assert sign_message(store, foreign, "alice@example.org").count(b"d=example.org;") == 2
    assert sign_message(store, foreign, "alice@elsewhere.test") == b""


def test_outbound_keeps_lf_line_ends(store: KeyStore, server: DNSServer) -> None:
    from daisymail.mailauth.signing import sign_message

    lf = MESSAGE.replace(b"\r\n", b"\n")
    chunks = [lf[i : i + 10] for i in range(0, len(lf), 10)]
    sigs = sign_message(store, chunks, "")
    assert b"\r" not in sigs and sigs.count(b"DKIM-Signature:") == 2
    wire = (sigs + lf).replace(b"\n", b"\r\n")
    assert [r.result for r in ours(server, wire)] == ["pass", "pass"]


def test_outbound_without_keys(tmp_path: Path) -> None:
    from daisymail.mailauth.signing import sign_message

    assert sign_message(KeyStore(tmp_path / "dkim"), MESSAGE, "a@example.org") == b""


def test_verifier_streams(store: KeyStore, server: DNSServer) -> None:
    msg = signed(store)
    chunks = [msg[i : i + 3] for i in range(0, len(msg), 3)]
    res = asyncio.run(verify(chunks, DnspythonResolver([server.address], timeout=2)))
    assert [r.result for r in res] == ["pass", "pass"]


def test_header_without_end_never_raises() -> None:
    body: list[bytes] = []
    hs = HeaderSplitter(body.append, max_header=100)
    for i in range(20):
        hs.feed(b"X-Long-%d: value value value\r\n" % i)
    hs.close()
    assert hs.fields[0].startswith(b"X-Long-0:") and body


def test_key_without_metadata_still_signs(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "dkim")
    ks.generate("example.com", "s", "ed25519")
    (tmp_path / "dkim" / "example.com" / "s.json").write_text("not json")
    assert [k.selector for k in ks.signing_keys("example.com")] == ["s"]


def _age(path: Path, seconds: float = 60.0) -> None:
    """Move a folder's modification time into the past, past the store's SETTLED."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_kept_answers_follow_changes_to_the_key_folders(tmp_path: Path) -> None:
    """empty() and a domain's key list are kept while their folder is unchanged (they
    are asked for every outgoing message): adding a domain, a key, or removing them
    must show at once."""
    keys = KeyStore(tmp_path / "dkim")
    assert keys.empty()
    (tmp_path / "dkim").mkdir()
    _age(tmp_path / "dkim")
    assert keys.empty() and keys.empty()  # the second from what was kept
    keys.generate("example.net", "s1", "rsa")
    assert not keys.empty()
    _age(tmp_path / "dkim")
    _age(tmp_path / "dkim" / "example.net")
    assert not keys.empty()
    assert [k.selector for k in keys.signing_keys("example.net")] == ["s1"]
    keys.generate("example.net", "s2", "ed25519")
    assert sorted(k.selector for k in keys.signing_keys("example.net")) == ["s1", "s2"]
    _age(tmp_path / "dkim" / "example.net")
    assert sorted(k.selector for k in keys.signing_keys("example.net")) == ["s1", "s2"]
    shutil.rmtree(tmp_path / "dkim" / "example.net")
    assert keys.empty()
    assert keys.signing_keys("example.net") == []
