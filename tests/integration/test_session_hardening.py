"""Sessions that must end, messages that must never go out wrong (issue 11: 5, 6, 12, 14).

One server for the module, with write_timeout = 1 s; each test has its own mailbox.
Clients are raw sockets with a tiny receive buffer, so that a client that stops
reading really stops the server's writes.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daisymail.directory.model import AddressRule, Domain, Login, Mailbox
from daisymail.directory.passwords import hash_password
from daisymail.directory.sql import SqlDirectory
from tests.conftest import Daisy

PASSWORD = "s3cret-pw"
USERS = ("big", "bigtls", "gone", "cut", "fifo", "mcut", "swap", "grow", "sendfile")
MBOX_USERS = ("mcut", "swap", "grow")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = Daisy(tmp_path_factory.mktemp("hardening") / "daisy")
    d.init()
    d.set_config("[limits]", "write_timeout", "1")
    directory = SqlDirectory(f"sqlite:///{d.root / 'daisymail.db'}")
    directory.add_domain(Domain(name="example.test"))
    secret = hash_password(PASSWORD)
    for user in USERS:
        fmt = "mbox" if user in MBOX_USERS else "maildir"
        directory.add_mailbox(Mailbox(name=f"{user}.box", format=fmt))
        directory.add_login(
            Login(user=user, domain="example.test", password_hash=secret, mailbox=f"{user}.box")
        )
        directory.add_address_rule(
            AddressRule(pattern=f"{user}@example.test", target=f"{user}.box")
        )
    directory.close()
    d.start()
    yield d
    d.stop()


def maildir(d: Daisy, user: str) -> Path:
    path = d.root / "mail" / f"{user}.box"
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def put(d: Daisy, user: str, name: str, data: bytes) -> Path:
    """A message file as another delivery program would leave it in new/."""
    path = maildir(d, user) / "new" / name
    path.write_bytes(data)
    return path


def current(d: Daisy, user: str, unique: str) -> Path:
    """A message file now (a view adds the W= size to names that lack it)."""
    (path,) = maildir(d, user).glob(f"*/{unique}*")
    return path


def mbox(d: Daisy, user: str) -> Path:
    return d.root / "mail" / f"{user}.box"


def wait_for_log(d: Daisy, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.logs():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never logged:\n{d.logs()[-3000:]}")
        time.sleep(0.05)


def small_socket(port: int) -> socket.socket:
    """A client whose receive buffer holds next to nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


class Client:
    """A line-level POP3 client on a raw socket, to stop reading or read to the end."""

    def __init__(self, d: Daisy, user: str) -> None:
        self.sock = small_socket(d.ports["pop3"])
        self.buf = b""
        assert self.line().startswith(b"+OK")
        self.command(f"USER {user}@example.test")
        reply = self.command(f"PASS {PASSWORD}")
        assert reply.startswith(b"+OK"), reply

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed, got {self.buf!r}")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def rest(self, timeout: float = 20.0) -> tuple[bytes, bool]:
        """Everything until the server closes, and whether it did close."""
        self.sock.settimeout(timeout)
        data, self.buf = self.buf, b""
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            pass
        return data, True

    def close(self) -> None:
        self.sock.close()


def pop_login(d: Daisy, user: str) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", d.ports["pop3"], timeout=10)
    p.user(f"{user}@example.test")
    p.pass_(PASSWORD)
    return p


# -- write timeouts (5) ------------------------------------------------------------------


def test_pop3_reader_that_stops_reading_is_cut_off_and_the_lock_freed(server: Daisy) -> None:
    line = b"x" * 998 + b"\n"
    put(server, "big", "1000000000.big1.host", b"Subject: big\n\n" + line * 25_000)
    client = Client(server, "big")
    client.sock.sendall(b"RETR 1\r\n")  # and never read the 25 MB
    wait_for_log(server, "pop3.write_timeout")
    p = pop_login(server, "big")  # the mailbox is no longer [IN-USE]
    assert p.stat()[0] == 1
    p.quit()
    client.close()


