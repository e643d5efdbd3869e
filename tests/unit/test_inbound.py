"""Inbound verdicts: SPF, DKIM and DMARC together, with the exact header and decision."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from daisymail.dns import DnspythonResolver
from daisymail.mailauth.dkim import signatures
from daisymail.mailauth.inbound import InboundCheck, InboundPolicy, Verdict
from daisymail.mailauth.keystore import KeyStore
from tests.conftest import free_port
from tests.dns_server import DNSServer, serve

ID = "mx.daisy.test"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    ks = KeyStore(tmp_path_factory.mktemp("keys") / "dkim")
    ks.generate("example.org", "r1", "rsa")
    ks.generate("example.org", "e1", "ed25519")
    return ks


@pytest.fixture(scope="module")
def server(store: KeyStore) -> Iterator[DNSServer]:
    org = {f"{k.selector}._domainkey": [("TXT", k.record)] for k in store.keys("example.org")}
    org["@"] = [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")]
    org["_dmarc"] = [("TXT", "v=DMARC1; p=reject")]
    org["bounces"] = [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")]
    srv = serve(
        free_port(),
        [
            ("example.org", org),
            ("quarantine.test", {"_dmarc": [("TXT", "v=DMARC1; p=quarantine")]}),
            ("nodmarc.test", {"@": [("TXT", "v=spf1 -all")]}),
            ("flaky.test", {}),
        ],
    )
    srv.servfail.add("flaky.test")
    yield srv
    srv.stop()


def message(frm: str) -> bytes:
    return (
        f"From: <{frm}>\r\nTo: <bob@daisy.test>\r\nSubject: hi\r\n"
        "Message-ID: <x@y>\r\n\r\nHello.\r\n"
    ).encode()


def check(
    server: DNSServer,
    msg: bytes,
    ip: str,
    mailfrom: str,
    policy: InboundPolicy | None = None,
) -> Verdict:
    c = InboundCheck(
        DnspythonResolver([server.address], timeout=1),
        ID,
        ip=ip,
        helo="client.example.net",
        mailfrom=mailfrom,
        policy=policy,
    )
    for i in range(0, len(msg), 16):
        c.feed(msg[i : i + 16])
    return asyncio.run(c.verdict())


def test_signed_and_spf_pass(store: KeyStore, server: DNSServer) -> None:
    msg = message("alice@example.org")
    msg = signatures(msg, store.signing_keys("example.org")) + msg
    v = check(server, msg, "192.0.2.7", "alice@example.org")
    assert (v.action, v.reply) == ("accept", None)
    b_rsa, b_ed = (d.b for d in v.dkim)
    assert v.header == (
        b"Authentication-Results: mx.daisy.test;\r\n"
        b"\tspf=pass (matched ip4:192.0.2.0/24) smtp.mailfrom=alice@example.org;\r\n"
        b"\tdkim=pass header.d=example.org header.s=r1 header.a=rsa-sha256 header.b="
        + _v(b_rsa)
        + b";\r\n\tdkim=pass header.d=example.org header.s=e1 header.a=ed25519-sha256 header.b="
        + _v(b_ed)
        + b";\r\n\tdmarc=pass (p=reject dis=none) header.from=example.org;\r\n"
        b"\tarc=none\r\n"
    )


def _v(b: str) -> bytes:
    return (f'"{b}"' if "/" in b or "=" in b else b).encode()


def test_dkim_alone_passes_dmarc_through_a_forwarder(store: KeyStore, server: DNSServer) -> None:
    msg = message("alice@example.org")
    msg = signatures(msg, store.signing_keys("example.org")) + msg
    v = check(server, msg, "203.0.113.9", "srs@forwarder.example.net")
    assert v.action == "accept"
    assert v.dmarc.result == "pass" and v.dmarc.dkim_aligned and not v.dmarc.spf_aligned


def test_dmarc_reject(server: DNSServer) -> None:
    v = check(server, message("alice@example.org"), "203.0.113.9", "alice@example.org")
    assert v.action == "reject"
    assert v.reply == (550, "5.7.1", "DMARC policy of example.org rejects this message")
    assert v.header == (
        b"Authentication-Results: mx.daisy.test;\r\n"
        b"\tspf=fail (matched all) smtp.mailfrom=alice@example.org;\r\n"
        b"\tdkim=none;\r\n"
        b"\tdmarc=fail (p=reject dis=reject) header.from=example.org;\r\n"
        b"\tarc=none\r\n"
    )
    soft = check(
        server,
        message("alice@example.org"),
        "203.0.113.9",
        "alice@example.org",
        InboundPolicy(dmarc_reject=False),
    )
    assert (soft.action, soft.reply) == ("junk", None)


def test_unaligned_spf_pass_is_not_enough(server: DNSServer) -> None:
    v = check(server, message("alice@example.org"), "198.51.100.3", "b@bounces.example.org")
    assert v.spf.result == "pass" and v.dmarc.result == "pass"  # relaxed: same org domain
    v = check(server, message("alice@quarantine.test"), "198.51.100.3", "b@bounces.example.org")
    assert v.spf.result == "pass" and v.dmarc.result == "fail" and v.action == "junk"


def test_spf_fail_without_dmarc(server: DNSServer) -> None:
    msg = message("x@nodmarc.test")
    assert check(server, msg, "192.0.2.1", "x@nodmarc.test").action == "accept"
    v = check(
        server, msg, "192.0.2.1", "x@nodmarc.test", InboundPolicy(spf_fail_without_dmarc="reject")
    )
    assert v.action == "reject" and v.reply is not None and v.reply[:2] == (550, "5.7.23")
    assert v.reply[2] == "nodmarc.test does not allow 192.0.2.1 to send mail for x@nodmarc.test"


def test_temperror_mark_or_defer(server: DNSServer) -> None:
    msg = message("x@flaky.test")
    v = check(server, msg, "192.0.2.1", "x@flaky.test")
    assert v.action == "accept" and b"spf=temperror" in v.header
    v = check(server, msg, "192.0.2.1", "x@flaky.test", InboundPolicy(temperror="defer"))
    assert v.action == "defer" and v.reply is not None and v.reply[0] == 451


def test_two_from_fields(server: DNSServer) -> None:
    msg = b"From: a@example.org\r\n" + message("b@quarantine.test")
    v = check(server, msg, "192.0.2.1", "a@example.org")
    assert v.dmarc.result == "permerror" and b"dmarc" not in v.header
