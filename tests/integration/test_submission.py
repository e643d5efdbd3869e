"""Submission on 587 (STARTTLS) and 465 (implicit TLS), and `daisymail sendmail`."""

from __future__ import annotations

import re
import smtplib
import ssl
import subprocess
import sys

import pytest

from tests.conftest import Daisy, require_tool
from tests.integration.smtp_sink import Sink
from tests.integration.test_queue_delivery import configure
from tests.integration.test_smtp_server import maildir_messages, wait_for

CTX = ssl._create_unverified_context()


@pytest.fixture
def sub(daisy_dir: Daisy, sink: Sink) -> Daisy:
    configure(daisy_dir, sink.port)
    daisy_dir.add_user("other@example.test", "other-pw")
    daisy_dir.cli("alias", "add", "sales@example.test", "demo.example.test")
    daisy_dir.start()
    return daisy_dir


def submit(daisy: Daisy) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", daisy.ports["submission"], timeout=10)
    s.starttls(context=CTX)
    s.login("demo@example.test", "demo-pw")
    return s


def test_submission_delivers_remote_and_local_with_date_and_message_id(
    sub: Daisy, sink: Sink
) -> None:
    with submit(sub) as s:
        s.sendmail(
            "demo@example.test",
            ["far@remote.test", "other@example.test"],
            b"From: Demo <demo@example.test>\r\nSubject: hi\r\n\r\nbody\r\n",
        )
    wait_for(lambda: len(sink.messages) == 1)
    (local,) = maildir_messages(sub, "other.example.test")
    assert b"with ESMTPSA id" in local
    assert re.search(rb"\nDate: .+\nMessage-ID: <[^>]+@mail\.daisy\.test>\n\nbody\n$", local)
    remote_data = sink.messages[0][2]
    assert b"From: Demo <demo@example.test>\r\nSubject: hi\r\nDate: " in remote_data


def test_implicit_tls_and_send_as_alias(sub: Daisy, sink: Sink) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", sub.ports["submissions"], timeout=10, context=CTX) as s:
        s.login("demo@example.test", "demo-pw")
        s.sendmail(
            "sales@example.test", ["far@remote.test"], b"From: sales@example.test\r\n\r\nx\r\n"
        )
    wait_for(lambda: len(sink.messages) == 1)
    assert sink.messages[0][0] == "sales@example.test"


