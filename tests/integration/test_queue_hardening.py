"""Queue hardening on real sockets: mail loops, poison entries, sendmail input, TLS fallback.

One server for the module: its routes point at our own SMTP port (a loop), at a sink
whose STARTTLS handshake fails, and at the same sink for a domain that requires TLS.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from daisymail.queue.spool import Queue, QueuedRecipient
from tests.conftest import Daisy
from tests.integration.smtp_sink import Sink
from tests.integration.test_smtp_server import maildir_messages, wait_for

BOX = "demo.example.test"
LIFETIME = 4


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    s = Sink(broken_starttls=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[Daisy]:
    d = Daisy(tmp_path_factory.mktemp("hardening") / "daisy")
    d.init()
    routes = (
        f'"loop.example" = "127.0.0.1:{d.ports["smtp"]}"\n'
        f'"plain.test" = "127.0.0.1:{sink.port}"\n'
        f'"strict.test" = "127.0.0.1:{sink.port}"'
    )
    text = d.config.read_text().replace("[queue.routes]", "[queue.routes]\n" + routes, 1)
    d.config.write_text(text)
    d.set_config("[queue]", "retry_schedule", "[1]")
    d.set_config("[queue]", "lifetime", str(LIFETIME))
    d.set_config("[queue]", "tls_required_domains", '["strict.test"]')
    d.cli("domain", "add", "example.test")
    d.add_user("demo@example.test", "demo-pw")
    d.start()
    yield d
    d.stop()


def bounces(d: Daisy, text: str) -> list[bytes]:
    return [m for m in maildir_messages(d, BOX) if text.encode() in m]


def queue_ids(d: Daisy) -> list[str]:
    return Queue(str(d.root / "queue")).ids()


def send(d: Daisy, rcpt: str, msg: bytes, sender: str = "demo@example.test") -> None:
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10) as s:
        s.sendmail(sender, [rcpt], msg)


def test_route_back_to_our_own_port_bounces_instead_of_looping(server: Daisy) -> None:
    send(
        server, "x@loop.example", b"Subject: loop\r\nMessage-ID: <loop1@example.test>\r\n\r\nhi\r\n"
    )
    wait_for(lambda: bounces(server, "loops back to myself"), timeout=15)
    (dsn,) = bounces(server, "loops back to myself")
    assert b"mail for loop.example loops back to myself" in dsn
    assert b"Status: 5.4.6" in dsn
    time.sleep(2)  # a loop would have gone round many times by now
    accepted = [
        line
        for line in server.logs().splitlines()
        if "smtp.message.accepted" in line and "x@loop.example" in line
    ]
    assert len(accepted) == 1, accepted
    assert not any("loop.example" in json.dumps(m) for m in _envelopes(server))


def test_looping_null_sender_mail_is_dropped_without_a_bounce(server: Daisy) -> None:
    """A DSN never causes another DSN: mail from <> that cannot go anywhere is dropped."""
    before = len(maildir_messages(server, BOX))
    send(server, "y@loop.example", b"Subject: dsn loop\r\n\r\nhi\r\n", sender="")
    wait_for(lambda: "rcpt=y@loop.example" in server.logs(), timeout=15)
    wait_for(lambda: not any("y@loop.example" in json.dumps(m) for m in _envelopes(server)))
    assert len(maildir_messages(server, BOX)) == before
    accepted = [line for line in server.logs().splitlines() if "rcpts=y@loop.example" in line]
    assert len(accepted) == 1, accepted


def _envelopes(d: Daisy) -> list[dict[str, object]]:
    q = Queue(str(d.root / "queue"))
    return [json.loads(Path(q.envelope_path(i)).read_bytes()) for i in q.ids()]


def received(n: int) -> bytes:
    return b"".join(b"Received: from h%d.test by h%d.test; date\r\n" % (i, i + 1) for i in range(n))


def test_too_many_received_headers_get_554_5_4_6(server: Daisy) -> None:
    body = b"Subject: hops\r\nMessage-ID: <hops@example.test>\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("someone@remote.test", ["demo@example.test"], received(51) + body)
        assert refused.value.smtp_code == 554
        assert refused.value.smtp_error.startswith(b"5.4.6")
        s.sendmail("someone@remote.test", ["demo@example.test"], received(50) + body)


def test_failed_starttls_handshake_falls_back_to_plaintext(server: Daisy, sink: Sink) -> None:
    before = sink.starttls_attempts
    msg = b"Subject: tls\r\nMessage-ID: <tls1@example.test>\r\n\r\nopportunistic\r\n"
    send(server, "bob@plain.test", msg)
    wait_for(lambda: any(b"opportunistic" in m[2] for m in sink.messages), timeout=15)
    assert sink.starttls_attempts > before
    assert "queue.tls_fallback" in server.logs()


def test_tls_required_domain_never_goes_plaintext(server: Daisy, sink: Sink) -> None:
    send(server, "bob@strict.test", b"Subject: strict\r\n\r\nmust be encrypted\r\n")
    wait_for(lambda: bounces(server, "bob@strict.test"), timeout=20)
    assert not any(b"must be encrypted" in m[2] for m in sink.messages)


def _enqueue(d: Daisy, rcpt: str, sender: str = "demo@example.test") -> tuple[Queue, str]:
    q = Queue(str(d.root / "queue"))
    msg_id = q.enqueue([b"Subject: poison\n\nbody\n"], sender, [QueuedRecipient(rcpt)])
    return q, msg_id


def test_address_aiosmtplib_refuses_bounces_instead_of_retrying(server: Daisy) -> None:
    q, msg_id = _enqueue(server, "bad\r\nRSET@plain.test")
    wait_for(lambda: msg_id not in q.ids(), timeout=15)
    wait_for(lambda: bounces(server, "invalid recipient address"), timeout=5)


def test_vanished_message_file_bounces(server: Daisy) -> None:
    q = Queue(str(server.root / "queue"))
    prepared = q.prepare(
        [b"Subject: gone\n\nbody\n"], "demo@example.test", [QueuedRecipient("a@plain.test")]
    )
    Path(q.message_path(prepared.message.id)).unlink()
    msg_id = prepared.commit()
    wait_for(lambda: msg_id not in q.ids(), timeout=15)
    wait_for(lambda: bounces(server, "the queued message file is missing"), timeout=5)


def test_corrupt_envelope_is_moved_aside(server: Daisy) -> None:
    q = Queue(str(server.root / "queue"))
    Path(q.envelope_path("0badc0ffee")).write_bytes(b'{"id": "0badc0ffee", "sender": ')
    wait_for(lambda: "0badc0ffee" not in q.ids(), timeout=15)
    assert (server.root / "queue" / "corrupt" / "0badc0ffee.json").exists()


def test_entry_whose_attempts_raise_expires(server: Daisy) -> None:
    """Valid JSON, wrong types: every attempt raises; it must not be retried for ever."""
    q = Queue(str(server.root / "queue"))
    entry = {
        "id": "0bad7e57",
        "sender": "demo@example.test",
        "recipients": [{"address": 5}],
        "created": time.time(),
    }
    Path(q.envelope_path("0bad7e57")).write_text(json.dumps(entry))
    Path(q.message_path("0bad7e57")).write_bytes(b"Subject: x\n\nbody\n")
    wait_for(lambda: "0bad7e57" not in q.ids(), timeout=LIFETIME + 15)
    assert (server.root / "queue" / "corrupt" / "0bad7e57.json").exists()


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["-f", "demo@example.test\r\nRCPT TO:<x@evil.test>", "bob@plain.test"], "sender"),
        (["-f", "demo@example.test", "bob@plain.test\nx"], "recipient"),
        (["bob@@plain.test"], "recipient"),
    ],
)
def test_sendmail_refuses_invalid_addresses(server: Daisy, args: list[str], what: str) -> None:
    before = queue_ids(server)
    res = server.cli("sendmail", *args, input="Subject: x\n\nbody\n", check=False)
    assert res.returncode != 0
    assert f"daisymail: {what}" in res.stderr and "not a valid address" in res.stderr
    assert "Traceback" not in res.stderr
    assert queue_ids(server) == before


def _old_tls_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():  # deprecated is the point: an old peer
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def test_old_tls_client_may_starttls_on_port_25_but_not_587(server: Daisy) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.starttls(context=_old_tls_client())
        assert s.sock.version() in ("TLSv1", "TLSv1.1")  # type: ignore[union-attr]
        assert s.noop()[0] == 250
    refused = (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)
    with (
        smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s,
        pytest.raises(refused),
    ):
        s.starttls(context=_old_tls_client())
