"""A full disk during delivery: 452, nothing partial left behind, and recovery by itself."""

from __future__ import annotations

import errno
import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, Daisy
from tests.reliability.conftest import (
    check_tagged,
    maildir_files,
    mbox_messages,
    report,
    tagged_message,
    wait_for,
)

LOCAL = "demo@example.test"
MBOX = "mb@example.test"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of its own, so filling it touches nothing else."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot mount a tmpfs: {res.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path, leave: int) -> None:
    """Write path until only about `leave` bytes are free on its filesystem."""
    with open(path, "wb") as f:
        while True:
            st = os.statvfs(path.parent)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                f.write(b"\0" * min(65536, free - leave))
                f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break


def send(daisy: Daisy, rcpts: list[str], msg: bytes) -> int:
    try:
        with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=30) as s:
            s.sendmail("a@sender.test", rcpts, msg)
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return next(iter(e.recipients.values()))[0]
    return 250


def test_full_disk_gives_452_leaves_nothing_and_recovers(daisy_dir: Daisy, small_fs: Path) -> None:
    daisy_dir.set_config("[storage]", "mail_dir", f'"{small_fs / "mail"}"')
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user(LOCAL, "demo-pw")
    daisy_dir.cli("mailbox", "add", "mb", "--format", "mbox")
    daisy_dir.add_user(MBOX, "mb-pw", "--mailbox", "mb")
    daisy_dir.start()
    first_tag, first = tagged_message(2000)
    assert send(daisy_dir, [LOCAL, MBOX], first) == 250
    maildir = small_fs / "mail/demo.example.test"
    mbox = small_fs / "mail/mb"
    size_before = mbox.stat().st_size
    filler = small_fs / "filler"

    codes = []
    # The disk fills while the message is being written (it is bigger than the space
    # left), and when there is no space at all.
    for leave in (300_000, 40_000, 0):
        fill(filler, leave)
        _, big = tagged_message(600_000)
        for rcpts in ([LOCAL], [MBOX], [LOCAL, MBOX]):
            codes.append(send(daisy_dir, rcpts, big))
            assert mbox.stat().st_size == size_before, "mbox not truncated back"
            assert len(maildir_files(maildir)) == 1
            assert list((maildir / "tmp").iterdir()) == []
        filler.unlink()
    assert set(codes) == {452}, codes
    assert list((daisy_dir.root / "spool").iterdir()) == []

    # Space is back: the same server takes mail again without being touched.
    tag, msg = tagged_message(600_000)
    assert send(daisy_dir, [LOCAL, MBOX], msg) == 250
    boxed = sorted(check_tagged(p.read_bytes()) for p in maildir_files(maildir))
    assert boxed == sorted([(first_tag, True), (tag, True)])
    assert [check_tagged(m) for m in mbox_messages(mbox)] == [(first_tag, True), (tag, True)]
    assert daisy_dir.proc is not None and daisy_dir.proc.poll() is None
    report(
        "disk_full",
        deliveries_refused=len(codes),
        replies=sorted(set(codes)),
        partial_files=0,
        recovered=True,
    )


def test_full_disk_in_the_intake_journal_gives_452(daisy_dir: Daisy, small_fs: Path) -> None:
    """Messages small enough for the intake journal: the disk fills while the copy is
    written or when the journal record is appended; 452, no copy, no record kept."""
    daisy_dir.set_config("[storage]", "mail_dir", f'"{small_fs / "mail"}"')
    daisy_dir.set_config("[storage]", "intake_journal", "true")
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user(LOCAL, "demo-pw")
    daisy_dir.start()
    first_tag, first = tagged_message(2000)
    assert send(daisy_dir, [LOCAL], first) == 250
    maildir = small_fs / "mail/demo.example.test"
    journal = small_fs / "mail/.intake"
    journal_size = sum(p.stat().st_size for p in journal.iterdir())
    filler = small_fs / "filler"
    codes = []
    # room for the copy but not its journal record, room for part of the copy, none
    for leave in (150_000, 120_000, 60_000, 0):
        fill(filler, leave)
        _, msg = tagged_message(100_000)
        codes.append(send(daisy_dir, [LOCAL], msg))
        assert len(maildir_files(maildir)) == 1
        # a write that failed mid-message is cleaned up just after the reply
        wait_for(lambda: not list((maildir / "tmp").iterdir()), 5, "tmp/ emptied")
        assert sum(p.stat().st_size for p in journal.iterdir()) == journal_size
        filler.unlink()
    assert set(codes) == {452}, codes
    tag, msg = tagged_message(100_000)
    assert send(daisy_dir, [LOCAL], msg) == 250
    boxed = sorted(check_tagged(p.read_bytes()) for p in maildir_files(maildir))
    assert boxed == sorted([(first_tag, True), (tag, True)])
    assert "Traceback" not in daisy_dir.logs()
