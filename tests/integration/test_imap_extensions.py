"""IMAP extensions on real sockets (imaplib and raw sockets): streamed big messages,
IMAP4rev2, QRESYNC, ESEARCH, LIST-EXTENDED, BINARY, COMPRESS and QUOTA."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daisy
from tests.integration.imap_support import imap, send, start_server

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


def test_capabilities_after_login(server: Daisy) -> None:
    m = imap(server)
    caps = m.capability()[1][0].split()
    for cap in (
        b"IMAP4rev1",
        b"IMAP4rev2",
        b"ESEARCH",
        b"SEARCHRES",
        b"LIST-EXTENDED",
        b"LIST-STATUS",
        b"CREATE-SPECIAL-USE",
        b"QRESYNC",
        b"CONDSTORE",
        b"BINARY",
        b"COMPRESS=DEFLATE",
        b"QUOTA",
        b"UTF8=ACCEPT",
    ):
        assert cap in caps, cap
    m.logout()


def test_rev2_session_with_imaplib(server: Daisy) -> None:
    send(server, "demo@example.test", "rev2 one")
    send(server, "demo@example.test", "rev2 two")
    m = imap(server)
    typ, data = m._simple_command("ENABLE", "IMAP4rev2")
    assert typ == "OK"
    assert m.untagged_responses.pop("ENABLED") == [b"IMAP4rev2"]
    typ, data = m.enable("UTF8=ACCEPT")  # imaplib then sends its strings as UTF-8
    assert typ == "OK" and m.untagged_responses.pop("ENABLED") == [b"UTF8=ACCEPT"]
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    assert "RECENT" not in m.untagged_responses
    assert m.untagged_responses.pop("LIST")[0].endswith(b'"INBOX"')
    typ, data = m._simple_command("SEARCH", "SUBJECT", '"rev2"')
    esearch = m.untagged_responses.pop("ESEARCH")[0]
    assert re.match(rb'\(TAG "\w+"\) ALL \d+', esearch)
    assert "SEARCH" not in m.untagged_responses
    typ, _ = m.create("Entwürfe")
    assert typ == "OK"
    assert any((server.root / "mail").rglob(".Entw&APw-rfe"))
    typ, data = m.list('""', "Entw*")
    assert data[0].endswith('"Entwürfe"'.encode())
    m.logout()


def test_qresync_resync_after_changes_by_another_session(server: Daisy) -> None:
    for i in range(3):
        send(server, "other@example.test", f"qr {i}")
    a = imap(server, "other@example.test", "other-pw")
    a._simple_command("ENABLE", "QRESYNC")
    a.select("INBOX")
    validity = int(a.untagged_responses["UIDVALIDITY"][0])
    modseq = int(re.search(rb"\d+", a.untagged_responses["HIGHESTMODSEQ"][0])[0])  # type: ignore[index]
    a.close()
    b = imap(server, "other@example.test", "other-pw")
    b.select("INBOX")
    b.store("1", "+FLAGS", r"(\Deleted)")
    b.expunge()
    b.store("1", "+FLAGS", r"(\Flagged)")
    b.logout()
    typ, _data = a._simple_command("SELECT", "INBOX", f"(QRESYNC ({validity} {modseq}))")
    assert typ == "OK"
    assert a.untagged_responses.pop("VANISHED") == [b"(EARLIER) 1"]
    fetched = a.untagged_responses.pop("FETCH")
    assert len(fetched) == 1 and b"\\Flagged" in fetched[0] and b"MODSEQ" in fetched[0]
    # an expunge by another session now arrives as VANISHED
    c = imap(server, "other@example.test", "other-pw")
    c.select("INBOX")
    c.store("1", "+FLAGS", r"(\Deleted)")
    c.expunge()
    c.logout()
    a.noop()
    assert a.untagged_responses.pop("VANISHED") == [b"2"]
    a.logout()


def test_esearch_searchres_and_list_status(server: Daisy) -> None:
    send(server, "fm@example.test", "alpha")
    send(server, "fm@example.test", "beta")
    send(server, "fm@example.test", "alpha again")
    m = imap(server, "fm@example.test", "fm-pw")
    m.select("INBOX")
    typ, _ = m._simple_command(
        "UID", "SEARCH", "RETURN", "(MIN MAX COUNT SAVE)", "SUBJECT", "alpha"
    )
    assert typ == "OK"
    line = m.untagged_responses.pop("ESEARCH")[0]
    assert re.fullmatch(rb'\(TAG "\w+"\) UID MIN \d+ MAX \d+ COUNT 2', line)
    typ, data = m.fetch("$", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [d[1] for d in data if isinstance(d, tuple)]
    assert len(subjects) == 2 and all(b"alpha" in s for s in subjects)
    typ, data = m._simple_command(
        "LIST", '""', "%", "RETURN", "(SPECIAL-USE STATUS (MESSAGES UIDNEXT))"
    )
    assert typ == "OK"
    statuses = m.untagged_responses.pop("STATUS")
    assert any(b"\\Junk" in line for line in m.untagged_responses.pop("LIST"))
    assert any(s.startswith(b'"INBOX" (MESSAGES 3 UIDNEXT 4)') for s in statuses)
    typ, _ = m._simple_command("CREATE", "Outbox", "(USE (\\Sent))")
    assert typ == "OK"
    typ, data = m.list('""', "Outbox")
    assert b"\\Sent" in data[0]
    m.logout()


def test_binary_fetch_decodes_base64(server: Daisy) -> None:
    payload = bytes(range(256))
    import base64

    msg = (
        b"Subject: bin\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--b--\r\n"
    )
    m = imap(server, "sync@example.test", "sync-pw")
    m.append("INBOX", None, None, msg)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BINARY.SIZE[2] BINARY.PEEK[2])")
    assert typ == "OK"
    assert b"BINARY.SIZE[2] 256" in data[0][0]
    assert data[0][1] == payload
    m.logout()


def test_compress_deflate_session(server: Daisy) -> None:
    import zlib

    m = imap(server)  # a folder of its own: the test must not depend on another's mail
    m.create("Zipped")
    assert m.append("Zipped", None, None, BIG)[0] == "OK"
    m.logout()
    c = Raw(server)
    c.send(b"z COMPRESS DEFLATE\r\n")
    assert c.until(b"z OK") == b"z OK DEFLATE active\r\n"
    out_z = zlib.compressobj(6, zlib.DEFLATED, -15)
    in_z = zlib.decompressobj(-15)

    def cmd(line: bytes, tag: bytes) -> bytes:
        c.sock.sendall(out_z.compress(line) + out_z.flush(zlib.Z_SYNC_FLUSH))
        got = b""
        while not re.search(rb"(^|\r\n)" + tag + rb" (OK|NO|BAD)[^\r]*\r\n$", got):
            chunk = c.sock.recv(65536)
            assert chunk, got
            got += in_z.decompress(chunk)
        return got

    out = cmd(b"a SELECT Zipped\r\n", b"a")
    assert b"EXISTS" in out and b"a OK [READ-WRITE]" in out
    out = cmd(b"b FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])\r\n", b"b")
    assert b"b OK FETCH completed" in out and len(out) > len(BIG)  # the big one, inflated
    out = cmd(b"c COMPRESS DEFLATE\r\n", b"c")
    assert b"c NO [COMPRESSIONACTIVE]" in out
    cmd(b"d LOGOUT\r\n", b"d")
    c.close()


def test_fetch_all_of_a_folder_of_medium_messages(server: Daisy) -> None:
    bodies = [b"Subject: medium %d\r\n\r\n" % i + b"m" * 900_000 + b"\r\n" for i in range(5)]
    m = imap(server, "sync@example.test", "sync-pw")
    m.create("Medium")
    for body in bodies:
        assert m.append("Medium", None, None, body)[0] == "OK"
    m.select("Medium", readonly=True)
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    assert [d[1] for d in data if isinstance(d, tuple)] == bodies
    assert m.noop()[0] == "OK"  # the session goes on after the line-by-line reply
    m.logout()
