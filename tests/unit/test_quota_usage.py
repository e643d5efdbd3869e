"""Maildir usage as quotas count it: cached per directory under its mtime, and right
after every kind of change (delivery, deletion, flag rename, new folder)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from daisymail.quota import UsageCache, format_size, parse_size, scan_usage


def old(*dirs: Path) -> None:
    """Age the directories past the racy window, so that their totals are cached."""
    then = time.time_ns() - 10_000_000_000
    for d in dirs:
        os.utime(d, ns=(then, then))


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    root = tmp_path / "box"
    for folder in (root, root / ".Sent"):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
    (root / "new" / "1.M1P1Q1.h,S=100,W=104").write_bytes(b"x" * 100)
    (root / "cur" / "2.M1P1Q2.h:2,S").write_bytes(b"y" * 50)  # no S=: stat'ed
    (root / ".Sent" / "cur" / "3.M1P1Q3.h,S=30:2,S").write_bytes(b"z" * 30)
    (root / "tmp" / "4.M1P1Q4.h").write_bytes(b"t" * 1000)  # not delivered: not counted
    return root


def all_dirs(root: Path) -> list[Path]:
    return [root, *(f / s for f in (root, root / ".Sent") for s in ("cur", "new"))]


def test_usage_follows_every_change(maildir: Path) -> None:
    cache = UsageCache()
    old(*all_dirs(maildir))
    assert cache.usage(str(maildir)) == scan_usage(str(maildir)) == 180
    # delivery
    (maildir / "new" / "5.M1P1Q5.h,S=20,W=21").write_bytes(b"n" * 20)
    assert cache.usage(str(maildir)) == 200
    old(*all_dirs(maildir))
    assert cache.usage(str(maildir)) == 200
    # a flag change (rename within cur/) and a move new/ -> cur/
    os.rename(maildir / "cur" / "2.M1P1Q2.h:2,S", maildir / "cur" / "2.M1P1Q2.h:2,ST")
    os.rename(maildir / "new" / "5.M1P1Q5.h,S=20,W=21", maildir / "cur" / "5.M1P1Q5.h,S=20:2,")
    assert cache.usage(str(maildir)) == 200
    old(*all_dirs(maildir))
    # deletion (POP3 DELE, IMAP EXPUNGE)
    os.unlink(maildir / ".Sent" / "cur" / "3.M1P1Q3.h,S=30:2,S")
    assert cache.usage(str(maildir)) == 170
    # a new folder
    for sub in ("cur", "new", "tmp"):
        (maildir / ".Archive" / sub).mkdir(parents=True)
    (maildir / ".Archive" / "cur" / "6.M1P1Q6.h,S=7:2,").write_bytes(b"a" * 7)
    assert cache.usage(str(maildir)) == scan_usage(str(maildir)) == 177
    assert cache.usage(str(maildir) + "/") == 177  # the same Maildir, however it is named


def test_cached_until_the_directory_changes(maildir: Path) -> None:
    """A total is reused while the directory's mtime stands: a file rewritten in place
    (which no mail program does) is not seen, a recently changed directory always is."""
    cache = UsageCache()
    old(*all_dirs(maildir))
    assert cache.usage(str(maildir)) == 180
    with open(maildir / "cur" / "2.M1P1Q2.h:2,S", "ab") as f:
        f.write(b"more")
    assert cache.usage(str(maildir)) == 180  # from the cache: no walk
    os.utime(maildir / "cur")  # changed just now: racy, counted afresh every time
    assert cache.usage(str(maildir)) == 184
    with open(maildir / "cur" / "2.M1P1Q2.h:2,S", "ab") as f:
        f.write(b"more")
    assert cache.usage(str(maildir)) == 188


def test_missing_maildir_is_empty(tmp_path: Path) -> None:
    assert UsageCache().usage(str(tmp_path / "nothing")) == 0


@pytest.mark.parametrize("octets", [0, 1000, 1024, 20 * 1024, 500 * 1024**2, 2 * 1024**3])
def test_format_size_reads_back(octets: int) -> None:
    assert parse_size(format_size(octets)) == octets
