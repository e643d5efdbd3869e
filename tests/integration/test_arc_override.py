"""A trusted ARC sealer's verdict overrides a DMARC failure ([verify] trusted_arc_sealers).

A list breaks the author's DKIM signature (subject tag, footer) and seals the message
with dkimpy's ARC signer; Daisy gets it on port 25 from the list's host, with a real
loopback DNS server for every key and policy.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import dkim as dkimpy
import pytest

from daisymail.mailauth.dkim import signatures
from daisymail.mailauth.keystore import KeyStore
from tests.conftest import Daisy, free_port
from tests.dns_server import DNSServer, serve
from tests.integration.test_smtp_server import maildir_messages, smtp, wait_for

LISTS = ("lists.test", "other.test")
MSG = (
    b"From: Alice <alice@example.org>\r\nTo: team@lists.test\r\nSubject: plans\r\n"
    b"Message-ID: <o1@example.org>\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\n"
    b"See you there.\r\n"
)
PASSED = "spf=pass smtp.mailfrom=alice@example.org; dkim=pass header.d=example.org"


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    ks = KeyStore(tmp_path / "keys")
    ks.generate("example.org", "r1", "rsa")
    for d in LISTS:
        ks.generate(d, "r1", "rsa")
    return ks


@pytest.fixture
def dns_server(keys: KeyStore) -> Iterator[DNSServer]:
    zones: list[tuple[str, dict[str, list[tuple[str, str]]]]] = [
        (
            "example.org",
            {
                "r1._domainkey": [("TXT", keys.keys("example.org")[0].record)],
                "@": [("TXT", "v=spf1 ip4:127.0.0.2 -all")],
                "_dmarc": [("TXT", "v=DMARC1; p=reject")],
            },
        )
    ]
    for d in LISTS:
        zones.append(
            (
                d,
                {
                    "r1._domainkey": [("TXT", keys.keys(d)[0].record)],
                    "@": [("TXT", "v=spf1 ip4:127.0.0.4 -all")],
                },
            )
        )
    srv = serve(free_port(), zones)
    yield srv
    srv.stop()


def through_list(keys: KeyStore, sealer: str, saw: str) -> bytes:
    """The author's signed message as a list re-sends it: changed, then ARC-sealed by
    ``sealer`` with ``saw`` as its Authentication-Results."""
    signed = signatures(MSG, keys.signing_keys("example.org")) + MSG
    changed = signed.replace(b"Subject: plans", b"Subject: [team] plans") + b"-- \r\nteam\r\n"
    msg = f"Authentication-Results: {sealer}; {saw}; arc=none\r\n".encode() + changed
    pem = (keys.root / sealer / "r1.rsa.pem").read_bytes()
    return b"".join(dkimpy.arc_sign(msg, b"r1", sealer.encode(), pem, sealer.encode())) + msg


def send(daisy: Daisy, msg: bytes, sender: str = "bounces@lists.test") -> None:
    with smtp(daisy, source="127.0.0.4") as s:
        s.ehlo("mx.lists.test")
        s.sendmail(sender, ["demo@example.test"], msg)


def own_results(stored: bytes) -> str:
    head = stored.split(b"\n\n", 1)[0].decode()
    start = head.index("Authentication-Results: mail.daisy.test;")
    return head[start : head.index("Received:", start)]


def test_trusted_sealer_overrides_dmarc(
    daisy_dir: Daisy, dns_server: DNSServer, keys: KeyStore
) -> None:
    daisy_dir.use_dns(dns_server.address)
    daisy_dir.set_config("[verify]", "enabled", "true")
    daisy_dir.set_config("[verify]", "trusted_arc_sealers", '["lists.test"]')
    daisy_dir.set_config("[relay]", "networks", '["127.0.0.9/32"]')
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    daisy_dir.start()

    # The trusted list saw DKIM and SPF pass for the author: the policy is set aside.
    send(daisy_dir, through_list(keys, "lists.test", PASSED))
    wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 1)
    (stored,) = maildir_messages(daisy_dir, "demo.example.test")
    lines = own_results(stored).split("\n")
    assert lines[1] == "\tspf=pass (matched ip4:127.0.0.4) smtp.mailfrom=bounces@lists.test;"
    assert lines[2].startswith("\tdkim=fail reason=")
    assert lines[3] == (
        '\tdmarc=fail (p=reject dis=none) reason="arc: lists.test saw dkim=pass"'
        " header.from=example.org;"
    )
    assert lines[4] == "\tarc=pass (i=1 d=lists.test)"
    assert "override=" in daisy_dir.logs() and "action=accept" in daisy_dir.logs()

    # The list's own DMARC verdict counts as well.
    send(daisy_dir, through_list(keys, "lists.test", "dmarc=pass header.from=example.org"))
    wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 2)
    (second,) = [m for m in maildir_messages(daisy_dir, "demo.example.test") if m != stored]
    assert 'reason="arc: lists.test saw dmarc=pass"' in own_results(second)

    # A valid chain by a sealer nobody trusts changes nothing: p=reject applies.
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(daisy_dir, through_list(keys, "other.test", PASSED), "bounces@other.test")
    assert (e.value.smtp_code, e.value.smtp_error[:5]) == (550, b"5.7.1")

    # Nor does a trusted sealer that saw no aligned pass (a DKIM pass of another domain).
    saw = "spf=pass smtp.mailfrom=x@elsewhere.test; dkim=pass header.d=elsewhere.test"
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(daisy_dir, through_list(keys, "lists.test", saw))
    assert e.value.smtp_code == 550

    # Nor a chain broken after the seal.
    broken = through_list(keys, "lists.test", PASSED).replace(b"See you", b"See ya")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(daisy_dir, broken)
    assert e.value.smtp_code == 550
    assert len(maildir_messages(daisy_dir, "demo.example.test")) == 2
