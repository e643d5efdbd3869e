"""IMAP extensions on real sockets (imaplib and raw sockets): streamed big messages,
IMAP4rev2, QRESYNC, ESEARCH, LIST-EXTENDED, BINARY, COMPRESS and QUOTA."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daisy
from tests.integration.imap_support import imap, start_server

BIG = b"Subject: big one\r\nFrom: a@example.net\r\n\r\n" + b"0123456789abcdef\r\n" * 200_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imapx") / "daisy"))
    yield d
    d.stop()


class Raw:
    """A plain socket client for what imaplib cannot say (LITERAL+, pipelining)."""

    def __init__(self, daisy: Daisy, user: str = "demo@example.test", pw: str = "demo-pw"):
        self.sock = socket.create_connection(("127.0.0.1", daisy.ports["imap"]), timeout=10)
        self.buf = b""
        self.until(b"\r\n")
        self.send(f"l LOGIN {user} {pw}\r\n".encode())
        self.until(b"l OK")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf or not self.buf.endswith(b"\r\n"):
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise AssertionError(f"connection closed, got {self.buf[-500:]!r}")
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out

    def cmd(self, tag: str, line: str) -> bytes:
        self.send(f"{tag} {line}\r\n".encode())
        return self.until(f"{tag} ".encode())

    def close(self) -> None:
        self.sock.close()


def test_big_message_appended_and_fetched_whole(server: Daisy) -> None:
    m = imap(server)
    typ, data = m.append("Archive", r"(\Seen)", None, BIG)
    assert typ == "OK" and b"APPENDUID" in data[0]
    m.select("Archive")
    typ, data = m.search(None, "SUBJECT", '"big one"')
    seq = data[0].split()[-1]
    typ, data = m.fetch(seq, "(RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    assert data[0][1] == BIG
    assert f"RFC822.SIZE {len(BIG)}".encode() in data[0][0]
    typ, data = m.fetch(seq, "(RFC822)")
    assert data[0][1] == BIG
    m.logout()
    assert "imap.append.streamed" in server.logs()


def test_appendlimit_advertised_after_login(server: Daisy) -> None:
    m = imap(server)
    _typ, data = m.capability()
    assert re.search(rb"\bAPPENDLIMIT=\d+\b", data[0])
    m.logout()


def test_refused_literal_plus_append_is_read_and_dropped(server: Daisy) -> None:
    c = Raw(server)
    size = 2_000_000
    c.send(b"a APPEND NoSuchFolder {%d+}\r\n" % size + b"x" * size + b"\r\nb NOOP\r\n")
    out = c.until(b"b OK")
    assert b"a NO [TRYCREATE]" in out
    c.close()


def test_streamed_append_with_literal_plus_lands_in_the_folder(server: Daisy) -> None:
    c = Raw(server)
    body = b"Subject: plus\r\n\r\n" + b"y" * 1_500_000 + b"\r\n"
    c.send(b"a APPEND Drafts (\\Draft) {%d+}\r\n" % len(body) + body + b"\r\n")
    out = c.until(b"a OK")
    assert b"APPENDUID" in out
    c.close()
    m = imap(server)
    m.select("Drafts", readonly=True)
    _typ, data = m.search(None, "SUBJECT", "plus")
    seq = data[0].split()[-1]
    _typ, data = m.fetch(seq, "(FLAGS BODY.PEEK[])")
    assert data[0][1] == body and b"\\Draft" in data[0][0]
    m.logout()


def test_client_gone_mid_append_leaves_nothing_in_tmp(server: Daisy) -> None:
    c = Raw(server)
    c.send(b"a APPEND INBOX {3000000+}\r\n" + b"z" * 1_500_000)
    time.sleep(0.3)
    c.close()
    tmp = server.root / "mail"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leftovers = [p for p in tmp.rglob("tmp/*") if p.is_file()]
        if not leftovers:
            break
        time.sleep(0.05)
    assert leftovers == []
    assert any(tmp.rglob("tmp"))  # the look above was at the Maildirs' tmp/
