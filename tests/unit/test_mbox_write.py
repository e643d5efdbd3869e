"""mbox appends: procmail -Y bytes (SPEC §5.6), locks, failures truncate back, concurrency."""

from __future__ import annotations

import errno
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.store import durable, mbox
from daisymail.store.base import Delivery, StorageError

SRC = str(Path(__file__).resolve().parents[2] / "src")
# Thu Nov 26 09:56:38 2026 UTC
NOW = 1795686998.0
D = b"Thu Nov 26 09:56:38 2026"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _delivery(tmp_path: Path, body: bytes, sender: str = "sender@example.com") -> Delivery:
    source = tmp_path / f"msg-{time.monotonic_ns()}"
    source.write_bytes(body)
    return Delivery(source=str(source), prefix=b"", sender=sender)


@pytest.mark.parametrize(
    ("sender", "now", "line"),
    [
        ("sender@example.com", NOW, b"From sender@example.com  " + D + b"\n"),
        ("Sender@Client.Test", NOW, b"From Sender@Client.Test  " + D + b"\n"),
        ("", NOW, b"From MAILER-DAEMON  " + D + b"\n"),
        ("a@x", 1073296800.0, b"From a@x  Mon Jan  5 10:00:00 2004\n"),
        ('"a b"@x', 1073296800.0, b'From "a_b"@x  Mon Jan  5 10:00:00 2004\n'),
        ("a\r\nb@x", 1073296800.0, b"From a__b@x  Mon Jan  5 10:00:00 2004\n"),
    ],
)
def test_from_line(sender: str, now: float, line: bytes) -> None:
    assert mbox.from_line(sender, now) == line


P1_IN = (
    b"Subject: one\nFrom: a@example.com\n\nbody line\nFrom here is a line\n>From quoted\n"
    b"From: not header\nFromage\n.dot line\n"
)
P1_OUT = (
    b"From sender@example.com  " + D + b"\nSubject: one\nFrom: a@example.com\n\nbody line\n"
    b">From here is a line\n>From quoted\nFrom: not header\nFromage\n.dot line\n\n"
)
P2_IN = b"Subject: two\n\nno trailing newline"
P2_OUT = b"From sender@example.com  " + D + b"\nSubject: two\n\nno trailing newline\n"
P4_IN = b"Subject: cl\nContent-Length: 3\n\nbody\nFrom inside Mon Jan  5 10:00:00 2004\nend\n"
P4_OUT = (
    b"From sender@example.com  " + D + b"\nSubject: cl\nContent-Length: 3\n\nbody\n"
    b">From inside Mon Jan  5 10:00:00 2004\nend\n\n"
)
VECTORS = [("P1", P1_IN, P1_OUT), ("P2", P2_IN, P2_OUT), ("P4", P4_IN, P4_OUT)]


@pytest.mark.parametrize(("name", "body", "expected"), VECTORS)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 5, 6, 7, 64 * 1024])
def test_procmail_vectors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    body: bytes,
    expected: bytes,
    chunk_size: int,
) -> None:
    monkeypatch.setattr(mbox, "CHUNK_SIZE", chunk_size)
    box = tmp_path / "nobody"
    mbox.append_mbox(str(box), _delivery(tmp_path, body), now=NOW)
    assert box.read_bytes() == expected


def test_appends_follow_each_other_without_a_blank_after_unterminated_mail(
    tmp_path: Path,
) -> None:
    box = tmp_path / "nobody"
    mbox.append_mbox(str(box), _delivery(tmp_path, P2_IN), now=NOW)
    mbox.append_mbox(str(box), _delivery(tmp_path, P1_IN), now=NOW)
    assert box.read_bytes() == P2_OUT + P1_OUT


@pytest.mark.parametrize(
    ("body", "tail"),
    [
        (b"", b"\n"),
        (b"\n", b"\n\n"),
        (b"x\n\n", b"x\n\n"),
        (b"x\n\n\n", b"x\n\n\n"),
        (b"From ", b">From \n"),
        (b"From", b"From\n"),
        (b"x\nFrom", b"x\nFrom\n"),
    ],
)
def test_end_of_message_rule(tmp_path: Path, body: bytes, tail: bytes) -> None:
    box = tmp_path / "nobody"
    mbox.append_mbox(str(box), _delivery(tmp_path, body), now=NOW)
    assert box.read_bytes() == b"From sender@example.com  " + D + b"\n" + tail


def test_prefix_goes_first_and_is_escaped_like_the_rest(tmp_path: Path) -> None:
    box = tmp_path / "nobody"
    source = tmp_path / "m"
    source.write_bytes(b"From x\nbody\n")
    delivery = Delivery(
        source=str(source), prefix=b"Return-Path: <s@x>\nReceived: by h\n", sender="s@x"
    )
    mbox.append_mbox(str(box), delivery, now=NOW)
    assert box.read_bytes() == (
        b"From s@x  " + D + b"\nReturn-Path: <s@x>\nReceived: by h\n>From x\nbody\n\n"
    )


