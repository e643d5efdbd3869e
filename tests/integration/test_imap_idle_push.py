"""IDLE push with the shared folder snapshots: every session idling on a folder hears,
within a second, of what other sessions and SMTP deliveries change; a session keeps
its own numbering while it may not be told of an expunge."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daisy
from tests.integration.imap_support import imap, send, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("idle-push")))
    yield d
    d.stop()


class Idler:
    def __init__(self, server: Daisy, qresync: bool = False) -> None:
        self.m = imap(server)
        if qresync:
            self.m._simple_command("ENABLE", "QRESYNC")
        self.m.select("INBOX")
        self.tag = self.m._new_tag()
        self.m.send(self.tag + b" IDLE\r\n")
        assert self.m.readline().startswith(b"+")

    def expect(self, pattern: bytes, within: float = 1.0) -> bytes:
        """The next untagged line, which must match and come within the time."""
        t0 = time.monotonic()
        self.m.sock.settimeout(5)
        line = self.m.readline()
        assert re.match(pattern, line), line
        assert time.monotonic() - t0 < within, f"{line!r} after {time.monotonic() - t0:.2f}s"
        return line

    def done(self) -> None:
        self.m.send(b"DONE\r\n")
        assert self.m.readline().startswith(self.tag + b" OK")


def _count(m: imaplib.IMAP4) -> int:
    typ, data = m.select("INBOX")
    assert typ == "OK"
    return int(data[0])  # type: ignore[arg-type]


def test_idlers_on_one_folder_hear_deliveries_flags_and_expunges(server: Daisy) -> None:
    send(server, "demo@example.test", "first")
    send(server, "demo@example.test", "second")
    other = imap(server)
    n = _count(other)
    a, b = Idler(server), Idler(server)
    send(server, "demo@example.test", "third")
    recent = 0
    for idler in (a, b):
        idler.expect(rb"\* %d EXISTS" % (n + 1))
        recent += int(idler.expect(rb"\* [01] RECENT").split()[1])
    assert recent == 1  # the new message is recent in exactly one session
    other.select("INBOX")
    other.store(str(n), "+FLAGS", "\\Flagged")
    for idler in (a, b):
        idler.expect(rb"\* %d FETCH \(.*\\Flagged" % n)
    other.store(str(n - 1), "+FLAGS", "\\Deleted")
    other.expunge()
    for idler in (a, b):
        idler.expect(rb"\* %d EXPUNGE" % (n - 1))
    a.done()
    a.m.untagged_responses.clear()
    typ, _ = a.m.noop()  # nothing left to tell: the view is up to date
    assert typ == "OK"
    assert not {"EXISTS", "EXPUNGE", "FETCH"} & set(a.m.untagged_responses)
    b.done()
    for m in (a.m, b.m, other):
        m.logout()


def test_qresync_idler_hears_vanished(server: Daisy) -> None:
    send(server, "demo@example.test", "to vanish")
    other = imap(server)
    n = _count(other)
    idler = Idler(server, qresync=True)
    other.store(str(n), "+FLAGS", "\\Deleted")
    other.expunge()
    line = idler.expect(rb"\* VANISHED \d+")
    assert b"EARLIER" not in line
    idler.done()
    idler.m.logout()
    other.logout()


def test_a_fetch_keeps_numbers_until_an_expunge_may_be_told(server: Daisy) -> None:
    """RFC 3501 7.4.1: no EXPUNGE during FETCH; the message keeps its number till NOOP."""
    for i in range(3):
        send(server, "demo@example.test", f"numbered {i}")
    mine, other = imap(server), imap(server)
    n = _count(mine)
    other.select("INBOX")
    typ, data = other.fetch(str(n - 1), "(UID)")
    uid = int(re.findall(rb"UID (\d+)", data[0])[0])  # type: ignore[arg-type]
    other.store(str(n - 1), "+FLAGS", "\\Deleted")
    other.expunge()
    typ, data = mine.fetch(f"{n - 2}:{n}", "(UID)")
    assert typ == "OK"
    text = b" ".join(d for d in data if isinstance(d, bytes))
    assert b"EXPUNGE" not in text
    assert re.search(rb"%d \(UID \d+\)" % n, text)  # the last one is still number n
    typ, data = mine.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK"
    typ, data = mine.noop()
    assert typ == "OK"
    assert any(b"%d" % (n - 1) == d for d in mine.untagged_responses.get("EXPUNGE", []))
    typ, data = mine.fetch(str(n - 1), "(UID)")  # the last message has moved down
    assert int(re.findall(rb"UID (\d+)", data[0])[0]) > uid  # type: ignore[arg-type]
    mine.logout()
    other.logout()
