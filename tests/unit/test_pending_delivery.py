"""Deliveries streamed in while the message arrives (FileStore.open_delivery)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from daisymail.directory.model import Mailbox
from daisymail.store import maildir_write
from daisymail.store.base import StorageError
from daisymail.store.files import FileStore

PREFIX = b"Return-Path: <s@x>\n"


def _new(root: Path, name: str) -> list[Path]:
    new = root / name / "new"
    return sorted(new.iterdir()) if new.exists() else []


def _tmp(root: Path, name: str) -> list[Path]:
    tmp = root / name / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def test_maildirs_get_the_stream_without_a_staging_copy(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    boxes = [Mailbox("a", "maildir"), Mailbox("b", "maildir")]
    pending = store.open_delivery(boxes, PREFIX, "s@x")
    pending.write(b"Subject: hi\n\n")
    pending.write(b"body\n")
    assert _new(tmp_path, "a") == []  # nothing visible before commit
    pending.commit()
    (a,) = _new(tmp_path, "a")
    (b,) = _new(tmp_path, "b")
    assert a.read_bytes() == PREFIX + b"Subject: hi\n\nbody\n"
    assert os.stat(a).st_ino == os.stat(b).st_ino
    assert a.name.endswith(f",S={len(a.read_bytes())},W={len(a.read_bytes()) + 4}")
    assert _tmp(tmp_path, "a") == []
    assert not (tmp_path / ".staging").exists()


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    pending = store.open_delivery([Mailbox("a", "maildir")], PREFIX, "s@x")
    pending.write(b"Subject: x\n\npartial")
    pending.abort()
    pending.abort()
    assert _new(tmp_path, "a") == []
    assert _tmp(tmp_path, "a") == []


def test_small_messages_wait_in_memory_and_reach_disk_at_commit(tmp_path: Path) -> None:
    """The file is made in commit() (a worker thread), not on the event loop."""
    store = FileStore(str(tmp_path))
    pending = store.open_delivery([Mailbox("a", "maildir")], PREFIX, "s@x")
    pending.write(b"Subject: small\n\nbody\n")
    assert _tmp(tmp_path, "a") == [] and _new(tmp_path, "a") == []
    pending.commit()
    (a,) = _new(tmp_path, "a")
    assert a.read_bytes() == PREFIX + b"Subject: small\n\nbody\n"


def test_large_messages_stream_to_their_file(tmp_path: Path) -> None:
    """Past the buffer limit the message goes to tmp/ as it arrives: memory stays bounded."""
    store = FileStore(str(tmp_path))
    pending = store.open_delivery([Mailbox("a", "maildir")], PREFIX, "s@x")
    chunk = b"x" * 1023 + b"\n"
    total = PREFIX
    while len(total) <= maildir_write.MaildirWriter.BUFFER_LIMIT * 2:
        pending.write(chunk)
        total += chunk
    (tmp,) = _tmp(tmp_path, "a")
    assert tmp.stat().st_size == len(total)
    pending.commit()
    (a,) = _new(tmp_path, "a")
    assert a.read_bytes() == total
    assert _tmp(tmp_path, "a") == []


def test_write_failure_then_abort_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path))
    pending = store.open_delivery([Mailbox("a", "maildir")], PREFIX, "s@x")

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(maildir_write, "write_all", full)
    with pytest.raises(OSError):
        pending.write(b"m" * (maildir_write.MaildirWriter.BUFFER_LIMIT + 1))
    pending.abort()
    assert _tmp(tmp_path, "a") == []
    assert _new(tmp_path, "a") == []


def test_mbox_targets_are_staged_and_appended_at_commit(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), clock=lambda: 0.0)
    boxes = [Mailbox("m", "mbox"), Mailbox("a", "maildir")]
    pending = store.open_delivery(boxes, PREFIX, "s@x")
    pending.write(b"Subject: hi\n\nFrom me\n")
    assert not (tmp_path / "m").exists()  # no mbox lock is held while receiving
    pending.commit()
    data = (tmp_path / "m").read_bytes()
    assert data.startswith(b"From s@x  ")
    assert data.endswith(PREFIX + b"Subject: hi\n\n>From me\n\n")
    (a,) = _new(tmp_path, "a")
    assert a.read_bytes() == PREFIX + b"Subject: hi\n\nFrom me\n"
    assert list((tmp_path / ".staging").iterdir()) == []


def test_staged_commit_failure_cleans_up(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), lock_wait=0.1)
    (tmp_path / "m.lock").write_bytes(b"0")  # someone else holds the mbox
    pending = store.open_delivery([Mailbox("m", "mbox")], PREFIX, "s@x")
    pending.write(b"Subject: hi\n\nbody\n")
    with pytest.raises(StorageError):
        pending.commit()
    assert list((tmp_path / ".staging").iterdir()) == []
    assert not (tmp_path / "m").exists()


def test_full_disk_at_commit_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    pending = FileStore(str(tmp_path)).open_delivery([Mailbox("a", "maildir")], PREFIX, "s@x")
    pending.write(b"Subject: x\n\nbody\n")
    monkeypatch.setattr(maildir_write, "write_all", full)
    with pytest.raises(StorageError):
        pending.commit()
    assert _tmp(tmp_path, "a") == []
    assert _new(tmp_path, "a") == []
