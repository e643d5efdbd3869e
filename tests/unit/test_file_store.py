"""FileStore: path rules, all-or-nothing delivery across formats, view dispatch."""

from __future__ import annotations

import errno
import os
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from daisymail.directory.model import Mailbox
from daisymail.store import durable, files, mbox
from daisymail.store.base import Delivery, StorageError, ViewOptions
from daisymail.store.maildir_view import MaildirView

NOW = 1073296800.0  # Mon Jan  5 10:00:00 2004 UTC


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def store(tmp_path: Path) -> files.FileStore:
    return files.FileStore(str(tmp_path / "mail"), lock_wait=0.2, clock=lambda: NOW)


@pytest.fixture
def delivery(tmp_path: Path) -> Delivery:
    source = tmp_path / "msg"
    source.write_bytes(b"Subject: s\n\nFrom me\n")
    return Delivery(source=str(source), prefix=b"Return-Path: <a@b>\n", sender="a@b")


STORED = b"Return-Path: <a@b>\nSubject: s\n\nFrom me\n"
MBOX_STORED = b"From a@b  Mon Jan  5 10:00:00 2004\nReturn-Path: <a@b>\nSubject: s\n\n>From me\n\n"


@pytest.mark.parametrize(
    ("mailbox", "path"),
    [
        (Mailbox("alice"), "/m/alice/"),
        (Mailbox("bob", "mbox"), "/m/bob"),
        (Mailbox("c", "mbox", "spool/c"), "/m/spool/c"),
        (Mailbox("c", "mbox", "/var/spool/mail/c"), "/var/spool/mail/c"),
        (Mailbox("d", "maildir", "/home/d/Maildir"), "/home/d/Maildir/"),
        (Mailbox("d", "maildir", "/home/d/Maildir/"), "/home/d/Maildir/"),
        (Mailbox("e", "mbox", "e/"), "/m/e/"),
    ],
)
def test_resolve_path(mailbox: Mailbox, path: str) -> None:
    assert files.FileStore("/m").resolve_path(mailbox) == path


def test_trailing_slash_means_maildir() -> None:
    assert files.is_maildir(Mailbox("e", "mbox", "e/"))
    assert not files.is_maildir(Mailbox("e", "mbox", "e"))


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0"])
def test_names_that_are_not_file_names_are_refused(name: str) -> None:
    with pytest.raises(StorageError):
        files.FileStore("/m").resolve_path(Mailbox(name))


def test_deliver_to_both_formats(
    tmp_path: Path, store: files.FileStore, delivery: Delivery
) -> None:
    boxes = [Mailbox("a"), Mailbox("b", "mbox"), Mailbox("c"), Mailbox("a")]
    store.deliver(boxes, delivery)
    mail = tmp_path / "mail"
    (a,) = (mail / "a" / "new").iterdir()
    (c,) = (mail / "c" / "new").iterdir()
    assert a.read_bytes() == STORED
    assert a.stat().st_ino == c.stat().st_ino
    assert (mail / "b").read_bytes() == MBOX_STORED


def test_missing_directories_are_created_for_both_formats(
    tmp_path: Path, store: files.FileStore, delivery: Delivery
) -> None:
    store.deliver([Mailbox("a", "maildir", "x/y/a"), Mailbox("b", "mbox", "x/z/b")], delivery)
    mail = tmp_path / "mail"
    assert len(os.listdir(mail / "x" / "y" / "a" / "new")) == 1
    assert (mail / "x" / "z" / "b").read_bytes() == MBOX_STORED
    assert (mail / "x" / "z").stat().st_mode & 0o777 == 0o700


def test_failing_mbox_undoes_earlier_copies(
    tmp_path: Path, store: files.FileStore, delivery: Delivery
) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "b").write_bytes(b"From x  Mon Jan  5 10:00:00 2004\nold\n\n")
    (mail / "c.lock").write_bytes(b"0")
    boxes = [Mailbox("a"), Mailbox("b", "mbox"), Mailbox("c", "mbox")]
    with pytest.raises(StorageError, match="locked"):
        store.deliver(boxes, delivery)
    assert os.listdir(mail / "a" / "new") == []
    assert (mail / "b").read_bytes() == b"From x  Mon Jan  5 10:00:00 2004\nold\n\n"
    assert not (mail / "c").exists()
    assert not (mail / "b.lock").exists()


def test_failing_maildir_touches_no_mbox(
    tmp_path: Path, store: files.FileStore, delivery: Delivery
) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "x").write_bytes(b"not a directory")
    with pytest.raises(StorageError):
        store.deliver([Mailbox("a"), Mailbox("x"), Mailbox("b", "mbox")], delivery)
    assert not (mail / "b").exists()
    assert os.listdir(mail / "a" / "new") == []


def test_refused_mbox_undoes_a_completed_one(
    tmp_path: Path, store: files.FileStore, delivery: Delivery
) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "b1").write_bytes(b"")
    (mail / "b2").symlink_to(tmp_path / "elsewhere")
    boxes = [Mailbox("a"), Mailbox("b1", "mbox"), Mailbox("b2", "mbox")]
    with pytest.raises(StorageError, match="symbolic link"):
        store.deliver(boxes, delivery)
    assert (mail / "b1").read_bytes() == b""
    assert os.listdir(mail / "a" / "new") == []


def test_disk_full_on_a_later_mbox_truncates_every_mbox_back(
    tmp_path: Path, store: files.FileStore, delivery: Delivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "b1").write_bytes(b"one\n")
    (mail / "b2").write_bytes(b"two\n")
    fds: list[int] = []
    real_write_all = durable.write_all

    def full_on_second_file(fd: int, data: bytes) -> None:
        if fd not in fds:
            fds.append(fd)
        if len(fds) > 1:
            os.write(fd, data[:3])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, data)

    monkeypatch.setattr(mbox, "write_all", full_on_second_file)
    with pytest.raises(StorageError, match="No space"):
        store.deliver([Mailbox("b1", "mbox"), Mailbox("b2", "mbox")], delivery)
    assert (mail / "b1").read_bytes() == b"one\n"
    assert (mail / "b2").read_bytes() == b"two\n"
    assert sorted(os.listdir(mail)) == ["b1", "b2"]


def test_open_view_dispatches_by_format(
    tmp_path: Path, store: files.FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ViewOptions]] = []
    fake = types.ModuleType("daisymail.store.mbox_view")

    sentinel = MaildirView(str(tmp_path / "sentinel"))
    sentinel.close()

    def open_mbox_view(path: str, options: ViewOptions) -> MaildirView:
        calls.append((path, options))
        return sentinel

    fake.open_mbox_view = open_mbox_view  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "daisymail.store.mbox_view", fake)
    options = ViewOptions(use_x_uidl=True)
    assert store.open_view(Mailbox("b", "mbox"), options) is sentinel
    assert calls == [(store.resolve_path(Mailbox("b", "mbox")), options)]
    view = store.open_view(Mailbox("a"), ViewOptions())
    try:
        assert isinstance(view, MaildirView)
        assert list(view.messages) == []
    finally:
        view.close()


def test_delivered_mail_shows_in_the_view(store: files.FileStore, delivery: Delivery) -> None:
    store.deliver([Mailbox("a")], delivery)
    view = store.open_view(Mailbox("a"), ViewOptions())
    try:
        assert [m.size for m in view.messages] == [len(STORED) + STORED.count(b"\n")]
        assert b"".join(view.lines(0)) == STORED
    finally:
        view.close()
