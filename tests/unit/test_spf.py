"""SPF results, table-tested against the loopback DNS server."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import pytest

from daisymail.dns import DnspythonResolver
from daisymail.mailauth.spf import PermError, _Context, check_host, expand, parse_record
from tests.conftest import free_port
from tests.dns_server import DNSServer, serve

H = ["a:host.spf.test" for _ in range(10)]
ZONE = {
    "ip": [("TXT", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")],
    "soft": [("TXT", "v=spf1 ~all")],
    "neutral": [("TXT", "v=spf1 ?all")],
    "plain": [("TXT", "v=spf1")],
    "other": [("TXT", "not spf"), ("A", "192.0.2.99")],
    "two": [("TXT", "v=spf1 -all"), ("TXT", "v=spf1 +all")],
    "syntax": [("TXT", "v=spf1 ip4:192.0.2.1 foo:bar -all")],
    "late-syntax": [("TXT", "v=spf1 +all ip4:300.1.1.1")],
    "host": [("A", "192.0.2.10"), ("AAAA", "2001:db8::10")],
    "a": [("TXT", "v=spf1 a:host.spf.test -all")],
    "self": [("TXT", "v=spf1 a -all"), ("A", "192.0.2.11")],
    "acidr": [("TXT", "v=spf1 a:host.spf.test/24//64 -all")],
    "mx": [("TXT", "v=spf1 mx -all"), ("MX", "10 host.spf.test.")],
    "inc": [("TXT", "v=spf1 include:soft.spf.test include:ip.spf.test -all")],
    "inc-none": [("TXT", "v=spf1 include:other.spf.test -all")],
    "inc-temp": [("TXT", "v=spf1 include:broken.spf.test -all")],
    "red": [("TXT", "v=spf1 redirect=ip.spf.test")],
    "red-none": [("TXT", "v=spf1 redirect=other.spf.test")],
    "exists": [("TXT", "v=spf1 exists:%{i}.ex.spf.test -all")],
    "192.0.2.7.ex": [("A", "127.0.0.2")],
    "ptr": [("TXT", "v=spf1 ptr -all")],
    "mail.ptr": [("A", "192.0.2.20")],
    "liar.ptr": [("A", "192.0.2.99")],
    "ten": [("TXT", "v=spf1 " + " ".join(H) + " -all")],
    "eleven": [("TXT", "v=spf1 " + " ".join(H) + " a:host.spf.test -all")],
    "two-void": [("TXT", "v=spf1 a:nx1.spf.test mx:nx2.spf.test -all")],
    "three-void": [("TXT", "v=spf1 a:nx1.spf.test a:nx2.spf.test exists:nx3.spf.test -all")],
    "exp": [("TXT", "v=spf1 -all exp=why.spf.test")],
    "why": [("TXT", "%{i} is not a mail server of %{d} (%{l})")],
    "temp-a": [("TXT", "v=spf1 a:broken.spf.test -all")],
    "loop": [("TXT", "v=spf1 include:loop.spf.test -all")],
}
REVERSE = """$TTL 300
@ IN SOA ns. h. 1 1 1 1 1
20 IN PTR mail.ptr.spf.test.
21 IN PTR liar.ptr.spf.test.
"""


@pytest.fixture(scope="module")
def server() -> Iterator[DNSServer]:
    srv = serve(free_port(), [("spf.test", ZONE), ("2.0.192.in-addr.arpa", REVERSE)])
    srv.servfail.update({"broken.spf.test", "tempfail.spf.test"})
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    ("domain", "ip", "result"),
    [
        ("ip.spf.test", "192.0.2.5", "pass"),
        ("ip.spf.test", "198.51.100.1", "fail"),
        ("ip.spf.test", "2001:db8::5", "pass"),
        ("ip.spf.test", "::ffff:192.0.2.5", "pass"),
        ("soft.spf.test", "192.0.2.5", "softfail"),
        ("neutral.spf.test", "192.0.2.5", "neutral"),
        ("plain.spf.test", "192.0.2.5", "neutral"),
        ("other.spf.test", "192.0.2.5", "none"),
        ("nx.spf.test", "192.0.2.5", "none"),
        ("localhost", "192.0.2.5", "none"),
        ("two.spf.test", "192.0.2.5", "permerror"),
        ("syntax.spf.test", "192.0.2.1", "permerror"),
        ("late-syntax.spf.test", "192.0.2.1", "permerror"),
        ("tempfail.spf.test", "192.0.2.5", "temperror"),
        ("a.spf.test", "192.0.2.10", "pass"),
        ("a.spf.test", "192.0.2.11", "fail"),
        ("a.spf.test", "2001:db8::10", "pass"),
        ("self.spf.test", "192.0.2.11", "pass"),
        ("acidr.spf.test", "192.0.2.200", "pass"),
        ("acidr.spf.test", "2001:db8::ffff", "pass"),
        ("acidr.spf.test", "2001:db8:1::1", "fail"),
        ("mx.spf.test", "192.0.2.10", "pass"),
        ("mx.spf.test", "192.0.2.11", "fail"),
        ("inc.spf.test", "192.0.2.5", "pass"),
        ("inc.spf.test", "203.0.113.1", "fail"),
        ("inc-none.spf.test", "192.0.2.5", "permerror"),
        ("inc-temp.spf.test", "192.0.2.5", "temperror"),
        ("red.spf.test", "192.0.2.5", "pass"),
        ("red.spf.test", "203.0.113.1", "fail"),
        ("red-none.spf.test", "192.0.2.5", "permerror"),
        ("exists.spf.test", "192.0.2.7", "pass"),
        ("exists.spf.test", "192.0.2.8", "fail"),
        ("ptr.spf.test", "192.0.2.20", "pass"),
        ("ptr.spf.test", "192.0.2.21", "fail"),  # PTR name does not resolve back
        ("ptr.spf.test", "192.0.2.22", "fail"),  # no PTR at all
        ("ten.spf.test", "192.0.2.1", "fail"),
        ("eleven.spf.test", "192.0.2.1", "permerror"),
        ("two-void.spf.test", "192.0.2.1", "fail"),
        ("three-void.spf.test", "192.0.2.1", "permerror"),
        ("temp-a.spf.test", "192.0.2.1", "temperror"),
        ("loop.spf.test", "192.0.2.1", "permerror"),
    ],
)
def test_results(server: DNSServer, domain: str, ip: str, result: str) -> None:
    res = asyncio.run(
        check_host(ip, domain, f"user@{domain}", DnspythonResolver([server.address], timeout=2))
    )
    assert res.result == result, res


def test_explanation(server: DNSServer) -> None:
    resolver = DnspythonResolver([server.address], timeout=2)
    res = asyncio.run(check_host("192.0.2.1", "exp.spf.test", "joe@exp.spf.test", resolver))
    assert res.result == "fail"
    assert res.explanation == "192.0.2.1 is not a mail server of exp.spf.test (joe)"
    res = asyncio.run(check_host("198.51.100.1", "ip.spf.test", "joe@ip.spf.test", resolver))
    assert (
        res.explanation
        == "ip.spf.test does not allow 198.51.100.1 to send mail for joe@ip.spf.test"
    )


def test_helo_identity(server: DNSServer) -> None:
    resolver = DnspythonResolver([server.address], timeout=2)
    res = asyncio.run(check_host("192.0.2.10", "a.spf.test", "", resolver, helo="a.spf.test"))
    assert res.result == "pass"


MACRO_SENDER = "strong-bad@email.example.com"


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [  # RFC 7208 7.4
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%%%_%-", "% %20"),
        ("%{L}", "strong-bad"),
        ("%{S}", "strong-bad%40email.example.com"),
    ],
)
def test_macros(macro: str, expanded: str) -> None:
    ctx = _Context(ipaddress.ip_address("192.0.2.3"), MACRO_SENDER, "", "", None)  # type: ignore[arg-type]
    assert expand(macro, ctx, "email.example.com") == expanded


def test_ipv6_macro() -> None:
    ctx = _Context(ipaddress.ip_address("2001:db8::cb01"), MACRO_SENDER, "", "", None)  # type: ignore[arg-type]
    assert (
        expand("%{ir}.%{v}._spf.%{d2}", ctx, "email.example.com")
        == "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 ip4:192.0.2.1/33",
        "v=spf1 ip4:2001:db8::1",
        "v=spf1 a/40",
        "v=spf1 include",
        "v=spf1 exists:%{z}.x",
        "v=spf1 a:%(x)",
        "v=spf1 redirect=a.test redirect=b.test",
        "v=spf1 all:x",
    ],
)
def test_syntax_errors(record: str) -> None:
    with pytest.raises(PermError):
        parse_record(record)


def test_unknown_modifiers_are_ignored() -> None:
    rec = parse_record("v=spf1 foo=bar -all")
    assert [t.name for t in rec.directives] == ["all"] and rec.redirect is None
