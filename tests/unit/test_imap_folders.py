"""Maildir++ folders and IMAP state: UIDs, flags in names, POP3 agreement, crash safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daisymail.directory.model import Mailbox
from daisymail.store.base import Delivery
from daisymail.store.files import FileStore
from daisymail.store.imap_folders import (
    AccountFolders,
    FolderError,
    flags_of_name,
    name_with_flags,
)
from daisymail.store.imap_state import STATE_NAME, FileMailboxState
from daisymail.store.maildir_view import MaildirView


def deliver(tmp_path: Path, root: Path, subject: str) -> None:
    src = tmp_path / "spool-msg"
    src.write_bytes(f"Subject: {subject}\n\nbody\n".encode())
    FileStore(str(tmp_path)).deliver(
        [Mailbox(name="box", format="maildir", path=str(root) + "/")], Delivery(str(src), b"", "")
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "box"
    AccountFolders(str(path), FileMailboxState()).ensure_defaults()
    return path


def folders(root: Path) -> AccountFolders:
    return AccountFolders(str(root), FileMailboxState())


NAMES = [
    ("1.M1P1Q1.h,S=5,W=6", {"\\Seen"}, "1.M1P1Q1.h,S=5,W=6:2,S"),
    ("1.M1P1Q1.h,S=5:2,S", {"\\Flagged", "\\Deleted"}, "1.M1P1Q1.h,S=5:2,FT"),
    ("u:2,Sa", {"\\Answered"}, "u:2,Ra"),  # another reader's keyword letter is kept
    ("u:2,S", set(), "u:2,"),
]


@pytest.mark.parametrize(("name", "flags", "expected"), NAMES)
def test_name_with_flags(name: str, flags: set[str], expected: str) -> None:
    assert name_with_flags(name, flags) == expected
    assert flags_of_name(expected) == frozenset(flags)


def test_defaults_made_and_subscribed(root: Path) -> None:
    f = folders(root)
    assert f.names() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert f.subscriptions() == {"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}
    assert (root / ".Sent" / "cur").is_dir() and (root / ".Sent" / "maildirfolder").exists()


def test_uids_in_delivery_order_and_durable(tmp_path: Path, root: Path) -> None:
    for s in ("one", "two"):
        deliver(tmp_path, root, s)
    inbox = folders(root).folder("INBOX")
    snap = inbox.sync()
    assert [m.uid for m in snap.messages] == [1, 2]
    assert snap.uidnext == 3
    deliver(tmp_path, root, "three")
    again = folders(root).folder("inbox").sync()
    assert again.uidvalidity == snap.uidvalidity
    assert [m.uid for m in again.messages] == [1, 2, 3]
    assert again.messages[2].path.endswith(",W=" + str(again.messages[2].size))


def test_flags_rename_keeps_pop3_uidl_and_size(tmp_path: Path, root: Path) -> None:
    deliver(tmp_path, root, "one")
    view = MaildirView(str(root) + "/")
    before = list(view.messages)
    view.close()
    inbox = folders(root).folder("INBOX")
    snap = inbox.store_flags([1], "+", frozenset({"\\Seen", "\\Flagged", "$Work"}))
    msg = snap.messages[0]
    assert msg.flags == {"\\Seen", "\\Flagged", "$Work"}
    assert os.path.basename(msg.path).endswith(":2,FS")
    assert "/cur/" in msg.path
    view = MaildirView(str(root) + "/")
    assert list(view.messages) == before
    view.close()
    # keywords live in the state, and survive a new session
    assert folders(root).folder("INBOX").sync().messages[0].flags == {
        "\\Seen",
        "\\Flagged",
        "$Work",
    }
    snap = inbox.store_flags([1], "-", frozenset({"\\Flagged"}))
    assert snap.messages[0].flags == {"\\Seen", "$Work"}
    assert snap.highestmodseq == snap.messages[0].modseq


def test_flag_change_by_another_reader_is_seen(tmp_path: Path, root: Path) -> None:
    deliver(tmp_path, root, "one")
    inbox = folders(root).folder("INBOX")
    first = inbox.sync().messages[0]
    os.rename(first.path, str(root / "cur" / (os.path.basename(first.path) + ":2,S")))
    again = inbox.sync().messages[0]
    assert again.flags == {"\\Seen"} and again.modseq > first.modseq and again.uid == first.uid


def test_expunge_removes_for_pop3_too(tmp_path: Path, root: Path) -> None:
    for s in ("one", "two"):
        deliver(tmp_path, root, s)
    inbox = folders(root).folder("INBOX")
    inbox.sync()
    assert inbox.expunge([1]) == [1]
    view = MaildirView(str(root) + "/")
    assert len(view.messages) == 1
    view.close()
    assert [m.uid for m in inbox.sync().messages] == [2]


def test_pop3_delete_seen_by_imap(tmp_path: Path, root: Path) -> None:
    for s in ("one", "two"):
        deliver(tmp_path, root, s)
    inbox = folders(root).folder("INBOX")
    inbox.sync()
    view = MaildirView(str(root) + "/")
    view.commit({0})
    view.close()
    assert [m.uid for m in inbox.sync().messages] == [2]


def test_append_and_copy_give_uids(tmp_path: Path, root: Path) -> None:
    f = folders(root)
    sent = f.folder("Sent")
    uid = sent.append(b"Subject: x\r\n\r\nhi\r\n", frozenset({"\\Seen"}), 1_000_000_000.0)
    msg = sent.sync().messages[0]
    assert (uid, msg.flags, msg.internal_date) == (1, {"\\Seen"}, 1_000_000_000.0)
    assert msg.size == len(b"Subject: x\r\n\r\nhi\r\n")
    deliver(tmp_path, root, "one")
    inbox = f.folder("INBOX")
    src = inbox.sync().messages
    assert f.folder("Archive").add_files([(m.path, m.flags) for m in src]) == [1]
    assert f.folder("Archive").add_files([(msg.path, msg.flags)]) == [2]
    arch = f.folder("Archive").sync().messages
    assert arch[1].flags == {"\\Seen"}
    assert Path(arch[1].path).read_bytes() == Path(msg.path).read_bytes()


def test_lost_state_gives_new_uidvalidity_not_reused_uids(tmp_path: Path, root: Path) -> None:
    deliver(tmp_path, root, "one")
    inbox = folders(root).folder("INBOX")
    first = inbox.sync()
    (root / STATE_NAME).write_bytes(b"garbage")
    os.utime(root / STATE_NAME, (0, 0))
    again = inbox.sync()
    assert [m.uid for m in again.messages] == [1]
    assert again.uidvalidity >= first.uidvalidity


def test_create_rename_delete_subscribe(root: Path) -> None:
    f = folders(root)
    f.create("Projects.Daisy")
    assert "Projects" in f.names() and "Projects.Daisy" in f.names()
    with pytest.raises(FolderError):
        f.create("Projects")
    f.rename("Projects", "Work")
    assert "Work.Daisy" in f.names() and "Projects" not in f.names()
    f.subscribe("Work", True)
    assert "Work" in f.subscriptions()
    f.delete("Work")
    assert "Work" not in f.names()
    assert "Work" in f.subscriptions()  # RFC 3501 6.3.6: only UNSUBSCRIBE drops it
    with pytest.raises(FolderError):
        f.delete("INBOX")
    for bad in ("", ".x", "a..b", "a/b", "INBOX.x", "\x01"):
        with pytest.raises(FolderError):
            f.create(bad)


def test_unique_names_with_spaces_survive_the_state_file(root: Path) -> None:
    (root / "cur" / "17 odd name:2,S").write_bytes(b"Subject: x\n\nbody\n")
    (root / "new" / "18%two").write_bytes(b"Subject: y\n\nbody\n")
    inbox = folders(root).folder("INBOX")
    first = inbox.sync()
    again = folders(root).folder("INBOX").sync()
    assert [(m.uid, m.unique) for m in again.messages] == [(1, "17 odd name"), (2, "18%two")]
    assert again.uidnext == first.uidnext == 3
    assert again.messages[0].flags == {"\\Seen"}


def test_deleted_folder_is_not_made_again_by_a_sync(root: Path) -> None:
    f = folders(root)
    f.create("Gone")
    gone = f.folder("Gone")
    gone.sync()
    f.delete("Gone")
    with pytest.raises(FileNotFoundError):
        gone.sync()
    assert "Gone" not in f.names()


def test_recent_is_claimed_once_and_kept_in_the_state(tmp_path: Path, root: Path) -> None:
    for s in ("one", "two"):
        deliver(tmp_path, root, s)
    inbox = folders(root).folder("INBOX")
    assert inbox.sync().recent == {1, 2}  # looked at (EXAMINE, STATUS): still unclaimed
    assert inbox.sync(claim_recent=True).recent == {1, 2}
    assert folders(root).folder("INBOX").sync(claim_recent=True).recent == frozenset()
    deliver(tmp_path, root, "three")
    assert inbox.sync(claim_recent=True).recent == {3}
    assert b"\nrecent 4\n" in (root / STATE_NAME).read_bytes()


def test_state_saved_before_recent_was_kept_makes_nothing_recent(
    tmp_path: Path, root: Path
) -> None:
    deliver(tmp_path, root, "old")
    first = folders(root).folder("INBOX").sync()
    state = root / STATE_NAME
    lines = state.read_bytes().splitlines(True)
    state.write_bytes(b"".join(line for line in lines if not line.startswith(b"recent ")))
    again = folders(root).folder("INBOX").sync(claim_recent=True)
    assert again.recent == frozenset() and again.uidvalidity == first.uidvalidity


def test_uidvalidity_never_given_twice_in_an_account(root: Path) -> None:
    f = folders(root)
    seen = set()
    for _ in range(5):
        f.create("Again")
        seen.add(f.folder("Again").sync().uidvalidity)
        f.delete("Again")
    assert len(seen) == 5
