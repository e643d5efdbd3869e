"""Issue 11 item 6 (SMTP): message file work never blocks the event loop.

A 30 MB message whose disk writes stall must not delay another session: its small
delivery is answered within a second, and both messages arrive complete once the disk
answers again, and (local delivery) the server's peak memory grows by far less than
the message. The stall is real blocking in os.write inside the server process (see
stall_writes/sitecustomize.py); before the fix the spill to Maildir tmp/ ran on the
event loop, and every other session waited for the disk too.
"""

from __future__ import annotations

import os
import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Daisy

SHIM = Path(__file__).parent / "stall_writes"
BIG_LINE = b"x" * 998 + b"\r\n"


def _maildir(d: Daisy, box: str) -> list[Path]:
    new = d.root / "mail" / box / "new"
    return sorted(new.iterdir()) if new.exists() else []


def _peak_rss_kib(d: Daisy) -> int:
    assert d.proc is not None
    status = Path(f"/proc/{d.proc.pid}/status").read_text()
    (line,) = [x for x in status.splitlines() if x.startswith("VmHWM:")]
    return int(line.split()[1])


def _send(d: Daisy, rcpts: list[str], message: bytes, errors: list[BaseException]) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=60) as s:
            s.sendmail("a@example.net", rcpts, message)
    except BaseException as e:  # reported by the main thread
        errors.append(e)


def _wait(pred, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_stalled_disk_does_not_stall_other_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First the big message streams straight into a Maildir (tmp/); then a remote
    recipient makes it go through the spool file."""
    stall = tmp_path / "stall"
    hit = tmp_path / "stall.hit"
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{SHIM}{os.pathsep}{path}" if path else str(SHIM))
    monkeypatch.setenv("DAISY_TEST_STALL_WRITES", str(stall))
    d = Daisy(tmp_path / "daisy")
    d.init()
    d.cli("domain", "add", "example.test")
    d.cli("mailbox", "add", "big")
    d.cli("mailbox", "add", "small")
    d.cli("alias", "add", "big@example.test", "big")
    d.cli("alias", "add", "small@example.test", "small")
    big_message = b"Subject: big\r\n\r\n" + BIG_LINE * (30 * 1024 * 1024 // len(BIG_LINE))
    d.start()
    try:
        peak_before = _peak_rss_kib(d)
        for n, big_rcpts in enumerate([["big@example.test"], ["big@example.test", "x@far.test"]]):
            stall.touch()
            hit.unlink(missing_ok=True)
            errors: list[BaseException] = []

            sender = threading.Thread(target=_send, args=(d, big_rcpts, big_message, errors))
            sender.start()
            _wait(hit.exists, 30)  # the server is now inside a stalled write of the big one
            started = time.monotonic()
            with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=30) as s:
                s.sendmail("a@example.net", ["small@example.test"], b"Subject: small\r\n\r\nhi\r\n")
            elapsed = time.monotonic() - started
            assert len(_maildir(d, "small")) == n + 1
            stall.unlink()
            sender.join(120)
            assert not sender.is_alive() and not errors, errors
            assert elapsed < 1.0, f"small delivery took {elapsed:.2f} s behind a stalled disk"
            assert len(_maildir(d, "big")) == n + 1
            assert all(p.stat().st_size > 30 * 1000 * 1000 for p in _maildir(d, "big"))
            if n == 0:  # with a remote recipient, the queue runner reads it too
                grown = _peak_rss_kib(d) - peak_before
                assert grown < 12 * 1024, f"peak RSS grew by {grown} KiB for one 30 MB message"
    finally:
        stall.unlink(missing_ok=True)
        d.stop()
