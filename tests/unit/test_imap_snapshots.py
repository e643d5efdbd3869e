"""Shared folder snapshots: one per folder for all its views, rescanned only when the
folder's fingerprint changed (and never trusted while its mtimes are too fresh)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from daisymail.imap.selected import SelectedView
from daisymail.imap.snapshots import SETTLE_NS, Snapshots, settled
from daisymail.store.imap_folders import AccountFolders
from daisymail.store.imap_state import FileMailboxState


def _folder(tmp_path: Path, count: int) -> AccountFolders:
    folders = AccountFolders(str(tmp_path / "box"), FileMailboxState())
    folders.ensure_defaults()
    inbox = folders.folder("INBOX")
    for i in range(count):
        inbox.append(b"Subject: %d\r\n\r\nhi\r\n" % i, frozenset(), None)
    return folders


def _age(path: Path) -> None:
    """Make the folder's mtimes old, as they are a moment after the last change."""
    old = time.time() - 10
    for p in (path, path / "new", path / "cur", path / "daisymail-imap-uids"):
        os.utime(p, (old, old))


def test_views_share_one_snapshot_until_the_folder_changes(tmp_path: Path) -> None:
    folders = _folder(tmp_path, 3)
    snaps = Snapshots()
    inbox = folders.folder("INBOX")
    first = snaps.current(inbox)
    _age(tmp_path / "box")
    settled_one = snaps.current(inbox)  # rescanned once: the first was too fresh to trust
    assert settled_one.settled and not first.settled
    assert snaps.current(folders.folder("INBOX")) is settled_one
    a = SelectedView(inbox, False, settled_one)
    b = SelectedView(inbox, False, settled_one)
    assert a.uids is b.uids  # the same tuple, not a copy each
    inbox.append(b"Subject: new\r\n\r\nhi\r\n", frozenset(), None)
    newer = snaps.current(inbox)
    assert newer is not settled_one and len(newer.uids) == 4
    assert all(newer.by_uid[u] is settled_one.by_uid[u] for u in settled_one.uids)
    assert a.apply(newer, True) == b"* 4 EXISTS\r\n* 0 RECENT\r\n"
    assert b.apply(newer, True) == b"* 4 EXISTS\r\n* 0 RECENT\r\n"  # worked out once
    assert a.uids is newer.uids and b.uids is newer.uids


def test_a_view_copies_only_what_differs(tmp_path: Path) -> None:
    folders = _folder(tmp_path, 3)
    snaps = Snapshots()
    inbox = folders.folder("INBOX")
    view = SelectedView(inbox, False, snaps.current(inbox))
    inbox.expunge([2])
    assert view.apply(snaps.current(inbox), allow_expunge=False) == b""
    assert list(view.uids) == [1, 2, 3]  # its own numbering while it may not tell
    assert view.message(2) is not None
    assert view.apply(snaps.current(inbox), allow_expunge=True) == b"* 2 EXPUNGE\r\n"
    assert view.uids is view.shared.uids


def test_views_with_their_own_recent_do_not_share_a_step(tmp_path: Path) -> None:
    """\\Recent and the keywords a session knows are its own: a step worked out for
    one view is not handed to a view with other recent messages."""
    folders = _folder(tmp_path, 3)
    snaps = Snapshots()
    inbox = folders.folder("INBOX")
    first = snaps.current(inbox)
    mine = SelectedView(inbox, False, first, recent=[1, 2, 3])
    other = SelectedView(inbox, False, first)
    inbox.append(b"Subject: new\r\n\r\nhi\r\n", frozenset(), None)
    newer = snaps.current(inbox)
    assert mine.apply(newer, True) == b"* 4 EXISTS\r\n* 3 RECENT\r\n"
    assert other.apply(newer, True) == b"* 4 EXISTS\r\n* 0 RECENT\r\n"
    shown = mine.message(1)
    assert shown is not None and "\\Recent" in shown.flags
    assert "\\Recent" not in newer.by_uid[1].flags  # the shared message is never marked
    inbox.store_flags([1], "+", frozenset({"$Work"}))
    newest = snaps.current(inbox)
    news = mine.apply(newest, True)
    assert news.startswith(b"* FLAGS (") and b"$Work" in news.split(b"\r\n")[0]
    assert b"* 1 FETCH (UID 1 FLAGS ($Work \\Recent))" in news
    assert other.apply(newest, True).startswith(b"* FLAGS (")
    assert other.keywords is newest.keywords  # the shared set, not a copy a session


def test_recent_is_claimed_once_and_only_when_there_is_any(tmp_path: Path) -> None:
    """A read-write SELECT writes the folder state only to claim unclaimed messages,
    and of the sessions woken by new mail only the first claims it."""
    folders = _folder(tmp_path, 3)
    inbox = folders.folder("INBOX")
    first = SelectedView.open(inbox, readonly=False)
    assert first.recent_count() == 3
    written = inbox.state.version(inbox.path)
    others = [SelectedView.open(folders.folder("INBOX"), readonly=False) for _ in range(3)]
    looker = SelectedView.open(inbox, readonly=True)
    assert [v.recent_count() for v in [*others, looker]] == [0, 0, 0, 0]
    assert inbox.state.version(inbox.path) == written  # nothing to claim, nothing written
    inbox.append(b"Subject: new\r\n\r\nhi\r\n", frozenset(), None)
    appended = inbox.state.version(inbox.path)
    assert first.refresh() == b"* 4 EXISTS\r\n* 4 RECENT\r\n"  # it looked first
    claimed = inbox.state.version(inbox.path)
    assert claimed != appended
    for view in [*others, looker]:
        assert view.refresh() == b"* 4 EXISTS\r\n* 0 RECENT\r\n"
        assert not view.is_recent(4)
    assert inbox.state.version(inbox.path) == claimed
    assert first.is_recent(4)


def test_a_fresh_mtime_is_not_trusted() -> None:
    now = time.time_ns()
    assert not settled(((now - 1000, 5, 7), now - 2 * SETTLE_NS), now)
    assert settled(((now - 2 * SETTLE_NS, 5, 7), None), now)
