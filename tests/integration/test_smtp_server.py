"""The SMTP server on real sockets: smtplib, swaks and raw dialogues."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import subprocess
import threading
import time

from daisymail.directory.model import AddressRule, Domain, Mailbox
from daisymail.directory.sql import SqlDirectory
from tests.conftest import Daisy, require_tool

MSG = b"Subject: hello\r\nFrom: a@example.net\r\n\r\nbody line\r\n..leading dot\r\n"


def maildir_messages(daisy: Daisy, box: str) -> list[bytes]:
    new = daisy.root / "mail" / box / "new"
    if not new.exists():
        return []
    return [p.read_bytes() for p in sorted(new.iterdir())]


def wait_for(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def smtp(daisy: Daisy, service: str = "smtp", source: str | None = None) -> smtplib.SMTP:
    return smtplib.SMTP(
        "127.0.0.1",
        daisy.ports[service],
        timeout=10,
        source_address=(source, 0) if source else None,
    )


def test_plain_delivery_to_maildir_is_exact(daisy: Daisy) -> None:
    with smtp(daisy) as s:
        s.ehlo("client.test")
        assert s.has_extn("pipelining") and s.has_extn("chunking") and s.has_extn("size")
        assert s.has_extn("starttls") and s.has_extn("enhancedstatuscodes")
        s.sendmail("sender@example.net", ["demo@example.test"], MSG)
    (stored,) = maildir_messages(daisy, "demo.example.test")
    head, _, rest = stored.partition(b"Subject: hello\n")
    assert head.startswith(
        b"Return-Path: <sender@example.net>\nReceived: from client.test ([127.0.0.1])"
    )
    assert b"for <demo@example.test>;" in head
    assert rest == b"From: a@example.net\n\nbody line\n..leading dot\n"  # smtplib dot-stuffs
    assert "smtp.message.accepted" in daisy.logs()


def test_starttls_then_delivery(daisy: Daisy) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtp(daisy) as s:
        s.starttls(context=ctx)
        s.ehlo("tls.test")
        assert not s.has_extn("starttls")
        s.sendmail("", ["demo@example.test"], MSG)
    (stored,) = maildir_messages(daisy, "demo.example.test")
    assert b"with ESMTPS" in stored and b"using TLSv1." in stored
    assert stored.startswith(b"Return-Path: <>\n")


def test_unknown_user_and_relay_are_refused(daisy: Daisy) -> None:
    with smtp(daisy, source="127.0.0.2") as s:
        s.ehlo("x")
        s.mail("a@example.net")
        code, msg = s.rcpt("nobody@example.test")
        assert code == 550 and msg.startswith(b"5.1.1")
        code, msg = s.rcpt("victim@remote.test")
        assert (code, msg) == (550, b"5.7.1 <victim@remote.test>... Relaying denied")
        for trick in (
            "victim%remote.test@example.test",
            "remote.test!victim@example.test",
            "@example.test:victim@remote.test",
            '"victim@remote.test"@example.test',
        ):
            code, _ = s.rcpt(trick)
            assert code >= 500, trick


def test_size_limit_and_recipient_limit(daisy_dir: Daisy) -> None:
    daisy_dir.set_config("[limits]", "max_message_size", "2000")
    daisy_dir.set_config("[limits]", "max_recipients", "2")
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "pw")
    daisy_dir.start()
    with smtp(daisy_dir) as s:
        s.ehlo("x")
        assert s.esmtp_features["size"] == "2000"
        code, _ = s.mail("a@example.net", ["SIZE=5000"])
        assert code == 552
        s.rset()
        s.mail("a@example.net")
        assert s.rcpt("demo@example.test")[0] == 250
        assert s.rcpt("demo@example.test")[0] == 250
        assert s.rcpt("demo@example.test")[0] == 452
        code, _ = s.data(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")
        assert code == 552
        assert maildir_messages(daisy_dir, "demo.example.test") == []
        s.rset()
        s.sendmail("a@example.net", ["demo@example.test"], b"Subject: small\r\n\r\nok\r\n")
    assert len(maildir_messages(daisy_dir, "demo.example.test")) == 1
    assert list((daisy_dir.root / "spool").iterdir()) == []


def raw_dialogue(daisy: Daisy, chunks: list[bytes], wait: float = 0.3) -> bytes:
    with socket.create_connection(("127.0.0.1", daisy.ports["smtp"]), timeout=10) as sock:
        out = sock.recv(4096)
        try:
            for c in chunks:
                sock.sendall(c)
                time.sleep(wait)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close first (421)
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            out += data
    return out


def test_bdat_and_smuggling_attempt(daisy: Daisy) -> None:
    body = b"Subject: b\r\n\r\nline\r\n"
    smuggle = (
        b"MAIL FROM:<a@example.net>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
        b"Subject: s\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<demo@example.test>"
        b"\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n"
    )
    out = raw_dialogue(
        daisy,
        [
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.net>\r\nRCPT TO:<demo@example.test>\r\n",
            b"BDAT %d LAST\r\n" % len(body) + body,
            smuggle,
            b"QUIT\r\n",
        ],
    )
    replies = re.findall(rb"^(\d{3}) ", out, re.M)
    assert replies.count(b"250") >= 5 and b"221" in replies
    msgs = maildir_messages(daisy, "demo.example.test")
    assert len(msgs) == 2  # the BDAT message and one (not two) DATA message
    assert msgs[0].endswith(b"Subject: b\n\nline\n")
    assert b"Subject: smuggled" in msgs[1] and b"first\n.\nMAIL FROM:<evil@example.net>" in msgs[1]


def test_bad_commands_and_error_limit(daisy: Daisy) -> None:
    out = raw_dialogue(
        daisy,
        [
            b"EHLO x\r\n",
            b"FOO\r\n",
            b"MAIL bogus\r\n",
            b"RCPT TO:<a@b>\r\n",
            b"NOOP\nMORE\r\n",
            b"VRFY x\r\n",
            b"QUIT\r\n",
        ],
        wait=0.1,
    )
    assert b"500 5.5.1" in out or b"500 5.5.2" in out
    assert b"503 5.5.1" in out and b"252 " in out
    flood = [b"EHLO x\r\n"] + [b"BOGUS\r\n"] * 30
    out = raw_dialogue(daisy, flood, wait=0.01)
    assert b"421 4.7.0" in out


def test_idle_timeout(daisy_dir: Daisy) -> None:
    daisy_dir.set_config("[limits]", "command_timeout", "1")
    daisy_dir.start()
    with socket.create_connection(("127.0.0.1", daisy_dir.ports["smtp"]), timeout=10) as sock:
        data = b""
        t0 = time.monotonic()
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert b"421 4.4.2" in data
        assert time.monotonic() - t0 < 8


def test_swaks_plain_pipelining_and_tls(daisy: Daisy) -> None:
    swaks = require_tool("swaks")
    base = [
        swaks,
        "--server",
        f"127.0.0.1:{daisy.ports['smtp']}",
        "--to",
        "demo@example.test",
        "--from",
        "s@example.net",
        "--helo",
        "swaks.test",
    ]
    for extra in ([], ["--pipeline"], ["--tls"]):
        res = subprocess.run(base + extra, capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr
    msgs = maildir_messages(daisy, "demo.example.test")
    assert len(msgs) == 3
    assert sum(b"with ESMTPS" in m for m in msgs) == 1


def test_8bit_and_smtputf8(daisy: Daisy) -> None:
    with smtp(daisy) as s:
        s.ehlo("x")
        assert s.has_extn("8bitmime") and s.has_extn("smtputf8")
        body = "Subject: caf\u00e9\r\n\r\nna\u00efve \u2713\r\n".encode()
        s.sendmail("s@example.net", ["demo@example.test"], body, mail_options=["BODY=8BITMIME"])
        s.sendmail(
            "j\u00f6rg@example.net",
            ["demo@example.test"],
            body,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    msgs = maildir_messages(daisy, "demo.example.test")
    assert len(msgs) == 2
    assert msgs[0].endswith("na\u00efve \u2713\n".encode())
    assert msgs[1].startswith("Return-Path: <j\u00f6rg@example.net>\n".encode())
    assert b"with UTF8SMTP" in msgs[1]


def _directory(daisy: Daisy) -> SqlDirectory:
    return SqlDirectory(f"sqlite:///{daisy.root / 'daisymail.db'}")


def test_mbox_delivery_is_procmail_exact(daisy_dir: Daisy) -> None:
    d = _directory(daisy_dir)
    d.add_domain(Domain(name="acme.com"))
    d.add_mailbox(Mailbox(name="nobody", format="mbox"))
    d.add_address_rule(AddressRule(pattern="nobody@acme.com", target="nobody"))
    d.close()
    daisy_dir.start()
    p1 = (
        b"Subject: one\nFrom: a@example.com\n\nbody line\nFrom here is a line\n>From quoted\n"
        b"From: not header\nFromage\n.dot line\n"
    )
    p2 = b"Subject: two\n\nno trailing newline"
    with smtp(daisy_dir) as s:
        for m in (p1, p2):
            wire = m.replace(b"\n", b"\r\n")
            s.sendmail("sender@example.com", ["nobody@acme.com"], wire)
    data = (daisy_dir.root / "mail" / "nobody").read_bytes()
    date = rb"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}"
    trace = rb"Return-Path: <sender@example.com>\nReceived: [^\n]*\n(?:\t[^\n]*\n)+"
    pattern = (
        rb"From sender@example\.com  "
        + date
        + rb"\n"
        + trace
        + re.escape(
            b"Subject: one\nFrom: a@example.com\n\nbody line\n>From here is a line\n"
            b">From quoted\nFrom: not header\nFromage\n.dot line\n\n"
        )
        + rb"From sender@example\.com  "
        + date
        + rb"\n"
        + trace
        # SMTP always ends a message with CRLF, so procmail's blank separator follows.
        + re.escape(b"Subject: two\n\nno trailing newline\n\n")
    )
    assert re.fullmatch(pattern, data), data


def test_concurrent_sessions_into_one_mbox(daisy_dir: Daisy) -> None:
    d = _directory(daisy_dir)
    d.add_domain(Domain(name="acme.com"))
    d.add_mailbox(Mailbox(name="shared", format="mbox"))
    d.add_address_rule(AddressRule(pattern="shared@acme.com", target="shared"))
    d.close()
    daisy_dir.start()
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with smtp(daisy_dir) as s:
                for i in range(5):
                    body = (
                        f"Subject: m{n}-{i}\r\n\r\n".encode() + (f"line {n}-{i}\r\n" * 200).encode()
                    )
                    s.sendmail("x@example.net", ["shared@acme.com"], body)
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    data = (daisy_dir.root / "mail" / "shared").read_text()
    parts = re.split(r"^From x@example\.net  .*\n", data, flags=re.M)[1:]
    assert len(parts) == 50
    for part in parts:
        subject = re.search(r"^Subject: m(\d+-\d+)$", part, re.M)
        assert subject is not None
        tag = subject.group(1)
        assert part.count(f"line {tag}\n") == 200 and part.count("line ") == 200


def test_spec_virtusertable_vectors_at_rcpt(daisy_dir: Daisy) -> None:
    """SPEC §5.3 V1–V29, answered at RCPT time from a non-relay client."""
    from tests.spec_data import load_virtusertable_into

    d = _directory(daisy_dir)
    load_virtusertable_into(d)
    d.close()
    daisy_dir.start()
    vectors = [
        ("john@acme.com", 250, None),
        ("John@ACME.Com", 250, None),
        ("joe@acme.com", 550, "5.0.0 <joe@acme.com>... No such user here"),
        ("jax@acme.com", 550, "5.7.0 <jax@acme.com>... Address invalid"),
        ("nocode@acme.com", 553, "5.3.0 <nocode@acme.com>... User unknown here"),
        ("tempfail@acme.com", 450, "4.2.2 <tempfail@acme.com>... mailbox full"),
        ("quoted@acme.com", 550, "5.1.1 <quoted@acme.com>... Sorry, no mailbox here by that name"),
        ("nobody@acme.com", 250, None),
        ("sales+foo@acme.com", 250, None),
        ("bob+spam@acme.com", 250, None),
        ("loop@example.org", 554, "5.0.0 rewrite: excessive recursion (max 50), ruleset canonify"),
        ("CaseTest@case.test", 250, None),
    ]
    with smtp(daisy_dir, source="127.0.0.2") as s:
        s.ehlo("x")
        s.mail("a@example.net")
        for addr, code, text in vectors:
            got_code, got = s.rcpt(addr)
            assert got_code == code, (addr, got)
            if text is not None:
                assert got.decode() == text, addr


def _smtp_when_free(daisy: Daisy) -> smtplib.SMTP:
    """Connect, waiting for slots held by connections that are closing (e.g. the
    start-up port probes) to be released by the server."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return smtp(daisy)
        except smtplib.SMTPConnectError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_per_ip_connection_limit(daisy_dir: Daisy) -> None:
    daisy_dir.set_config("[limits]", "max_connections_per_ip", "3")
    daisy_dir.start()
    held = [_smtp_when_free(daisy_dir) for _ in range(3)]
    with socket.create_connection(("127.0.0.1", daisy_dir.ports["smtp"]), timeout=10) as extra:
        assert extra.recv(1024).startswith(b"421 4.7.0")
    # Another address is not affected, and a freed slot is usable again.
    with smtp(daisy_dir, source="127.0.0.2") as other:
        assert other.noop()[0] == 250
    held.pop().quit()
    again = _smtp_when_free(daisy_dir)
    assert again.noop()[0] == 250
    again.quit()
    for s in held:
        s.quit()
