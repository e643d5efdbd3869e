"""The IMAP server on real sockets, driven by imaplib: logins, folders, flags, POP3 agreement."""

from __future__ import annotations

import imaplib
import poplib
import re
import time
from collections.abc import Iterator

import pytest

from tests.clients import tls_context
from tests.conftest import Daisy
from tests.integration.imap_support import imap, send, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imap") / "daisy"))
    yield d
    d.stop()


def test_login_both_spellings_and_failures_look_alike(server: Daisy) -> None:
    for name in ("demo@example.test", "demo%example.test"):
        m = imap(server, name)
        assert m.state == "AUTH"
        m.logout()
    replies = []
    for user, pw in (("demo@example.test", "wrong"), ("nobody@example.test", "demo-pw")):
        m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
        with pytest.raises(imaplib.IMAP4.error) as e:
            m.login(user, pw)
        replies.append(str(e.value))
        m.logout()
    assert replies[0] == replies[1]
    assert "AUTHENTICATIONFAILED" in replies[0]


def test_authenticate_plain_with_initial_response_over_imaps(server: Daisy) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=tls_context(), timeout=10)
    assert "AUTH=PLAIN" in m.capabilities
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0demo@example.test\0demo-pw")
    assert typ == "OK"
    m.logout()


def test_starttls_then_login(server: Daisy) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    assert "STARTTLS" in m.capabilities
    m.starttls(tls_context())
    m.login("demo@example.test", "demo-pw")
    m.logout()


def test_special_folders_listed_with_attributes(server: Daisy) -> None:
    m = imap(server)
    typ, data = m.list()
    assert typ == "OK"
    lines = b"\n".join(d for d in data if isinstance(d, bytes)).decode()
    for name, attr in (
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Junk", "\\Junk"),
        ("Trash", "\\Trash"),
        ("Archive", "\\Archive"),
    ):
        assert re.search(rf"\(.*{re.escape(attr)}.*\) \".\" \"{name}\"", lines), lines
    assert "INBOX" in lines
    m.logout()


def test_fetch_message_delivered_by_smtp(server: Daisy) -> None:
    send(server, "demo@example.test", "fetch me", "the body")
    m = imap(server)
    typ, data = m.select("INBOX")
    assert typ == "OK"
    n = int(data[0])
    assert n >= 1
    typ, msg = m.fetch(
        str(n),
        "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])",
    )
    assert typ == "OK"
    head = msg[0][0].decode()  # type: ignore[index]
    assert "ENVELOPE" in head and '"fetch me"' in head
    assert b"Subject: fetch me" in msg[0][1]  # type: ignore[index]
    assert b"the body" in msg[1][1]  # type: ignore[index]
    typ, body = m.fetch(str(n), "(RFC822.SIZE BODY[])")
    size = int(re.search(rb"RFC822.SIZE (\d+)", body[0][0]).group(1))  # type: ignore[index, union-attr]
    assert size == len(body[0][1])  # type: ignore[index]
    typ, flags = m.fetch(str(n), "FLAGS")
    assert b"\\Seen" in flags[0]  # type: ignore[operator]
    typ, hits = m.search(None, "SUBJECT", '"fetch me"')
    assert hits[0].split()[-1] == str(n).encode()
    m.logout()


def test_flags_persist_and_expunge_shows_in_pop3(server: Daisy) -> None:
    send(server, "other@example.test", "keep")
    send(server, "other@example.test", "drop")
    m = imap(server, "other@example.test", "other-pw")
    m.select("INBOX")
    _typ, hits = m.search(None, "SUBJECT", "drop")
    drop = hits[0].split()[0]
    m.store(drop, "+FLAGS", "(\\Flagged $Important)")
    m.logout()
    m = imap(server, "other@example.test", "other-pw")
    m.select("INBOX")
    _typ, data = m.fetch(drop, "FLAGS")
    assert b"\\Flagged" in data[0] and b"$Important" in data[0]  # type: ignore[operator]
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.user("other@example.test")
    p.pass_("other-pw")
    before = p.uidl()[1]
    p.quit()
    assert len(before) == 2
    m.store(drop, "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.user("other@example.test")
    p.pass_("other-pw")
    after = p.uidl()[1]
    p.quit()
    assert len(after) == 1
    assert after[0].split()[1] in [b.split()[1] for b in before]


def test_append_move_and_idle_news(server: Daisy) -> None:
    idler = imap(server)
    idler.select("INBOX")
    tag = idler._new_tag()
    idler.send(tag + b" IDLE\r\n")
    assert idler.readline().startswith(b"+")
    phone = imap(server)
    typ, data = phone.append(
        "Sent",
        "(\\Seen)",
        imaplib.Time2Internaldate(time.time()),
        b"Subject: sent one\r\n\r\nhi\r\n",
    )
    assert typ == "OK" and b"APPENDUID" in data[0]
    phone.select("Sent")
    typ, data = phone.uid("MOVE", "1:*", "Archive")
    assert typ == "OK"
    typ, data = phone.status("Archive", "(MESSAGES UIDNEXT)")
    assert b"MESSAGES 1" in data[0]
    typ, data = phone.status("Sent", "(MESSAGES)")
    assert b"MESSAGES 0" in data[0]
    send(server, "demo@example.test", "push")
    delivered = time.monotonic()  # the 250 reply: the message is on disk
    idler.sock.settimeout(5)
    line = idler.readline()
    assert re.match(rb"\* \d+ EXISTS", line), line
    assert time.monotonic() - delivered < 1.0
    assert re.match(rb"\* \d+ RECENT", idler.readline())  # the idler saw it first
    idler.send(b"DONE\r\n")
    assert idler.readline().startswith(tag + b" OK")
    idler.logout()
    phone.logout()
