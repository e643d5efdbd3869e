"""DMARC discovery, alignment and policy, and the Authentication-Results field."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from daisymail.dns import DnspythonResolver
from daisymail.mailauth.dkim_verify import DKIMResult
from daisymail.mailauth.dmarc import (
    Discovery,
    DMARCResult,
    Identifier,
    evaluate,
    parse_record,
    walk_names,
)
from daisymail.mailauth.results import authentication_results, remove_own, spf_result
from daisymail.mailauth.spf import SPFResult
from tests.conftest import free_port
from tests.dns_server import DNSServer, serve

TEST_ZONE = {
    "_dmarc": [("TXT", "v=DMARC1; p=none; psd=y")],
    "_dmarc.example": [("TXT", "v=DMARC1; p=reject; sp=quarantine; np=reject")],
    "sub.example": [("A", "192.0.2.1")],
    "_dmarc.strict": [("TXT", "v=DMARC1; p=quarantine; adkim=s; aspf=s")],
    "_dmarc.monitor": [("TXT", "v=DMARC1; p=none; rua=mailto:d@monitor.test")],
    "_dmarc.testing": [("TXT", "v=DMARC1; p=reject; t=y")],
    "_dmarc.co": [("TXT", "v=DMARC1; p=none; psd=y")],
    "_dmarc.shop.co": [("TXT", "v=DMARC1; p=reject")],
    "_dmarc.big": [("TXT", "v=DMARC1; p=none")],
    "_dmarc.corp.big": [("TXT", "v=DMARC1; p=reject; psd=n")],
    "_dmarc.two": [("TXT", "v=DMARC1; p=reject"), ("TXT", "v=DMARC1; p=none")],
    "_dmarc.junk": [("TXT", "v=spf1 -all"), ("TXT", "v=DMARC1; p=quarantine")],
}
EXAMPLE_ZONE = {"norecord": [("A", "192.0.2.2")]}


@pytest.fixture(scope="module")
def server() -> Iterator[DNSServer]:
    srv = serve(free_port(), [("test", TEST_ZONE), ("example", EXAMPLE_ZONE)])
    srv.servfail.add("_dmarc.flaky.test")
    yield srv
    srv.stop()


def resolver(server: DNSServer) -> DnspythonResolver:
    return DnspythonResolver([server.address], timeout=2)


def run_eval(server: DNSServer, frm: str, spf: tuple[str, str] | None, dkim: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    return asyncio.run(
        evaluate(
            frm,
            Identifier(*spf) if spf else None,
            [Identifier(*d) for d in dkim],
            resolver(server),
        )
    )


@pytest.mark.parametrize(
    ("frm", "spf", "dkim", "result", "policy", "aligned"),
    [
        ("example.test", ("pass", "example.test"), [], "pass", "none", "spf"),
        ("example.test", ("pass", "bounce.example.test"), [], "pass", "none", "spf"),
        ("Example.TEST", None, [("pass", "mail.example.test")], "pass", "none", "dkim"),
        ("example.test", ("pass", "evil.test"), [("pass", "evil.test")], "fail", "reject", ""),
        (
            "example.test",
            ("fail", "example.test"),
            [("fail", "example.test")],
            "fail",
            "reject",
            "",
        ),
        ("sub.example.test", None, [], "fail", "quarantine", ""),  # sp=
        ("ghost.example.test", None, [], "fail", "reject", ""),  # np=: does not exist
        ("strict.test", None, [("pass", "mail.strict.test")], "fail", "quarantine", ""),
        ("strict.test", ("pass", "strict.test"), [], "pass", "none", "spf"),
        ("monitor.test", None, [], "fail", "none", ""),
        ("testing.test", None, [], "fail", "quarantine", ""),  # t=y: one step milder
        ("norecord.example", None, [], "none", "none", ""),
        ("shop.co.test", None, [("pass", "mail.shop.co.test")], "pass", "none", "dkim"),
        ("shop.co.test", None, [("pass", "other.co.test")], "fail", "reject", ""),
        ("mail.corp.big.test", ("pass", "big.test"), [], "fail", "reject", ""),
        ("x.corp.big.test", ("pass", "corp.big.test"), [], "pass", "none", "spf"),
        ("two.test", None, [], "fail", "none", ""),  # two records: none there, PSD's p=none
        ("junk.test", None, [], "fail", "quarantine", ""),  # a non-DMARC TXT is ignored
        ("flaky.test", ("pass", "flaky.test"), [], "temperror", "none", ""),
    ],
)
def test_evaluate(
    server: DNSServer,
    frm: str,
    spf: tuple[str, str] | None,
    dkim: list[tuple[str, str]],
    result: str,
    policy: str,
    aligned: str,
) -> None:
    res = run_eval(server, frm, spf, dkim)
    assert (res.result, res.policy) == (result, policy), res
    assert res.spf_aligned == (aligned == "spf") and res.dkim_aligned == (aligned == "dkim")


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.test", "example.test"),
        ("a.b.example.test", "example.test"),
        ("mail.shop.co.test", "shop.co.test"),
        ("co.test", "co.test"),
        ("x.corp.big.test", "corp.big.test"),
        ("big.test", "big.test"),
        ("norecord.example", "norecord.example"),
    ],
)
def test_organizational_domain(server: DNSServer, domain: str, org: str) -> None:
    assert asyncio.run(Discovery(resolver(server)).organizational_domain(domain)) == org


def test_walk_names_shortens_long_names() -> None:
    assert walk_names("a.b.c") == ("a.b.c", "b.c", "c")
    long = ".".join("abcdefghij")
    assert walk_names(long) == (long, "d.e.f.g.h.i.j", *walk_names("e.f.g.h.i.j")[:6])[:8]
    assert len(walk_names(long)) == 8


@pytest.mark.parametrize(
    ("text", "p", "sp", "np"),
    [
        ("v=DMARC1; p=reject", "reject", None, None),
        ("v=DMARC1;p=Quarantine;sp=none;np=reject", "quarantine", "none", "reject"),
        ("v=DMARC1; rua=mailto:a@b.test", "none", None, None),
        ("v=DMARC1; p=bogus; rua=mailto:a@b.test", "none", None, None),
    ],
)
def test_parse(text: str, p: str, sp: str | None, np: str | None) -> None:
    rec = parse_record(text)
    assert rec is not None and (rec.p, rec.sp, rec.np) == (p, sp, np)


@pytest.mark.parametrize("text", ["v=DMARC1", "v=DMARC2; p=reject", "p=reject; v=DMARC1", ""])
def test_parse_invalid(text: str) -> None:
    assert parse_record(text) is None


# -- Authentication-Results -------------------------------------------------------------


def test_authentication_results_exact() -> None:
    field = authentication_results(
        "mx.daisy.test",
        spf=spf_result(SPFResult("pass", "example.test"), "joe@example.test", "mail.example.test"),
        dkim=[
            DKIMResult("pass", "example.test", "r1", "rsa-sha256", "AbCdEfGh"),
            DKIMResult("fail", "example.test", "e1", "ed25519-sha256", "xY/+12", "body hash"),
        ],
        dmarc=DMARCResult("pass", "example.test", "none", "example.test", "reject", True, True),
    )
    assert field == (
        b"Authentication-Results: mx.daisy.test;\r\n"
        b"\tspf=pass smtp.mailfrom=joe@example.test;\r\n"
        b"\tdkim=pass header.d=example.test header.s=r1 header.a=rsa-sha256"
        b" header.b=AbCdEfGh;\r\n"
        b'\tdkim=fail reason="body hash" header.d=example.test header.s=e1'
        b' header.a=ed25519-sha256 header.b="xY/+12";\r\n'
        b"\tdmarc=pass (p=reject dis=none) header.from=example.test\r\n"
    )


def test_authentication_results_none_and_helo() -> None:
    assert authentication_results("mx.daisy.test") == (
        b"Authentication-Results: mx.daisy.test; none\r\n"
    )
    field = authentication_results(
        "mx.daisy.test",
        spf=spf_result(SPFResult("softfail", "h.test", reason="matched all"), "", "h.test"),
        dkim=[],
        dmarc=DMARCResult("none", "h.test", reason="no DMARC record"),
    )
    assert field == (
        b"Authentication-Results: mx.daisy.test;\r\n"
        b"\tspf=softfail (matched all) smtp.helo=h.test;\r\n"
        b"\tdkim=none;\r\n"
        b"\tdmarc=none (no DMARC record) header.from=h.test\r\n"
    )


def test_remove_own_keeps_others() -> None:
    fields = [
        b"Authentication-Results: MX.daisy.test; spf=pass smtp.mailfrom=x@y.test\r\n",
        b"Authentication-Results: (forged) mx.daisy.test 1;\r\n\tdkim=pass\r\n",
        b"Authentication-Results: mx.other.test; dkim=pass header.d=y.test\r\n",
        b"Subject: hi\r\n",
    ]
    assert remove_own(fields, "mx.daisy.test") == fields[2:]