def _reference_escape(data: bytes) -> bytes:
    return re.sub(rb"(?m)^From ", b">From ", data)


@given(
    parts=st.lists(
        st.sampled_from([b"From ", b"From", b"F", b"r", b"o", b"m", b" ", b"\n", b">", b"x"]),
        max_size=40,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_escaping_is_independent_of_chunk_edges(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    edges = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    escaper = mbox.FromEscaper()
    out = b"".join(escaper.feed(data[a:b]) for a, b in itertools.pairwise(edges))
    out += escaper.finish()
    assert out == _reference_escape(data)


def test_new_mbox_is_0660_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        box = tmp_path / "nobody"
        mbox.append_mbox(str(box), _delivery(tmp_path, b"x\n"), now=NOW)
    finally:
        os.umask(old)
    assert box.stat().st_mode & 0o777 == 0o660


def test_existing_mode_is_kept(tmp_path: Path) -> None:
    box = tmp_path / "nobody"
    box.write_bytes(b"")
    box.chmod(0o600)
    mbox.append_mbox(str(box), _delivery(tmp_path, b"x\n"), now=NOW)
    assert box.stat().st_mode & 0o777 == 0o600


def test_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"")
    (tmp_path / "nobody").symlink_to(target)
    with pytest.raises(StorageError, match="symbolic link"):
        mbox.append_mbox(str(tmp_path / "nobody"), _delivery(tmp_path, b"x\n"), now=NOW)
    assert target.read_bytes() == b""


def test_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "nobody").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageError, match="symbolic link"):
        mbox.append_mbox(str(tmp_path / "nobody"), _delivery(tmp_path, b"x\n"), now=NOW)
    assert not (tmp_path / "elsewhere").exists()


def test_refuses_a_fifo_and_a_directory(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name in ("fifo", "dir"):
        with pytest.raises(StorageError, match="not a regular file"):
            mbox.append_mbox(str(tmp_path / name), _delivery(tmp_path, b"x\n"), now=NOW)


def test_refuses_a_hard_linked_mbox(tmp_path: Path) -> None:
    (tmp_path / "other").write_bytes(b"")
    os.link(tmp_path / "other", tmp_path / "nobody")
    with pytest.raises(StorageError, match="hard links"):
        mbox.append_mbox(str(tmp_path / "nobody"), _delivery(tmp_path, b"x\n"), now=NOW)


def test_held_dotlock_makes_delivery_wait_then_fail(tmp_path: Path) -> None:
    box = tmp_path / "nobody"
    box.write_bytes(b"old\n")
    (tmp_path / "nobody.lock").write_bytes(b"0")
    start = time.monotonic()
    with pytest.raises(StorageError, match="locked"):
        mbox.append_mbox(str(box), _delivery(tmp_path, b"x\n"), now=NOW, lock_wait=0.3)
    assert time.monotonic() - start >= 0.3
    assert box.read_bytes() == b"old\n"
    assert (tmp_path / "nobody.lock").exists()


def test_delivery_proceeds_once_the_dotlock_is_removed(tmp_path: Path) -> None:
    box = tmp_path / "nobody"
    lock = tmp_path / "nobody.lock"
    lock.write_bytes(b"0")
    threading.Timer(0.2, lock.unlink).start()
    start = time.monotonic()
    mbox.append_mbox(str(box), _delivery(tmp_path, P1_IN), now=NOW, lock_wait=5)
    assert time.monotonic() - start >= 0.2
    assert box.read_bytes() == P1_OUT
    assert not lock.exists()


def test_stale_dotlock_is_broken(tmp_path: Path) -> None:
    lock = tmp_path / "nobody.lock"
    lock.write_bytes(b"0")
    old = time.time() - 2000
    os.utime(lock, (old, old))
    mbox.append_mbox(str(tmp_path / "nobody"), _delivery(tmp_path, P1_IN), now=NOW, lock_wait=0)
    assert (tmp_path / "nobody").read_bytes() == P1_OUT
    assert not lock.exists()


def test_fcntl_lock_of_another_process_blocks_delivery(tmp_path: Path) -> None:
    """procmail holds an fcntl lock while writing; Daisy must wait for it."""
    box = tmp_path / "nobody"
    box.write_bytes(b"")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n",
            str(box),
            "0.5",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        start = time.monotonic()
        mbox.append_mbox(str(box), _delivery(tmp_path, P1_IN), now=NOW, lock_wait=10)
        assert time.monotonic() - start > 0.2
    finally:
        holder.wait()
    assert box.read_bytes() == P1_OUT


class _DiskFull:
    """Stands in for write_all: writes up to `room` bytes, then fails like a full disk."""

    def __init__(self, room: int, error: int = errno.ENOSPC) -> None:
        self.room = room
        self.error = error

    def __call__(self, fd: int, data: bytes) -> None:
        part = data[: self.room]
        if part:
            os.write(fd, part)
            self.room -= len(part)
        if len(part) < len(data):
            raise OSError(self.error, os.strerror(self.error))


@pytest.mark.parametrize("room", [0, 10, 60, 100, len(P1_OUT) - 1])
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO, errno.EDQUOT])
def test_write_failure_truncates_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int, error: int
) -> None:
    monkeypatch.setattr(mbox, "CHUNK_SIZE", 16)
    box = tmp_path / "nobody"
    before = P2_OUT
    box.write_bytes(before)
    delivery = _delivery(tmp_path, P1_IN)
    real_write_all = durable.write_all
    monkeypatch.setattr(mbox, "write_all", _DiskFull(room, error))
    with pytest.raises(StorageError, match=os.strerror(error)):
        mbox.append_mbox(str(box), delivery, now=NOW)
    assert box.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted(["nobody", os.path.basename(delivery.source)])
    monkeypatch.setattr(mbox, "write_all", real_write_all)
    mbox.append_mbox(str(box), delivery, now=NOW, lock_wait=0)
    assert box.read_bytes() == before + P1_OUT


