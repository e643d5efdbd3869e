"""The teapop-compatible mbox view: vectors B1, B4, B6 (SPEC §5.8) and the §1.8-§1.10 rules."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daisymail.store.base import MailboxInUse, MessageInfo, StorageError, ViewOptions
from daisymail.store.locking import MboxLock
from daisymail.store.mbox_view import (
    TMP_SUFFIX,
    MboxView,
    is_separator,
    open_mbox_view,
)

B1 = (
    b"From sender@example.com  Thu Nov 26 09:56:38 2026\nSubject: one\nFrom: a@example.com\n"
    b"\nbody line\n>From here is a line\n.dot line\n\nFrom other@example.com  Mon Jan  5 10:00:00"
    b" 2004\nSubject: two\nStatus: RO\nX-UIDL: abc123\n\nline1\nline2\nline3\n\n"
)
B4 = (
    b"From a@x  Mon Jan  5 10:00:01 2004\r\nSubject: crlf\r\n\r\nbody\r\n\r\n"
    b"From b@x  Mon Jan  5 10:00:02 2004\nSubject: long\n\n" + b"y" * 1500 + b"\n\n"
)
FROM = b"From a@x  Mon Jan  5 10:00:00 2004\n"


def md5(*parts: bytes) -> str:
    return hashlib.md5(b"".join(parts)).hexdigest()


@pytest.fixture
def mbox(tmp_path: Path) -> Path:
    return tmp_path / "box"


def view_of(path: Path, data: bytes | None, **options: bool) -> MboxView:
    if data is not None:
        path.write_bytes(data)
    return open_mbox_view(str(path), ViewOptions(**options), lock_wait=0.2)


def infos(path: Path, data: bytes, **options: bool) -> list[MessageInfo]:
    view = view_of(path, data, **options)
    try:
        return list(view.messages)
    finally:
        view.close()


def body(view: MboxView, index: int) -> bytes:
    return b"".join(view.lines(index))


# -- SPEC vectors ---------------------------------------------------------------------------


def test_b1_sizes_and_uidls(mbox: Path) -> None:
    assert infos(mbox, B1) == [
        MessageInfo(83, "a38f70afb6b3cbb4ae26a78cf7d849de"),
        MessageInfo(67, "44076b8841d80e83098610a829cd01c3"),
    ]


def test_b1_with_x_uidl(mbox: Path) -> None:
    assert [m.uidl for m in infos(mbox, B1, use_x_uidl=True)] == [
        "a38f70afb6b3cbb4ae26a78cf7d849de",
        "abc123",
    ]


def test_b1_lines_exclude_from_line_and_keep_separator_blank(mbox: Path) -> None:
    view = view_of(mbox, B1)
    assert list(view.lines(0)) == [
        b"Subject: one\n",
        b"From: a@example.com\n",
        b"\n",
        b"body line\n",
        b">From here is a line\n",
        b".dot line\n",
        b"\n",
    ]
    assert body(view, 1).endswith(b"line3\n\n")
    view.close()


def test_b4_crlf_and_long_line(mbox: Path) -> None:
    assert infos(mbox, B4) == [
        MessageInfo(25, "598f1f3f09b132162935801ac04ef710"),
        MessageInfo(1521, "c6287409be3a0543f1956d98e2e2229a"),
    ]
    from_line = b"From b@x  Mon Jan  5 10:00:02 2004\n"
    expected = md5(from_line, b"Subject: long\n", b"\n", b"y" * 1023, b"\n")
    assert infos(mbox, B4)[1].uidl == expected


def test_b6_missing_file_is_empty_and_not_created(mbox: Path) -> None:
    view = view_of(mbox, None)
    assert list(view.messages) == []
    assert not os.path.exists(str(mbox) + ".lock")  # deliveries may go ahead
    view.commit(set())
    view.close()
    assert not mbox.exists()
    assert not os.path.exists(str(mbox) + ".lock")


# -- separators -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "separator"),
    [
        (b"From a@x  Mon Jan  5 10:00:00 2004\n", True),
        (b"From b@x Mon Jan  5 10:00:00 2004\n", True),
        (b"From b@x Mon Jan  5 10:00:00 2004\r\n", True),
        (b"From b@x   Mon Jan 15 23:59:59 1970\n", True),
        (b"From b@x Xyz Dec 31 00:00:00 2038 trailing junk\n", True),
        (b"From b@x Mon Jan  5 10:99:00 2004\n", True),  # minutes are not checked
        (b"From me to you, a line\n", False),
        (b"From b@x Mon Jan  5 01:02:03 PST 2004\n", False),
        (b"From b@x Mon Jan 5 10:00:00 2004\n", False),
        (b"From b c@x Mon Jan  5 10:00:00 2004\n", False),
        (b"From b@x Mon Jan  0 10:00:00 2004\n", False),
        (b"From b@x Mon Jan 32 10:00:00 2004\n", False),
        (b"From b@x Mon Jan  5 24:00:00 2004\n", False),
        (b"From b@x Mon Jan  5 10:00:60 2004\n", False),
        (b"From b@x Mon Jan  5 10:00:00 1969\n", False),
        (b"From b@x Mon Jan  5 10:-1:00 2004\n", False),
        (b"From b@x Mon Jan  5 10:00:00 2147483648\n", False),  # C int overflow
        (b"From b@x Mon Jan  5 10:00:00 4294969296\n", True),  # wraps to 2000
        (b"From b@x Mon jan  5 10:00:00 2004\n", False),
        (b"From b@x Mon Jan  5 10:00:00\n", False),
        (b"From b@x Mon Jan  5 10:00:00 2\x0004\n", False),
        (b"From b@x\n", False),
        (b"From  \n", False),
        (b"from b@x Mon Jan  5 10:00:00 2004\n", False),
        (b">From b@x Mon Jan  5 10:00:00 2004\n", False),
    ],
)
def test_is_separator(line: bytes, separator: bool) -> None:
    assert is_separator(line) is separator


@pytest.mark.parametrize(
    "inner",
    [
        b"From me to you, a line\n",
        b"From b@x Mon Jan  5 01:02:03 PST 2004\n",
        b"From b@x Mon Jan 5 10:00:00 2004\n",
        b"From b c@x Mon Jan  5 10:00:00 2004\n",
    ],
)
def test_non_separator_from_lines_stay_in_the_message(mbox: Path, inner: bytes) -> None:
    data = FROM + b"Subject: s\n\n" + inner + b"end\n\n"
    view = view_of(mbox, data)
    assert len(view.messages) == 1
    assert inner in body(view, 0)
    view.close()


def test_unescaped_dated_from_line_splits_without_blank_line(mbox: Path) -> None:
    data = FROM + b"Subject: s\n\nbody\nFrom inside Mon Jan  5 10:00:00 2004\nend\n"
    view = view_of(mbox, data)
    assert [body(view, i) for i in range(2)] == [b"Subject: s\n\nbody\n", b"end\n"]
    view.close()


def test_long_from_line_continuation_counts_as_line_start(mbox: Path) -> None:
    long_from = b"From a@x  Mon Jan  5 10:00:00 2004 " + b"z" * 1100 + b"\n"
    view = view_of(mbox, long_from + b"Subject: s\n\n")
    rest = long_from[1023:]
    assert view.messages[0] == MessageInfo(
        len(rest) + 1 + 12 + 2, md5(long_from[:1023], rest, b"Subject: s\n", b"\n")
    )
    assert body(view, 0) == rest + b"Subject: s\n\n"
    view.close()


# -- sizes and UIDLs --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1022, 1023, 1024, 2046, 2047, 3000])
def test_long_lines(mbox: Path, length: int) -> None:
    line = (string.ascii_letters.encode() * 60)[:length] + b"\n"
    (info,) = infos(mbox, FROM + b"S: x\n\n" + line + b"\n")
    assert info.size == 6 + 2 + length + 2 + 2
    hashed = line if length < 1023 else line[:1023]
    assert info.uidl == md5(FROM, b"S: x\n", b"\n", hashed, b"\n")


def test_uidl_skips_volatile_headers_anywhere_case_insensitively(mbox: Path) -> None:
    msg = (
        b"STATUS: RO\nx-status: A\nLines: 3\nContent-Length:12\nSubject: s\n\n"
        b"status: in body\nContent-Length: 4\nStatus:no space\n\n"
    )
    (info,) = infos(mbox, FROM + msg)
    assert info.uidl == md5(FROM, b"Subject: s\n", b"\n", b"Status:no space\n", b"\n")
    assert info.size == len(msg) + msg.count(b"\n")


def test_x_uidl_rules(mbox: Path) -> None:
    long_id = b"u" * 60
    data = (
        FROM + b"x-uidl: " + long_id + b"\n\n"
        + FROM + b"X-UIDL: crkept\r\n\n"
        + FROM + b"Subject: s\n\nX-UIDL: inbody\n\n"
        + FROM + b"X-UIDL: \nSubject: empty\n\n"
    )  # fmt: skip
    uidls = [m.uidl for m in infos(mbox, data, use_x_uidl=True)]
    assert uidls[0] == "u" * 49
    assert uidls[1] == "crkept\r"
    assert uidls[2] == md5(FROM, b"Subject: s\n", b"\n", b"X-UIDL: inbody\n", b"\n")
    assert uidls[3] == md5(FROM, b"X-UIDL: \n", b"Subject: empty\n", b"\n")


def test_blank_line_in_prelude_disables_x_uidl_of_first_message(mbox: Path) -> None:
    message = FROM + b"X-UIDL: one\n\n"
    assert infos(mbox, b"junk\n\n" + message + message, use_x_uidl=True)[0].uidl == md5(
        FROM, b"X-UIDL: one\n", b"\n"
    )
    assert [m.uidl for m in infos(mbox, b"junk\n" + message + message, use_x_uidl=True)] == [
        "one",
        "one",
    ]


def test_nul_bytes_become_question_marks(mbox: Path) -> None:
    view = view_of(mbox, FROM + b"S: a\x00b\n\nx\x00\x00y\n\n")
    assert view.messages[0] == MessageInfo(
        8 + 2 + 6 + 2, md5(FROM, b"S: a?b\n", b"\n", b"x??y\n", b"\n")
    )
    assert body(view, 0) == b"S: a?b\n\nx??y\n\n"
    view.close()


def test_unterminated_last_line_is_not_counted_but_kept(mbox: Path) -> None:
    data = FROM + b"S: 1\n\n" + FROM + b"S: 2\n\npartial"
    view = view_of(mbox, data)
    assert [m.size for m in view.messages] == [8, 8]
    assert body(view, 1) == b"S: 2\n\n"
    view.commit({1})
    view.close()
    assert mbox.read_bytes() == FROM + b"S: 1\n\npartial"


def test_crlf_file_sizes_count_line_ends_once(mbox: Path) -> None:
    data = b"From a@x  Mon Jan  5 10:00:00 2004\r\nA: b\r\n\r\nmixed\nline\r\n\r\n"
    (info,) = infos(mbox, data)
    assert info.size == len(data) - 36 + 1


# -- prelude and the IMAP control message ---------------------------------------------------


def test_prelude_is_not_a_message_and_survives_rewrite(mbox: Path) -> None:
    prelude = b"This text is not mail.\n\nFrom nobody, not a separator\n"
    view = view_of(mbox, prelude + B1)
    assert [m.size for m in view.messages] == [83, 67]
    view.commit({0})
    view.close()
    assert mbox.read_bytes() == prelude + B1[B1.index(b"From other") :]


IMAP = FROM + b"Subject: DON'T DELETE THIS MESSAGE\nX-IMAP: 1 2\n\nbody\n\n"


def test_imap_control_message_visible_without_option(mbox: Path) -> None:
    assert len(infos(mbox, IMAP + B1)) == 3


def test_imap_control_message_hidden_and_kept(mbox: Path) -> None:
    view = view_of(mbox, IMAP + B1, hide_imap_control_message=True)
    assert [m.size for m in view.messages] == [83, 67]
    assert body(view, 0).startswith(b"Subject: one\n")
    view.commit({0, 1})
    view.close()
    assert mbox.read_bytes() == IMAP


def test_imap_marker_only_in_first_message_and_exact_case(mbox: Path) -> None:
    later = B1 + IMAP
    assert len(infos(mbox, later, hide_imap_control_message=True)) == 3
    base = FROM + b"X-IMAPbase: 1 2\n\n"
    assert len(infos(mbox, base + B1, hide_imap_control_message=True)) == 3
    lower = FROM + b"x-imap: 1 2\n\n"
    assert len(infos(mbox, lower + B1, hide_imap_control_message=True)) == 3


def test_only_control_message_means_empty(mbox: Path) -> None:
    assert infos(mbox, IMAP, hide_imap_control_message=True) == []


def test_hidden_control_message_disables_x_uidl_of_next(mbox: Path) -> None:
    message = FROM + b"X-UIDL: one\n\n"
    (info,) = infos(mbox, IMAP + message, hide_imap_control_message=True, use_x_uidl=True)
    assert info.uidl == md5(FROM, b"X-UIDL: one\n", b"\n")


# -- locking --------------------------------------------------------------------------------


def test_second_open_is_in_use_but_deliveries_are_not_blocked(mbox: Path) -> None:
    view = view_of(mbox, B1)
    with pytest.raises(MailboxInUse):
        open_mbox_view(str(mbox), ViewOptions())
    # The procmail-compatible locks are free during the session, so procmail (or
    # Daisy's own delivery) can append while a POP3 client is connected.
    assert not os.path.exists(str(mbox) + ".lock")
    with MboxLock(str(mbox), os.open(mbox, os.O_RDWR), wait=0):
        pass
    view.close()
    view.close()
    view_of(mbox, None).close()


def test_foreign_dotlock_is_in_use_and_left_alone(mbox: Path) -> None:
    mbox.write_bytes(B1)
    lock = Path(str(mbox) + ".lock")
    lock.write_bytes(b"0")
    with pytest.raises(MailboxInUse):
        view_of(mbox, None)
    assert lock.exists()


def test_kernel_lock_busy_releases_our_dotlock(mbox: Path) -> None:
    mbox.write_bytes(B1)
    with open(mbox, "rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(MailboxInUse):
            view_of(mbox, None)
    assert not os.path.exists(str(mbox) + ".lock")


def test_commit_waits_for_a_delivery_lock_then_fails_cleanly(mbox: Path) -> None:
    view = view_of(mbox, B1)
    lock = Path(str(mbox) + ".lock")
    lock.write_bytes(b"0")
    with pytest.raises(StorageError, match="locked"):
        view.commit({0})
    assert mbox.read_bytes() == B1
    lock.unlink()
    view.commit({0})
    view.close()
    assert not mbox.read_bytes().startswith(B1[:40])


def test_commit_refuses_when_the_mailbox_was_replaced(mbox: Path) -> None:
    view = view_of(mbox, B1)
    other = mbox.with_name("other")
    other.write_bytes(B1)
    os.rename(other, mbox)
    with pytest.raises(StorageError, match="rewritten"):
        view.commit({0})
    view.close()
    assert mbox.read_bytes() == B1


def test_unreadable_path_is_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        open_mbox_view(str(tmp_path / "no-such-dir" / "box"), ViewOptions())
    (tmp_path / "dir").mkdir()
    with pytest.raises(StorageError):
        open_mbox_view(str(tmp_path / "dir"), ViewOptions())
    assert not os.path.exists(str(tmp_path / "dir") + ".lock")


# -- commit ---------------------------------------------------------------------------------


def test_commit_without_deletions_leaves_file_untouched(mbox: Path) -> None:
    view = view_of(mbox, B1)
    before = os.stat(mbox)
    view.commit(set())
    view.commit({7, -1})
    view.close()
    after = os.stat(mbox)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_commit_keeps_mode_and_appended_mail(mbox: Path) -> None:
    mbox.write_bytes(B1)
    os.chmod(mbox, 0o660)
    view = view_of(mbox, None)
    appended = FROM + b"Subject: late\n\n"
    with open(mbox, "ab") as f:
        f.write(appended)
    view.commit({1})
    view.close()
    assert mbox.read_bytes() == B1[: B1.index(b"From other")] + appended
    assert stat.S_IMODE(os.stat(mbox).st_mode) == 0o660
    assert not os.path.exists(str(mbox) + TMP_SUFFIX)
    assert not os.path.exists(str(mbox) + ".lock")


def test_commit_replaces_stale_temp_file(mbox: Path) -> None:
    Path(str(mbox) + TMP_SUFFIX).write_bytes(b"left over from a crash")
    view = view_of(mbox, B1)
    view.commit({0, 1})
    view.close()
    assert mbox.read_bytes() == b""
    assert not os.path.exists(str(mbox) + TMP_SUFFIX)


def test_failed_rewrite_is_storage_error_and_changes_nothing(
    mbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = view_of(mbox, B1)

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", no_rename)
    with pytest.raises(StorageError):
        view.commit({0})
    view.close()
    assert mbox.read_bytes() == B1
    assert not os.path.exists(str(mbox) + TMP_SUFFIX)


def test_lines_of_huge_line_come_in_pieces(mbox: Path) -> None:
    line = b"q" * 200_000 + b"\r\n"
    view = view_of(mbox, FROM + b"S: x\n\n" + line + b"\n")
    pieces = list(view.lines(0))
    assert b"".join(pieces) == b"S: x\n\n" + line + b"\n"
    assert max(map(len, pieces)) < 200_000
    assert all(not p.endswith(b"\r") for p in pieces)
    view.close()


# -- property: what procmail writes, Daisy reads back ------------------------------------------

_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=80
)
_lines = st.lists(st.one_of(_text, st.just("From here"), st.just(".")), max_size=8)


def _procmail(header: list[str], body_lines: list[str]) -> tuple[bytes, bytes]:
    """(mbox bytes, message as lines() must return it) for a procmail -Y delivery."""
    head = "".join(f"X-H: {h}\n" for h in header) + "\n"
    text = "".join((">" + b if b.startswith("From ") else b) + "\n" for b in body_lines)
    message = (head + text).encode() + b"\n"
    return FROM + message, message


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_lines, _lines), max_size=6), st.binary(max_size=40))
def test_written_messages_read_back(
    tmp_path: Path, messages: list[tuple[list[str], list[str]]], prelude: bytes
) -> None:
    prelude = b"".join(line + b"\n" for line in prelude.split(b"\n") if b"From " not in line)
    parts = [_procmail(h, b) for h, b in messages]
    path = tmp_path / "prop"
    view = view_of(path, prelude + b"".join(raw for raw, _ in parts))
    try:
        assert len(view.messages) == len(parts)
        for i, (_, message) in enumerate(parts):
            assert body(view, i) == message
            assert view.messages[i].size == len(message) + message.count(b"\n")
    finally:
        view.close()
