"""The QUIT rewrite that keeps a mailbox's owner: an in-place copy with a redo file.

A service user cannot fchown a new file to the mailbox's owner, so the rewrite copies
into the same inode; every point a crash can cut it short is recovered under the locks,
including mail appended after the crash.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daisymail.store import mbox_inplace, mbox_view
from daisymail.store.base import StorageError, ViewOptions
from daisymail.store.mbox_inplace import REDO_SUFFIX, _hash_range, _trailer, redo_path
from daisymail.store.mbox_view import open_mbox_view

M1 = b"From a@x  Mon Jan  5 10:00:01 2004\nSubject: one\n\nfirst\n\n"
M2 = b"From b@x  Mon Jan  5 10:00:02 2004\nSubject: two\n\n" + b"second\n" * 50 + b"\n"
M3 = b"From c@x  Mon Jan  5 10:00:03 2004\nSubject: three\n\nthird\n\n"
LATE = b"From d@x  Mon Jan  5 10:00:04 2004\nSubject: late\n\nappended after a crash\n\n"


def _commit(path: Path, deleted: set[int]) -> None:
    view = open_mbox_view(str(path), ViewOptions(), lock_wait=0.2)
    try:
        view.commit(deleted)
    finally:
        view.close()


def _uidls(path: Path) -> list[str]:
    view = open_mbox_view(str(path), ViewOptions(), lock_wait=0.2)
    try:
        return [m.uidl for m in view.messages]
    finally:
        view.close()


@pytest.mark.parametrize("deleted", [{0}, {1}, {2}, {0, 2}, {0, 1, 2}])
def test_in_place_commit_keeps_the_inode_and_matches_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deleted: set[int]
) -> None:
    renamed, in_place = tmp_path / "renamed", tmp_path / "inplace"
    for p in (renamed, in_place):
        p.write_bytes(M1 + M2 + M3)
    os.chmod(in_place, 0o640)
    _commit(renamed, deleted)
    before = os.stat(in_place)
    monkeypatch.setattr(mbox_view, "can_keep_owner", lambda st: False)
    _commit(in_place, deleted)
    after = os.stat(in_place)
    assert in_place.read_bytes() == renamed.read_bytes()
    assert (after.st_ino, after.st_uid, after.st_gid, after.st_mode) == (
        before.st_ino,
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )
    assert sorted(p.name for p in tmp_path.iterdir() if "daisymail" in p.name) == [
        ".inplace.daisymail-pop3",
        ".renamed.daisymail-pop3",
    ]


def _crash_state(path: Path, new: bytes, stage: str) -> None:
    """The mbox and redo file as a crash at `stage` of copy_into_place leaves them."""
    old = path.read_bytes()
    fd = os.open(path, os.O_RDWR)
    try:
        redo = Path(redo_path(str(path)))
        redo.write_bytes(new + _trailer(len(new), len(old), _hash_range(fd, len(new), len(old))))
        if stage == "partial":
            os.pwrite(fd, new[: len(new) // 2], 0)
        elif stage in ("copied", "truncated"):
            os.pwrite(fd, new, 0)
        if stage == "truncated":
            os.ftruncate(fd, len(new))
    finally:
        os.close(fd)


@pytest.mark.parametrize("stage", ["redo-written", "partial", "copied", "truncated"])
@pytest.mark.parametrize("late", [b"", LATE])
def test_recovery_after_a_crash(tmp_path: Path, stage: str, late: bytes) -> None:
    path = tmp_path / "box"
    path.write_bytes(M1 + M2 + M3)
    _crash_state(path, M1 + M3, stage)
    if late:  # a delivery broke the dead process's dotlock and appended
        with open(path, "ab") as f:
            f.write(late)
    uidls = _uidls(path)
    assert path.read_bytes() == M1 + M3 + late
    assert len(uidls) == 2 + bool(late)
    assert not Path(redo_path(str(path))).exists()


def test_recovery_twice_over(tmp_path: Path) -> None:
    """A crash during recovery itself, after more mail came: recovered again."""
    path = tmp_path / "box"
    path.write_bytes(M1 + M2 + M3)
    _crash_state(path, M1 + M3, "partial")
    with open(path, "ab") as f:
        f.write(LATE)
    # the recovery wrote its fresh redo and began copying, then died
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.fstat(fd).st_size
        new = M1 + M3 + LATE
        redo = Path(redo_path(str(path)))
        redo.write_bytes(new + _trailer(len(new), old, _hash_range(fd, len(new), old)))
        os.pwrite(fd, new[:10], 0)
    finally:
        os.close(fd)
    with open(path, "ab") as f:
        f.write(LATE)
    _uidls(path)
    assert path.read_bytes() == M1 + M3 + LATE + LATE


def test_a_broken_redo_file_stops_reading_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "box"
    path.write_bytes(M1)
    Path(redo_path(str(path))).write_bytes(b"half a file")
    with pytest.raises(StorageError, match="not a complete redo file"):
        _uidls(path)
    assert path.read_bytes() == M1


def test_can_keep_owner_follows_fchown_rules(tmp_path: Path) -> None:
    st = os.stat(tmp_path)
    assert mbox_inplace.can_keep_owner(st) is True  # our own file, our own group
    assert REDO_SUFFIX.startswith(".daisymail")
