"""Mail a user submits leaves through the queue DKIM-signed, with both algorithms.

The signatures are checked by an independent verifier (dkimpy) against the records
`daisymail dkim keygen` printed, served by a real DNS server on loopback.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import ssl
import time
from collections.abc import Iterator

import dkim as dkimpy
import pytest

from daisymail.dns import from_config
from daisymail.mailauth.dkim_verify import verify
from tests.conftest import Daisy, alive, free_port
from tests.dns_server import DNSServer, serve
from tests.integration.smtp_sink import Sink
from tests.integration.test_queue_delivery import configure
from tests.integration.test_smtp_server import wait_for
from tests.unit.test_dkim import dkimpy_dns

BODY = (
    b"From: Demo <demo@example.test>\r\nTo: <friend@remote.test>\r\n"
    b"Subject: signed on the way out\r\nMessage-ID: <dkim1@example.test>\r\n"
    b"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\n"
    b"A line.\r\n.A line that starts with a dot.\r\n" + b"x" * 300 + b"\r\n"
)


@pytest.fixture(params=["worker", "server", "worker-killed"])
def signed_setup(
    daisy_dir: Daisy, request: pytest.FixtureRequest
) -> Iterator[tuple[Daisy, Sink, DNSServer, str]]:
    """Signed by a mail-auth worker, by the server itself ([verify] workers = 0), and
    by the server when the one worker has been killed."""
    sink = Sink()
    configure(daisy_dir, sink.port)
    daisy_dir.set_config("[verify]", "workers", "0" if request.param == "server" else "1")
    records = daisy_dir.cli("dkim", "keygen", "example.test").stdout
    zone = "$TTL 300\n@ IN SOA ns h 1 1 1 1 1\n" + records
    dns = serve(free_port(), [("example.test", zone)])
    daisy_dir.start()
    if request.param != "server":
        wait_for(lambda: "mailauth.worker.ready" in daisy_dir.logs(), 20)
    if request.param == "worker-killed":
        (pid,) = re.findall(r"mailauth\.worker\.started pid=(\d+)", daisy_dir.logs())
        os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: "mailauth.worker.failed" in daisy_dir.logs() or not alive(int(pid)))
    try:
        yield daisy_dir, sink, dns, "worker" if request.param == "worker" else "server"
    finally:
        daisy_dir.stop()
        dns.stop()
        sink.stop()


def _wait_for_message(sink: Sink) -> bytes:
    deadline = time.monotonic() + 20
    while not sink.messages:
        assert time.monotonic() < deadline, "the sink never got the message"
        time.sleep(0.05)
    return sink.messages[0][2]


def test_submitted_mail_leaves_signed_with_rsa_and_ed25519(
    signed_setup: tuple[Daisy, Sink, DNSServer, str],
) -> None:
    daisy, sink, dns, signed_by = signed_setup
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", daisy.ports["submission"], timeout=10) as s:
        s.starttls(context=ctx)
        s.login("demo@example.test", "demo-pw")
        s.sendmail("demo@example.test", ["friend@remote.test"], BODY)
    data = _wait_for_message(sink)
    assert re.findall(r"queue\.signed id=\S+ by=(\w+)", daisy.logs()) == [signed_by]

    fields = [line for line in data.split(b"\r\n") if line.startswith(b"DKIM-Signature:")]
    algorithms = sorted(f.split(b"a=", 1)[1].split(b";", 1)[0] for f in fields)
    assert algorithms == [b"ed25519-sha256", b"rsa-sha256"]
    assert all(b"c=relaxed/relaxed" in f for f in fields)

    d = dkimpy.DKIM(data)
    get_txt = dkimpy_dns(dns)
    assert d.verify(idx=0, dnsfunc=get_txt)
    assert d.verify(idx=1, dnsfunc=get_txt)

    # The dot-stuffed line arrived intact (the sink undoes the stuffing).
    assert b"\r\n.A line that starts with a dot.\r\n" in data
    # Our own verifier agrees, and refuses the same message once it is changed.
    assert _our_verdicts(data, dns) == ["pass", "pass"]
    assert set(_our_verdicts(data.replace(b"A line.", b"A lime."), dns)) == {"fail"}


def _our_verdicts(data: bytes, dns: DNSServer) -> list[str]:
    resolver = from_config([f"127.0.0.1:{dns.port}"], timeout=2.0)
    return sorted(r.result for r in asyncio.run(verify(data, resolver)))


def test_mail_from_a_domain_without_keys_leaves_unsigned(daisy_dir: Daisy) -> None:
    sink = Sink()
    try:
        configure(daisy_dir, sink.port)
        daisy_dir.start()
        with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
            s.sendmail("demo@example.test", ["friend@remote.test"], BODY)
        data = _wait_for_message(sink)
        assert b"DKIM-Signature:" not in data
        assert b"Subject: signed on the way out" in data
    finally:
        daisy_dir.stop()
        sink.stop()


def test_workers_start_with_the_first_key_when_there_is_nothing_else_to_do(
    daisy_dir: Daisy, sink: Sink
) -> None:
    """No checks and no DKIM key: no worker process idles beside the server. The first
    message to sign after `dkim keygen` starts one (the server signs meanwhile)."""
    configure(daisy_dir, sink.port)
    daisy_dir.set_config("[verify]", "workers", "1")
    daisy_dir.start()
    time.sleep(0.5)
    assert "mailauth.worker.started" not in daisy_dir.logs()
    daisy_dir.cli("dkim", "keygen", "example.test")
    for n in range(2):
        if n:
            wait_for(lambda: "mailauth.worker.ready" in daisy_dir.logs(), 20)
        with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
            s.sendmail("demo@example.test", ["friend@remote.test"], BODY)
        wait_for(lambda n=n: len(sink.messages) > n, 20)
        assert sink.messages[n][2].count(b"DKIM-Signature:") == 2
    signed_by = re.findall(r"queue\.signed id=\S+ by=(\w+)", daisy_dir.logs())
    assert signed_by == ["server", "worker"]
