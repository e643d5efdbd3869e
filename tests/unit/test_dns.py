"""Daisy's resolver against a real authoritative server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from daisymail.config import ConfigError, from_dict
from daisymail.dns import MX, DnspythonResolver, NotFound, TempFail
from tests.conftest import free_port
from tests.dns_server import DNSServer, serve

ZONE = {
    "@": [("MX", "10 mx1.dns.test."), ("MX", "20 mx2.dns.test."), ("TXT", "v=spf1 -all")],
    "mx1": [("A", "192.0.2.1"), ("AAAA", "2001:db8::1")],
    "big": [("TXT", "x" * 1500)],
    "sub.deep": [("A", "192.0.2.9")],
    "nullmx": [("MX", "0 .")],
}
REVERSE = """
1 300 IN PTR mx1.dns.test.
"""


@pytest.fixture(scope="module")
def server() -> Iterator[DNSServer]:
    srv = serve(
        free_port(),
        [("dns.test", ZONE), ("2.0.192.in-addr.arpa", "@ 300 IN SOA ns. h. 1 1 1 1 1\n" + REVERSE)],
    )
    srv.servfail.add("broken.dns.test")
    srv.drop.add("slow.dns.test")
    yield srv
    srv.stop()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def resolver(server: DNSServer, timeout: float = 2.0) -> DnspythonResolver:
    return DnspythonResolver([server.address], timeout=timeout)


def test_answers(server: DNSServer) -> None:
    r = resolver(server)
    assert run(r.txt("dns.test")) == ["v=spf1 -all"]
    assert sorted(run(r.mx("dns.test")), key=lambda m: m.preference) == [
        MX(10, "mx1.dns.test"),
        MX(20, "mx2.dns.test"),
    ]
    assert run(r.a("mx1.dns.test")) == ["192.0.2.1"]
    assert run(r.aaaa("MX1.dns.test.")) == ["2001:db8::1"]
    assert run(r.ptr("192.0.2.1")) == ["mx1.dns.test"]
    assert run(r.mx("nullmx.dns.test")) == [MX(0, "")]


def test_long_txt_is_joined_and_comes_over_tcp(server: DNSServer) -> None:
    assert run(resolver(server).txt("big.dns.test")) == ["x" * 1500]
    assert ("tcp", "big.dns.test", "TXT") in server.queries


def test_nxdomain_and_nodata_are_not_found(server: DNSServer) -> None:
    r = resolver(server)
    with pytest.raises(NotFound) as e:
        run(r.txt("nope.dns.test"))
    assert e.value.nxdomain
    with pytest.raises(NotFound) as e:
        run(r.txt("mx1.dns.test"))
    assert not e.value.nxdomain
    with pytest.raises(NotFound) as e:  # empty non-terminal: exists, no data
        run(r.a("deep.dns.test"))
    assert not e.value.nxdomain


def test_servfail_and_timeout_are_temporary(server: DNSServer) -> None:
    r = resolver(server, timeout=0.5)
    with pytest.raises(TempFail):
        run(r.txt("broken.dns.test"))
    with pytest.raises(TempFail):
        run(r.txt("slow.dns.test"))


def test_cache_answers_without_asking_again(server: DNSServer) -> None:
    r = resolver(server)

    async def twice() -> None:
        await r.a("mx1.dns.test")
        before = len(server.queries)
        assert await r.a("mx1.dns.test") == ["192.0.2.1"]
        with pytest.raises(NotFound):
            await r.a("gone.dns.test")
        after = len(server.queries)
        with pytest.raises(NotFound):
            await r.a("gone.dns.test")
        assert len(server.queries) == after == before + 1

    run(twice())


def test_temporary_failures_are_not_cached(server: DNSServer) -> None:
    r = resolver(server)

    async def go() -> None:
        with pytest.raises(TempFail):
            await r.txt("broken.dns.test")
        server.servfail.discard("broken.dns.test")
        try:
            with pytest.raises(NotFound):
                await r.txt("broken.dns.test")
        finally:
            server.servfail.add("broken.dns.test")

    run(go())


def test_config_keys() -> None:
    cfg = from_dict({"dns": {"nameservers": ["127.0.0.1:5353"], "timeout": 2}})
    assert cfg.dns.nameservers == ["127.0.0.1:5353"] and cfg.dns.timeout == 2.0
    with pytest.raises(ConfigError, match=r"dns\.nameservers\[0\]"):
        from_dict({"dns": {"nameservers": ["127.0.0.1"]}})
    with pytest.raises(ConfigError, match=r"dns\.timeout"):
        from_dict({"dns": {"timeout": 0}})
