"""FETCH of whole bodies, twice (the second time the server knows which files need no
line-end conversion, and on a plain connection hands those to sendfile), compared
octet for octet over plain TCP, TLS and COMPRESS=DEFLATE, with message files stored
with CRLF and with LF, small and streamed big ones, and a client that reads slowly."""

from __future__ import annotations

import imaplib
import re
import socket
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from tests.clients import tls_context
from tests.conftest import Daisy
from tests.integration.imap_support import imap, start_server

USER, PASSWORD = "demo@example.test", "demo-pw"


def _stored() -> list[bytes]:
    """Message files as stored: CRLF and LF line ends in turn, two big ones."""
    out = []
    for i in range(24):
        size = 2_500_000 if i in (7, 8) else 60_000 + 9_000 * i
        line = b"line %06d of message %02d, padded out to a fair length." % (0, i)
        text = b"".join(line.replace(b"000000", b"%06d" % n) + b"\n" for n in range(size // 60))
        msg = b"Subject: body %d\nFrom: a@example.net\n\n" % i + text
        out.append(msg.replace(b"\n", b"\r\n") if i % 2 == 0 else msg)
    return out


STORED = _stored()
WIRE = [m if b"\r\n" in m else m.replace(b"\n", b"\r\n") for m in STORED]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imapsf") / "daisy"))
    m = imap(d, USER, PASSWORD)
    assert m.create("Bodies")[0] == "OK"
    m.logout()
    folder = next((d.root / "mail").rglob(".Bodies"))
    for i, msg in enumerate(STORED):
        name = f"{1700000000 + i}.M{i}P1.sendfile:2,S"
        (folder / "cur" / name).write_bytes(msg)
    yield d
    d.stop()


def literals(reply: bytes) -> list[bytes]:
    """The literals of a FETCH reply, in order."""
    out, pos = [], 0
    while m := re.compile(rb"\{(\d+)\}\r\n").search(reply, pos):
        start = m.end()
        out.append(reply[start : start + int(m[1])])
        pos = start + int(m[1])
    return out


def check_imaplib(m: imaplib.IMAP4) -> None:
    m.select("Bodies", readonly=True)
    for _ in range(2):  # the first reads every file, the second may use sendfile
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        got = [d[1] for d in data if isinstance(d, tuple)]
        assert len(got) == len(WIRE)
        for i, body in enumerate(got):
            assert body == WIRE[i], f"message {i} differs"
    for n in (1, 2, 8):  # one message: the small ones in the reply, the big one streamed
        typ, data = m.fetch(str(n), "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple) and data[0][1] == WIRE[n - 1]
        typ, data = m.fetch(str(n), "(BODY.PEEK[]<10.20>)")
        assert typ == "OK" and isinstance(data[0], tuple) and data[0][1] == WIRE[n - 1][10:30]
    m.logout()


def test_plain_connection(server: Daisy) -> None:
    check_imaplib(imap(server, USER, PASSWORD))


def test_tls_connection(server: Daisy) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=tls_context())
    m.login(USER, PASSWORD)
    check_imaplib(m)


def test_starttls_connection(server: Daisy) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.starttls(tls_context())
    m.login(USER, PASSWORD)
    check_imaplib(m)


class Raw:
    """A plain socket client that can speak COMPRESS=DEFLATE and read slowly."""

    def __init__(self, server: Daisy, rcvbuf: int = 0) -> None:
        self.sock = socket.socket()
        if rcvbuf:  # a small window: the server finds the socket full again and again
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", server.ports["imap"]))
        self.buf = b""
        self.inflate: zlib._Decompress | None = None
        self.deflate: zlib._Compress | None = None
        self.slow = False
        self.cmd(b"", b"\\*")  # the greeting
        self.cmd(f"l LOGIN {USER} {PASSWORD}\r\n".encode(), b"l")

    def cmd(self, line: bytes, tag: bytes) -> bytes:
        """Send a command; the reply up to its tagged status."""
        if self.deflate is not None:
            line = self.deflate.compress(line) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(line)
        got = bytearray(self.buf)
        done = re.compile(rb"(?:^|\r\n)" + tag + rb" (?:OK|NO|BAD)[^\r]*\r\n")
        seen = 0  # where to look for the status from: only what came since (and a line)
        while not (m := done.search(got, max(0, seen - 200))):
            seen = len(got)
            chunk = self.sock.recv(4096 if self.slow else 1 << 20)
            assert chunk, bytes(got[-300:])
            got += self.inflate.decompress(chunk) if self.inflate is not None else chunk
            if self.slow:
                time.sleep(0.0002)
        self.buf = bytes(got[m.end() :])
        return bytes(got[: m.end()])

    def compress(self) -> None:
        assert self.cmd(b"z COMPRESS DEFLATE\r\n", b"z").startswith(b"z OK")
        self.inflate = zlib.decompressobj(-15)
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)

    def slowly(self) -> None:
        self.slow = True


def check_raw(cmd: Callable[[bytes, bytes], bytes], before_second: Callable[[], None]) -> None:
    assert b"s OK" in cmd(b"s EXAMINE Bodies\r\n", b"s")
    assert literals(cmd(b"f1 UID FETCH 1:* BODY.PEEK[]\r\n", b"f1")) == WIRE
    before_second()
    assert literals(cmd(b"f2 UID FETCH 1:* BODY.PEEK[]\r\n", b"f2")) == WIRE
    assert literals(cmd(b"f3 FETCH 9 BODY.PEEK[]\r\n", b"f3")) == [WIRE[8]]
    assert cmd(b"n NOOP\r\n", b"n").endswith(b"n OK NOOP completed\r\n")


def test_compress_deflate(server: Daisy) -> None:
    c = Raw(server)
    c.compress()
    check_raw(c.cmd, lambda: None)
    c.sock.close()


def test_compress_started_between_the_two_fetches(server: Daisy) -> None:
    c = Raw(server)
    check_raw(c.cmd, c.compress)  # files known to need no conversion: not by sendfile now
    c.sock.close()


def test_slow_reader_on_a_plain_connection(server: Daisy) -> None:
    """The socket fills up again and again: sendfile waits for room and goes on."""
    c = Raw(server, rcvbuf=16384)
    check_raw(c.cmd, c.slowly)
    c.sock.close()


def test_client_gone_halfway_leaves_the_server_serving(server: Daisy) -> None:
    c = Raw(server, rcvbuf=16384)
    c.cmd(b"s EXAMINE Bodies\r\n", b"s")
    c.cmd(b"f1 UID FETCH 1:* BODY.PEEK[]\r\n", b"f1")
    c.sock.sendall(b"f2 UID FETCH 1:* BODY.PEEK[]\r\n")
    c.sock.recv(65536)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.sock.close()  # a reset, halfway through the reply
    check_imaplib(imap(server, USER, PASSWORD))
    assert "imap.error" not in server.log.read_text(errors="replace")
