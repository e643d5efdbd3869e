"""ARC validation of chains sealed by dkimpy, through two forwarders, and broken ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import dkim as dkimpy
import pytest

from daisymail.dns import DnspythonResolver
from daisymail.mailauth.arc import ARCResult, validate
from daisymail.mailauth.dkim import signatures
from daisymail.mailauth.dkim_verify import BodyHashes
from daisymail.mailauth.keystore import KeyStore
from tests.conftest import free_port
from tests.dns_server import DNSServer, serve
from tests.unit.test_dkim import MESSAGE

DOMAINS = ("example.org", "fwd.test", "list.test")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    ks = KeyStore(tmp_path_factory.mktemp("keys") / "dkim")
    for d in DOMAINS:
        ks.generate(d, "r1", "rsa")
    return ks


@pytest.fixture(scope="module")
def server(store: KeyStore) -> Iterator[DNSServer]:
    zones = [(d, {"r1._domainkey": [("TXT", store.keys(d)[0].record)]}) for d in DOMAINS]
    srv = serve(free_port(), zones)
    yield srv
    srv.stop()


def seal(store: KeyStore, msg: bytes, domain: str, results: str) -> bytes:
    """What a forwarder does: note its verdict, then add an ARC set."""
    msg = f"Authentication-Results: {domain}; {results}\r\n".encode() + msg
    pem = (store.root / domain / "r1.rsa.pem").read_bytes()
    fields = dkimpy.arc_sign(msg, b"r1", domain.encode(), pem, domain.encode())
    return b"".join(fields) + msg


def check(server: DNSServer, msg: bytes) -> ARCResult:
    parsed = BodyHashes()
    parsed.feed(msg)
    parsed.close()
    return asyncio.run(validate(parsed, DnspythonResolver([server.address], timeout=2)))


@pytest.fixture(scope="module")
def chain(store: KeyStore) -> bytes:
    msg = signatures(MESSAGE, store.signing_keys("example.org")) + MESSAGE
    one = seal(store, msg, "fwd.test", "dkim=pass header.d=example.org; arc=none")
    # The list rewrites the subject and adds a footer: the DKIM signature breaks.
    changed = one.replace(b"Subject:   Hello", b"Subject: [list] Hello") + b"-- \r\nlist\r\n"
    return seal(store, changed, "list.test", "dkim=fail header.d=example.org; arc=pass")


def test_two_forwarders_pass(server: DNSServer, chain: bytes) -> None:
    assert check(server, chain) == ARCResult("pass", 2, "list.test")
    assert dkimpy.arc_verify(chain, dnsfunc=_dkimpy_dns(server))[0] == dkimpy.CV_Pass


def test_no_chain(server: DNSServer) -> None:
    assert check(server, MESSAGE) == ARCResult("none")


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"a line", b"A line", "message signature 2"),  # body changed after the last seal
        (b"i=1; fwd.test;", b"i=1; fwd.test; dkim=pass;", "seal 2"),  # an old AAR edited
        (b"cv=pass", b"cv=none", "cv= of seal 2"),
    ],
)
def test_broken_chains_fail(
    server: DNSServer, chain: bytes, old: bytes, new: bytes, reason: str
) -> None:
    assert old in chain
    res = check(server, chain.replace(old, new, 1))
    assert res.result == "fail" and reason in res.reason, res


def test_missing_set_fails(server: DNSServer, chain: bytes) -> None:
    lines = chain.split(b"\r\n")
    first_aar = next(
        i for i, x in enumerate(lines) if x.startswith(b"ARC-Authentication-Results: i=1")
    )
    del lines[first_aar]
    res = check(server, b"\r\n".join(lines))
    assert (res.result, res.reason) == ("fail", "incomplete ARC sets")


def _dkimpy_dns(server: DNSServer):  # type: ignore[no-untyped-def]
    from tests.unit.test_dkim import dkimpy_dns

    return dkimpy_dns(server)


def test_inbound_header_reports_the_chain(server: DNSServer, chain: bytes) -> None:
    from daisymail.mailauth.inbound import InboundCheck

    c = InboundCheck(
        DnspythonResolver([server.address], timeout=2),
        "mx.daisy.test",
        ip="192.0.2.1",
        helo="mx.list.test",
        mailfrom="bounces@list.test",
    )
    c.feed(chain)
    v = asyncio.run(c.verdict())
    assert v.header.endswith(b";\r\n\tarc=pass (i=2 d=list.test)\r\n")
    assert [d.result for d in v.dkim] == ["fail"]  # the list broke the signature


def test_aar_results_and_trusted_sealers() -> None:
    from daisymail.mailauth.arc_trust import AARResult, aar_results, is_trusted

    aar = (
        b"ARC-Authentication-Results: i=2; mx.list.test;\r\n\tspf=pass (ok) "
        b"smtp.mailfrom=a@example.org;\r\n\tdkim=pass header.d=example.org header.s=r1;"
        b' dmarc=fail reason="x y" header.from=example.org; junk\r\n'
    )
    assert aar_results(aar) == [
        AARResult("spf", "pass", {"smtp.mailfrom": "a@example.org"}),
        AARResult("dkim", "pass", {"header.d": "example.org", "header.s": "r1"}),
        AARResult("dmarc", "fail", {"reason": "x y", "header.from": "example.org"}),
    ]
    assert is_trusted("lists.example", ["Lists.Example."])
    assert is_trusted("mx.lists.example", ["lists.example"])
    assert not is_trusted("evillists.example", ["lists.example"])
    assert not is_trusted("lists.example", [])
