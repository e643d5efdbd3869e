"""What Dovecot's imaptest checks, on the real server over real sockets.

Each test is one group imaptest failed: \\Recent (select, copy, search-flags), keywords
announced before FETCH shows them, UIDVALIDITY never reused (uidvalidity), folder names
with ``[`` (atoms), LSUB's \\Noselect parents (subscribe), LIST-EXTENDED (listext).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.conftest import Daisy
from tests.integration.imap_support import start_server

MESSAGE = "From: a@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imapconf") / "daisy"))
    yield d
    d.stop()


class Client:
    """Raw IMAP on a socket: imaplib hides the untagged lines these tests are about."""

    def __init__(self, daisy: Daisy, user: str = "demo@example.test", pw: str = "demo-pw"):
        self.sock = socket.create_connection(("127.0.0.1", daisy.ports["imap"]), timeout=10)
        self.buf = b""
        self.n = 0
        self._read_line()
        assert b" OK " in self.cmd(f"LOGIN {user} {pw}").splitlines()[-1]

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def cmd(self, line: str) -> bytes:
        """The whole reply, untagged lines and the tagged status."""
        self.n += 1
        tag = f"t{self.n}"
        self.sock.sendall(f"{tag} {line}\r\n".encode())
        out = b""
        while True:
            got = self._read_line()
            out += got
            if got.startswith(tag.encode() + b" "):
                return out

    def append(self, folder: str, flags: str = "") -> bytes:
        self.n += 1
        tag = f"t{self.n}"
        data = MESSAGE.encode()
        head = f"{tag} APPEND {folder} {flags} {{{len(data)}+}}\r\n".replace("  ", " ")
        self.sock.sendall(head.encode() + data + b"\r\n")
        out = b""
        while not out.startswith(tag.encode()):
            out = self._read_line()
        assert b" OK " in out, out
        return out

    def close(self) -> None:
        self.sock.close()


def status_line(reply: bytes) -> bytes:
    return reply.splitlines()[-1]


def test_bracket_in_a_folder_name_is_an_atom(server: Daisy) -> None:
    a = Client(server)
    try:
        name = "!#$&'+,-.0123456789:;<=>?@^_`|[}"
        assert b" NO " in status_line(a.cmd(f"SELECT {name}"))  # no such folder, not BAD
        assert b" OK " in status_line(a.cmd(f'LIST "" {name}%*'))
        assert b" OK " in status_line(a.cmd("CREATE Odd[name"))
        selected = a.cmd("SELECT Odd[name")
        assert b" OK [READ-WRITE]" in status_line(selected), selected
        assert b'"Odd[name"' in a.cmd('LIST "" Odd[*')
        # A section still needs its ]: BODY[ without one is no FETCH item.
        assert b" BAD " in status_line(a.cmd("FETCH 1 BODY[TEXT"))
    finally:
        a.close()
