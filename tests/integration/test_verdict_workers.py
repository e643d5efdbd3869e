"""Verdict workers ([verify] workers): port 25 mail judged in child processes, the
server taking over when none is ready or one dies, and no worker outliving the server."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from daisymail.mailauth.dkim import signatures
from daisymail.mailauth.keystore import KeyStore
from tests.conftest import Daisy, alive
from tests.dns_server import DNSServer
from tests.integration import test_inbound_auth
from tests.integration.test_smtp_server import maildir_messages, smtp, wait_for

# The sender's keys and DNS zone of the port 25 tests (example.org: SPF, DKIM, p=reject).
keys = test_inbound_auth.keys
dns_server = test_inbound_auth.dns_server

BOX = "demo.example.test"


def start(daisy: Daisy, dns: DNSServer, workers: int, dns_timeout: float = 2.0) -> None:
    daisy.use_dns(dns.address, dns_timeout)
    daisy.check_inbound()
    daisy.set_config("[verify]", "workers", str(workers))
    daisy.cli("domain", "add", "example.test")
    daisy.add_user("demo@example.test", "demo-pw")
    daisy.start()


def signed(keys: KeyStore, n: int) -> bytes:
    forged = b"Authentication-Results: mail.daisy.test; dmarc=pass header.from=example.org\r\n"
    msg = (
        b"From: Alice <alice@example.org>\r\nTo: demo@example.test\r\n"
        + f"Subject: m{n}\r\nMessage-ID: <m{n}@example.org>\r\n".encode()
        + forged
        + b"\r\nHello.\r\n"
    )
    return signatures(msg, keys.signing_keys("example.org")) + msg


def send(daisy: Daisy, msg: bytes, source: str = "127.0.0.2") -> None:
    with smtp(daisy, source=source) as s:
        s.ehlo("out.example.org")
        s.sendmail("alice@example.org", ["demo@example.test"], msg)


def verdict_lines(daisy: Daisy) -> list[str]:
    """Each verdict: in the accepted message's line, or a refusal's smtp.verdict line."""
    return [
        line
        for line in daisy.logs().splitlines()
        if "smtp.verdict" in line or ("smtp.message.accepted" in line and " spf=" in line)
    ]


def worker_pids(daisy: Daisy, what: str) -> list[int]:
    return [int(p) for p in re.findall(rf"mailauth\.worker\.{what} pid=(\d+)", daisy.logs())]


def judged_by_worker(daisy: Daisy, keys: KeyStore, n: int) -> None:
    """Send message n once a worker is ready; it must be judged there, alike."""
    send(daisy, signed(keys, n))
    line = verdict_lines(daisy)[-1]
    assert "by=worker" in line and "spf=pass" in line and "dmarc=pass:example.org" in line
    stored = [m for m in maildir_messages(daisy, BOX) if f"Subject: m{n}\n".encode() in m]
    (msg,) = stored
    head = msg.split(b"\n\n", 1)[0]
    assert head.count(b"Authentication-Results: mail.daisy.test") == 1  # forged one removed
    assert b"\tdkim=pass header.d=example.org header.s=r1" in head


def until_replaced(daisy: Daisy, keys: KeyStore, n: int) -> int:
    """Send messages n+1, n+2... (each judged and accepted by the server meanwhile)
    until a second worker has said it is ready; the last message's number."""
    deadline = time.monotonic() + 20
    while len(worker_pids(daisy, "ready")) < 2:
        assert time.monotonic() < deadline, "no new worker"
        n += 1
        send(daisy, signed(keys, n))
        assert "action=accept" in verdict_lines(daisy)[-1]
        time.sleep(0.2)
    return n


