"""daisymail/delivery.py, the one durable hand-off: where each recipient goes, all or
nothing between mailboxes and the queue, and the staging file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daisymail.delivery import (
    Handoff,
    Injector,
    Plan,
    Spool,
    local_mailboxes,
    plan_delivery,
)
from daisymail.directory.model import Domain, Mailbox, Snapshot
from daisymail.queue.spool import Queue, QueuedRecipient, QueueError
from daisymail.routing.recipients import Deliver, Forward, Reject, Remote
from daisymail.store.base import StorageError
from daisymail.store.files import FileStore

BOX = Mailbox("box")
MBOX = Mailbox("mb", format="mbox")
SNAP = Snapshot(
    domains={"example.test": Domain("example.test")},
    mailboxes={"box": BOX, "mb": MBOX},
    address_rules={"a@example.test": "box", "fwd@example.test": "out@far.test"},
)


@pytest.mark.parametrize(
    ("recipients", "boxes", "queued"),
    [
        ([("a@x", Deliver("box", None), {})], [BOX], []),
        ([("a@x", Deliver("box", None), {}), ("b@x", Deliver("box", "d"), {})], [BOX], []),
        (
            [("f@x", Forward("out@far.test"), {})],
            [],
            [QueuedRecipient("out@far.test", "rfc822;f@x", "")],
        ),
        (
            [("f@x", Forward("out@far.test"), {"ORCPT": "rfc822;orig@x", "NOTIFY": "NEVER"})],
            [],
            [QueuedRecipient("out@far.test", "rfc822;orig@x", "NEVER")],
        ),
        (
            [("r@far.test", Remote("r@far.test"), {"NOTIFY": "SUCCESS"})],
            [],
            [QueuedRecipient("r@far.test", "", "SUCCESS")],
        ),
        (
            [("a@x", Deliver("mb", None), {}), ("r@far.test", Remote("r@far.test"), {})],
            [MBOX],
            [QueuedRecipient("r@far.test", "", "")],
        ),
        ([("n@x", Reject(550, "5.1.1", "no"), {})], [], []),
    ],
)
def test_plan(
    recipients: list[tuple[str, object, dict[str, str]]],
    boxes: list[Mailbox],
    queued: list[QueuedRecipient],
) -> None:
    plan = plan_delivery(recipients, SNAP)
    assert (plan.mailboxes, plan.queued) == (boxes, queued)


def test_plan_refuses_a_mailbox_removed_since_rcpt() -> None:
    with pytest.raises(StorageError):
        plan_delivery([("a@x", Deliver("gone", None), {})], SNAP)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ([Deliver("box", None)], [BOX]),
        ([Deliver("box", None), Deliver("box", "x"), Deliver("mb", None)], [BOX, MBOX]),
        ([Deliver("box", None), Remote("r@far.test")], None),
        ([Forward("out@far.test")], None),
        ([Deliver("gone", None)], None),
        ([], None),
    ],
)
def test_local_mailboxes(targets: list[object], expected: list[Mailbox] | None) -> None:
    assert local_mailboxes(targets, SNAP) == expected


def _spooled(tmp_path: Path, data: bytes) -> Spool:
    spool = Spool(str(tmp_path / "spool"), "m1")
    spool.write(data)
    spool.close()
    return spool


def test_handoff_local_and_queued(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "mail"))
    queue = Queue(str(tmp_path / "q"))
    spool = _spooled(tmp_path, b"Subject: s\n\nbody\n")
    plan = Plan([BOX], [QueuedRecipient("r@far.test")])
    queue_id = Handoff(store, queue).deliver(spool.path, "s@x.test", plan, b"Received: t\n")
    (stored,) = (tmp_path / "mail" / "box" / "new").iterdir()
    assert stored.read_bytes() == b"Return-Path: <s@x.test>\nReceived: t\nSubject: s\n\nbody\n"
    assert queue.read_message(queue_id) == b"Received: t\nSubject: s\n\nbody\n"
    assert queue.ids() == [queue_id]


def test_handoff_is_all_or_nothing(tmp_path: Path) -> None:
    """A local copy that fails leaves no queued copy behind (and no local one)."""
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "blocked").write_text("a file where a directory must be")
    store = FileStore(str(mail))
    queue = Queue(str(tmp_path / "q"))
    spool = _spooled(tmp_path, b"Subject: s\n\nbody\n")
    plan = Plan([BOX, Mailbox("x", path="blocked/x")], [QueuedRecipient("r@far.test")])
    with pytest.raises(StorageError):
        Handoff(store, queue).deliver(spool.path, "", plan, b"")
    assert queue.ids() == []
    assert not list((mail / "box" / "new").iterdir())


def test_handoff_without_a_queue_refuses_remote(tmp_path: Path) -> None:
    spool = _spooled(tmp_path, b"x\n")
    with pytest.raises(QueueError):
        Handoff(FileStore(str(tmp_path / "mail")), None).deliver(
            spool.path, "", Plan([], [QueuedRecipient("r@far.test")]), b""
        )


class _Dir:
    def snapshot(self) -> Snapshot:
        return SNAP


def test_injector_routes_like_smtp_and_leaves_no_staging_file(tmp_path: Path) -> None:
    queue = Queue(str(tmp_path / "q"))
    spool_dir = tmp_path / "spool"
    inj = Injector(_Dir(), FileStore(str(tmp_path / "mail")), queue, str(spool_dir))  # type: ignore[arg-type]
    result = inj.inject(
        b"Subject: s\n\nbody\n",
        "",
        ["a@example.test.", "fwd@example.test", "nobody@example.test", "r@far.test"],
        trace=b"Received: t\n",
    )
    assert result.local == ["a@example.test."]
    assert result.queued == ["out@far.test", "r@far.test"]
    assert [r for r, _ in result.rejected] == ["nobody@example.test"]
    (msg,) = queue.messages()
    assert [(r.address, r.orcpt) for r in msg.recipients] == [
        ("out@far.test", "rfc822;fwd@example.test"),
        ("r@far.test", ""),
    ]
    assert os.listdir(spool_dir) == []


def test_spool_replace_header(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), "m")
    spool.write(b"From: a\nSubject: s\n\nbody\nmore\n")
    spool.replace_header(lambda h: h.replace(b"Subject: s\n", b"Subject: t\nDate: d\n"))
    assert Path(spool.path).read_bytes() == b"From: a\nSubject: t\nDate: d\n\nbody\nmore\n"
    spool.replace_header(lambda h: None)
    assert Path(spool.path).read_bytes() == b"From: a\nSubject: t\nDate: d\n\nbody\nmore\n"
    spool.abort()
    assert not os.path.exists(spool.path)
    empty = Spool(str(tmp_path / "new"), "e")
    empty.close()
    assert Path(empty.path).read_bytes() == b""
    empty.abort()
    empty.abort()
