"""The server's memory: a 40 MB message goes in (APPEND) and out (FETCH) streamed,
without the server growing by anything near its size; and many sessions idling on one
big folder share its snapshot rather than holding a copy each."""

from __future__ import annotations

import os
import re
import socket
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


def rss(pid: int) -> int:
    """The process's resident memory now (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


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


FOLDER_MESSAGES = 1000
IDLERS = 150
PER_SESSION = 120 * 1024  # the old design: about 1 MB each for 1,000 messages


def _fill(maildir: Path) -> None:
    for i in range(FOLDER_MESSAGES):
        name = f"{1672000000 + i}.M{i}P1.memtest:2,{'S' if i % 2 else ''}"
        text = f"From: a{i}@example.net\r\nSubject: message {i}\r\n\r\nbody {i}\r\n"
        (maildir / "cur" / name).write_bytes(text.encode())


def _idler(port: int) -> socket.socket:
    """LOGIN, SELECT INBOX, IDLE: left idling (the caller closes it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    f.readline()
    for tag, command in ((b"a", b'LOGIN "demo@example.test" "demo-pw"'), (b"b", b"SELECT INBOX")):
        s.sendall(tag + b" " + command + b"\r\n")
        while not (line := f.readline()).startswith(tag + b" "):
            assert line, "connection closed"
        assert line.startswith(tag + b" OK"), line
    s.sendall(b"c IDLE\r\n")
    assert f.readline().startswith(b"+")
    return s


def test_idle_sessions_share_the_folder(tmp_path: Path) -> None:
    """Sessions idling on a 1,000-message folder each cost far less than a copy of it,
    and one of them still hears of a delivery."""
    d = Daisy(tmp_path / "daisy")
    d.init()
    text = d.config.read_text()
    text = re.sub(
        r"^max_connections_per_ip = \d+", "max_connections_per_ip = 1000", text, flags=re.M
    )
    d.config.write_text(text)
    d.cli("domain", "add", "example.test")
    d.add_user("demo@example.test", "demo-pw")
    d.start()
    held: list[socket.socket] = []
    try:
        assert d.proc is not None
        m = imap(d)
        m.select("INBOX")  # makes the Maildir
        m.logout()
        _fill(d.root / "mail" / "demo.example.test")
        held.append(_idler(d.ports["imap"]))  # the folder synced, caches warm
        before = rss(d.proc.pid)
        held += [_idler(d.ports["imap"]) for _ in range(IDLERS)]
        grown = (rss(d.proc.pid) - before) / IDLERS
        assert grown < PER_SESSION, f"{grown:.0f} bytes per idle session"
        new = d.root / "mail" / "demo.example.test" / "new" / "1672009999.M1P1.memtest"
        new.write_bytes(b"Subject: late\r\n\r\nhi\r\n")
        os.utime(new.parent)
        held[-1].settimeout(3)
        news = held[-1].recv(4096)  # then ``* n RECENT``: the idlers speak IMAP4rev1
        assert news.startswith(b"* %d EXISTS\r\n" % (FOLDER_MESSAGES + 1)), news
    finally:
        for s in held:
            s.close()
        d.stop()
