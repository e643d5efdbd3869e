"""StampedCache: a value is served only under the very stamp it was read with, and only
when that stamp is settled (no later change can share its clock tick)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from daisymail.store.base import MailboxInUse
from daisymail.store.listing_cache import LISTINGS, SETTLE_SECONDS, StampedCache
from daisymail.store.maildir import ensure_maildir
from daisymail.store.maildir_view import MaildirView, NotCached
from daisymail.store.maildir_write import add_message


def later(seconds: float) -> int:
    return time.time_ns() + int(seconds * 1e9)


def test_a_fresh_change_is_not_trusted(tmp_path: Path) -> None:
    cache: StampedCache[str] = StampedCache(max_weight=10, clock=time.time_ns)
    stamp = cache.stamp([str(tmp_path)])
    assert not stamp.settled
    cache.put("k", stamp, "listing")
    assert cache.get("k", stamp) is None


def test_a_settled_stamp_serves_until_the_directory_changes(tmp_path: Path) -> None:
    cache: StampedCache[str] = StampedCache(
        max_weight=10, clock=lambda: later(SETTLE_SECONDS + 0.5)
    )
    stamp = cache.stamp([str(tmp_path), str(tmp_path / "absent")])
    assert stamp.settled and stamp.keys[1] is None
    cache.put("k", stamp, "listing")
    assert cache.get("k", cache.stamp([str(tmp_path), str(tmp_path / "absent")])) == "listing"
    (tmp_path / "absent").write_text("now here")
    assert cache.get("k", cache.stamp([str(tmp_path), str(tmp_path / "absent")])) is None
    assert len(cache) == 0


def test_weight_bounds_the_cache_least_recent_first(tmp_path: Path) -> None:
    cache: StampedCache[int] = StampedCache(max_weight=5, clock=lambda: later(10))
    stamp = cache.stamp([str(tmp_path)])
    cache.put("a", stamp, 1, 2)
    cache.put("b", stamp, 2, 2)
    assert cache.get("a", stamp) == 1
    cache.put("c", stamp, 3, 2)  # 6 > 5: b, the least recently used, goes
    assert cache.get("b", stamp) is None
    assert cache.get("a", stamp) == 1 and cache.get("c", stamp) == 3
    cache.put("huge", stamp, 4, 6)
    assert cache.get("huge", stamp) is None


def test_view_reuses_a_settled_listing(tmp_path: Path) -> None:
    box = str(tmp_path / "box")
    ensure_maildir(box)
    add_message(box, [b"Subject: a\n\nx\n"])
    old = time.time() - SETTLE_SECONDS - 1
    for sub in ("new", "cur", "tmp"):  # ctime stays new: the stamp must not settle yet
        os.utime(os.path.join(box, sub), (old, old))
    first = MaildirView(box)
    first.close()
    assert box not in LISTINGS._entries
    time.sleep(SETTLE_SECONDS + 0.1)
    first = MaildirView(box)
    first.close()
    second = MaildirView(box)
    second.close()
    assert second._listing is first._listing
    assert [m.size for m in second.messages] == [len(b"Subject: a\r\n\r\nx\r\n")]


def test_cached_only_opens_nothing_that_must_be_read(tmp_path: Path) -> None:
    """The event-loop path: a fresh Maildir, a changed one or a tmp/ sweep that is due
    raise NotCached (with the lock released); only a settled, unchanged one opens."""
    box = str(tmp_path / "box")
    with pytest.raises(NotCached):
        MaildirView(box, cached_only=True)
    ensure_maildir(box)
    add_message(box, [b"Subject: a\n\nx\n"])
    with pytest.raises(NotCached):  # never listed yet
        MaildirView(box, cached_only=True)
    MaildirView(box).close()  # listed, but too fresh to be kept
    with pytest.raises(NotCached):
        MaildirView(box, cached_only=True)
    time.sleep(SETTLE_SECONDS + 0.1)
    MaildirView(box).close()
    view = MaildirView(box, cached_only=True)
    with pytest.raises(MailboxInUse):  # the lock is taken as on the full path
        MaildirView(box, cached_only=True)
    view.close()
    add_message(box, [b"Subject: b\n\ny\n"])
    with pytest.raises(NotCached):
        MaildirView(box, cached_only=True)
    view = MaildirView(box)  # and the lock was released by the refusals
    assert len(view.messages) == 2
    view.close()
