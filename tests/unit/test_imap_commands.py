"""Mailbox commands on a real Maildir, without sockets: replies for tables of commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daisymail.imap.append import append_date
from daisymail.imap.commands import MailSession
from daisymail.imap.parser import parse_command
from daisymail.imap.protocol import UID_COMMANDS, Execute, State
from daisymail.imap.responses import internal_date
from daisymail.store.imap_folders import AccountFolders
from daisymail.store.imap_state import FileMailboxState
from daisymail.store.maildir import ensure_maildir
from daisymail.store.maildir_write import add_message

MESSAGES = [
    b"From: Ann <ann@a.test>\nTo: bob@b.test\nSubject: Lunch plans\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\n\nShall we meet at noon?\n",
    b"From: Carl <carl@c.test>\nTo: bob@b.test\nSubject: =?utf-8?q?Caf=C3=A9?= report\n"
    b"Date: Tue, 10 Nov 2026 10:00:00 +0000\nContent-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: base64\n\nVGhlIGNhZsOpIGlzIGNsb3NlZA==\n",
    b"From: Ann <ann@a.test>\nTo: bob@b.test\nSubject: Big one\n\n" + b"x" * 5000 + b"\n",
]


def run(session: MailSession, line: str) -> bytes:
    cmd = parse_command(line.encode() + b"\r\n")
    name, uid, args = cmd.name, False, list(cmd.args)
    if name == "UID":
        assert isinstance(args[0], str) and args[0].upper() in UID_COMMANDS
        name, uid, args = args[0].upper(), True, args[1:]
    out, _ = session.run_safely(Execute(cmd.tag, name, uid, args, State.SELECTED))
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "box"
    ensure_maildir(str(root))
    for data in MESSAGES:
        add_message(str(root), [data], when=1_700_000_000)
    return root


@pytest.fixture
def session(root: Path) -> MailSession:
    folders = AccountFolders(str(root), FileMailboxState())
    folders.ensure_defaults()
    s = MailSession(folders, 1 << 20)
    out = run(s, "s SELECT INBOX")
    assert b"* 3 EXISTS\r\n" in out and out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    return s


SEARCHES = [
    ("ALL", [1, 2, 3]),
    ("FROM ann", [1, 3]),
    ('SUBJECT "café"', [2]),
    ("BODY closed", [2]),
    ("TEXT noon", [1]),
    ("LARGER 1000", [3]),
    ("NOT LARGER 1000", [1, 2]),
    ("OR SUBJECT lunch SUBJECT big", [1, 3]),
    ("SENTSINCE 5-Nov-2026", [2]),
    ("SENTBEFORE 5-Nov-2026", [1]),
    ("2:*", [2, 3]),
    ("UID 1,3", [1, 3]),
    ("UNSEEN", [1, 2, 3]),
    ("NEW", [1, 2, 3]),  # recent here: this session selected INBOX first
    ("OLD", []),
    ("(FROM ann SUBJECT big)", [3]),
    ("HEADER To bob@b.test", [1, 2, 3]),
    ("CHARSET UTF-8 SUBJECT café", [2]),
]


@pytest.mark.parametrize(("keys", "hits"), SEARCHES)
def test_search(session: MailSession, keys: str, hits: list[int]) -> None:
    out = run(session, f"t SEARCH {keys}")
    line = out.split(b"\r\n")[0]
    assert line == b"* SEARCH" + b"".join(b" %d" % n for n in hits)


@pytest.mark.parametrize(
    "keys", ["FROM", "BEFORE 31-Foo-2020", "LARGER x", "WHAT", "CHARSET KOI8 x"]
)
def test_bad_search(session: MailSession, keys: str) -> None:
    assert run(session, f"t SEARCH {keys}").startswith(b"t BAD ")


def test_fetch_body_sets_seen_and_peek_does_not(session: MailSession) -> None:
    out = run(session, "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert out.startswith(
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Lunch plans\r\n\r\n)"
    )
    out = run(session, "b FETCH 1 BODY[TEXT]")
    assert out.startswith(
        b"* 1 FETCH (BODY[TEXT] {24}\r\nShall we meet at noon?\r\n FLAGS (\\Recent \\Seen))"
    )
    assert out.count(b"FETCH (") == 1
    out = run(session, "c UID FETCH 3 (RFC822.SIZE BODY[]<0.7>)")
    assert out.startswith(
        b"* 3 FETCH (UID 3 RFC822.SIZE 5062 BODY[]<0> {7}\r\nFrom: A FLAGS (\\Recent \\Seen))"
    )


def test_store_replies_and_silent(session: MailSession) -> None:
    out = run(session, "a STORE 1:2 +FLAGS (\\Flagged $Work)")
    assert out == (  # a new keyword is announced first (RFC 3501 7.2.6)
        b"* FLAGS ($Work \\Answered \\Deleted \\Draft \\Flagged \\Seen)\r\n"
        b"* OK [PERMANENTFLAGS ($Work \\* \\Answered \\Deleted \\Draft \\Flagged \\Seen)]"
        b" flags allowed\r\n"
        b"* 1 FETCH (FLAGS ($Work \\Flagged \\Recent))\r\n"
        b"* 2 FETCH (FLAGS ($Work \\Flagged \\Recent))\r\n"
        b"a OK STORE completed\r\n"
    )
    assert run(session, "b STORE 1 -FLAGS.SILENT ($Work)") == b"b OK STORE completed\r\n"
    out = run(session, "c UID STORE 2 FLAGS (\\Seen)")
    assert out == b"* 2 FETCH (UID 2 FLAGS (\\Recent \\Seen))\r\nc OK STORE completed\r\n"
    assert run(session, "d STORE 1 +FLAGS (\\Recent)").startswith(b"d BAD ")


def test_news_from_another_session(root: Path, session: MailSession) -> None:
    other = MailSession(AccountFolders(str(root), FileMailboxState()), 1 << 20)
    run(other, "o SELECT INBOX")
    run(other, "o STORE 2 +FLAGS (\\Deleted)")
    run(other, "o EXPUNGE")
    add_message(str(root), [b"Subject: new\n\nnew\n"])
    out = run(session, "a FETCH 1 FLAGS")  # no EXPUNGE during FETCH
    assert b"EXPUNGE" not in out and b"* 4 EXISTS\r\n" in out
    out = run(session, "b NOOP")
    assert out == b"* 2 EXPUNGE\r\nb OK NOOP completed\r\n"
    out = run(session, "c FETCH 3 (UID)")
    assert out.startswith(b"* 3 FETCH (UID 4)")


def test_copy_move_expunge(session: MailSession) -> None:
    out = run(session, "a COPY 1:2 Archive")
    assert re.match(rb"a OK \[COPYUID \d+ 1,2 1,2\] COPY completed\r\n", out)
    out = run(session, "b UID MOVE 3 Trash")
    assert re.match(rb"\* OK \[COPYUID \d+ 3 1\] moved\r\n\* 3 EXPUNGE\r\nb OK MOVE completed", out)
    assert run(session, "c COPY 1 Nowhere") == b"c NO [TRYCREATE] no such folder\r\n"
    run(session, "d STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert run(session, "e UID EXPUNGE 2") == b"e OK EXPUNGE completed\r\n"
    assert run(session, "f EXPUNGE") == b"* 1 EXPUNGE\r\nf OK EXPUNGE completed\r\n"
    out = run(session, "g STATUS Archive (MESSAGES UIDNEXT UNSEEN)")
    assert out.startswith(b'* STATUS "Archive" (MESSAGES 2 UIDNEXT 3 UNSEEN 2)\r\n')


LISTS = [
    ('"" *', ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Work", "Work.Daisy"]),
    ('"" %', ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Work"]),
    ('"" Work.%', ["Work.Daisy"]),
    ("Work. *", ["Work.Daisy"]),
    ('"" inbox', ["INBOX"]),
    ('"" S*', ["Sent"]),
]


@pytest.mark.parametrize(("args", "names"), LISTS)
def test_list_patterns(session: MailSession, args: str, names: list[str]) -> None:
    run(session, "c CREATE Work.Daisy")
    out = run(session, f"l LIST {args}")
    got = re.findall(rb'\* LIST \([^)]*\) "." "([^"]*)"', out)
    assert [g.decode() for g in got] == names


def test_list_attributes_and_subscribed(session: MailSession) -> None:
    run(session, "c CREATE Work.Daisy")
    out = run(session, 'l LIST "" *')
    assert b'* LIST (\\HasChildren) "." "Work"\r\n' in out
    assert b'* LIST (\\HasNoChildren \\Sent) "." "Sent"\r\n' in out
    out = run(session, 'l LIST (SUBSCRIBED) "" *')
    assert b'"Work"' not in out and b'(\\HasNoChildren \\Subscribed) "." "INBOX"' in out
    assert run(session, 'l LIST "" ""') == b'* LIST (\\Noselect) "." ""\r\nl OK LIST completed\r\n'


def test_append_and_readonly(session: MailSession) -> None:
    out = run(
        session, 'a APPEND Drafts (\\Draft) "02-Nov-2026 10:00:00 +0100" {7+}\r\nx: y\r\n\r\n'
    )
    assert re.match(rb"a OK \[APPENDUID \d+ 1\] APPEND completed", out)
    assert run(session, "b APPEND Nowhere {1+}\r\nx").startswith(b"b NO [TRYCREATE]")
    assert run(session, 'c APPEND Drafts "bad date" {1+}\r\nx').startswith(b"c BAD")
    out = run(session, "d EXAMINE Drafts")
    assert b"[READ-ONLY]" in out and b"* 1 EXISTS" in out
    assert run(session, "e STORE 1 +FLAGS (\\Seen)").endswith(b"e NO the folder is read-only\r\n")
    out = run(session, "f FETCH 1 (FLAGS INTERNALDATE BODY[])")
    when = internal_date(append_date("02-Nov-2026 10:00:00 +0100"))  # in the local zone
    assert b"INTERNALDATE " + when in out and b"\\Seen" not in out
    assert append_date("02-Nov-2026 10:00:00 +0100") == 1_793_610_000


def test_copy_finds_files_renamed_by_another_reader(root: Path, session: MailSession) -> None:
    for path in (root / "new").iterdir():  # another mail reader marks everything read
        path.rename(root / "cur" / (path.name + ":2,S"))
    out = run(session, "a COPY 1:3 Archive")
    assert re.match(
        rb"(\* \d FETCH \(UID \d FLAGS \(\\Recent \\Seen\)\)\r\n){3}"
        rb"a OK \[COPYUID \d+ 1,2,3 1,2,3\]",
        out,
    )


def test_failed_copy_leaves_no_copies(root: Path, session: MailSession) -> None:
    (root / "new").iterdir().__next__().unlink()
    folders = AccountFolders(str(root), FileMailboxState())
    with pytest.raises(FileNotFoundError):
        folders.folder("Archive").add_files([(str(root / "new" / "gone"), frozenset())])
    assert list((root / ".Archive" / "cur").iterdir()) == []
    out = run(session, "a COPY 1:3 Archive")  # the vanished one is skipped on the second look
    assert re.search(rb"a OK \[COPYUID \d+ \d,\d 1,2\]", out), out


_NAMES = ["FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "LIST", "LSUB", "STATUS",
          "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "APPEND", "CLOSE",
          "UNSELECT", "NOOP"]  # fmt: skip
_ARGS = st.sampled_from(
    ["1", "1:*", "*", "0", "4294967295", "INBOX", "Archive", '""', '"*"', "%", "()", "(FLAGS)",
     "BODY[1.2.MIME]<0.5>", "(\\Seen)", "+FLAGS", "-FLAGS.SILENT", "ALL", "NOT", "OR",
     "(MESSAGES SIZE)", "{3+}\r\nabc", "UID", "Work.x", "(SUBSCRIBED)", "RETURN", "BODY[]",
     "HEADER", "SINCE", "1-Jan-2020", "nil", "(1 (2 (3)))", '"x"', "ENVELOPE", "FAST"]
)  # fmt: skip


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(_NAMES), st.booleans(), st.lists(_ARGS, max_size=5))
def test_random_commands_never_raise(
    session: MailSession, name: str, uid: bool, args: list[str]
) -> None:
    prefix = (
        "UID " if uid and name in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE") else ""
    )
    line = f"t {prefix}{name} {' '.join(args)}".rstrip()
    out = run(session, line)
    assert re.search(rb"(^|\r\n)t (OK|NO|BAD) ", out), out
    if session.view is None:
        run(session, "s SELECT INBOX")


def test_condstore(session: MailSession) -> None:
    out = run(session, "a SELECT INBOX (CONDSTORE)")
    highest = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", out).group(1))  # type: ignore[union-attr]
    out = run(session, "b FETCH 1:* (MODSEQ)")
    modseqs = [int(n) for n in re.findall(rb"MODSEQ \((\d+)\)", out)]
    assert len(modseqs) == 3 and max(modseqs) <= highest
    out = run(session, "c STORE 2 +FLAGS (\\Seen)")
    assert re.match(rb"\* 2 FETCH \(FLAGS \(\\Seen\) MODSEQ \((\d+)\)\)\r\n", out)
    after = int(re.search(rb"MODSEQ \((\d+)\)", out).group(1))  # type: ignore[union-attr]
    assert after > highest
    out = run(session, f"d UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
    assert out.count(b"FETCH (") == 1 and b"UID 2 " in out and b"MODSEQ" in out
    out = run(session, f"e STORE 1:3 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)")
    assert out.endswith(b"e OK [MODIFIED 2] STORE completed\r\n")
    assert out.count(b"FETCH (") == 2 and b"* 2 FETCH" not in out
    out = run(session, f"f SEARCH MODSEQ {after + 1}")
    assert re.match(rb"\* SEARCH 1 3 \(MODSEQ \d+\)\r\n", out)
    out = run(session, 'g SEARCH MODSEQ "/flags/\\\\seen" all 1')
    assert out.startswith(b"* SEARCH 1 2 3 (MODSEQ ")
    out = run(session, "h STATUS INBOX (HIGHESTMODSEQ)")
    assert re.match(rb'\* STATUS "INBOX" \(HIGHESTMODSEQ \d+\)', out)
    assert run(session, "i FETCH 1 FLAGS (CHANGEDSINCE x)").startswith(b"i BAD")
    assert run(session, "j SELECT INBOX (QRESYNC)").startswith(b"j BAD")


def test_enable(session: MailSession) -> None:
    assert run(session, "a ENABLE X-UNKNOWN") == b"* ENABLED\r\na OK ENABLE completed\r\n"
    out = run(session, "b ENABLE CONDSTORE X")  # with INBOX selected: RFC 7162 3.1
    assert out == (
        b"* OK [HIGHESTMODSEQ 4] CONDSTORE on\r\n* ENABLED CONDSTORE\r\nb OK ENABLE completed\r\n"
    )
    out = run(session, "c STORE 1 +FLAGS (\\Seen)")
    assert b"MODSEQ (" in out
