"""Forwarded mail leaves ARC-sealed (RFC 8617) with the forwarding domain's key.

A real server forwards to an SMTP sink; the chain is checked by dkimpy's ARC verifier
and by Daisy's own, against the keys `dkim keygen` printed, served by a loopback DNS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import dkim as dkimpy
import pytest

from daisymail.directory.model import AddressRule
from daisymail.dns import DnspythonResolver
from daisymail.mailauth.arc import validate
from daisymail.mailauth.dkim_verify import BodyHashes
from tests.conftest import Daisy, free_port
from tests.dns_server import DNSServer, serve
from tests.integration.smtp_sink import Sink
from tests.integration.test_queue_delivery import configure
from tests.integration.test_smtp_server import _directory, smtp
from tests.unit.test_dkim import dkimpy_dns

MSG = (
    b"From: Alice <alice@sender.test>\r\nTo: fwd@example.test\r\nSubject: sealed\r\n"
    b"Message-ID: <arc1@sender.test>\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\n"
    b"Hello through a forwarder.\r\n"
)


@pytest.fixture
def sealing(daisy_dir: Daisy) -> Iterator[tuple[Daisy, Sink, DNSServer]]:
    sink = Sink()
    configure(daisy_dir, sink.port)
    records = daisy_dir.cli("dkim", "keygen", "example.test").stdout
    dns = serve(free_port(), [("example.test", "$TTL 300\n@ IN SOA ns h 1 1 1 1 1\n" + records)])
    d = _directory(daisy_dir)
    d.add_address_rule(AddressRule(pattern="fwd@example.test", target="friend@remote.test"))
    d.close()
    daisy_dir.start()
    try:
        yield daisy_dir, sink, dns
    finally:
        daisy_dir.stop()
        dns.stop()
        sink.stop()


def test_forward_is_arc_sealed(sealing: tuple[Daisy, Sink, DNSServer]) -> None:
    daisy, sink, dns = sealing
    with smtp(daisy) as s:
        s.sendmail("alice@sender.test", ["fwd@example.test"], MSG)
    deadline = time.monotonic() + 20
    while not sink.messages:
        assert time.monotonic() < deadline, "the sink never got the forward"
        time.sleep(0.05)
    sender, _rcpts, data = sink.messages[0]
    assert sender.startswith("SRS0=")
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.test;")
    assert b"\r\nARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed;" in head
    assert b"\r\nARC-Authentication-Results: i=1; mail.daisy.test;\r\n\tnone\r\n" in head
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256;" in head  # d=example.test, the SRS domain

    cv, _results, comment = dkimpy.arc_verify(data, dnsfunc=dkimpy_dns(dns))
    assert cv == b"pass", comment

    parsed = BodyHashes()
    parsed.feed(data)
    resolver = DnspythonResolver([dns.address], timeout=2.0)
    result = asyncio.run(validate(parsed, resolver))
    assert (result.result, result.instances, result.domain) == ("pass", 1, "example.test")


def test_mail_to_a_list_of_forwards_is_sealed(sealing: tuple[Daisy, Sink, DNSServer]) -> None:
    """A message for several addresses at once, local and forwarded elsewhere (a list
    kept as virtusertable entries): the copies that leave are sealed and verify."""
    daisy, sink, dns = sealing
    d = _directory(daisy)
    d.add_address_rule(AddressRule(pattern="pal@example.test", target="pal@elsewhere.test"))
    d.close()
    text = daisy.config.read_text().replace(
        "[queue.routes]", f'[queue.routes]\n"elsewhere.test" = "127.0.0.1:{sink.port}"', 1
    )
    daisy.config.write_text(text)
    daisy.stop()
    daisy.start()
    rcpts = ["fwd@example.test", "demo@example.test", "pal@example.test"]
    with smtp(daisy) as s:
        s.sendmail("alice@sender.test", rcpts, MSG)
    deadline = time.monotonic() + 20
    while sum(len(r) for _s, r, _d in sink.messages) < 2:
        assert time.monotonic() < deadline, f"the sink got {sink.messages!r}"
        time.sleep(0.05)
    assert sorted(r for _s, rs, _d in sink.messages for r in rs) == [
        "friend@remote.test",
        "pal@elsewhere.test",
    ]
    for sender, _rcpts, data in sink.messages:
        assert sender.startswith("SRS0=")
        assert data.startswith(b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.test;")
        cv, _results, comment = dkimpy.arc_verify(data, dnsfunc=dkimpy_dns(dns))
        assert cv == b"pass", comment
    (local,) = (daisy.root / "mail/demo.example.test/new").iterdir()
    assert b"ARC-Seal" not in local.read_bytes()  # only what leaves is sealed
