"""What Dovecot's imaptest checks, on the real server over real sockets.

Each test is one group imaptest failed: \\Recent (select, copy, search-flags), keywords
announced before FETCH shows them, UIDVALIDITY never reused (uidvalidity), folder names
with ``[`` (atoms), LSUB's \\Noselect parents (subscribe), LIST-EXTENDED (listext).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import Daisy
from tests.integration.imap_support import send, start_server

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


def test_recent_is_seen_by_one_session_only(server: Daisy) -> None:
    a, b = Client(server), Client(server)
    try:
        assert b" OK " in status_line(a.cmd("CREATE Recent1"))
        a.append("Recent1")
        a.append("Recent1")
        examined = a.cmd("EXAMINE Recent1")  # read-only: looks, takes nothing
        assert b"* 2 RECENT\r\n" in examined
        assert b"(MESSAGES 2 RECENT 2)" in a.cmd("STATUS Recent1 (MESSAGES RECENT)")
        selected = a.cmd("SELECT Recent1")
        assert b"* 2 RECENT\r\n" in selected
        fetched = a.cmd("FETCH 1:2 (FLAGS)")
        assert fetched.count(b"\\Recent") == 2
        assert b"* SEARCH 1 2\r\n" in a.cmd("SEARCH RECENT")
        assert b"* SEARCH 1 2\r\n" in a.cmd("SEARCH NEW")
        assert b"* SEARCH\r\n" in a.cmd("SEARCH OLD")
        # Another session selecting it now finds nothing recent.
        other = b.cmd("SELECT Recent1")
        assert b"* 0 RECENT\r\n" in other
        assert b"\\Recent" not in b.cmd("FETCH 1:2 (FLAGS)")
        assert b"* SEARCH 1 2\r\n" in b.cmd("SEARCH OLD")
        # A message arriving while both have the folder is recent in the first to look.
        c = Client(server)
        c.append("Recent1")
        c.close()
        news = a.cmd("NOOP")
        assert b"* 3 EXISTS\r\n" in news and b"* 3 RECENT\r\n" in news
        assert b"\\Recent" in a.cmd("FETCH 3 (FLAGS)")
        late = b.cmd("NOOP")
        assert b"* 3 EXISTS\r\n" in late and b"* 0 RECENT\r\n" in late
        assert b"\\Recent" not in b.cmd("FETCH 3 (FLAGS)")
        assert b"(RECENT 0)" in b.cmd("STATUS Recent1 (RECENT)")
    finally:
        a.close()
        b.close()


def test_copied_and_delivered_messages_are_recent(server: Daisy) -> None:
    a, b = Client(server), Client(server)
    try:
        a.cmd("CREATE Recent2")
        b.cmd("SELECT Recent2")
        a.cmd("SELECT INBOX")
        send(server, "demo@example.test", "recent by smtp")
        assert b"RECENT" in a.cmd("NOOP")  # INBOX: the delivery is recent for a
        a.cmd("COPY 1 Recent2")
        news = b.cmd("NOOP")
        assert b"* 1 EXISTS\r\n" in news and b"* 1 RECENT\r\n" in news
        assert b"\\Recent" in b.cmd("FETCH 1 (FLAGS)")
        # \Recent is the session's, never stored: not in the folder state on disk.
        assert b" OK " in status_line(b.cmd("COPY 1 Recent2"))
        states = list(server.root.rglob(".Recent2/daisymail-imap-uids"))
        assert states and all(b"Recent" not in p.read_bytes() for p in states)
    finally:
        a.close()
        b.close()


def test_imap4rev2_session_sees_no_recent(server: Daisy) -> None:
    a = Client(server)
    try:
        a.cmd("CREATE Recent3")
        a.append("Recent3")
        a.cmd("ENABLE IMAP4rev2")
        selected = a.cmd("SELECT Recent3")
        assert b"RECENT" not in selected
        assert b"\\Recent" not in a.cmd("FETCH 1 (FLAGS)")
        a.append("Recent3")
        assert b"RECENT" not in a.cmd("NOOP")
        # Enabled with the folder selected (a lenient server takes it): gone at once.
        b = Client(server)
        try:
            b.append("Recent3")
            assert b"* 1 RECENT\r\n" in b.cmd("SELECT Recent3")  # a took the others
            b.cmd("ENABLE IMAP4rev2")
            assert b"\\Recent" not in b.cmd("FETCH 1:3 (FLAGS)")
        finally:
            b.close()
    finally:
        a.close()


def test_new_keywords_are_announced_before_a_fetch_shows_them(server: Daisy) -> None:
    a, b = Client(server), Client(server)
    try:
        a.cmd("CREATE Keywords")
        a.append("Keywords")
        a.cmd("SELECT Keywords")
        b.cmd("SELECT Keywords")
        stored = a.cmd("STORE 1 +FLAGS ($Hello)")
        flags_at = stored.find(b"* FLAGS (")
        fetch_at = stored.find(b"* 1 FETCH")
        assert 0 <= flags_at < fetch_at, stored
        assert re.search(rb"\* FLAGS \([^)]*\$Hello", stored)
        permanent = re.search(rb"\* OK \[PERMANENTFLAGS \(([^)]*)\)", stored)
        assert permanent is not None and {b"$Hello", b"\\*"} <= set(permanent[1].split())
        # The other session learns of the keyword before the flag change.
        news = b.cmd("NOOP")
        flags_at, fetch_at = news.find(b"* FLAGS ("), news.find(b"* 1 FETCH")
        assert 0 <= flags_at < fetch_at and b"$Hello" in news[flags_at:fetch_at], news
        assert b"* FLAGS" not in b.cmd("NOOP")  # said once
    finally:
        a.close()
        b.close()


def test_folder_made_again_in_the_same_second_gets_another_uidvalidity(server: Daisy) -> None:
    a = Client(server)
    try:
        seen = set()
        for _ in range(3):
            a.cmd("CREATE Again")
            a.append("Again")
            reply = a.cmd("STATUS Again (UIDVALIDITY UIDNEXT)")
            m = re.search(rb"UIDVALIDITY (\d+) UIDNEXT (\d+)", reply)
            assert m is not None, reply
            seen.add(m.group(1))
            assert b" OK " in status_line(a.cmd("DELETE Again"))
        assert len(seen) == 3
        # Two folders made at once do not share one either.
        a.cmd("CREATE Twin1")
        a.cmd("CREATE Twin2")
        one = re.search(rb"UIDVALIDITY (\d+)", a.cmd("STATUS Twin1 (UIDVALIDITY)"))
        two = re.search(rb"UIDVALIDITY (\d+)", a.cmd("STATUS Twin2 (UIDVALIDITY)"))
        assert one is not None and two is not None and one.group(1) != two.group(1)
    finally:
        a.close()


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


def test_lsub_names_the_noselect_parent_of_a_subscribed_folder(server: Daisy) -> None:
    a = Client(server)
    try:
        for name in ("Sub.one", "Sub.two.deep", "Sub.three.deep"):
            assert b" OK " in status_line(a.cmd(f"CREATE {name}"))
        for name in ("Sub.one", "Sub.two.deep", "Sub.three.deep"):
            a.cmd(f"SUBSCRIBE {name}")
        lsub = a.cmd('LSUB "" Sub.%')
        assert b'* LSUB (\\HasNoChildren) "." "Sub.one"\r\n' in lsub
        assert b'* LSUB (\\Noselect) "." "Sub.two"\r\n' in lsub
        assert b'* LSUB (\\Noselect) "." "Sub.three"\r\n' in lsub
        assert b"deep" not in lsub
        everything = a.cmd('LSUB "" Sub.*')  # * reaches the folders themselves
        assert b"Noselect" not in everything and everything.count(b"* LSUB") == 3
    finally:
        a.close()


def test_delete_keeps_the_subscription_and_childinfo_is_for_unlisted_children(
    server: Daisy,
) -> None:
    a = Client(server)
    try:
        a.cmd("CREATE Ext.gone")
        a.cmd("SUBSCRIBE Ext.gone")
        assert b" OK " in status_line(a.cmd("DELETE Ext.gone"))
        # RFC 3501 6.3.6: the server never drops a subscription by itself.
        listed = a.cmd('LIST (SUBSCRIBED) "" Ext.*')
        assert b'(\\NonExistent \\Subscribed) "." "Ext.gone"' in listed
        a.cmd("CREATE Ext.kid.one")
        a.cmd("SUBSCRIBE Ext.kid.one")
        alone = a.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" (Ext.kid)')
        assert b'"Ext.kid" ("CHILDINFO" ("SUBSCRIBED"))' in alone
        both = a.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" (Ext.kid Ext.kid.one)')
        assert b"CHILDINFO" not in both and b'"Ext.kid.one"' in both
        a.cmd("UNSUBSCRIBE Ext.gone")
        assert b"Ext.gone" not in a.cmd('LIST (SUBSCRIBED) "" Ext.*')
    finally:
        a.close()


QP = (
    b"From: a@example.net\r\nSubject: qp\r\nMime-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"hello  \r\nbar=\r\n\r\nfoo\t \t= \r\n=62\r\nfoo =\r\n=62\r\nx=3Dy =Zz\r\n"
)


def test_binary_undoes_quoted_printable_as_rfc_2045_asks(server: Daisy) -> None:
    a = Client(server)
    try:
        a.cmd("CREATE Qp")
        n = a.n = a.n + 1
        a.sock.sendall(b"t%d APPEND Qp {%d+}\r\n" % (n, len(QP)) + QP + b"\r\n")
        while not a._read_line().startswith(b"t%d " % n):
            pass
        a.cmd("SELECT Qp")
        # Trailing blanks dropped, "=" then blanks is a soft break, "=Zz" kept as it is.
        decoded = b"hello\r\nbar\r\nfoo\t \tb\r\nfoo b\r\nx=y =Zz\r\n"
        got = a.cmd("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
        assert b"BINARY.SIZE[1] %d " % len(decoded) in got
        assert b"BINARY[1] {%d}\r\n" % len(decoded) + decoded + b")" in got
    finally:
        a.close()


def test_appended_nul_octets_are_kept_as_base64(server: Daisy) -> None:
    a = Client(server)
    try:
        a.cmd("CREATE Bin")
        msg = (
            b"From: a@example.net\r\nMime-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
            b"\r\n\x00-\xe4\n\r\n\n"
        )
        n = a.n = a.n + 1
        a.sock.sendall(b"t%d APPEND Bin ~{%d}\r\n" % (n, len(msg)))
        assert a._read_line().startswith(b"+")
        a.sock.sendall(msg + b"\r\n")
        while not (line := a._read_line()).startswith(b"t%d " % n):
            pass
        assert b" OK " in line, line
        a.cmd("SELECT Bin")
        body = a.cmd("FETCH 1 (BODY.PEEK[1] BODYSTRUCTURE)")
        assert b"\x00" not in body and b'"BASE64"' in body.upper()
        got = a.cmd("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
        assert b"BINARY.SIZE[1] 7 " in got
        assert b"BINARY[1] ~{7}\r\n\x00-\xe4\n\r\n\n)" in got
    finally:
        a.close()


def test_condstore_first_used_by_fetch_says_highestmodseq_and_esearch_modseq(
    server: Daisy,
) -> None:
    a = Client(server)
    try:
        a.cmd("CREATE Modseq")
        for _ in range(3):
            a.append("Modseq")
        a.cmd("SELECT Modseq")
        first = a.cmd("FETCH 1 (MODSEQ)")  # CONDSTORE-enabling: RFC 7162 3.1
        assert re.search(rb"^\* OK \[HIGHESTMODSEQ \d+\]", first, re.M), first
        assert b"HIGHESTMODSEQ" not in a.cmd("FETCH 1 (MODSEQ)")  # only the first time
        modseq = {}
        for seq in (1, 3, 2):  # 2 changed last: the highest
            got = a.cmd(f"STORE {seq} +FLAGS (\\Seen)")
            m = re.search(rb"MODSEQ \((\d+)\)", got)
            assert m is not None, got
            modseq[seq] = int(m[1])
        key = 'MODSEQ "/flags/\\\\seen" all 1'
        assert b"MIN 1 MODSEQ %d\r\n" % modseq[1] in a.cmd(f"SEARCH RETURN (MIN) 1:3 {key}")
        assert b"MAX 3 MODSEQ %d\r\n" % modseq[3] in a.cmd(f"SEARCH RETURN (MAX) 1:3 {key}")
        assert b"ALL 1:3 MODSEQ %d\r\n" % modseq[2] in a.cmd(f"SEARCH RETURN () 1:3 {key}")
        assert b"MODSEQ %d" % modseq[2] in a.cmd(f"SEARCH RETURN (MIN MAX) 2:3 {key}")
    finally:
        a.close()
