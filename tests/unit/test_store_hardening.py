"""Store hardening on real files (issue 11: 7, 12, 14): bounded line reading, files cut
short under a reader, dotlocks released only by their owner, outside rewrites refused."""

from __future__ import annotations

import itertools
import os
import random
import tracemalloc
from pathlib import Path

import pytest

from daisymail.pop3.protocol import ReadToEnd, format_message
from daisymail.store.base import StorageError, ViewOptions
from daisymail.store.lines import split_lines
from daisymail.store.locking import MboxLock
from daisymail.store.maildir import CHUNK_SIZE, ensure_maildir
from daisymail.store.maildir_view import MaildirView
from daisymail.store.mbox_view import open_mbox_view


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize("seed", range(20))
def test_split_lines_is_bounded_and_never_splits_cr_from_lf(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = [b"a", b"b", b"\r", b"\n", b"\r\n", b".", b"x" * 37]
    data = b"".join(rng.choice(alphabet) for _ in range(3000))
    limit = rng.randint(1, 64)
    cuts = sorted(rng.sample(range(1, len(data)), 200))
    blocks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    blocks = [
        b for block in blocks for b in (block[i : i + limit] for i in range(0, len(block), limit))
    ]
    pieces = list(split_lines(blocks, limit))
    assert b"".join(pieces) == data
    assert all(len(p) <= 2 * limit for p in pieces)
    for piece, following in itertools.pairwise(pieces):
        assert not (piece.endswith(b"\r") and following.startswith(b"\n"))
        if not piece.endswith(b"\n"):
            assert b"\n" not in piece
    sent = b"".join(format_message(pieces))
    expected = b"".join(format_message(data.splitlines(keepends=True)))
    assert sent == expected


def _maildir_with(tmp_path: Path, message: bytes) -> tuple[str, Path]:
    path = str(tmp_path / "md") + "/"
    ensure_maildir(path)
    file = tmp_path / "md" / "new" / "1000000000.one.host"
    file.write_bytes(message)
    return path, file


def test_maildir_huge_single_line_is_read_with_bounded_memory(tmp_path: Path) -> None:
    header = b"Subject: one line\n\n"
    line = b"z" * (50 * 1024 * 1024)
    path, _ = _maildir_with(tmp_path, header + line + b"\r\n")
    view = MaildirView(path)
    try:
        assert view.messages[0].size == len(header) + 2 + len(line) + 2
        tracemalloc.start()
        try:
            total = longest = 0
            for piece in view.lines(0):
                total += len(piece)
                longest = max(longest, len(piece))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == len(header) + len(line) + 2
        assert longest <= 2 * CHUNK_SIZE
        assert peak < 4 * 1024 * 1024
        # TOP stays exact: the header and no body line, then the one long line whole.
        top0 = ReadToEnd(view.lines(0))
        assert b"".join(format_message(top0, 0)) == b"Subject: one line\r\n\r\n"
        assert not top0.whole
        top1 = ReadToEnd(view.lines(0))
        sent = 0
        for block in format_message(top1, 1):
            sent += len(block)
        assert sent == view.messages[0].size
        assert top1.whole
    finally:
        view.close()


def test_maildir_file_cut_short_while_read_is_a_storage_error(tmp_path: Path) -> None:
    path, _ = _maildir_with(tmp_path, b"Subject: x\n\n" + b"line\n" * 200_000)
    view = MaildirView(path)
    try:
        lines = view.lines(0)
        next(lines)
        (found,) = (tmp_path / "md" / "new").iterdir()  # the view added W= to its name
        os.truncate(found, 1000)
        with pytest.raises(StorageError, match="shrank"):
            for _ in lines:
                pass
    finally:
        view.close()


def test_dotlock_release_leaves_a_lock_it_did_not_create(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"")
    lock = MboxLock(str(box), None, wait=0)
    lock.acquire()
    dotlock = tmp_path / "box.lock"
    assert dotlock.exists()
    # Ours was broken as stale meanwhile, and another program locked the mailbox.
    dotlock.unlink()
    dotlock.write_bytes(b"4242 otherhost\n")
    old = 1_000_000_000
    os.utime(dotlock, (old, old))
    lock.refresh()
    assert dotlock.stat().st_mtime == old  # not touched either
    lock.release()
    assert dotlock.read_bytes() == b"4242 otherhost\n"


def test_dotlock_release_removes_our_own_lock(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"")
    with MboxLock(str(box), None, wait=0):
        assert (tmp_path / "box.lock").exists()
    assert not (tmp_path / "box.lock").exists()


def _msg(subject: str) -> bytes:
    return f"From a@example.net  Mon Jan  5 10:00:00 2004\nSubject: {subject}\n\nbody\n\n".encode()


@pytest.mark.parametrize("where", ["deleted", "kept", "separator"])
def test_mbox_changed_in_place_keeping_size_and_mtime_refuses_commit(
    tmp_path: Path, where: str
) -> None:
    box = tmp_path / "box"
    original = _msg("m-1") + _msg("m-2") + _msg("m-3")
    box.write_bytes(original)
    st = os.stat(box)
    view = open_mbox_view(str(box), ViewOptions(), lock_wait=0)
    try:
        offset = {
            "deleted": original.index(b"m-1"),
            "kept": original.index(b"m-3"),
            "separator": original.index(b"From", 1) + 1,
        }[where]
        changed = bytearray(original)
        changed[offset] ^= 0x20
        with open(box, "r+b") as f:
            f.write(changed)
        os.utime(box, ns=(st.st_atime_ns, st.st_mtime_ns))
        with pytest.raises(StorageError, match="changed"):
            view.commit({0})
    finally:
        view.close()
    assert box.read_bytes() == bytes(changed)
    assert not (tmp_path / "box.lock").exists()
    assert not (tmp_path / "box.daisymail-tmp").exists()


def test_mbox_unchanged_commits_and_keeps_appended_mail(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(_msg("m-1") + _msg("m-2"))
    view = open_mbox_view(str(box), ViewOptions(), lock_wait=0)
    try:
        with open(box, "ab") as f:
            f.write(_msg("m-3"))
        view.commit({0})
    finally:
        view.close()
    assert box.read_bytes() == _msg("m-2") + _msg("m-3")