def test_mail_before_auth_wrong_password_and_someone_else(sub: Daisy) -> None:
    with smtplib.SMTP("127.0.0.1", sub.ports["submission"], timeout=10) as s:
        s.starttls(context=CTX)
        s.ehlo("c.test")
        assert s.mail("demo@example.test")[0] == 530
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login("demo@example.test", "wrong")
        assert exc.value.smtp_code == 535
    with submit(sub) as s:
        code, text = s.mail("other@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        assert s.mail("")[0] == 553
        s.rset()
        s.mail("demo@example.test")
        s.rcpt("far@remote.test")
        code, text = s.data(b"From: other@example.test\r\n\r\nforged\r\n")
        assert (code, text[:5]) == (553, b"5.7.1")
    assert maildir_messages(sub, "other.example.test") == []


def test_auth_not_offered_before_tls_from_non_loopback(sub: Daisy) -> None:
    with smtplib.SMTP(
        "127.0.0.1", sub.ports["submission"], timeout=10, source_address=("127.0.0.2", 0)
    ) as s:
        s.ehlo("c.test")
        assert not s.has_extn("auth")
        code, _ = s.docmd("AUTH", "PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AGRlbW8tcHc=")
        assert code == 538  # RFC 4954: encryption required
        s.starttls(context=CTX)
        s.ehlo("c.test")
        assert s.has_extn("auth")
        s.login("demo@example.test", "demo-pw")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_submission(sub: Daisy, sink: Sink, mech: str) -> None:
    swaks = require_tool("swaks")
    res = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{sub.ports['submission']}", "--tls",
         "--auth", mech, "--auth-user", "demo@example.test", "--auth-password", "demo-pw",
         "--from", "demo@example.test", "--to", "far@remote.test",
         "--header", "From: demo@example.test"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for(lambda: len(sink.messages) == 1)


def test_msmtp_submission(sub: Daisy, sink: Sink) -> None:
    msmtp = require_tool("msmtp")
    res = subprocess.run(
        [msmtp, "--host=127.0.0.1", f"--port={sub.ports['submission']}", "--tls=on",
         "--tls-starttls=on", "--tls-certcheck=off", "--auth=on",
         "--user=demo@example.test", "--passwordeval=echo demo-pw",
         "--from=demo@example.test", "far@remote.test", "other@example.test"],
        input=b"From: demo@example.test\nSubject: msmtp\n\nhi\n",
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    wait_for(lambda: len(sink.messages) == 1)
    assert len(maildir_messages(sub, "other.example.test")) == 1


# SPEC §5.4: G = {acme.com, mail.hosting.test}, $j = mail.hosting.test.
G_VECTORS = [
    ("G1", "johnacme", "john@acme.com"),
    ("G1", "JohnAcme", "john@acme.com"),
    ("G2", "johnacme@mail.hosting.test", "johnacme@acme.com"),
    ("G3", "janeacme@mail.hosting.test", "jane@acme.com"),
    ("G3", "janeacme", "jane@acme.com"),
    ("G4", "sam", "samuel@mail.hosting.test"),
    ("G5", "other@mail.hosting.test", "other@acme.com"),
]


def test_genericstable_vectors_in_delivered_headers(daisy_dir: Daisy) -> None:
    text = daisy_dir.config.read_text().replace(
        'hostname = "mail.daisy.test"', 'hostname = "mail.hosting.test"'
    )
    daisy_dir.config.write_text(text)
    for domain in ("acme.com", "mail.hosting.test", "example.test"):
        daisy_dir.cli("domain", "add", domain)
    daisy_dir.add_user("johnacme@mail.hosting.test", "pw")
    box = "johnacme.mail.hosting.test"
    for addr in ("janeacme", "sam", "other"):
        daisy_dir.cli("alias", "add", f"{addr}@mail.hosting.test", box)
    for key, value in [
        ("johnacme", "john@acme.com"),
        ("janeacme@mail.hosting.test", "jane@acme.com"),
        ("sam", "samuel"),
        ("@mail.hosting.test", "%1@acme.com"),
    ]:
        daisy_dir.cli("sender", "add", key, value)
    daisy_dir.add_user("rcpt@example.test", "pw")
    daisy_dir.start()
    with smtplib.SMTP("127.0.0.1", daisy_dir.ports["submission"], timeout=10) as s:
        s.starttls(context=CTX)
        s.login("johnacme@mail.hosting.test", "pw")
        for name, sender, _ in G_VECTORS:
            msg = f"From: {sender}\r\nReply-To: Name <{sender}>\r\nSubject: {name}\r\n\r\n."
            s.sendmail("johnacme@mail.hosting.test", ["rcpt@example.test"], msg.encode())
    stored = maildir_messages(daisy_dir, "rcpt.example.test")
    assert len(stored) == len(G_VECTORS)
    by_order = sorted(stored, key=lambda m: G_VECTORS.index(_vector(m)))
    for raw, (_name, _sender, expected) in zip(by_order, G_VECTORS, strict=True):
        assert f"\nFrom: {expected}\nReply-To: Name <{expected}>\n".encode() in raw
        assert raw.startswith(b"Return-Path: <johnacme@mail.hosting.test>\n")


def _vector(raw: bytes) -> tuple[str, str, str]:
    subject = re.search(rb"Subject: (G\d)", raw)
    frm = re.search(rb"From: (\S+)", raw)
    assert subject and frm
    return next(v for v in G_VECTORS if v[0].encode() == subject[1] and v[2].encode() == frm[1])


def test_masquerade_envelope(daisy_dir: Daisy, sink: Sink) -> None:
    configure(daisy_dir, sink.port)
    daisy_dir.set_config("[rewrite]", "masquerade_envelope", "true")
    daisy_dir.cli("domain", "add", "acme.com")
    daisy_dir.cli("sender", "add", "demo@example.test", "d@acme.com")
    daisy_dir.start()
    with submit(daisy_dir) as s:
        s.sendmail(
            "demo@example.test", ["far@remote.test"], b"From: demo@example.test\r\n\r\nx\r\n"
        )
    wait_for(lambda: len(sink.messages) == 1)
    sender, _rcpts, data = sink.messages[0]
    assert sender == "d@acme.com"
    assert b"\r\nFrom: d@acme.com\r\n" in b"\r\n" + data


def sendmail(daisy: Daisy, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "daisymail", "--config", str(daisy.config), "sendmail", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)


def test_sendmail_t_delivers_locally_and_remotely(daisy_dir: Daisy, sink: Sink) -> None:
    configure(daisy_dir, sink.port)
    msg = (
        b"To: demo@example.test, Far <far@remote.test>\n"
        b"Bcc: hidden@remote.test\nSubject: cron\n\nline\n.\nnot read\n"
    )
    res = sendmail(daisy_dir, "-t", "-f", "cron@example.test", stdin=msg)
    assert res.returncode == 0, res.stderr
    (local,) = maildir_messages(daisy_dir, "demo.example.test")
    assert local.startswith(b"Return-Path: <cron@example.test>\nReceived: by mail.daisy.test")
    assert b"Bcc" not in local and b"not read" not in local
    assert b"\nFrom: cron@example.test\n" in local and b"\nMessage-ID: <" in local
    daisy_dir.start()  # the queued copy waits for the server
    wait_for(lambda: len(sink.messages) == 1)
    sender, rcpts, data = sink.messages[0]
    assert (sender, sorted(rcpts)) == (
        "cron@example.test",
        ["far@remote.test", "hidden@remote.test"],
    )
    assert b"Bcc" not in data


def test_sendmail_oi_and_unknown_recipient(daisy_dir: Daisy) -> None:
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    res = sendmail(daisy_dir, "-oi", "demo@example.test", stdin=b"Subject: s\n\na\n.\nb\n")
    assert res.returncode == 0, res.stderr
    (local,) = maildir_messages(daisy_dir, "demo.example.test")
    assert local.endswith(b"\n\na\n.\nb\n")
    res = sendmail(daisy_dir, "nobody@example.test", stdin=b"Subject: s\n\nx\n")
    assert res.returncode == 67
    assert b"User unknown" in res.stderr