def test_fsync_failure_truncates_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = tmp_path / "nobody"
    box.write_bytes(P2_OUT)
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        fsyncs.append(fd)
        if len(fsyncs) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="Input/output error"):
        mbox.append_mbox(str(box), _delivery(tmp_path, P1_IN), now=NOW)
    assert box.read_bytes() == P2_OUT
    assert not (tmp_path / "nobody.lock").exists()


def test_unreadable_source_leaves_the_mbox_alone(tmp_path: Path) -> None:
    box = tmp_path / "nobody"
    box.write_bytes(P2_OUT)
    missing = Delivery(source=str(tmp_path / "gone"), prefix=b"Return-Path: <>\n", sender="")
    with pytest.raises(StorageError):
        mbox.append_mbox(str(box), missing, now=NOW)
    assert box.read_bytes() == P2_OUT


def test_undo_takes_back_a_completed_append(tmp_path: Path) -> None:
    box = tmp_path / "nobody"
    box.write_bytes(P2_OUT)
    with mbox.MboxAppender(str(box)) as appender:
        appender.append(_delivery(tmp_path, P1_IN), now=NOW)
        assert box.read_bytes() == P2_OUT + P1_OUT
        appender.undo()
    assert box.read_bytes() == P2_OUT


_WORKER = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from daisymail.store.base import Delivery
from daisymail.store.mbox import append_mbox
box, tag, tmp = sys.argv[2], sys.argv[3], sys.argv[4]
def run(t):
    for i in range(int(sys.argv[5])):
        name = f"{tmp}/src-{tag}-{t}-{i}"
        with open(name, "wb") as f:
            f.write(("Subject: %s-%d-%d\\n\\n" % (tag, t, i)).encode()
                    + b"From the body\\n" + (b"line %d\\n" % i) * 200)
        append_mbox(box, Delivery(name, b"", "s@x"), now=0.0, lock_wait=60)
threads = [threading.Thread(target=run, args=(t,)) for t in range(int(sys.argv[6]))]
for t in threads: t.start()
for t in threads: t.join()
"""


def _expected_message(tag: str, t: int, i: int) -> bytes:
    return (
        f"Subject: {tag}-{t}-{i}\n\n".encode()
        + b">From the body\n"
        + (b"line %d\n" % i) * 200
        + b"\n"
    )


def test_concurrent_appends_from_threads_and_processes_never_interleave(tmp_path: Path) -> None:
    box = tmp_path / "nobody"
    processes, threads, per_thread = 3, 3, 8
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                SRC,
                str(box),
                f"p{n}",
                str(tmp_path),
                str(per_thread),
                str(threads),
            ]
        )
        for n in range(processes)
    ]
    local = [
        threading.Thread(target=_local_worker, args=(tmp_path, box, t, per_thread))
        for t in range(threads)
    ]
    for th in local:
        th.start()
    for th in local:
        th.join()
    for p in procs:
        assert p.wait(timeout=120) == 0
    data = box.read_bytes()
    head = re.compile(rb"From s@x  [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\n")
    parts = re.split(rb"(?m)^From s@x  .*\n", data)
    assert parts[0] == b""
    messages = parts[1:]
    assert len(head.findall(data)) == len(messages)
    expected = {
        _expected_message(tag, t, i)
        for tag in ["local", *(f"p{n}" for n in range(processes))]
        for t in range(threads)
        for i in range(per_thread)
    }
    assert len(messages) == len(expected)
    assert set(messages) == expected
    assert not (tmp_path / "nobody.lock").exists()


def _local_worker(tmp_path: Path, box: Path, t: int, count: int) -> None:
    for i in range(count):
        source = tmp_path / f"src-local-{t}-{i}"
        source.write_bytes(
            f"Subject: local-{t}-{i}\n\n".encode() + b"From the body\n" + (b"line %d\n" % i) * 200
        )
        mbox.append_mbox(str(box), Delivery(str(source), b"", "s@x"), now=0.0, lock_wait=60)
