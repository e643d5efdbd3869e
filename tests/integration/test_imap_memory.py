"""The server's peak memory while a 40 MB message goes in (APPEND) and out (FETCH):
streamed both ways, it must not grow by anything near the message size."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Daisy
from tests.integration.imap_support import imap, start_server

SIZE = 40 * 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_big_message_in_and_out_without_holding_it(tmp_path: Path) -> None:
    d = start_server(Daisy(tmp_path / "daisy"))
    try:
        assert d.proc is not None
        m = imap(d)
        m.select("INBOX")
        before = peak_rss(d.proc.pid)
        body = b"Subject: huge\r\n\r\n" + (b"x" * 78 + b"\r\n") * (SIZE // 80)
        assert m.append("INBOX", None, None, body)[0] == "OK"
        m.select("INBOX")
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == body
        typ, data = m.fetch("1", "(RFC822)")
        assert typ == "OK" and len(data[0][1]) == len(body)
        m.logout()
        grown = peak_rss(d.proc.pid) - before
        assert grown < SIZE // 4, f"the server grew by {grown} bytes for a {SIZE}-byte message"
    finally:
        d.stop()
