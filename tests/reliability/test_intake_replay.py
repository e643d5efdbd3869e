"""The intake journal (store/intake.py): a delivery acknowledged after its group flush
survives a crash, and replay never brings back or doubles a copy.

A power loss is played by what it can do to a copy whose own data was not flushed yet:
the file is there under its durable name, but short or empty. A process is killed
with SIGKILL at random points between and during deliveries."""

from __future__ import annotations

import os
import random
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from daisymail.store import intake
from daisymail.store.intake import IntakeJournal, decode_all, replay
from daisymail.store.maildir import ensure_maildir
from daisymail.store.maildir_write import MaildirWriter
from tests.conftest import Daisy
from tests.reliability.conftest import check_tagged, maildir_files, report, scale, tagged_message


def deliver(journal: IntakeJournal, maildirs: list[str], message: bytes) -> list[str]:
    writer = MaildirWriter(maildirs, b"Return-Path: <s@x>\n", journal)
    writer.write(message)
    return writer.commit()


def recorded(directory: Path) -> list[tuple[list[str], bytes]]:
    return [r for p in intake.segments(str(directory)) for r in decode_all(Path(p).read_bytes())]


def lose_unflushed(directory: Path) -> int:
    """What a power loss may leave of copies the syncer had not flushed: empty files."""
    lost = 0
    for paths, _ in recorded(directory):
        for path in paths:
            if os.path.exists(path):
                os.truncate(path, 0)
                lost += 1
    return lost


def stalled_journal(directory: Path) -> IntakeJournal:
    """A started journal whose syncer never flushes copies (as if the crash came first)."""
    journal = IntakeJournal(str(directory))
    journal._sync_loop = lambda: None  # type: ignore[method-assign]
    journal.start()
    return journal


def test_replay_restores_unflushed_copies_and_spares_deleted_ones(tmp_path: Path) -> None:
    box_a, box_b = str(tmp_path / "a"), str(tmp_path / "b")
    for box in (box_a, box_b):
        ensure_maildir(box)
    jdir = tmp_path / "intake"
    journal = stalled_journal(jdir)
    tags = []
    copies = []
    for size in (300, 5000, 90_000, 200_000):
        tag, msg = tagged_message(size)
        tags.append(tag)
        copies.append(deliver(journal, [box_a, box_b], msg))
    # the reader of box b deleted the first message and read the second (moved to cur/)
    os.unlink(copies[0][1])
    moved = Path(box_b, "cur", Path(copies[1][1]).name + ":2,S")
    os.rename(copies[1][1], moved)
    assert lose_unflushed(jdir) == 6
    os.truncate(moved, 0)

    first = replay(str(jdir))
    assert (first.records, first.rewritten, first.absent) == (4, 7, 1)
    assert recorded(jdir) == []
    for box, expected in ((box_a, tags), (box_b, tags[1:])):
        found = sorted(check_tagged(p.read_bytes()) for p in maildir_files(Path(box)))
        assert found == sorted((t, True) for t in expected)
    assert moved.exists()
    assert os.listdir(Path(box_a, "tmp")) == [] and os.listdir(Path(box_b, "tmp")) == []


def test_replay_twice_or_cut_short_changes_nothing_more(tmp_path: Path) -> None:
    box = str(tmp_path / "box")
    ensure_maildir(box)
    jdir = tmp_path / "intake"
    journal = stalled_journal(jdir)
    tags = [tagged_message(2000) for _ in range(5)]
    for _, msg in tags:
        deliver(journal, [box], msg)
    lose_unflushed(jdir)
    kept = {p: p.read_bytes() for p in Path(jdir).iterdir()}
    replay(str(jdir))
    # a crash during the first replay: its segments are still there, replay again
    for path, data in kept.items():
        path.write_bytes(data)
    again = replay(str(jdir))
    assert (again.records, again.rewritten, again.absent) == (5, 0, 0)
    found = sorted(check_tagged(p.read_bytes()) for p in maildir_files(Path(box)))
    assert found == sorted((t, True) for t, _ in tags)


