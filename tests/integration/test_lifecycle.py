"""Server lifecycle: graceful stop on SIGTERM, config and certificate reload on SIGHUP."""

from __future__ import annotations

import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time

from daisymail.tls import make_self_signed
from tests.conftest import Daisy


def _cert_of(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_sigterm_lets_a_message_in_flight_finish(daisy: Daisy) -> None:
    assert daisy.proc is not None
    s = smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=20)
    s.ehlo("x")
    s.mail("a@example.net")
    s.rcpt("demo@example.test")
    code, _ = s.docmd("DATA")
    assert code == 354
    s.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    daisy.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # New connections are no longer accepted...
    refused = False
    try:
        socket.create_connection(("127.0.0.1", daisy.ports["smtp"]), timeout=2).close()
    except OSError:
        refused = True
    assert refused
    # ...but the session in flight completes and its message is stored.
    s.send(b"second half\r\n.\r\n")
    code, msg = s.getreply()
    assert code == 250, msg
    s.close()
    assert daisy.proc.wait(timeout=30) == 0
    (stored,) = (daisy.root / "mail/demo.example.test/new").iterdir()
    assert stored.read_bytes().endswith(b"Subject: in flight\n\nfirst half\nsecond half\n")
    assert "stopped" in daisy.logs()


def test_sighup_reloads_limits_and_certificates(daisy: Daisy) -> None:
    assert daisy.proc is not None
    before = _cert_of(daisy.ports["submissions"])
    old = smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10)
    old.ehlo("x")
    daisy.set_config("[limits]", "max_message_size", "12345")
    make_self_signed(daisy.root / "tls/cert.pem", daisy.root / "tls/key.pem", "renewed.test")
    daisy.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reloaded" not in daisy.logs():
        assert time.monotonic() < deadline, daisy.logs()
        time.sleep(0.05)
    assert _cert_of(daisy.ports["submissions"]) != before
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        s.ehlo("x")
        assert s.esmtp_features["size"] == "12345"
    # The session opened before the reload is still served.
    assert old.noop()[0] == 250
    old.quit()


def test_bad_config_on_sighup_keeps_the_running_settings(daisy: Daisy) -> None:
    assert daisy.proc is not None
    daisy.config.write_text(daisy.config.read_text() + "\nnot valid toml [\n")
    daisy.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload.failed" not in daisy.logs():
        assert time.monotonic() < deadline, daisy.logs()
        time.sleep(0.05)
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        assert s.ehlo("x")[0] == 250


def test_sigterm_says_goodbye_to_idle_sessions_at_once(daisy: Daisy) -> None:
    import poplib

    assert daisy.proc is not None
    idle_smtp = smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=20)
    idle_smtp.ehlo("x")
    idle_pop = poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=20)
    t0 = time.monotonic()
    daisy.proc.send_signal(signal.SIGTERM)
    assert daisy.proc.wait(timeout=15) == 0
    assert time.monotonic() - t0 < 10  # not the 20 s grace period
    assert idle_smtp.getreply()[0] == 421
    assert idle_pop.file.readline().startswith(b"-ERR [SYS/TEMP]")
    assert "smtp.rcpt.refused" not in daisy.logs()


def test_refused_recipients_are_logged_with_the_session(daisy: Daisy) -> None:
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        s.ehlo("x")
        s.mail("a@example.net")
        assert s.rcpt("ghost@example.test")[0] == 550
    deadline = time.monotonic() + 5
    while "smtp.rcpt.refused" not in daisy.logs():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = next(x for x in daisy.logs().splitlines() if "smtp.rcpt.refused" in x)
    assert "rcpt=ghost@example.test" in line and "sid=" in line and "reply=" in line


def test_sighup_as_soon_as_a_port_answers_reloads_instead_of_killing(daisy_dir: Daisy) -> None:
    # A port answers once it is bound, before the server has finished starting; a
    # SIGHUP sent then (by a script that waits for the port) must not kill it.
    for _ in range(3):
        reloads = daisy_dir.logs().count(" reloaded config=")
        logf = open(daisy_dir.log, "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "daisymail", "--config", str(daisy_dir.config), "serve"],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, daisy_dir.logs()
                try:
                    socket.create_connection(("127.0.0.1", daisy_dir.ports["smtp"]), 1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, daisy_dir.logs()
                    time.sleep(0.002)
            proc.send_signal(signal.SIGHUP)
            with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
                assert s.ehlo("x")[0] == 250
            deadline = time.monotonic() + 10
            while daisy_dir.logs().count(" reloaded config=") == reloads:
                assert time.monotonic() < deadline, daisy_dir.logs()
                time.sleep(0.05)
            assert proc.poll() is None, daisy_dir.logs()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            logf.close()