def test_pop3s_reader_that_stops_reading_is_cut_off_and_the_lock_freed(server: Daisy) -> None:
    line = b"x" * 998 + b"\n"
    put(server, "bigtls", "1000000000.big2.host", b"Subject: big\n\n" + line * 25_000)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = small_socket(server.ports["pop3s"])
    tls = ctx.wrap_socket(raw)
    reader = tls.makefile("rb")
    assert reader.readline().startswith(b"+OK")
    tls.sendall(b"USER bigtls@example.test\r\n")
    assert reader.readline().startswith(b"+OK")
    tls.sendall(f"PASS {PASSWORD}\r\n".encode())
    assert reader.readline().startswith(b"+OK")
    before = server.logs().count("pop3s.write_timeout")
    tls.sendall(b"RETR 1\r\n")  # and never read
    deadline = time.monotonic() + 20
    while server.logs().count("pop3s.write_timeout") == before:
        assert time.monotonic() < deadline, server.logs()[-2000:]
        time.sleep(0.05)
    p = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=ctx, timeout=10)
    p.user("bigtls@example.test")
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    p.quit()
    raw.close()


def test_smtp_client_that_never_reads_replies_is_cut_off(server: Daisy) -> None:
    sock = small_socket(server.ports["smtp"])
    commands = b"EHLO client.example\r\n" * 100_000
    failed: list[BaseException] = []

    def pipeline() -> None:
        try:
            sock.sendall(commands)
        except OSError as e:  # the server hung up on us, as it should
            failed.append(e)

    sender = threading.Thread(target=pipeline, daemon=True)
    sender.start()
    wait_for_log(server, "smtp.write_timeout")
    sock.settimeout(10)
    closed = False
    try:
        while sock.recv(65536):
            pass
        closed = True
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        pass
    assert closed
    sender.join(10)
    assert not sender.is_alive()
    sock.close()


def test_imap_reader_that_stops_reading_a_sendfile_reply_is_cut_off(server: Daisy) -> None:
    """Bodies the server knows need no conversion go by sendfile on a plain connection;
    a client that stops reading them is cut off by the same write timeout."""
    text = b"Subject: crlf\r\n\r\n" + b"y" * 998 + b"\r\n"
    for i in range(40):
        put(server, "sendfile", f"100000000{i}.sf{i}.host", text * 200)  # 8 MB in all
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login("sendfile@example.test", PASSWORD)
    m.select("INBOX", readonly=True)
    assert m.uid("FETCH", "1:*", "(BODY.PEEK[])")[0] == "OK"  # now known: no bare LF
    m.logout()
    before = server.logs().count("imap.write_timeout")
    s = small_socket(server.ports["imap"])
    s.sendall(b"a LOGIN sendfile@example.test " + PASSWORD.encode() + b"\r\n")
    s.sendall(b"b EXAMINE INBOX\r\nc UID FETCH 1:* BODY.PEEK[]\r\n")  # never read
    deadline = time.monotonic() + 20
    while server.logs().count("imap.write_timeout") == before:
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.05)
    s.close()
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login("sendfile@example.test", PASSWORD)
    assert m.select("INBOX", readonly=True)[1] == [b"40"]
    m.logout()


# -- no -ERR inside a message (12) -----------------------------------------------------


def test_retr_of_a_message_removed_after_listing_closes_without_err(server: Daisy) -> None:
    put(server, "gone", "1000000001.one.host", b"Subject: one\n\nbody\n")
    put(server, "gone", "1000000002.two.host", b"Subject: two\n\nbody\n")
    client = Client(server, "gone")
    assert client.command("STAT").startswith(b"+OK 2 ")
    current(server, "gone", "1000000001.one.host").unlink()  # another mail reader took it
    client.sock.sendall(b"RETR 1\r\n")
    data, closed = client.rest()
    assert data.startswith(b"+OK")
    assert b"-ERR" not in data
    assert not data.endswith(b"\r\n.\r\n")
    assert closed
    assert "pop3.send.failed" in server.logs()
    client.close()


def test_maildir_message_cut_short_during_retr_is_never_sent_as_complete(
    server: Daisy,
) -> None:
    line = b"y" * 98 + b"\n"
    put(server, "cut", "1000000003.cut.host", b"Subject: cut\n\n" + line * 200_000)
    client = Client(server, "cut")
    client.sock.sendall(b"RETR 1\r\n")
    data = b""
    while len(data) < 300_000:  # the server has the file open and is past 200 kB
        data += client.sock.recv(65536)
    assert data.startswith(b"+OK")
    os.truncate(current(server, "cut", "1000000003.cut.host"), 200_000)  # cut by another program
    rest, closed = client.rest()
    data += rest
    assert closed
    assert b"-ERR" not in data
    assert not data.endswith(b"\r\n.\r\n")
    assert len(data) < 200_000 * 100
    client.close()


