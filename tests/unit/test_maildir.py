"""Maildir: unique names, one write + hard links, failures leave nothing, the POP3 view."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.store import maildir, maildir_view, maildir_write
from daisymail.store.base import Delivery, MailboxInUse, StorageError

UNIQUE = re.compile(r"(\d+)\.M(\d{1,6})P(\d+)Q(\d+)\.(.+)")


def _delivery(tmp_path: Path, body: bytes, prefix: bytes = b"Return-Path: <s@x>\n") -> Delivery:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    path = source / f"m{len(os.listdir(source))}"
    path.write_bytes(body)
    return Delivery(source=str(path), prefix=prefix, sender="s@x")


def test_unique_name_format_and_host_escaping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "ho/st:x")
    maildir._host.cache_clear()
    try:
        name = maildir.unique_name()
    finally:
        maildir._host.cache_clear()
    m = UNIQUE.fullmatch(name)
    assert m is not None
    assert int(m.group(3)) == os.getpid()
    assert m.group(5) == "ho\\057st\\072x"


def test_unique_names_differ_across_threads() -> None:
    names: list[str] = []

    def worker() -> None:
        names.extend(maildir.unique_name() for _ in range(500))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 4000


def _reference_pop3_size(data: bytes) -> int:
    return len(re.sub(rb"(?<!\r)\n", b"\r\n", data))


@pytest.mark.parametrize(
    ("data", "size"),
    [(b"", 0), (b"a\n", 3), (b"a\r\n", 3), (b"\n\n", 4), (b"\r\r\n", 3), (b"x", 1)],
)
def test_pop3_size_table(data: bytes, size: int) -> None:
    counter = maildir.Pop3Size()
    counter.feed(data)
    assert (counter.size, counter.octets) == (len(data), size)


@given(
    parts=st.lists(st.sampled_from([b"\r", b"\n", b"x", b"\r\n"]), max_size=50),
    cuts=st.lists(st.integers(0, 100), max_size=8),
)
def test_pop3_size_is_independent_of_chunk_edges(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    edges = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    counter = maildir.Pop3Size()
    for a, b in itertools.pairwise(edges):
        counter.feed(data[a:b])
    assert counter.octets == _reference_pop3_size(data)


def _new_files(md: Path) -> list[Path]:
    return sorted((md / "new").iterdir())


def test_deliver_writes_prefix_and_source_into_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maildir, "CHUNK_SIZE", 3)
    md = tmp_path / "mail" / "alice"
    body = b"Subject: hi\n\nFrom here\r\nline\n"
    created = maildir_write.deliver_maildirs([str(md) + "/"], _delivery(tmp_path, body))
    (only,) = _new_files(md)
    assert created == [str(only)]
    content = b"Return-Path: <s@x>\n" + body
    assert only.read_bytes() == content
    unique, fields = only.name.split(",", 1)
    assert UNIQUE.fullmatch(unique)
    assert fields == f"S={len(content)},W={_reference_pop3_size(content)}"
    assert os.listdir(md / "tmp") == []
    assert os.listdir(md / "cur") == []
    for sub in ("", "cur", "new", "tmp"):
        assert (md / sub).stat().st_mode & 0o777 == 0o700
    assert only.stat().st_mode & 0o777 == 0o600


def test_deliver_syncs_the_file_and_every_new_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(maildir_write, "sync_dir", synced.append)
    mds = [str(tmp_path / "a"), str(tmp_path / "b")]
    for md in mds:
        maildir.ensure_maildir(md)
    maildir_write.deliver_maildirs(mds, _delivery(tmp_path, b"x\n"))
    assert synced == [os.path.join(md, "new") for md in mds]


def test_copies_on_one_filesystem_are_hard_links(tmp_path: Path) -> None:
    mds = [tmp_path / n for n in ("a", "b", "c")]
    maildir_write.deliver_maildirs([str(m) for m in mds], _delivery(tmp_path, b"x\n"))
    files = [_new_files(m)[0] for m in mds]
    inodes = {f.stat().st_ino for f in files}
    assert len(inodes) == 1
    assert files[0].stat().st_nlink == 3
    assert all(os.listdir(m / "tmp") == [] for m in mds)


def test_copy_when_links_are_impossible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link

    def no_cross_link(src: str, dst: str) -> None:
        if Path(src).parent.parent != Path(dst).parent.parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", no_cross_link)
    mds = [tmp_path / "a", tmp_path / "b"]
    maildir_write.deliver_maildirs([str(m) for m in mds], _delivery(tmp_path, b"x\n"))
    a, b = (_new_files(m)[0] for m in mds)
    assert a.name == b.name
    assert a.read_bytes() == b.read_bytes() == b"Return-Path: <s@x>\nx\n"
    assert a.stat().st_ino != b.stat().st_ino
    assert os.listdir(mds[0] / "tmp") == os.listdir(mds[1] / "tmp") == []


def test_real_cross_filesystem_copy(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem at /dev/shm")
    other = shm / f"daisymail-test-{os.getpid()}"
    try:
        maildir_write.deliver_maildirs(
            [str(tmp_path / "a"), str(other)], _delivery(tmp_path, b"x\n")
        )
        assert _new_files(other)[0].read_bytes() == _new_files(tmp_path / "a")[0].read_bytes()
    finally:
        for root, dirs, files in os.walk(other, topdown=False):
            for f in files:
                os.unlink(os.path.join(root, f))
            for d in dirs:
                os.rmdir(os.path.join(root, d))
        if other.exists():
            other.rmdir()


def test_failure_on_a_later_maildir_leaves_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link
    calls: list[str] = []

    def failing_third(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.EIO, "Input/output error")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", failing_third)
    mds = [tmp_path / n for n in ("a", "b", "c")]
    with pytest.raises(StorageError, match="Input/output error"):
        maildir_write.deliver_maildirs([str(m) for m in mds], _delivery(tmp_path, b"x\n"))
    for m in mds:
        assert _files(m) == []


def test_unreadable_source_leaves_nothing(tmp_path: Path) -> None:
    gone = Delivery(source=str(tmp_path / "gone"), prefix=b"", sender="")
    with pytest.raises(StorageError):
        maildir_write.deliver_maildirs([str(tmp_path / "a")], gone)
    assert _files(tmp_path / "a") == []


def _files(root: Path) -> list[Path]:
    """Every file under root (a Maildir is made only when a message first needs it)."""
    return [p for p in root.rglob("*") if p.is_file()]


def _put(md: Path, sub: str, name: str, content: bytes) -> None:
    (md / sub).mkdir(parents=True, exist_ok=True)
    (md / sub / name).write_bytes(content)


def _lines(view: maildir_view.MaildirView, i: int) -> bytes:
    return b"".join(view.lines(i))


def test_view_sizes_uidls_and_order(tmp_path: Path) -> None:
    md = tmp_path / "box"
    maildir.ensure_maildir(str(md))
    _put(md, "cur", "1000000002.M2P1Q1.h,S=5:2,S", b"b\r\nb\n")
    _put(md, "new", "1000000003.M3P1Q1.h", b"c\n")
    _put(md, "cur", "999999999.M1P1Q1.h:2,", b"a")
    _put(md, "new", ".hidden", b"z\n")
    view = maildir_view.MaildirView(str(md))
    try:
        assert [(m.size, m.uidl) for m in view.messages] == [
            (1, "999999999.M1P1Q1.h"),
            (6, "1000000002.M2P1Q1.h"),
            (3, "1000000003.M3P1Q1.h"),
        ]
        assert list(view.lines(1)) == [b"b\r\n", b"b\n"]
        assert _lines(view, 0) == b"a"
    finally:
        view.close()


def test_view_caches_the_pop3_size_in_the_name(tmp_path: Path) -> None:
    md = tmp_path / "box"
    maildir.ensure_maildir(str(md))
    _put(md, "cur", "1.M1P1Q1.h,S=4:2,S", b"a\nb\n")
    _put(md, "new", "2.M1P1Q1.h", b"x\n")
    view = maildir_view.MaildirView(str(md))
    view.close()
    assert sorted(os.listdir(md / "cur")) == ["1.M1P1Q1.h,S=4,W=6:2,S"]
    assert sorted(os.listdir(md / "new")) == ["2.M1P1Q1.h,W=3"]
    # The cached value is trusted from now on (the file is not read again).
    (md / "new" / "2.M1P1Q1.h,W=3").write_bytes(b"changed behind our back\n")
    view = maildir_view.MaildirView(str(md))
    try:
        assert [m.size for m in view.messages] == [6, 3]
    finally:
        view.close()


def test_uidls_are_stable_across_sessions_and_moves(tmp_path: Path) -> None:
    md = tmp_path / "box"
    maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, b"one\n"))
    maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, b"two\n"))
    view = maildir_view.MaildirView(str(md))
    first = list(view.messages)
    view.close()
    for f in _new_files(md):
        os.rename(f, md / "cur" / (f.name + ":2,S"))
    view = maildir_view.MaildirView(str(md))
    try:
        assert list(view.messages) == first
        assert _lines(view, 1) == b"Return-Path: <s@x>\ntwo\n"
    finally:
        view.close()


def test_odd_names_get_a_valid_uidl(tmp_path: Path) -> None:
    md = tmp_path / "box"
    long_name = "9." + "x" * 80
    _put(md, "new", long_name, b"x\n")
    _put(md, "new", "8.with space", b"x\n")
    view = maildir_view.MaildirView(str(md))
    try:
        assert [m.uidl for m in view.messages] == [
            hashlib.md5(b"8.with space").hexdigest(),
            hashlib.md5(long_name.encode()).hexdigest(),
        ]
    finally:
        view.close()


def test_commit_deletes_only_chosen_and_keeps_new_arrivals(tmp_path: Path) -> None:
    md = tmp_path / "box"
    for body in (b"one\n", b"two\n", b"three\n"):
        maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, body))
    view = maildir_view.MaildirView(str(md))
    try:
        kept_uidl = view.messages[1].uidl
        maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, b"arrived during session\n"))
        assert len(view.messages) == 3
        view.commit({0, 2})
    finally:
        view.close()
    view = maildir_view.MaildirView(str(md))
    try:
        assert len(view.messages) == 2
        assert view.messages[0].uidl == kept_uidl
        assert _lines(view, 0).endswith(b"two\n")
        assert _lines(view, 1).endswith(b"arrived during session\n")
    finally:
        view.close()


def test_close_without_commit_changes_nothing(tmp_path: Path) -> None:
    md = tmp_path / "box"
    maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, b"one\n"))
    before = _new_files(md)
    view = maildir_view.MaildirView(str(md))
    view.close()
    view.close()
    assert _new_files(md) == before


def test_commit_follows_files_moved_by_other_readers(tmp_path: Path) -> None:
    md = tmp_path / "box"
    maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, b"one\n"))
    maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, b"two\n"))
    view = maildir_view.MaildirView(str(md))
    try:
        moved, gone = _new_files(md)
        os.rename(moved, md / "cur" / (moved.name + ":2,S"))
        gone.unlink()
        assert _lines(view, 0).endswith(b"one\n")
        view.commit({0, 1})
    finally:
        view.close()
    assert os.listdir(md / "new") == os.listdir(md / "cur") == []


def test_reading_a_vanished_message_is_a_storage_error(tmp_path: Path) -> None:
    md = tmp_path / "box"
    maildir_write.deliver_maildirs([str(md)], _delivery(tmp_path, b"one\n"))
    view = maildir_view.MaildirView(str(md))
    try:
        _new_files(md)[0].unlink()
        with pytest.raises(StorageError):
            _lines(view, 0)
    finally:
        view.close()


def test_second_view_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    md = tmp_path / "box"
    view = maildir_view.MaildirView(str(md))
    with pytest.raises(MailboxInUse):
        maildir_view.MaildirView(str(md))
    view.close()
    maildir_view.MaildirView(str(md)).close()
    assert (md / maildir_view.LOCK_NAME).exists()


def test_view_of_a_missing_maildir_is_empty(tmp_path: Path) -> None:
    view = maildir_view.MaildirView(str(tmp_path / "new-user"))
    try:
        assert list(view.messages) == []
        view.commit(set())
    finally:
        view.close()


def test_opening_a_view_removes_stale_tmp_files_only(tmp_path: Path) -> None:
    """A delivery killed mid-write leaves its tmp/ file; 36 hours later it is swept."""
    md = tmp_path / "md"
    maildir.ensure_maildir(str(md))
    stale, fresh = md / "tmp" / "stale", md / "tmp" / "fresh"
    stale.write_bytes(b"half a message")
    fresh.write_bytes(b"being written")
    old = time.time() - maildir.TMP_MAX_AGE - 60
    os.utime(stale, (old, old))
    view = maildir_view.MaildirView(str(md))
    view.close()
    assert sorted(p.name for p in (md / "tmp").iterdir()) == ["fresh"]