def test_a_torn_record_at_the_end_is_ignored(tmp_path: Path) -> None:
    box = str(tmp_path / "box")
    ensure_maildir(box)
    jdir = tmp_path / "intake"
    journal = stalled_journal(jdir)
    tag, msg = tagged_message(1000)
    deliver(journal, [box], msg)
    (segment,) = intake.segments(str(jdir))
    with open(segment, "ab") as f:  # a record cut short: its delivery never got its 250
        f.write(intake.encode([os.path.join(box, "new", "x,S=9,W=9")], b"123456789")[:-4])
    lose_unflushed(jdir)
    result = replay(str(jdir))
    assert (result.records, result.rewritten) == (1, 1)
    assert [check_tagged(p.read_bytes()) for p in maildir_files(Path(box))] == [(tag, True)]


def test_segments_are_dropped_once_their_copies_are_flushed(tmp_path: Path) -> None:
    box = str(tmp_path / "box")
    ensure_maildir(box)
    jdir = tmp_path / "intake"
    journal = IntakeJournal(str(jdir), segment_size=20_000)
    journal.start()
    for _ in range(30):
        deliver(journal, [box], tagged_message(3000)[1])
    journal.close()
    assert list(jdir.iterdir()) == []
    assert len(maildir_files(Path(box))) == 30


WORKER = """
import sys
from daisymail.store.intake import IntakeJournal
from daisymail.store.maildir import ensure_maildir
from daisymail.store.maildir_write import MaildirWriter
from tests.reliability.conftest import tagged_message

box, jdir, stall = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
ensure_maildir(box)
journal = IntakeJournal(jdir, segment_size=200_000)
if stall:
    journal._sync_loop = lambda: None
journal.start()
for n in range(100000):
    tag, msg = tagged_message([300, 3000, 40000, 150000][n % 4])
    writer = MaildirWriter([box], b"", journal)
    writer.write(msg)
    writer.commit()
    print(tag, flush=True)
"""


def test_sigkill_during_deliveries_then_power_loss(tmp_path: Path) -> None:
    """Kill the delivering process at random, drop what a power loss may drop, replay:
    every acknowledged message is there once and intact."""
    rounds = scale(6, 40)
    box, jdir = tmp_path / "box", tmp_path / "intake"
    rnd = random.Random()
    acked: list[str] = []
    restored = 0
    for n in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(box), str(jdir), str(n % 2)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        time.sleep(rnd.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked += out.decode().split()
        restored += lose_unflushed(jdir)
        replay(str(jdir))
    found = [check_tagged(p.read_bytes()) for p in maildir_files(box)]
    tags = [t for t, ok in found if ok]
    report("crash.intake_journal", kills=rounds, acked=len(acked), restored=restored)
    assert len(acked) > rounds
    assert set(acked) <= set(tags), "an acknowledged message is missing or damaged"
    assert len(tags) == len(set(tags)), "a message was delivered twice"


def test_a_journal_folder_that_went_away_is_made_again(tmp_path: Path) -> None:
    """The mail dir moved under a running server (a symlink switched, as the benchmark
    does between runs): deliveries go on and the next segment is made in the new one."""
    box = str(tmp_path / "box")
    ensure_maildir(box)
    jdir = tmp_path / "intake"
    journal = IntakeJournal(str(jdir), segment_size=20_000)
    journal.start()
    for n in range(12):
        if n == 3:
            shutil.rmtree(jdir)
        deliver(journal, [box], tagged_message(3000)[1])
    assert jdir.is_dir()
    journal.close()
    assert list(jdir.iterdir()) == []
    assert len(maildir_files(Path(box))) == 12


def test_the_server_journals_maildir_mail_unless_switched_off(daisy_dir: Daisy) -> None:
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    journal = daisy_dir.root / "mail/.intake"
    for on in ("true", "false"):
        daisy_dir.set_config("[storage]", "intake_journal", on)
        daisy_dir.start()
        tag, msg = tagged_message(3000)
        with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=30) as s:
            s.sendmail("a@sender.test", ["demo@example.test"], msg)
        records = [paths for paths, _ in recorded(journal)]
        daisy_dir.stop()
        box = daisy_dir.root / "mail/demo.example.test"
        assert (tag, True) in [check_tagged(p.read_bytes()) for p in maildir_files(box)]
        assert any(tag in Path(p).read_text() for paths in records for p in paths) == (on == "true")
        assert list(journal.iterdir()) == []  # a clean stop leaves no segment
