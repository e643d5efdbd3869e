"""The queue's pure parts and its on-disk spool: back-off, DSNs, routes, envelopes."""

from __future__ import annotations

import asyncio
import email
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.config import Queue as QueueConfig
from daisymail.directory.model import Domain, Mailbox, Snapshot
from daisymail.queue import remote
from daisymail.queue.bounce import build_dsn, should_notify
from daisymail.queue.inject import Injector
from daisymail.queue.runner import Runner, backoff
from daisymail.queue.spool import Queue, QueuedMessage, QueuedRecipient
from daisymail.queue.stream import Body
from daisymail.store.files import FileStore

ORIGINAL = b"From: a@example.test\nSubject: s\n\nbody\n"


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, 300), (1, 300), (2, 600), (3, 1200), (5, 4000), (6, 4000), (100, 4000)],
)
def test_backoff_follows_schedule_and_repeats_last(attempts: int, expected: int) -> None:
    assert backoff(attempts, [300, 600, 1200, 2400, 4000]) == expected


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=8), st.integers(0, 50))
def test_backoff_is_always_a_schedule_step(schedule: list[int], attempts: int) -> None:
    assert backoff(attempts, schedule) in schedule


def message(**kw: object) -> QueuedMessage:
    base: dict[str, object] = {
        "id": "abc",
        "sender": "a@example.test",
        "recipients": [QueuedRecipient("x@remote.test", orcpt="rfc822;fwd@example.test")],
        "created": 1_700_000_000.0,
        "envid": "ENV1",
    }
    base.update(kw)
    return QueuedMessage(**base)  # type: ignore[arg-type]


def failed(addr: str = "x@remote.test", **kw: str) -> QueuedRecipient:
    r = QueuedRecipient(addr, state="failed", status="5.1.1", diagnostic="550 5.1.1 no")
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_dsn_is_a_valid_multipart_report_with_full_message() -> None:
    msg = message()
    r = failed(orcpt="rfc822;fwd@example.test", remote_mta="mx.remote.test")
    raw = build_dsn(msg, [r], ORIGINAL, hostname="mail.test", now=1_700_000_100.0)
    parsed = email.message_from_bytes(raw)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed["To"] == "<a@example.test>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    text, status, original = parsed.get_payload()  # type: ignore[misc]
    assert "<x@remote.test>: 550 5.1.1 no" in text.get_payload()
    per_msg, per_rcpt = status.get_payload()
    assert per_msg["Reporting-MTA"] == "dns; mail.test"
    assert per_msg["Original-Envelope-Id"] == "ENV1"
    assert dict(per_rcpt.items()) | {"Last-Attempt-Date": ""} == {
        "Final-Recipient": "rfc822; x@remote.test",
        "Original-Recipient": "rfc822; fwd@example.test",
        "Action": "failed",
        "Status": "5.1.1",
        "Remote-MTA": "dns; mx.remote.test",
        "Diagnostic-Code": "smtp; 550 5.1.1 no",
        "Last-Attempt-Date": "",
    }
    assert original.get_content_type() == "message/rfc822"
    assert raw.endswith(b"\n" + ORIGINAL + b"\n--" + parsed.get_boundary().encode() + b"--\n")


def test_dsn_ret_hdrs_returns_only_the_header() -> None:
    raw = build_dsn(message(ret="HDRS"), [failed()], ORIGINAL, hostname="h", now=0)
    assert b"Content-Type: text/rfc822-headers" in raw
    assert b"Subject: s\n" in raw and b"body" not in raw


def test_dsn_lists_every_failed_recipient() -> None:
    raw = build_dsn(
        message(), [failed("a@r.test"), failed("b@r.test")], ORIGINAL, hostname="h", now=0
    )
    status = email.message_from_bytes(raw).get_payload()[1].get_payload()  # type: ignore[index]
    assert [b["Final-Recipient"] for b in status[1:]] == ["rfc822; a@r.test", "rfc822; b@r.test"]


