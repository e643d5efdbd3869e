"""Port 25 with [verify] on: real server, real SMTP clients, real DNS on loopback."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daisymail.mailauth.dkim import signatures
from daisymail.mailauth.keystore import KeyStore
from tests.conftest import Daisy, free_port
from tests.dns_server import DNSServer, serve
from tests.integration.test_smtp_server import maildir_messages, smtp, wait_for

ID = "mail.daisy.test"  # the hostname `Daisy.init` gives


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    ks = KeyStore(tmp_path / "senders-keys")
    ks.generate("example.org", "r1", "rsa")
    ks.generate("example.org", "e1", "ed25519")
    return ks


@pytest.fixture
def dns_server(keys: KeyStore) -> Iterator[DNSServer]:
    org = {f"{k.selector}._domainkey": [("TXT", k.record)] for k in keys.keys("example.org")}
    org["@"] = [("TXT", "v=spf1 ip4:127.0.0.2 -all")]
    org["_dmarc"] = [("TXT", "v=DMARC1; p=reject")]
    srv = serve(free_port(), [("example.org", org)])
    yield srv
    srv.stop()


def message(extra: bytes = b"") -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\nTo: demo@example.test\r\nSubject: hi\r\n"
        b"Message-ID: <m1@example.org>\r\n" + extra + b"\r\nHello Bob.\r\n"
    )


def test_verdicts_on_port_25(daisy_dir: Daisy, dns_server: DNSServer, keys: KeyStore) -> None:
    daisy_dir.use_dns(dns_server.address)
    daisy_dir.check_inbound()
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    daisy_dir.start()

    # Signed by the author's domain, sent from its SPF host: pass, one header.
    forged = b"Authentication-Results: mail.daisy.test; dmarc=pass header.from=example.org\r\n"
    other = b"Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=x@y.test\r\n"
    msg = message(forged + other)
    msg = signatures(msg, keys.signing_keys("example.org")) + msg
    with smtp(daisy_dir, source="127.0.0.2") as s:
        s.ehlo("out.example.org")
        s.sendmail("alice@example.org", ["demo@example.test"], msg)
    wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 1)
    (stored,) = maildir_messages(daisy_dir, "demo.example.test")
    head = stored.split(b"\n\n", 1)[0]
    ar_start = head.index(b"Authentication-Results: mail.daisy.test;")
    ar = head[ar_start : head.index(b"Received:")]
    lines = ar.decode().split("\n")
    assert lines[0] == "Authentication-Results: mail.daisy.test;"
    assert lines[1] == "\tspf=pass (matched ip4:127.0.0.2) smtp.mailfrom=alice@example.org;"
    assert lines[2].startswith("\tdkim=pass header.d=example.org header.s=r1 header.a=rsa-sha256")
    assert lines[3].startswith("\tdkim=pass header.d=example.org header.s=e1 header.a=ed25519")
    assert lines[4] == "\tdmarc=pass (p=reject dis=none) header.from=example.org;"
    assert lines[5] == "\tarc=none"
    assert head.count(b"Authentication-Results: mail.daisy.test") == 1  # forged one removed
    assert b"Authentication-Results: mx.elsewhere.test" in head
    (line,) = [x for x in daisy_dir.logs().splitlines() if "smtp.message.accepted" in x]
    assert "spf=pass" in line and "dmarc=pass:example.org" in line and "action=accept" in line
    assert "smtp.verdict" not in daisy_dir.logs()  # one line per message: the accepted one

    # Past one block (64 KiB) the message is staged before the verdict: judged alike,
    # the forged field removed from the staged file.
    big = message(forged + other) + (b"z" * 99 + b"\r\n") * 1000
    big = signatures(big, keys.signing_keys("example.org")) + big
    with smtp(daisy_dir, source="127.0.0.2") as s:
        s.ehlo("out.example.org")
        s.sendmail("alice@example.org", ["demo@example.test"], big)
    wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 2)
    (large,) = [m for m in maildir_messages(daisy_dir, "demo.example.test") if m != stored]
    head = large.split(b"\n\n", 1)[0]
    assert head.count(b"Authentication-Results: mail.daisy.test") == 1
    assert b"\tdkim=pass header.d=example.org header.s=r1" in head
    assert b"\tdmarc=pass (p=reject dis=none) header.from=example.org;" in head
    assert large.endswith((b"z" * 99 + b"\n") * 1000)
    stored_before = {stored, large}

    # The same author, unsigned, from a host SPF does not list: p=reject refuses it.
    with smtp(daisy_dir, source="127.0.0.3") as s:
        s.ehlo("evil.example.net")
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("alice@example.org", ["demo@example.test"], message())
    assert e.value.smtp_code == 550
    assert e.value.smtp_error == b"5.7.1 DMARC policy of example.org rejects this message"
    assert len(maildir_messages(daisy_dir, "demo.example.test")) == 2

    # A trusted relay network is not checked.
    with smtp(daisy_dir, source="127.0.0.5") as s:
        s.sendmail("alice@example.org", ["demo@example.test"], message())
    wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 3)
    newest = [m for m in maildir_messages(daisy_dir, "demo.example.test") if m not in stored_before]
    assert b"Authentication-Results" not in newest[0]

    # So is one added with `relay add`: the same networks the relay check trusts.
    daisy_dir.cli("relay", "add", "127.0.0.6/32")
    deadline = time.monotonic() + 10
    while True:  # the server sees the rule once its snapshot is refreshed
        with smtp(daisy_dir, source="127.0.0.6") as s:
            try:
                s.sendmail("alice@example.org", ["demo@example.test"], message())
                break
            except smtplib.SMTPDataError:
                assert time.monotonic() < deadline, "the relay rule never took effect"
                time.sleep(0.1)
    wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 4)
    done = set(maildir_messages(daisy_dir, "demo.example.test"))
    (latest,) = done - {*stored_before, *newest}
    assert b"Authentication-Results" not in latest
