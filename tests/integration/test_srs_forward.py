"""SRS for forwarded mail: the forward leaves under an SRS0 sender, its bounce comes back.

Real server, real queue, a real SMTP sink on the other end, smtplib as the client.
"""

from __future__ import annotations

import smtplib
import time
import tomllib
from collections.abc import Iterator

import pytest

from daisymail.directory.model import AddressRule
from daisymail.mailauth.srs import SRSKeys
from tests.conftest import Daisy
from tests.integration.smtp_sink import Sink
from tests.integration.test_queue_delivery import configure
from tests.integration.test_smtp_server import _directory, smtp

MSG = b"From: alice@sender.test\r\nTo: fwd@example.test\r\nSubject: fwd\r\n\r\nHello.\r\n"
BOUNCE = b"From: MAILER-DAEMON@remote.test\r\nSubject: failed\r\n\r\nNo such user.\r\n"


@pytest.fixture
def forwarding(daisy_dir: Daisy) -> Iterator[tuple[Daisy, Sink]]:
    sink = Sink()
    configure(daisy_dir, sink.port)
    text = daisy_dir.config.read_text()
    route = f'"sender.test" = "127.0.0.1:{sink.port}"'
    daisy_dir.config.write_text(text.replace("[queue.routes]", f"[queue.routes]\n{route}", 1))
    d = _directory(daisy_dir)
    d.add_address_rule(AddressRule(pattern="fwd@example.test", target="friend@remote.test"))
    d.close()
    daisy_dir.start()
    yield daisy_dir, sink
    daisy_dir.stop()
    sink.stop()


def _wait(sink: Sink, n: int) -> None:
    deadline = time.monotonic() + 20
    while len(sink.messages) < n:
        assert time.monotonic() < deadline, f"the sink has {len(sink.messages)} of {n}"
        time.sleep(0.05)


def test_forward_is_srs_rewritten_and_its_bounce_routed_back(
    forwarding: tuple[Daisy, Sink],
) -> None:
    daisy, sink = forwarding
    with smtp(daisy) as s:
        s.sendmail("alice@sender.test", ["fwd@example.test"], MSG)
    _wait(sink, 1)
    sender, rcpts, data = sink.messages[0]
    assert rcpts == ["friend@remote.test"]
    assert sender.startswith("SRS0=") and sender.endswith("=sender.test=alice@example.test")
    assert b"Subject: fwd" in data

    # The destination bounces to the SRS address: accepted, sent on to alice.
    with smtp(daisy) as s:
        s.sendmail("", [sender], BOUNCE)
    _wait(sink, 2)
    bounce_sender, bounce_rcpts, bounce = sink.messages[1]
    assert (bounce_sender, bounce_rcpts) == ("", ["alice@sender.test"])
    assert b"No such user." in bounce

    # A forged hash, and a genuine address that is too old: unknown users.
    secret = tomllib.loads(daisy.config.read_text())["srs"]["secret"]
    old = SRSKeys(secret).forward("alice@sender.test", "example.test", now=time.time() - 30 * 86400)
    forged = sender[:5] + ("AAAA" if sender[5:9] != "AAAA" else "BBBB") + sender[9:]
    for address in (forged, old):
        with smtp(daisy) as s:
            s.ehlo("remote.test")
            s.mail("")
            code, text = s.rcpt(address)
        expected = f"5.1.1 <{address}>... User unknown (invalid SRS address)".encode()
        assert (code, text) == (550, expected)
    assert len(sink.messages) == 2


def test_mail_from_hosted_domains_and_null_sender_keep_their_sender(
    forwarding: tuple[Daisy, Sink],
) -> None:
    daisy, sink = forwarding
    with smtp(daisy) as s:
        s.sendmail("demo@example.test", ["fwd@example.test"], MSG)
        s.sendmail("", ["fwd@example.test"], MSG)
    _wait(sink, 2)
    assert sorted(m[0] for m in sink.messages) == ["", "demo@example.test"]


def test_without_a_secret_forwards_keep_their_sender(daisy_dir: Daisy) -> None:
    sink = Sink()
    try:
        configure(daisy_dir, sink.port)
        daisy_dir.set_config("[srs]", "secret", '""')
        d = _directory(daisy_dir)
        d.add_address_rule(AddressRule(pattern="fwd@example.test", target="friend@remote.test"))
        d.close()
        daisy_dir.start()
        with smtp(daisy_dir) as s:
            s.sendmail("alice@sender.test", ["fwd@example.test"], MSG)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                s.sendmail("", ["SRS0=abcd=AB=sender.test=alice@example.test"], BOUNCE)
        _wait(sink, 1)
        assert sink.messages[0][0] == "alice@sender.test"
        assert "srs.off" in daisy_dir.logs()
    finally:
        daisy_dir.stop()
        sink.stop()
