"""SIGHUP applies [verify], [dns], [filter] and [srs] to a running server.

Each section is changed in the config of a server that is already serving, the server
is sent SIGHUP, and the next message shows the new behaviour: Authentication-Results
appear (verify), SPF follows the other DNS server (dns), rspamd is asked (filter, an
address where nothing listens: the message is marked unchecked), and a forward leaves
under an SRS sender (srs).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from daisymail.directory.model import AddressRule
from tests.conftest import Daisy, free_port
from tests.dns_server import DNSServer, serve
from tests.integration.smtp_sink import Sink
from tests.integration.test_queue_delivery import configure
from tests.integration.test_smtp_server import _directory, maildir_messages, smtp, wait_for

MSG = (
    b"From: Alice <alice@example.org>\r\nTo: demo@example.test\r\nSubject: reload\r\n"
    b"Message-ID: <r@example.org>\r\n\r\nHello.\r\n"
)


@pytest.fixture
def two_dns() -> Iterator[tuple[DNSServer, DNSServer]]:
    """The same zone twice: one lets 127.0.0.2 send for example.org, one does not."""
    allows = serve(free_port(), [("example.org", {"@": [("TXT", "v=spf1 ip4:127.0.0.2 -all")]})])
    denies = serve(free_port(), [("example.org", {"@": [("TXT", "v=spf1 -all")]})])
    yield allows, denies
    allows.stop()
    denies.stop()


def reload(daisy: Daisy) -> None:
    assert daisy.proc is not None
    before = daisy.logs().count(" reloaded ")
    daisy.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while daisy.logs().count(" reloaded ") == before:
        assert time.monotonic() < deadline, daisy.logs()
        time.sleep(0.05)


def deliver(daisy: Daisy) -> bytes:
    """Send MSG from 127.0.0.2 to demo and a forwarded address; demo's copy."""
    before = set(maildir_messages(daisy, "demo.example.test"))
    with smtp(daisy, source="127.0.0.2") as s:
        s.ehlo("out.example.org")
        s.sendmail("alice@example.org", ["demo@example.test", "fwd@example.test"], MSG)
    wait_for(lambda: len(maildir_messages(daisy, "demo.example.test")) == len(before) + 1)
    (new,) = set(maildir_messages(daisy, "demo.example.test")) - before
    return new.split(b"\n\n", 1)[0]


def test_sighup_applies_verify_dns_filter_and_srs(
    daisy_dir: Daisy, two_dns: tuple[DNSServer, DNSServer]
) -> None:
    allows, denies = two_dns
    sink = Sink()
    try:
        configure(daisy_dir, sink.port)
        d = _directory(daisy_dir)
        d.add_address_rule(AddressRule(pattern="fwd@example.test", target="friend@remote.test"))
        d.close()
        daisy_dir.use_dns(allows.address)
        daisy_dir.set_config("[verify]", "enabled", "false")
        daisy_dir.set_config("[relay]", "networks", '["127.0.0.9/32"]')
        daisy_dir.set_config("[srs]", "secret", '""')
        daisy_dir.set_config("[filter]", "rspamd_url", '""')
        daisy_dir.start()

        head = deliver(daisy_dir)
        assert b"Authentication-Results" not in head and b"X-Spam-Status" not in head
        wait_for(lambda: len(sink.messages) == 1)
        assert sink.messages[0][0] == "alice@example.org"  # forwarded with its own sender

        daisy_dir.set_config("[verify]", "enabled", "true")
        daisy_dir.set_config("[srs]", "secret", '"a-long-secret-for-the-reload-test"')
        daisy_dir.set_config("[filter]", "rspamd_url", f'"http://127.0.0.1:{free_port()}"')
        daisy_dir.set_config("[filter]", "timeout", "2.0")
        reload(daisy_dir)
        head = deliver(daisy_dir)
        assert b"Authentication-Results: mail.daisy.test;\n\tspf=pass" in head
        assert b"X-Spam-Status: Unchecked (rspamd:" in head
        wait_for(lambda: len(sink.messages) == 2)
        assert sink.messages[1][0].startswith("SRS0=")

        daisy_dir.set_config("[dns]", "nameservers", f'["{denies.address}"]')
        reload(daisy_dir)
        head = deliver(daisy_dir)
        assert b"Authentication-Results: mail.daisy.test;\n\tspf=fail" in head

        daisy_dir.set_config("[verify]", "enabled", "false")
        daisy_dir.set_config("[filter]", "rspamd_url", '""')
        reload(daisy_dir)
        head = deliver(daisy_dir)
        assert b"Authentication-Results" not in head and b"X-Spam-Status" not in head
    finally:
        daisy_dir.stop()
        sink.stop()
