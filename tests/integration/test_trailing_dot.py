"""Issue 11 item 4: ``bob@example.test.`` is ``bob@example.test`` (the root's dot, as
sendmail read it) on the wire, in routing, in ``daisymail resolve`` and in the relay
check, and it opens no relay path."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daisy

MSG = b"Subject: dot\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = Daisy(tmp_path_factory.mktemp("dot") / "daisy")
    d.init()
    d.cli("domain", "add", "example.test")
    d.add_user("bob@example.test", "pw")
    d.cli("relay", "add", "partner.example")
    d.start()
    yield d
    d.stop()


def _stored(d: Daisy, box: str) -> list[bytes]:
    new = Path(d.root / "mail" / box / "new")
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


def _smtp(d: Daisy, source: str) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10, source_address=(source, 0))


def test_trailing_dot_is_the_same_domain_on_the_wire(server: Daisy) -> None:
    before = len(_stored(server, "bob.example.test"))
    with _smtp(server, "127.0.0.2") as s:
        s.ehlo("outside.test")
        assert s.mail("someone@example.net.")[0] == 250
        code, msg = s.rcpt("bob@Example.TEST.")
        assert code == 250, msg
        assert s.data(MSG)[0] == 250
    stored = _stored(server, "bob.example.test")
    assert len(stored) == before + 1
    assert b"Return-Path: <someone@example.net>\n" in stored[-1]
    assert b"for <bob@Example.TEST>;" in stored[-1]


def test_trailing_dot_opens_no_relay_and_two_dots_are_syntax(server: Daisy) -> None:
    with _smtp(server, "127.0.0.2") as s:
        s.ehlo("outside.test")
        assert s.mail("someone@example.net")[0] == 250
        code, msg = s.rcpt("x@remote.example.")
        assert (code, msg[:5]) == (550, b"5.7.1"), msg
        code, msg = s.rcpt("x@remote.example")
        assert (code, msg[:5]) == (550, b"5.7.1"), msg
        for bad in ("bob@example.test..", "bob@.", "bob@[127.0.0.1].", "x@remote.example.."):
            code, msg = s.rcpt(bad)
            assert (code, msg[:5]) == (501, b"5.1.3"), (bad, msg)
        code, msg = s.rcpt("x%remote.example@example.test.")
        assert (code, msg[:5]) == (550, b"5.7.1"), msg


def _resolve(d: Daisy, address: str, *extra: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(d.cli("resolve", address, "--json", *extra).stdout)
    return out


def test_resolve_and_relay_check_take_the_trailing_dot(server: Daisy) -> None:
    r = _resolve(server, "bob@example.test.")
    assert (r["decision"], r["mailbox"], r["address"]) == (
        "deliver",
        "bob.example.test",
        "bob@example.test",
    )
    r = _resolve(server, "x@remote.example.")
    assert r["decision"] == "reject" and "5.7.1" in str(r["reply"])
    r = _resolve(server, "x@partner.example.")
    assert r["decision"] == "relay"
    assert r["relay"] == {
        "allowed": True,
        "reason": "partner.example matches relay domain partner.example",
        "client_ip": "203.0.113.1",
    }
    bad = server.cli("resolve", "bob@example.test..", check=False)
    assert bad.returncode != 0 and "5.1.3" in bad.stderr