def test_workers_judge_and_the_server_takes_over(
    daisy_dir: Daisy, dns_server: DNSServer, keys: KeyStore
) -> None:
    start(daisy_dir, dns_server, workers=1)

    # The worker starts with the server.
    wait_for(lambda: worker_pids(daisy_dir, "ready") != [], timeout=20)
    (pid,) = worker_pids(daisy_dir, "ready")
    judged_by_worker(daisy_dir, keys, 1)

    # A refusal decided in the worker is the server's reply.
    with smtp(daisy_dir, source="127.0.0.3") as s:
        s.ehlo("evil.example.net")
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(
                "alice@example.org", ["demo@example.test"], b"From: a@example.org\r\n\r\nx\r\n"
            )
    assert e.value.smtp_code == 550
    assert "by=worker" in verdict_lines(daisy_dir)[-1]

    # The worker dies: the server judges the next messages itself, then starts another.
    before = len(verdict_lines(daisy_dir))
    os.kill(pid, signal.SIGKILL)
    n = until_replaced(daisy_dir, keys, 1)
    # (the last one may have gone to the new worker, if it got ready meanwhile)
    assert "by=server" in verdict_lines(daisy_dir)[before]
    new_pid = worker_pids(daisy_dir, "started")[-1]
    n += 1
    judged_by_worker(daisy_dir, keys, n)
    assert len(maildir_messages(daisy_dir, BOX)) == n  # m1..mn; the refused one is not there

    # A reload reaches the running worker: the next verdict has the new authserv-id.
    daisy_dir.set_config("[verify]", "authserv_id", '"mx.reloaded.test"')
    assert daisy_dir.proc is not None
    daisy_dir.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload" in daisy_dir.logs())
    deadline = time.monotonic() + 10
    while "Authentication-Results: mx.reloaded.test" not in "".join(
        m.decode(errors="replace") for m in maildir_messages(daisy_dir, BOX)
    ):
        assert time.monotonic() < deadline, "the reload never reached the worker"
        n += 1
        send(daisy_dir, signed(keys, n))
    assert "by=worker" in verdict_lines(daisy_dir)[-1] and alive(new_pid)

    # Stopping the server ends its worker.
    daisy_dir.stop()
    assert not alive(new_pid)


def test_a_stuck_worker_is_replaced(
    daisy_dir: Daisy, dns_server: DNSServer, keys: KeyStore
) -> None:
    """A worker that stops answering (here: stopped) holds a message up for at most
    20 DNS timeouts (0.1 s here: 2 s); the server judges it, kills the worker and
    starts another."""
    start(daisy_dir, dns_server, workers=1, dns_timeout=0.1)
    wait_for(lambda: worker_pids(daisy_dir, "ready") != [], timeout=20)
    (pid,) = worker_pids(daisy_dir, "ready")
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    send(daisy_dir, signed(keys, 1))
    assert 1.5 < time.monotonic() - t0 < 10
    assert "mailauth.worker.stuck" in daisy_dir.logs()
    line = verdict_lines(daisy_dir)[-1]
    assert "by=server" in line and "dmarc=pass" in line
    wait_for(lambda: not alive(pid))
    n = until_replaced(daisy_dir, keys, 1)
    judged_by_worker(daisy_dir, keys, n + 1)


def test_no_workers(daisy_dir: Daisy, dns_server: DNSServer, keys: KeyStore) -> None:
    start(daisy_dir, dns_server, workers=0)
    for n in (1, 2):
        send(daisy_dir, signed(keys, n))
    lines = verdict_lines(daisy_dir)
    assert len(lines) == 2 and all("by=server" in x and "dmarc=pass" in x for x in lines)
    assert "mailauth.worker" not in daisy_dir.logs()
    assert len(maildir_messages(daisy_dir, BOX)) == 2


def test_checks_at_once_each_get_their_own_verdict(
    daisy_dir: Daisy, dns_server: DNSServer, keys: KeyStore
) -> None:
    """Many messages ending at once reach one worker together (the requests of one
    turn of the event loop go out in one write, the replies come back together): each
    message still carries its own verdict. Odd ones were altered after signing."""
    start(daisy_dir, dns_server, workers=1)
    wait_for(lambda: worker_pids(daisy_dir, "ready") != [], timeout=20)

    def one(n: int) -> None:
        msg = signed(keys, n)
        send(daisy_dir, msg.replace(b"Hello.", b"Hullo.") if n % 2 else msg)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(32)))
    lines = verdict_lines(daisy_dir)
    assert len(lines) == 32 and all("by=worker" in x for x in lines)
    stored = maildir_messages(daisy_dir, BOX)
    assert len(stored) == 32
    for msg in stored:
        n = int(re.search(rb"Subject: m(\d+)\n", msg)[1])  # type: ignore[index]
        head = msg.split(b"\n\n", 1)[0]
        want = b"dkim=fail" if n % 2 else b"dkim=pass"
        assert want in head and b"spf=pass" in head and b"dmarc=pass" in head, (n, head)