@pytest.mark.parametrize(
    ("sender", "notify", "notified", "expected"),
    [
        ("a@x.test", "", False, True),
        ("a@x.test", "FAILURE", False, True),
        ("a@x.test", "SUCCESS,FAILURE", False, True),
        ("a@x.test", "NEVER", False, False),
        ("a@x.test", "DELAY", False, False),
        ("", "", False, False),
        ("a@x.test", "", True, False),
    ],
)
def test_should_notify(sender: str, notify: str, notified: bool, expected: bool) -> None:
    r = QueuedRecipient("x@r.test", notify=notify, notified=notified)
    assert should_notify(message(sender=sender), r) is expected


def test_static_route_and_smarthost() -> None:
    cfg = QueueConfig(routes={"remote.test": "127.0.0.1:2526"}, smarthost="smtp.isp.test:465")
    route = remote.static_route("remote.test", cfg)
    assert route == remote.Route("route:remote.test", (remote.Hop("127.0.0.1", 2526),))
    smart = remote.static_route("other.test", cfg)
    assert smart is not None and smart.hops[0].tls == "implicit" and smart.hops[0].verify
    cfg587 = QueueConfig(smarthost="smtp.isp.test:587", smarthost_user="u", smarthost_password="p")
    hop = remote.static_route("x.test", cfg587).hops[0]  # type: ignore[union-attr]
    assert (hop.tls, hop.username, hop.password) == ("starttls", "u", "p")
    assert remote.static_route("x.test", QueueConfig()) is None


@pytest.mark.parametrize(
    ("value", "encoded"),
    [("abc", "abc"), ("a+b=c", "a+2Bb+3Dc"), ("a b", "a+20b"), ("é", "+C3+A9")],
)
def test_xtext(value: str, encoded: str) -> None:
    assert remote.xtext(value) == encoded


def test_spool_write_update_remove_and_recover(tmp_path: Path) -> None:
    q = Queue(str(tmp_path / "q"))
    msg_id = q.enqueue([b"Received: x\n", ORIGINAL], "a@x.test", [QueuedRecipient("b@r.test")])
    assert q.ids() == [msg_id]
    assert q.read_message(msg_id) == b"Received: x\n" + ORIGINAL
    msg = q.get(msg_id)
    assert msg is not None and msg.pending[0].address == "b@r.test"
    msg.recipients[0].state = "delivered"
    q.update(msg)
    assert q.get(msg_id).pending == []  # type: ignore[union-attr]
    prepared = q.prepare([b"x\n"], "", [QueuedRecipient("c@r.test")])
    assert q.ids() == [msg_id]  # not visible before commit
    prepared.abort()
    orphan = os.path.join(q.msg_dir, "orphan")
    Path(orphan).write_bytes(b"x")
    os.utime(orphan, (0, 0))
    assert q.recover() == [msg_id]
    assert sorted(os.listdir(q.msg_dir)) == [msg_id]
    assert q.remove(msg_id) and not q.remove(msg_id)
    assert q.ids() == [] and os.listdir(q.msg_dir) == []


def test_flush_trigger(tmp_path: Path) -> None:
    q = Queue(str(tmp_path / "q"))
    assert not q.take_flush_request()
    q.request_flush()
    assert q.take_flush_request() and not q.take_flush_request()


class FakeDirectory:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def snapshot(self) -> Snapshot:
        return self.snap


