"""DMARC p=quarantine files mail into the recipient's Junk folder (Maildir++ ``.Junk``).

Real server, real SMTP and IMAP clients, real DNS on loopback. mbox recipients have no
folders: their copy stays in the mbox, marked by the Authentication-Results field.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest

from daisymail.directory.model import AddressRule, Mailbox
from tests.conftest import Daisy, free_port
from tests.dns_server import DNSServer, serve
from tests.integration.test_smtp_server import _directory, maildir_messages, smtp

AR = b"Authentication-Results: mail.daisy.test;"


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    zone = {
        "@": [("TXT", "v=spf1 ip4:127.0.0.2 -all")],
        "_dmarc": [("TXT", "v=DMARC1; p=quarantine")],
    }
    srv = serve(free_port(), [("quarantined.test", zone)])
    yield srv
    srv.stop()


def message(n: int) -> bytes:
    return (
        f"From: Q <q@quarantined.test>\r\nTo: demo@example.test\r\nSubject: q{n}\r\n"
        f"Message-ID: <q{n}@quarantined.test>\r\n\r\nQuarantine me.\r\n"
    ).encode()


def test_dmarc_quarantine_goes_to_junk(daisy_dir: Daisy, dns_server: DNSServer) -> None:
    daisy_dir.use_dns(dns_server.address)
    daisy_dir.check_inbound()
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    d = _directory(daisy_dir)
    d.add_mailbox(Mailbox(name="old", format="mbox"))
    d.add_address_rule(AddressRule(pattern="old@example.test", target="old"))
    d.close()
    daisy_dir.start()
    junk = daisy_dir.root / "mail" / "demo.example.test" / ".Junk"

    # From a host SPF does not list, unsigned: DMARC fails under p=quarantine.
    with smtp(daisy_dir, source="127.0.0.3") as s:
        s.ehlo("elsewhere.test")
        s.sendmail("q@quarantined.test", ["demo@example.test", "old@example.test"], message(1))
    assert maildir_messages(daisy_dir, "demo.example.test") == []
    (stored,) = [p.read_bytes() for p in (junk / "new").iterdir()]
    assert b"\tdmarc=fail (p=quarantine dis=quarantine) header.from=quarantined.test" in stored
    assert (junk / "maildirfolder").exists()
    mbox = (daisy_dir.root / "mail" / "old").read_bytes()
    assert mbox.count(b"\nSubject: q1\r\n") + mbox.count(b"\nSubject: q1\n") == 1
    assert b"dmarc=fail (p=quarantine dis=quarantine)" in mbox
    assert "action=junk" in daisy_dir.logs()

    # From the SPF host: DMARC passes, the inbox gets it.
    with smtp(daisy_dir, source="127.0.0.2") as s:
        s.ehlo("out.quarantined.test")
        s.sendmail("q@quarantined.test", ["demo@example.test"], message(2))
    (inbox,) = maildir_messages(daisy_dir, "demo.example.test")
    assert AR in inbox and b"dmarc=pass" in inbox and b"Subject: q2" in inbox
    assert len(list((junk / "new").iterdir())) == 1

    # One Maildir recipient: held in memory until the verdict, then streamed into Junk;
    # past one block (64 KiB) it is staged first. Both land in Junk, whole.
    big = message(4) + (b"y" * 99 + b"\r\n") * 1000
    for msg in (message(3), big):
        with smtp(daisy_dir, source="127.0.0.3") as s:
            s.ehlo("elsewhere.test")
            s.sendmail("q@quarantined.test", ["demo@example.test"], msg)
    filed = [p.read_bytes() for p in (junk / "new").iterdir()]
    assert len(filed) == 3 and len(maildir_messages(daisy_dir, "demo.example.test")) == 1
    (q3,) = [m for m in filed if b"Subject: q3" in m]
    (q4,) = [m for m in filed if b"Subject: q4" in m]
    assert q3.startswith(b"Return-Path: <q@quarantined.test>\nAuthentication-Results:")
    assert q4.endswith((b"y" * 99 + b"\n") * 1000) and len(q4) > 100_000
    assert all(b"dmarc=fail (p=quarantine dis=quarantine)" in m for m in (q3, q4))

    with imaplib.IMAP4("127.0.0.1", daisy_dir.ports["imap"], timeout=10) as imap:
        imap.login("demo@example.test", "demo-pw")
        typ, listing = imap.list()
        assert typ == "OK" and any(b'"Junk"' in x or b" Junk" in x for x in listing)  # type: ignore[operator]
        # made by the delivery before the first login, and still subscribed by it
        typ, subscribed = imap.lsub()
        assert typ == "OK"
        names = {x.rsplit(b" ", 1)[-1].strip(b'"') for x in subscribed}  # type: ignore[union-attr]
        assert {b"INBOX", b"Junk", b"Sent"} <= names
        typ, data = imap.select("Junk", readonly=True)
        assert typ == "OK" and data == [b"3"]
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and data[0][1].strip() == b"Subject: q1"  # type: ignore[index]
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK" and data == [b"1"]
