"""The queue's MX lookup goes through Daisy's resolver ([dns] nameservers): tested
against a real DNS server on loopback, directly and through a running server's bounces."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from daisymail.dns import DnspythonResolver
from daisymail.queue.remote import RouteError, lookup_mx
from tests.conftest import Daisy, free_port
from tests.dns_server import DNSServer, serve
from tests.integration.test_queue_delivery import configure, dsn_parts, queued, send
from tests.integration.test_smtp_server import maildir_messages, wait_for

ZONE = {
    "@": [("MX", "20 b.mx.test."), ("MX", "10 a.mx.test.")],
    "null": [("MX", "0 .")],
    "addr": [("A", "127.0.0.9")],
    "v6": [("AAAA", "::1")],
    "nothing": [("TXT", "no mail here")],
    "broken": [("MX", "10 a.mx.test.")],
}


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    srv = serve(free_port(), [("mx.test", ZONE)])
    srv.servfail.add("broken.mx.test")
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("mx.test", ["a.mx.test", "b.mx.test"]),
        ("addr.mx.test", ["addr.mx.test"]),  # no MX: the domain's own address
        ("v6.mx.test", ["v6.mx.test"]),
        ("nope.mx.test", (True, "5.1.2")),  # NXDOMAIN
        ("nothing.mx.test", (True, "5.1.2")),  # no MX, no address
        ("null.mx.test", (True, "5.1.10")),  # RFC 7505
        ("broken.mx.test", (False, "4.4.3")),  # SERVFAIL
    ],
)
def test_lookup_mx(dns_server: DNSServer, domain: str, expected: object) -> None:
    resolver = DnspythonResolver([dns_server.address], timeout=2.0)
    if isinstance(expected, list):
        assert asyncio.run(lookup_mx(domain, resolver)) == expected
        return
    with pytest.raises(RouteError) as e:
        asyncio.run(lookup_mx(domain, resolver))
    assert (e.value.permanent, e.value.status) == expected


def test_queue_asks_the_configured_nameservers(daisy_dir: Daisy, dns_server: DNSServer) -> None:
    configure(daisy_dir, free_port())  # routes only remote.test; the rest goes by MX
    daisy_dir.use_dns(dns_server.address)
    daisy_dir.start()
    send(daisy_dir, "x@nope.mx.test")
    send(daisy_dir, "x@null.mx.test")
    wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 2, timeout=20)
    statuses = sorted(
        dsn_parts(raw)[1][1]["Status"] for raw in maildir_messages(daisy_dir, "demo.example.test")
    )
    assert statuses == ["5.1.10", "5.1.2"]

    send(daisy_dir, "x@broken.mx.test")  # SERVFAIL: kept for a retry
    wait_for(lambda: "4.4.3" in str(queued(daisy_dir)), timeout=20)
    assert len(maildir_messages(daisy_dir, "demo.example.test")) == 2
