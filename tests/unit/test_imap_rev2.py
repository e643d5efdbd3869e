"""IMAP4rev2, ESEARCH, SEARCHRES, QRESYNC, LIST-EXTENDED, CREATE-SPECIAL-USE, QUOTA:
replies of a MailSession on a real Maildir for tables of commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daisymail.imap import mutf7
from daisymail.imap.commands import MailSession
from daisymail.imap.quota import Quota
from daisymail.imap.responses import number_set
from daisymail.quota import QUOTA_FILE, Verdict, parse_size, quota_check
from daisymail.store.imap_folders import AccountFolders
from daisymail.store.imap_state import FileMailboxState, FolderState
from tests.unit.test_imap_commands import root, run

__all__ = ["root"]


@pytest.fixture
def session(root: Path) -> MailSession:
    folders = AccountFolders(str(root), FileMailboxState())
    folders.ensure_defaults()
    return MailSession(folders, 1 << 20, Quota(None))


def test_enable_names_what_it_turned_on(session: MailSession) -> None:
    out = run(session, "a ENABLE IMAP4rev2 utf8=accept X-NOPE")
    assert out == b"* ENABLED IMAP4rev2 UTF8=ACCEPT\r\na OK ENABLE completed\r\n"
    assert run(session, "b ENABLE IMAP4REV2").startswith(b"* ENABLED\r\n")
    assert run(session, "c ENABLE QRESYNC").startswith(b"* ENABLED QRESYNC\r\n")
    assert session.condstore  # QRESYNC implies CONDSTORE


def test_select_rev1_and_rev2_differ(session: MailSession) -> None:
    rev1 = run(session, "a SELECT INBOX")
    assert b"* 3 RECENT\r\n" in rev1 and b"[UNSEEN 1]" in rev1 and b"* LIST" not in rev1
    assert b"[CLOSED]" not in run(session, "b SELECT INBOX")
    run(session, "c ENABLE IMAP4rev2")
    rev2 = run(session, "d SELECT INBOX")
    assert rev2.startswith(b"* OK [CLOSED]")
    assert b"RECENT" not in rev2 and b"UNSEEN" not in rev2
    assert b'* LIST (\\HasNoChildren) "." "INBOX"\r\n' in rev2
    assert b"* 3 EXISTS\r\n" in rev2 and b"[UIDVALIDITY " in rev2


SEARCHES = [
    # (command, rev2 enabled, expected untagged line)
    ("SEARCH FROM ann", False, b"* SEARCH 1 3\r\n"),
    ("SEARCH FROM ann", True, b'* ESEARCH (TAG "t") ALL 1,3\r\n'),
    ("UID SEARCH ALL", True, b'* ESEARCH (TAG "t") UID ALL 1:3\r\n'),
    ("SEARCH RETURN (MIN MAX COUNT) ALL", False, b'* ESEARCH (TAG "t") MIN 1 MAX 3 COUNT 3\r\n'),
    ("SEARCH RETURN () FROM ann", False, b'* ESEARCH (TAG "t") ALL 1,3\r\n'),
    ("SEARCH RETURN (COUNT) FROM nobody", False, b'* ESEARCH (TAG "t") COUNT 0\r\n'),
    ("SEARCH RETURN (MIN) FROM nobody", False, b'* ESEARCH (TAG "t")\r\n'),
    ("SEARCH RETURN (SAVE) FROM ann", False, b""),
]


@pytest.mark.parametrize(("command", "rev2", "expected"), SEARCHES)
def test_search_results(session: MailSession, command: str, rev2: bool, expected: bytes) -> None:
    if rev2:
        run(session, "e ENABLE IMAP4rev2")
    run(session, "s SELECT INBOX")
    out = run(session, "t " + command)
    assert out == expected + b"t OK SEARCH completed\r\n"


def test_search_return_bad_option(session: MailSession) -> None:
    run(session, "s SELECT INBOX")
    assert run(session, "t SEARCH RETURN (PARTIAL) ALL").startswith(b"t BAD")


def test_searchres_dollar_in_fetch_store_and_search(session: MailSession) -> None:
    run(session, "s SELECT INBOX")
    assert run(session, "a SEARCH RETURN (SAVE) FROM ann") == b"a OK SEARCH completed\r\n"
    out = run(session, "b FETCH $ (UID)")
    assert re.findall(rb"\* (\d) FETCH", out) == [b"1", b"3"]
    out = run(session, "c UID FETCH $ (FLAGS)")
    assert re.findall(rb"UID (\d)", out) == [b"1", b"3"]
    assert run(session, "d SEARCH $ SUBJECT big").startswith(b"* SEARCH 3\r\n")
    assert run(session, "e UID SEARCH UID $").startswith(b"* SEARCH 1 3\r\n")
    run(session, "f STORE $ +FLAGS.SILENT (\\Flagged)")
    assert run(session, "g SEARCH FLAGGED").startswith(b"* SEARCH 1 3\r\n")
    run(session, "h SEARCH RETURN (SAVE) FROM nobody")
    assert run(session, "i FETCH $ (UID)") == b"i OK FETCH completed\r\n"
    assert run(session, "j SEARCH $").startswith(b"* SEARCH\r\n")


def test_vanished_uids_are_kept_with_their_modseq(tmp_path: Path) -> None:
    state = FileMailboxState()
    st = FolderState(7, 20, 30)
    st.vanished = {1: 5, 2: 5, 3: 5, 4: 9, 7: 9, 8: 9}
    state.save(str(tmp_path), st)
    text = (tmp_path / "daisymail-imap-uids").read_text()
    assert "~1:3 5\n~4 9\n~7:8 9\n" in text
    loaded = state.load(str(tmp_path))
    assert loaded is not None and loaded.vanished == st.vanished


def test_qresync_select_reports_vanished_and_changed(session: MailSession) -> None:
    out = run(session, "a SELECT INBOX")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", out)[1])  # type: ignore[index]
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", out)[1])  # type: ignore[index]
    run(session, "b STORE 1 +FLAGS (\\Deleted)")
    run(session, "c EXPUNGE")
    run(session, "d STORE 1 +FLAGS (\\Seen)")  # UID 2 now
    assert run(session, f"e SELECT INBOX (QRESYNC ({validity} {modseq}))").startswith(b"e BAD")
    run(session, "f ENABLE QRESYNC")
    out = run(session, f"g SELECT INBOX (QRESYNC ({validity} {modseq}))")
    assert out.startswith(b"* OK [CLOSED]")
    assert b"* VANISHED (EARLIER) 1\r\n" in out
    assert re.search(rb"\* 1 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", out)
    assert b"UID 3 " not in out  # unchanged since
    out = run(session, f"h SELECT INBOX (QRESYNC ({validity} {modseq} 3))")
    assert b"VANISHED" not in out and b"FETCH" not in out  # only UID 3 is known
    out = run(session, f"i SELECT INBOX (QRESYNC ({validity + 1} {modseq}))")
    assert b"VANISHED" not in out and b"FETCH" not in out  # another UIDVALIDITY
    out = run(session, f"j UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert out.startswith(b"* VANISHED (EARLIER) 1\r\n")
    assert b"UID 2 " in out and b"UID 3 " not in out


def test_expunge_after_enable_qresync_says_vanished(session: MailSession) -> None:
    run(session, "a ENABLE QRESYNC")
    run(session, "b SELECT INBOX")
    run(session, "c STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    out = run(session, "d EXPUNGE")
    assert re.fullmatch(
        rb"\* VANISHED 1:2\r\nd OK \[HIGHESTMODSEQ \d+\] EXPUNGE completed\r\n", out
    )
    assert run(session, "e FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)").startswith(b"e BAD")


def test_list_extended(session: MailSession, root: Path) -> None:
    run(session, "a CREATE Projects.Daisy")
    run(session, "b SUBSCRIBE Projects.Daisy")
    out = run(session, 'c LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert b'* LIST (\\HasChildren) "." "Projects" ("CHILDINFO" ("SUBSCRIBED"))\r\n' in out
    assert b'* LIST (\\HasNoChildren \\Sent \\Subscribed) "." "Sent"\r\n' in out
    out = run(session, 'd LIST (SPECIAL-USE) "" "*"')
    assert set(re.findall(rb'"\." "(\w+)"', out)) == {
        b"Sent",
        b"Drafts",
        b"Junk",
        b"Trash",
        b"Archive",
    }
    out = run(session, 'e LIST "" "*" RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN))')
    assert b'* LIST (\\HasNoChildren \\Subscribed) "." "INBOX"\r\n' in out
    assert b'* STATUS "INBOX" (MESSAGES 3 UNSEEN 3)\r\n' in out
    assert b'* LIST (\\HasNoChildren) "." "Projects.Daisy"' not in out  # subscribed
    with open(root / "subscriptions", "a") as f:  # left by another IMAP server
        f.write("Gone\n")
    out = run(session, 'h LIST (SUBSCRIBED) "" "Gone"')
    assert out == b'* LIST (\\NonExistent \\Subscribed) "." "Gone"\r\nh OK LIST completed\r\n'
    assert run(session, 'h LIST "" "Gone"') == b"h OK LIST completed\r\n"
    assert run(session, 'i LIST (RECURSIVEMATCH) "" "*"').startswith(b"i BAD")
    assert run(session, 'j LIST "" "*" RETURN (BOGUS)').startswith(b"j BAD")


def test_create_special_use(session: MailSession) -> None:
    assert run(session, "a CREATE Outbox (USE (\\Sent))").endswith(b"a OK CREATE completed\r\n")
    assert b'(\\HasNoChildren \\Sent) "." "Outbox"' in run(session, 'b LIST "" Outbox')
    out = run(session, "c CREATE Everything (USE (\\All))")
    assert out.startswith(b"c NO [USEATTR]")


def test_utf8_folder_names_kept_in_modified_utf7(session: MailSession, root: Path) -> None:
    run(session, "a ENABLE UTF8=ACCEPT")
    assert run(session, 'b CREATE "Entwürfe"').endswith(b"OK CREATE completed\r\n")
    assert (root / ".Entw&APw-rfe").is_dir()
    assert '"Entwürfe"'.encode() in run(session, 'c LIST "" "Entw*"')
    fresh = MailSession(session.folders, 1 << 20)
    assert b'"Entw&APw-rfe"' in run(fresh, 'd LIST "" "*"')


def test_status_appendlimit_and_size(session: MailSession) -> None:
    out = run(session, "a STATUS INBOX (APPENDLIMIT MESSAGES DELETED)")
    assert out.startswith(b'* STATUS "INBOX" (APPENDLIMIT 1048576 MESSAGES 3 DELETED 0)\r\n')


def test_quota_commands_and_overquota(session: MailSession, root: Path) -> None:
    assert run(session, "a GETQUOTAROOT INBOX") == b'* QUOTAROOT "INBOX"\r\na OK no quota\r\n'
    assert run(session, 'b GETQUOTA ""').startswith(b"b NO [NONEXISTENT]")
    (root / QUOTA_FILE).write_text("10240\n")
    out = run(session, "c GETQUOTAROOT INBOX")
    assert re.match(rb'\* QUOTAROOT "INBOX" ""\r\n\* QUOTA "" \(STORAGE \d+ 10\)\r\n', out)
    big = "x" * 9000
    out = run(session, f"d APPEND INBOX {{{len(big)}+}}\r\n{big}")
    assert out.startswith(b"d NO [OVERQUOTA]")
    run(session, "e SELECT INBOX")
    (root / QUOTA_FILE).write_text("7000\n")
    assert run(session, "f COPY 1:3 Archive").startswith(b"f NO [OVERQUOTA]")
    assert run(session, "g MOVE 1 Archive").endswith(b"g OK MOVE completed\r\n")
    assert run(session, 'h SETQUOTA "" (STORAGE 1)').startswith(b"h NO [NOPERM]")


QUOTA_VECTORS = [
    (0, None, 10, Verdict.OK),
    (0, 0, 10, Verdict.OK),
    (90, 100, 10, Verdict.OK),
    (91, 100, 10, Verdict.FULL),
    (0, 100, 101, Verdict.TOO_BIG),
    (100, 100, 0, Verdict.OK),
]


@pytest.mark.parametrize(("used", "limit", "size", "verdict"), QUOTA_VECTORS)
def test_quota_check(used: int, limit: int | None, size: int, verdict: Verdict) -> None:
    assert quota_check(used, limit, size) is verdict


def test_quota_smtp_replies() -> None:
    assert Verdict.FULL.smtp == (452, "4.2.2 mailbox full, try again later")
    assert Verdict.TOO_BIG.smtp[0] == 552 and Verdict.TOO_BIG.smtp[1].startswith("5.2.2")


@pytest.mark.parametrize(
    ("text", "octets"),
    [("0", 0), ("1024", 1024), ("500M", 500 << 20), ("2g", 2 << 30), ("10 KiB", 10240)],
)
def test_parse_size(text: str, octets: int) -> None:
    assert parse_size(text) == octets


@pytest.mark.parametrize("text", ["", "-1", "1X", "M"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("numbers", "text"),
    [([], ""), ([3], "3"), ([1, 2, 3, 7, 9, 10], "1:3,7,9:10"), ([5, 1, 5, 2], "1:2,5")],
)
def test_number_set(numbers: list[int], text: str) -> None:
    assert number_set(numbers) == text


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("Entwürfe", "Entw&APw-rfe"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("A&B", "A&-B"),
        ("plain", "plain"),
    ],
)
def test_modified_utf7(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


def test_modified_utf7_malformed_is_kept() -> None:
    assert mutf7.decode("bad&***-") == "bad&***-"
    assert mutf7.decode("open&AAA") == "open&AAA"


def test_old_expunges_are_forgotten_behind_a_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daisymail.store import imap_state

    monkeypatch.setattr(imap_state, "MAX_VANISHED", 4)
    st = FolderState(7, 20, 30)
    for uid in range(1, 8):
        st.entries[f"u{uid}"] = imap_state.Entry(uid, 1, frozenset())
    for uid in range(1, 6):
        st.forget(f"u{uid}", 10 + uid)
    assert st.vanished == {4: 14, 5: 15} and st.vanished_floor == 13
    state = FileMailboxState()
    state.save(str(tmp_path), st)
    loaded = state.load(str(tmp_path))
    assert loaded is not None and loaded.vanished_floor == 13
    assert loaded.vanished == st.vanished


def test_resync_from_before_the_floor_names_every_missing_uid(session: MailSession) -> None:
    from daisymail.imap.parser import sequence_set
    from daisymail.imap.qresync import vanished_earlier

    folder = session.folders.folder("INBOX")
    folder.expunge([2])
    snap = folder.sync()
    assert vanished_earlier(snap, 0, None) == b"* VANISHED (EARLIER) 2\r\n"
    snap.vanished_floor = 5  # as if older expunges had been forgotten
    snap.vanished = {}
    assert vanished_earlier(snap, 1, None) == b"* VANISHED (EARLIER) 2\r\n"
    assert vanished_earlier(snap, 1, sequence_set("3:*")) == b""
    assert vanished_earlier(snap, 6, None) == b""


def test_silent_store_under_condstore_tells_the_new_modseq(session: MailSession) -> None:
    run(session, "a SELECT INBOX (CONDSTORE)")
    out = run(session, "b UID STORE 1,3 (UNCHANGEDSINCE 99999) +FLAGS.SILENT (\\Deleted)")
    assert re.fullmatch(
        rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)\r\n\* 3 FETCH \(UID 3 MODSEQ \(\d+\)\)\r\n"
        rb"b OK STORE completed\r\n",
        out,
    )
    out = run(session, "c STORE 1 +FLAGS.SILENT (\\Deleted)")  # no change: nothing to tell
    assert out == b"c OK STORE completed\r\n"


def test_append_utf8_literal(session: MailSession) -> None:
    msg = "Subject: Grüße\r\n\r\nhallo\r\n".encode()
    out = run(
        session, f"a APPEND INBOX UTF8 (~{{{len(msg)}+}}\r\n".encode().decode() + msg.decode() + ")"
    )
    assert b"a OK [APPENDUID" in out
    assert run(session, "b APPEND INBOX UTF8 (x)").startswith(b"b BAD")
