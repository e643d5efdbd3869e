"""Outbound delivery through the queue, on real sockets, to an SMTP sink on loopback."""

from __future__ import annotations

import email
import json
import smtplib
import time
from email.message import Message

from tests.conftest import Daisy, free_port
from tests.integration.smtp_sink import Sink
from tests.integration.test_smtp_server import maildir_messages, wait_for

MSG = b"Subject: out\r\nFrom: demo@example.test\r\nMessage-ID: <m1@example.test>\r\n\r\nhello\r\n"


def configure(daisy: Daisy, port: int, *, lifetime: int = 3600) -> None:
    text = daisy.config.read_text()
    text = text.replace("[queue.routes]", f'[queue.routes]\n"remote.test" = "127.0.0.1:{port}"', 1)
    daisy.config.write_text(text)
    daisy.set_config("[queue]", "retry_schedule", "[1]")
    daisy.set_config("[queue]", "lifetime", str(lifetime))
    daisy.cli("domain", "add", "example.test")
    daisy.add_user("demo@example.test", "demo-pw")


def queued(daisy: Daisy) -> list[dict[str, object]]:
    return json.loads(daisy.cli("queue", "list", "--json").stdout)  # type: ignore[no-any-return]


def send(daisy: Daisy, rcpt: str, msg: bytes = MSG, sender: str = "demo@example.test") -> None:
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        s.sendmail(sender, [rcpt], msg)


def dsn_parts(raw: bytes) -> tuple[Message, list[Message]]:
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    status = parts[1].get_payload()
    assert isinstance(status, list)
    return msg, status


def test_forward_is_delivered_once(daisy_dir: Daisy, sink: Sink) -> None:
    configure(daisy_dir, sink.port)
    daisy_dir.cli("alias", "add", "fwd@example.test", "someone@remote.test")
    daisy_dir.start()
    send(daisy_dir, "fwd@example.test", sender="friend@elsewhere.test")
    wait_for(lambda: len(sink.messages) == 1)
    wait_for(lambda: queued(daisy_dir) == [])
    time.sleep(2)
    ((sender, rcpts, data),) = sink.messages
    # the forward leaves under an SRS address of the forwarding domain ([srs] secret)
    assert sender.startswith("SRS0=") and sender.endswith("=elsewhere.test=friend@example.test")
    assert rcpts == ["someone@remote.test"]
    assert data.startswith(b"Received: from ")
    assert data.endswith(b"\r\n\r\nhello\r\n")
    assert "ORCPT=rfc822;fwd@example.test" in sink.rcpt_lines[0]
    assert not data.startswith(b"Return-Path")


def test_peer_down_then_up_is_retried(daisy_dir: Daisy) -> None:
    port = free_port()
    configure(daisy_dir, port)
    daisy_dir.start()
    send(daisy_dir, "x@remote.test")
    wait_for(lambda: any(m["attempts"] for m in queued(daisy_dir)))
    (entry,) = queued(daisy_dir)
    assert entry["recipients"][0]["state"] == "pending"  # type: ignore[index]
    assert "cannot connect" in entry["recipients"][0]["diagnostic"]  # type: ignore[index]
    sink = Sink(port)
    try:
        wait_for(lambda: len(sink.messages) == 1, timeout=10)
        wait_for(lambda: queued(daisy_dir) == [])
    finally:
        sink.stop()


def test_permanent_failure_bounces_to_local_sender(daisy_dir: Daisy) -> None:
    sink = Sink(rcpt_reply=b"550 5.1.1 no such user")
    try:
        configure(daisy_dir, sink.port)
        daisy_dir.start()
        send(daisy_dir, "nobody@remote.test")
        wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 1)
        wait_for(lambda: queued(daisy_dir) == [])
    finally:
        sink.stop()
    (raw,) = maildir_messages(daisy_dir, "demo.example.test")
    assert raw.startswith(b"Return-Path: <>\n")
    msg, (per_msg, per_rcpt) = dsn_parts(raw)
    assert msg["To"] == "<demo@example.test>"
    assert per_msg["Reporting-MTA"] == "dns; mail.daisy.test"
    assert per_rcpt["Final-Recipient"] == "rfc822; nobody@remote.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert b"Message-ID: <m1@example.test>" in raw


def test_temporary_failure_until_expiry_bounces(daisy_dir: Daisy) -> None:
    sink = Sink(rcpt_reply=b"450 4.2.1 try later")
    try:
        configure(daisy_dir, sink.port, lifetime=3)
        daisy_dir.start()
        send(daisy_dir, "busy@remote.test")
        wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 1, timeout=15)
        assert len(sink.rcpt_lines) >= 2  # retried before giving up
    finally:
        sink.stop()
    _msg, (_per_msg, per_rcpt) = dsn_parts(maildir_messages(daisy_dir, "demo.example.test")[0])
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "4.4.7"
    assert "450 4.2.1 try later" in per_rcpt["Diagnostic-Code"]
    wait_for(lambda: queued(daisy_dir) == [])


def test_no_bounce_for_null_sender_or_notify_never(daisy_dir: Daisy) -> None:
    sink = Sink(rcpt_reply=b"550 5.1.1 no")
    try:
        configure(daisy_dir, sink.port)
        daisy_dir.start()
        send(daisy_dir, "a@remote.test", sender="")
        with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
            s.ehlo("c.test")
            s.sendmail("demo@example.test", ["b@remote.test"], MSG, rcpt_options=["NOTIFY=NEVER"])
        wait_for(lambda: len(sink.rcpt_lines) == 2)
        wait_for(lambda: queued(daisy_dir) == [])
    finally:
        sink.stop()
    time.sleep(1)
    assert maildir_messages(daisy_dir, "demo.example.test") == []