def test_mbox_truncated_during_session_is_never_sent_as_empty(server: Daisy) -> None:
    mbox(server, "mcut").write_bytes(
        b"From a@example.net  Mon Jan  5 10:00:00 2004\nSubject: one\n\nbody\n\n"
    )
    client = Client(server, "mcut")
    assert client.command("STAT").startswith(b"+OK 1 ")
    os.truncate(mbox(server, "mcut"), 0)
    client.sock.sendall(b"RETR 1\r\n")
    data, closed = client.rest()
    assert data.startswith(b"+OK")
    assert b"\r\n.\r\n" not in data and b"-ERR" not in data
    assert closed
    client.close()


# -- reads off the event loop (6) ------------------------------------------------------


def test_a_message_read_that_blocks_does_not_stall_other_sessions(server: Daisy) -> None:
    """A message file that cannot be read yet (a FIFO here; a hung disk or NFS server in
    life) holds up only the session reading it."""
    body = b"Subject: slow\n\nhello\n"
    fifo = maildir(server, "fifo") / "new" / f"1000000004.fifo.host,S={len(body)},W=24"
    os.mkfifo(fifo)
    client = Client(server, "fifo")
    client.sock.sendall(b"RETR 1\r\n")
    try:
        time.sleep(0.3)  # let the server block in open()
        t0 = time.monotonic()
        other = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=5)
        assert other.getwelcome().startswith(b"+OK")
        other.quit()
        assert time.monotonic() - t0 < 2
    finally:
        fd = os.open(fifo, os.O_WRONLY)  # let the blocked read finish
        os.write(fd, body)
        os.close(fd)
    assert client.line().startswith(b"+OK")
    lines = [client.line() for _ in range(4)]
    assert lines == [b"Subject: slow", b"", b"hello", b"."]
    assert client.command("QUIT").startswith(b"+OK")
    client.close()


# -- mbox integrity under outside writers (14) -----------------------------------------


def _message(sender: str, subject: str) -> bytes:
    return (
        f"From {sender}  Mon Jan  5 10:00:00 2004\nSubject: {subject}\n\nthe body of {subject}\n\n"
    ).encode()


def test_same_size_rewrite_by_another_program_refuses_the_commit(server: Daisy) -> None:
    box = mbox(server, "swap")
    one, two, three = (_message("a@example.net", s) for s in ("msg-1", "msg-2", "msg-3"))
    assert len(one) == len(two)
    box.write_bytes(one + two + three)
    before = os.stat(box)
    client = Client(server, "swap")
    assert client.command("DELE 1").startswith(b"+OK")
    # Another program (a teapop still running, a mail reader) rewrites the file in
    # place: message 1 was taken, the rest moved up; same size, same mtime.
    rewritten = two + three + b"X-Padding: " + b"p" * (len(one) - 13) + b"\n\n"
    assert len(rewritten) == before.st_size
    with open(box, "r+b") as f:
        f.write(rewritten)
    os.utime(box, ns=(before.st_atime_ns, before.st_mtime_ns))
    reply = client.command("QUIT")
    assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
    assert box.read_bytes() == rewritten  # nothing was deleted
    assert not (box.parent / "swap.box.lock").exists()
    client.close()


def test_mail_appended_during_the_session_still_commits(server: Daisy) -> None:
    box = mbox(server, "grow")
    box.write_bytes(_message("a@example.net", "old-1") + _message("a@example.net", "old-2"))
    client = Client(server, "grow")
    assert client.command("DELE 1").startswith(b"+OK")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("s@example.net", ["grow@example.test"], b"Subject: new-3\r\n\r\nhi\r\n")
    assert client.command("QUIT").startswith(b"+OK")
    data = box.read_bytes()
    assert b"Subject: old-1" not in data
    assert b"Subject: old-2" in data and b"Subject: new-3" in data
    client.close()