def make_runner(tmp_path: Path, outcomes: list[str], now: list[float]) -> tuple[Runner, Queue]:
    snap = Snapshot(
        domains={"example.test": Domain("example.test")},
        mailboxes={"box": Mailbox("box")},
        address_rules={"a@example.test": "box"},
    )
    q = Queue(str(tmp_path / "q"))
    injector = Injector(
        FakeDirectory(snap), FileStore(str(tmp_path / "mail")), q, str(tmp_path / "spool")
    )  # type: ignore[arg-type]

    async def deliver(
        route: remote.Route,
        sender: str,
        rcpts: Sequence[remote.Outgoing],
        body: Body,
        *rest: str,
    ) -> dict[str, remote.Outcome]:
        kind, _, flag = outcomes.pop(0).partition("+")  # "delivered+dsn": NOTIFY passed on
        status = {"temporary": "4.2.1", "delivered": "2.0.0"}.get(kind, "5.1.1")
        return {
            r.address: remote.Outcome(kind, status, f"{kind} reply", "", flag == "dsn")  # type: ignore[arg-type]
            for r in rcpts
        }

    cfg = QueueConfig(
        lifetime=100,
        retry_schedule=[10, 20],
        delay_warning=30,
        routes={"r.test": "127.0.0.1:1", "s.test": "127.0.0.1:1"},
    )
    runner = Runner(q, lambda: cfg, injector, "mail.test", clock=lambda: now[0], deliver=deliver)
    return runner, q


def test_runner_retries_with_backoff_then_expires_and_bounces(tmp_path: Path) -> None:
    now = [0.0]
    runner, q = make_runner(tmp_path, ["temporary", "temporary", "temporary"], now)
    msg_id = q.enqueue([ORIGINAL], "a@example.test", [QueuedRecipient("x@r.test")])
    msg = q.get(msg_id)
    assert msg is not None
    msg.created = 0.0
    q.update(msg)
    for clock, expected_next in [(1.0, 11.0), (12.0, 32.0)]:
        now[0] = clock
        m = q.get(msg_id)
        asyncio.run(runner.process(m))  # type: ignore[arg-type]
        m = q.get(msg_id)
        assert m is not None and m.next_attempt == expected_next and m.pending
    assert not (tmp_path / "mail" / "box" / "new").exists()
    now[0] = 150.0
    asyncio.run(runner.process(q.get(msg_id)))  # type: ignore[arg-type]
    assert q.ids() == []
    (dsn,) = (tmp_path / "mail" / "box" / "new").iterdir()
    raw = dsn.read_bytes()
    assert b"Status: 4.4.7" in raw and b"Action: failed" in raw
    assert b"last error: temporary reply" in raw


def test_runner_delivered_recipient_is_not_tried_again(tmp_path: Path) -> None:
    now = [0.0]
    runner, q = make_runner(tmp_path, ["delivered", "permanent"], now)
    msg_id = q.enqueue(
        [ORIGINAL], "a@example.test", [QueuedRecipient("x@r.test"), QueuedRecipient("y@s.test")]
    )
    asyncio.run(runner.process(q.get(msg_id)))  # type: ignore[arg-type]
    assert q.ids() == []
    (dsn,) = (tmp_path / "mail" / "box" / "new").iterdir()
    raw = dsn.read_bytes()
    assert b"Final-Recipient: rfc822; y@s.test" in raw
    assert b"x@r.test" not in raw.split(b"message/delivery-status")[1].split(b"message/rfc822")[0]


def _mailbox(tmp_path: Path) -> list[bytes]:
    new = tmp_path / "mail" / "box" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


@pytest.mark.parametrize(
    ("notify", "outcome", "action"),
    [
        ("SUCCESS", "delivered", b"relayed"),
        ("SUCCESS,FAILURE", "delivered", b"relayed"),
        ("SUCCESS", "delivered+dsn", None),  # the next hop reports instead
        ("", "delivered", None),
        ("FAILURE", "delivered", None),
        ("SUCCESS", "permanent", None),  # failed, but only SUCCESS was asked for
        ("SUCCESS,FAILURE", "permanent", b"failed"),
    ],
)
def test_runner_success_and_failure_notices_follow_notify(
    tmp_path: Path, notify: str, outcome: str, action: bytes | None
) -> None:
    runner, q = make_runner(tmp_path, [outcome], [0.0])
    msg_id = q.enqueue([ORIGINAL], "a@example.test", [QueuedRecipient("x@r.test", notify=notify)])
    asyncio.run(runner.process(q.get(msg_id)))  # type: ignore[arg-type]
    assert q.ids() == []
    dsns = _mailbox(tmp_path)
    if action is None:
        assert dsns == []
        return
    (raw,) = dsns
    assert b"Action: " + action in raw
    parsed = email.message_from_bytes(raw)
    if action == b"relayed":
        assert parsed["Subject"] == "Successful Mail Delivery Report"
        assert b"Status: 2.0.0" in raw
        # Only failures return the content (RFC 3461 4.3): here, the header alone.
        assert b"Content-Type: text/rfc822-headers" in raw and b"body" not in raw


