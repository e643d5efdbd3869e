"""imapclient, the IMAP library many Python mail tools use, against the real server."""

from __future__ import annotations

from collections.abc import Iterator

import imapclient  # a dev dependency (pyproject.toml)
import pytest

from tests.conftest import Daisy
from tests.integration.imap_support import send, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imapclient") / "daisy"))
    yield d
    d.stop()


def _client(daisy: Daisy) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient("127.0.0.1", port=daisy.ports["imap"], ssl=False, timeout=10)
    c.login("demo@example.test", "demo-pw")
    return c


def test_folders_special_use_and_status(server: Daisy) -> None:
    with _client(server) as c:
        assert b"IDLE" in c.capabilities() and c.has_capability("UIDPLUS")
        folders = {name: flags for flags, _, name in c.list_folders()}
        assert b"\\Sent" in folders["Sent"] and b"\\Trash" in folders["Trash"]
        assert c.find_special_folder(b"\\Sent") == "Sent"
        c.create_folder("Projects.Daisy")
        assert "Projects.Daisy" in c.list_sub_folders() or c.folder_exists("Projects.Daisy")
        status = c.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "UIDVALIDITY"])
        assert status[b"UIDNEXT"] >= 1 and status[b"UIDVALIDITY"] > 0


def test_fetch_envelope_flags_search_move(server: Daisy) -> None:
    send(server, "demo@example.test", "=?utf-8?q?caf=C3=A9?= for imapclient", "body text")
    with _client(server) as c:
        c.select_folder("INBOX")
        uids = c.search(["SUBJECT", "café"], charset="UTF-8")
        assert len(uids) == 1
        uid = uids[0]
        data = c.fetch(uids, ["ENVELOPE", "FLAGS", "RFC822.SIZE", "BODY.PEEK[TEXT]"])[uid]
        env = data[b"ENVELOPE"]
        assert env.subject == b"=?utf-8?q?caf=C3=A9?= for imapclient"
        assert env.from_[0].mailbox == b"s" and env.from_[0].host == b"example.net"
        assert data[b"BODY[TEXT]"] == b"body text\r\n"
        assert data[b"FLAGS"] == (b"\\Recent",)  # this session is the first to see it
        c.add_flags(uids, [imapclient.SEEN, b"$Important"])
        assert set(c.get_flags(uids)[uid]) == {b"\\Recent", b"\\Seen", b"$Important"}
        assert c.search(["KEYWORD", "$Important"]) == [uid]
        c.move(uids, "Archive")
        assert c.search(["SUBJECT", "imapclient"]) == []
        c.select_folder("Archive", readonly=True)
        moved = c.search(["SUBJECT", "imapclient"])
        assert len(moved) == 1
        assert b"$Important" in c.get_flags(moved)[moved[0]]


def test_append_and_idle_sees_new_mail(server: Daisy) -> None:
    with _client(server) as c, _client(server) as idler:
        uid_before = c.folder_status("Sent", ["UIDNEXT"])[b"UIDNEXT"]
        message = b"From: demo@example.test\r\nSubject: sent copy\r\n\r\nhi\r\n"
        c.append("Sent", message, [b"\\Seen"])
        c.select_folder("Sent", readonly=True)
        assert c.search(["UID", f"{uid_before}:*", "SEEN"]) == [uid_before]
        idler.select_folder("INBOX")
        idler.idle()
        send(server, "demo@example.test", "during idle")
        events = idler.idle_check(timeout=5)
        idler.idle_done()
        assert any(e[1] == b"EXISTS" for e in events), events
