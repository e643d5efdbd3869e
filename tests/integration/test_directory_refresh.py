"""The directory is re-read off the event loop (issue 11, defect 6, directory part).

Sessions call snapshot() per command; it used to check the generation and re-read the
whole directory on the event loop, so a slow reload (a big directory, a slow database)
stalled every session of the server at once."""

from __future__ import annotations

import smtplib
import sqlite3
import threading
import time
from pathlib import Path

from daisymail.directory.model import Domain
from daisymail.directory.sql import SqlDirectory
from tests.conftest import Daisy

ROWS = 100_000


def test_a_slow_directory_reload_stalls_no_session(daisy: Daisy) -> None:
    db = daisy.root / "daisymail.db"
    daisy.cli("mailbox", "add", "bulk")
    with sqlite3.connect(db, timeout=30) as c:  # another writer, as the CLI would be
        c.executemany(
            "INSERT INTO logins (domain, user, user_lower, password_hash, mailbox)"
            " VALUES ('example.test', ?, ?, 'x', 'bulk')",
            ((f"u{i}", f"u{i}") for i in range(ROWS)),
        )
        c.execute("UPDATE meta SET generation = generation + 1")
    reader = SqlDirectory(f"sqlite:///{db}")
    t0 = time.monotonic()
    reader.refresh()
    reload_s = time.monotonic() - t0  # what the server's re-read costs, roughly
    reader.close()

    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=30) as s:
            s.ehlo("probe.test")
            while not stop.is_set():
                t = time.monotonic()
                assert s.noop()[0] == 250
                latencies.append(time.monotonic() - t)
                time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        # A session that reads the directory (RCPT) while the change is pending.
        with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=30) as s:
            s.ehlo("client.test")
            s.docmd("MAIL", "FROM:<a@example.net>")
            assert s.docmd("RCPT", "TO:<demo@example.test>")[0] == 250
        time.sleep(reload_s * 2 + 1)  # the re-read happens meanwhile, in the background
    finally:
        stop.set()
        prober.join()
    assert latencies
    assert max(latencies) < reload_s / 2, (max(latencies), reload_s)
    assert "directory.reloaded" in daisy.logs()  # and the change did arrive


def test_background_snapshot_does_no_io_and_poll_brings_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    served = SqlDirectory(url, create=True)
    writer = SqlDirectory(url)
    try:
        assert served.refresh_in_background()
        writer.add_domain(Domain("new.test"))
        # however long we wait, snapshot() serves memory; only poll() reads the database
        time.sleep(served.poll_interval * 5)
        assert "new.test" not in served.snapshot().domains
        # a poll in progress (it holds the lock) does not block snapshot()
        with served._lock:
            assert "new.test" not in served.snapshot().domains
        assert served.poll() is True
        assert "new.test" in served.snapshot().domains
        assert served.poll() is False  # nothing changed since
    finally:
        served.close()
        writer.close()