def test_runner_sends_one_delay_notice_when_asked(tmp_path: Path) -> None:
    now = [0.0]
    runner, q = make_runner(tmp_path, ["temporary"] * 4, now)
    rcpts = [QueuedRecipient("x@r.test", notify="DELAY,FAILURE"), QueuedRecipient("y@r.test")]
    msg_id = q.enqueue([ORIGINAL], "a@example.test", rcpts)
    msg = q.get(msg_id)
    assert msg is not None
    msg.created = 0.0
    q.update(msg)
    for clock, notices in [(1.0, 0), (40.0, 1), (70.0, 1)]:
        now[0] = clock
        asyncio.run(runner.process(q.get(msg_id)))  # type: ignore[arg-type]
        assert len(_mailbox(tmp_path)) == notices, clock
    (raw,) = _mailbox(tmp_path)
    parsed = email.message_from_bytes(raw)
    assert parsed["Subject"] == "Delayed Mail (still being retried)"
    status = parsed.get_payload()[1].get_payload()  # type: ignore[index]
    (block,) = status[1:]  # y@ did not ask for DELAY
    assert block["Final-Recipient"] == "rfc822; x@r.test"
    assert block["Action"] == "delayed" and block["Status"] == "4.2.1"
    assert block["Will-Retry-Until"] == email.utils.formatdate(100, usegmt=True)
    m = q.get(msg_id)
    assert m is not None and m.pending and m.recipients[0].delay_notified


def test_delay_notices_can_be_turned_off(tmp_path: Path) -> None:
    now = [0.0]
    runner, q = make_runner(tmp_path, ["temporary"], now)
    runner.settings = lambda: QueueConfig(  # type: ignore[method-assign]
        lifetime=100, retry_schedule=[10], delay_warning=0, routes={"r.test": "127.0.0.1:1"}
    )
    msg_id = q.enqueue([ORIGINAL], "a@example.test", [QueuedRecipient("x@r.test", notify="DELAY")])
    now[0] = 50.0
    asyncio.run(runner.process(q.get(msg_id)))  # type: ignore[arg-type]
    assert _mailbox(tmp_path) == []


def test_a_backlog_drains_without_waiting_for_the_scan_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More due messages than may be in flight: each freed slot takes the next one at
    once. Before, the rest waited for the next one-second scan, 50 messages a second."""
    from daisymail.queue import runner as runner_module

    monkeypatch.setattr(runner_module, "SCAN_INTERVAL", 120.0)  # only wake-ups can drain it
    total = 3 * runner_module.MAX_MESSAGES_IN_FLIGHT
    runner, q = make_runner(tmp_path, ["delivered"] * total, [0.0])
    runner.clock = lambda: 1e12  # everything is due
    for i in range(total):
        q.enqueue([ORIGINAL], "a@example.test", [QueuedRecipient(f"x{i}@r.test")])

    async def drain() -> None:
        task = asyncio.create_task(runner.run())
        try:
            async with asyncio.timeout(30):
                while q.ids():
                    await asyncio.sleep(0.05)
        finally:
            await runner.stop()
            task.cancel()

    asyncio.run(drain())
    assert q.ids() == []


def test_client_tls_contexts_are_built_once() -> None:
    """Building a context reads the CA store (tens of ms): one per mode per process."""
    import ssl

    assert remote.tls_context(False) is remote.tls_context(False)
    assert remote.tls_context(False).verify_mode == ssl.CERT_NONE
    assert remote.tls_context(True).verify_mode == ssl.CERT_REQUIRED
    assert remote.tls_context(True).check_hostname
