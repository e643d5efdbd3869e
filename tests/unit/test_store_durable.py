"""durable: atomic replace, directory creation, and group commit of directory fsyncs."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daisymail.store import durable


def test_fsync_dir_needs_a_directory(tmp_path: Path) -> None:
    durable.fsync_dir(str(tmp_path))
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        durable.fsync_dir(str(tmp_path / "f"))


def test_write_durable_replaces_atomically_and_syncs_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = durable.fsync_dir

    def recording_fsync(path: str) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(durable, "fsync_dir", recording_fsync)
    target = tmp_path / "state"
    target.write_bytes(b"old")
    durable.write_durable(str(target), [b"new ", b"", b"content"], mode=0o640)
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["state"]
    assert target.stat().st_mode & 0o777 == 0o640 & ~_umask()
    assert synced == [str(tmp_path)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_durable_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        durable.write_durable(str(target), chunks())
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state"]


def test_write_file_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        durable.write_file(str(tmp_path / "f"), [b"x"])
    assert (tmp_path / "f").read_bytes() == b"keep"


def test_make_dirs_syncs_each_parent_that_got_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(durable, "sync_dir", synced.append)
    (tmp_path / "a").mkdir()
    durable.make_dirs(str(tmp_path / "a" / "b" / "c"))
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700
    assert synced == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    synced.clear()
    durable.make_dirs(str(tmp_path / "a" / "b" / "c"))
    assert synced == []


def test_make_dirs_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(OSError):
        durable.make_dirs(str(tmp_path / "f" / "sub"))


def test_group_commit_covers_every_caller_and_shares_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every sync() must return only after an fsync that started after the caller's entry
    was made; with many concurrent callers there must be fewer fsyncs than callers."""
    clock = itertools.count()
    fsyncs: list[tuple[int, int]] = []

    def slow_fsync(path: str) -> None:
        start = next(clock)
        time.sleep(0.005)
        fsyncs.append((start, next(clock)))

    monkeypatch.setattr(durable, "fsync_dir", slow_fsync)
    syncer = durable.DirectorySync()
    results: list[tuple[int, int]] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            made = next(clock)
            syncer.sync(str(tmp_path))
            results.append((made, next(clock)))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 160
    for made, returned in results:
        assert any(made < start and end < returned for start, end in fsyncs)
    assert len(fsyncs) < len(results) / 2
    assert syncer._dirs == {}


def test_group_commit_failure_fails_the_batch_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    calls: list[int] = []

    def failing_then_ok(path: str) -> None:
        calls.append(1)
        if len(calls) == 1:
            gate.wait(5)
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(durable, "fsync_dir", failing_then_ok)
    syncer = durable.DirectorySync()
    errors: list[BaseException | None] = []

    def worker() -> None:
        try:
            syncer.sync(str(tmp_path))
            errors.append(None)
        except OSError as e:
            errors.append(e)

    first = threading.Thread(target=worker)
    first.start()
    while not calls:
        time.sleep(0.001)
    gate.set()
    first.join()
    assert isinstance(errors[0], OSError)
    syncer.sync(str(tmp_path))
    assert len(calls) == 2


def test_group_commit_waiters_of_a_failed_fsync_all_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers that joined the batch while an earlier fsync ran share the failing one."""
    release_first = threading.Event()
    release_second = threading.Event()
    calls: list[int] = []

    def fsync(path: str) -> None:
        calls.append(1)
        if len(calls) == 1:
            release_first.wait(5)
        else:
            release_second.wait(5)
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(durable, "fsync_dir", fsync)
    syncer = durable.DirectorySync()
    outcomes: list[str] = []

    def worker() -> None:
        try:
            syncer.sync(str(tmp_path))
            outcomes.append("ok")
        except OSError:
            outcomes.append("failed")

    leader = threading.Thread(target=worker)
    leader.start()
    while not calls:
        time.sleep(0.001)
    joiners = [threading.Thread(target=worker) for _ in range(5)]
    for t in joiners:
        t.start()
    time.sleep(0.05)
    release_first.set()
    while len(calls) < 2:
        time.sleep(0.001)
    release_second.set()
    for t in [leader, *joiners]:
        t.join()
    assert sorted(outcomes) == ["failed"] * 5 + ["ok"]
    assert len(calls) == 2


def test_rewrite_header_keeps_the_body_and_leaves_an_unedited_file_alone(tmp_path: Path) -> None:
    from daisymail.store.durable import rewrite_header

    path = tmp_path / "msg"
    body = b"\r\nline one\r\n\r\nX-Not-A-Header: body\r\n" + b"z" * 300_000
    path.write_bytes(b"A: 1\r\nB: 2\r\n" + body)
    before = path.stat().st_ino
    assert rewrite_header(str(path), lambda h: None) is False
    assert path.stat().st_ino == before
    assert rewrite_header(str(path), lambda h: h.replace(b"A: 1\r\n", b"")) is True
    assert path.read_bytes() == b"B: 2\r\n" + body
    assert not (tmp_path / "msg.new").exists()
    seen: list[bytes] = []
    path.write_bytes(b"only: header\n")  # no blank line: the whole file is the header
    rewrite_header(str(path), lambda h: seen.append(h) or None)
    assert seen == [b"only: header\n"]