def test_kill_9_with_queued_mail_loses_nothing_and_repeats_nothing(daisy_dir: Daisy) -> None:
    port = free_port()
    configure(daisy_dir, port)
    daisy_dir.start()
    for i in range(5):
        send(daisy_dir, f"r{i}@remote.test", MSG.replace(b"m1@", f"k{i}@".encode()))
    assert len(queued(daisy_dir)) == 5
    assert daisy_dir.proc is not None
    daisy_dir.proc.kill()
    daisy_dir.proc.wait()
    daisy_dir.proc = None
    sink = Sink(port)
    try:
        daisy_dir.start()
        wait_for(lambda: len(sink.messages) == 5, timeout=15)
        wait_for(lambda: queued(daisy_dir) == [])
        time.sleep(2)
        ids = sorted(m[2].split(b"Message-ID: <")[1].split(b"@")[0] for m in sink.messages)
        assert ids == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    finally:
        sink.stop()


def test_relay_refused_from_untrusted_address(daisy_dir: Daisy, sink: Sink) -> None:
    configure(daisy_dir, sink.port)
    daisy_dir.start()
    with smtplib.SMTP(
        "127.0.0.1", daisy_dir.ports["smtp"], timeout=10, source_address=("127.0.0.2", 0)
    ) as s:
        s.ehlo("c.test")
        s.mail("x@elsewhere.test")
        code, text = s.rcpt("y@remote.test")
    assert (code, text) == (550, b"5.7.1 <y@remote.test>... Relaying denied")


def test_queue_commands(daisy_dir: Daisy) -> None:
    configure(daisy_dir, free_port())
    daisy_dir.start()
    send(daisy_dir, "one@remote.test")
    send(daisy_dir, "two@remote.test")
    first, second = queued(daisy_dir)
    shown = daisy_dir.cli("queue", "show", str(first["id"])).stdout
    assert "one@remote.test" in shown and "Subject: out" in shown
    assert "one@remote.test" in daisy_dir.cli("queue", "list").stdout
    daisy_dir.cli("queue", "remove", str(first["id"]))
    assert daisy_dir.cli("queue", "remove", str(first["id"]), check=False).returncode == 1
    daisy_dir.cli("queue", "bounce", str(second["id"]))
    assert queued(daisy_dir) == []
    (raw,) = maildir_messages(daisy_dir, "demo.example.test")
    _msg, (_m, per_rcpt) = dsn_parts(raw)
    assert per_rcpt["Final-Recipient"] == "rfc822; two@remote.test"
    assert per_rcpt["Status"] == "5.0.0"


def test_flush_retries_at_once(daisy_dir: Daisy) -> None:
    port = free_port()
    configure(daisy_dir, port)
    daisy_dir.set_config("[queue]", "retry_schedule", "[3600]")
    daisy_dir.start()
    send(daisy_dir, "x@remote.test")
    wait_for(lambda: any(m["attempts"] for m in queued(daisy_dir)))
    sink = Sink(port)
    try:
        time.sleep(1.5)
        assert sink.messages == []
        daisy_dir.cli("queue", "flush")
        wait_for(lambda: len(sink.messages) == 1)
    finally:
        sink.stop()


def test_notify_success_for_local_delivery_and_for_a_relay_without_dsn(daisy_dir: Daisy) -> None:
    """RFC 3461: "delivered" from a local mailbox, "relayed" when the next hop cannot
    report, and nothing from us when it can (it gets NOTIFY passed on)."""
    plain, with_dsn = Sink(dsn=False), Sink()
    try:
        configure(daisy_dir, plain.port)
        text = daisy_dir.config.read_text().replace(
            "[queue.routes]", f'[queue.routes]\n"dsn.test" = "127.0.0.1:{with_dsn.port}"', 1
        )
        daisy_dir.config.write_text(text)
        daisy_dir.add_user("local@example.test", "local-pw")
        daisy_dir.start()
        with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
            s.ehlo("c.test")
            opts = ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;local@example.test"]
            s.sendmail("demo@example.test", ["local@example.test"], MSG, rcpt_options=opts)
            s.sendmail("demo@example.test", ["a@remote.test"], MSG, rcpt_options=["NOTIFY=SUCCESS"])
            s.sendmail("demo@example.test", ["b@dsn.test"], MSG, rcpt_options=["NOTIFY=SUCCESS"])
        wait_for(lambda: len(plain.messages) == 1 and len(with_dsn.messages) == 1)
        wait_for(lambda: queued(daisy_dir) == [])
        wait_for(lambda: len(maildir_messages(daisy_dir, "demo.example.test")) == 2, timeout=10)
        time.sleep(1)
    finally:
        plain.stop()
        with_dsn.stop()
    assert len(maildir_messages(daisy_dir, "local.example.test")) == 1
    assert "NOTIFY=SUCCESS" in with_dsn.rcpt_lines[0]
    actions = {}
    for raw in maildir_messages(daisy_dir, "demo.example.test"):
        msg = email.message_from_bytes(raw)
        assert msg["Subject"] == "Successful Mail Delivery Report"
        assert msg["Return-Path"] == "<>"
        parts = msg.get_payload()
        assert isinstance(parts, list)
        assert parts[2].get_content_type() == "text/rfc822-headers"
        assert b"Message-ID: <m1@example.test>" in raw and b"\nhello" not in raw
        (_per_msg, per_rcpt) = parts[1].get_payload()  # type: ignore[misc]
        actions[per_rcpt["Final-Recipient"]] = (per_rcpt["Action"], per_rcpt["Status"])
    assert actions == {
        "rfc822; local@example.test": ("delivered", "2.0.0"),
        "rfc822; a@remote.test": ("relayed", "2.0.0"),
    }
