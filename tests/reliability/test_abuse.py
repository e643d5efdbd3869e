"""Abuse: floods and slow clients, password guessing, and what failures give away."""

from __future__ import annotations

import base64
import poplib
import smtplib
import socket
import ssl
import statistics
import threading
import time

import pytest

from tests.conftest import Daisy
from tests.reliability.conftest import report, scale

PER_IP = 10


def served_within(daisy: Daisy, bound: float) -> float:
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=bound) as s:
        s.sendmail("a@sender.test", ["demo@example.test"], b"Subject: normal\r\n\r\nok\r\n")
    took = time.monotonic() - t0
    assert took < bound, took
    return took


def test_flood_and_slowloris_hit_limits_without_starving_others(daisy_dir: Daisy) -> None:
    daisy_dir.set_config("[limits]", "max_connections_per_ip", str(PER_IP))
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    daisy_dir.start()
    port = daisy_dir.ports["smtp"]

    # Slowloris: connections that dribble a byte now and then and never finish a line.
    slow: list[socket.socket] = []
    greetings: list[bytes] = []
    for _ in range(PER_IP * 3):
        s = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0)
        )
        greetings.append(s.recv(200))
        slow.append(s)
    accepted = sum(g.startswith(b"220") for g in greetings)
    refused = sum(g.startswith(b"421") for g in greetings)
    stop = threading.Event()

    def dribble() -> None:
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(b"E")
                except OSError:
                    pass
            time.sleep(0.5)

    # Flood: connect and drop as fast as possible from another address.
    flood_count = 0

    def flood() -> None:
        nonlocal flood_count
        while not stop.is_set():
            try:
                with socket.create_connection(
                    ("127.0.0.1", port), timeout=5, source_address=("127.0.0.3", 0)
                ) as c:
                    c.recv(100)
            except OSError:
                pass
            flood_count += 1

    threads = [threading.Thread(target=dribble)] + [
        threading.Thread(target=flood) for _ in range(scale(8, 32))
    ]
    for t in threads:
        t.start()
    latencies = []
    try:
        for _ in range(scale(5, 60)):
            latencies.append(served_within(daisy_dir, 3.0))
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for s in slow:
            s.close()
    report(
        "abuse.flood",
        slow_clients=len(slow),
        slow_accepted=accepted,
        slow_refused=refused,
        flood_connections=flood_count,
        normal_max_latency_s=round(max(latencies), 3),
    )
    assert (accepted, refused) == (PER_IP, PER_IP * 2)
    assert "too many connections from your address" in daisy_dir.logs()


def pop3_login(daisy: Daisy, user: str, password: str) -> tuple[bool, bytes, float]:
    pop = poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=60)
    try:
        pop.user(user)
        t0 = time.monotonic()
        try:
            reply = pop.pass_(password)
            ok = True
        except poplib.error_proto as e:
            reply = e.args[0]
            ok = False
        return ok, reply, time.monotonic() - t0
    finally:
        pop.close()


def smtp_auth(
    daisy: Daisy, user: str, password: str, source: str = "127.0.0.1"
) -> tuple[int, bytes, float]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(
        "127.0.0.1", daisy.ports["submission"], timeout=60, source_address=(source, 0)
    ) as s:
        s.starttls(context=ctx)
        s.ehlo("x")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        t0 = time.monotonic()
        code, msg = s.docmd("AUTH", "PLAIN " + token)
        return code, msg, time.monotonic() - t0


@pytest.mark.serial
def test_password_guessing_is_throttled_and_logged(daisy: Daisy) -> None:
    guesses = scale(5, 7)
    pop_times = [pop3_login(daisy, "demo@example.test", f"guess{i}")[2] for i in range(guesses)]
    # The same account from a fresh address over SMTP: the account's count applies.
    shared = smtp_auth(daisy, "demo@example.test", "guess", "127.0.0.6")[2]
    # Many accounts from one address: the address's count applies.
    smtp_times = [
        smtp_auth(daisy, f"user{i}@example.test", "guess", "127.0.0.7")[2] for i in range(guesses)
    ]
    logs = daisy.logs()
    failed_lines = [x for x in logs.splitlines() if "login.failed" in x or "auth.failed" in x]
    report(
        "abuse.guessing",
        pop3_reply_s=[round(t, 2) for t in pop_times],
        smtp_same_account_s=round(shared, 2),
        smtp_many_accounts_s=[round(t, 2) for t in smtp_times],
        logged=len(failed_lines),
    )
    # auth_failure_delay is 0.2 s in tests: each failure doubles the wait, so the
    # fifth guess waits 0.2 * 2**3 = 1.6 s more than the first.
    assert pop_times[-1] - pop_times[0] > 1.2
    assert smtp_times[-1] - smtp_times[0] > 1.2
    assert shared > pop_times[-1] * 0.9
    assert len(failed_lines) == 2 * guesses + 1
    assert all("client=127.0.0." in x for x in failed_lines)


@pytest.mark.serial
def test_unknown_user_and_wrong_password_look_the_same(daisy_dir: Daisy) -> None:
    # No throttling and no fixed delay: only the password check itself is timed.
    daisy_dir.set_config("[limits]", "auth_failure_delay", "0.0")
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    daisy_dir.start()
    samples = scale(20, 200)
    wrong, unknown = [], []
    wrong_replies, unknown_replies = set(), set()
    for i in range(samples):
        _, reply, t = pop3_login(daisy_dir, "demo@example.test", f"bad{i}")
        wrong.append(t)
        wrong_replies.add(reply)
        _, reply, t = pop3_login(daisy_dir, f"ghost{i}@example.test", f"bad{i}")
        unknown.append(t)
        unknown_replies.add(reply)
    s_wrong = smtp_auth(daisy_dir, "demo@example.test", "bad")
    s_unknown = smtp_auth(daisy_dir, "ghost@example.test", "bad")
    med_w, med_u = statistics.median(wrong), statistics.median(unknown)
    report(
        "abuse.timing",
        samples=samples,
        median_wrong_ms=round(med_w * 1000, 1),
        median_unknown_ms=round(med_u * 1000, 1),
    )
    assert wrong_replies == unknown_replies and len(wrong_replies) == 1
    assert s_wrong[:2] == s_unknown[:2]
    assert abs(med_w - med_u) < max(0.25 * max(med_w, med_u), 0.010), (med_w, med_u)
