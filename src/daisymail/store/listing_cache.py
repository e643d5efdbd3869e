"""Results of reading a Maildir, remembered while its directories are unchanged.

A polling client logs in every few minutes to a mailbox that has not changed; listing
``new/`` and ``cur/`` again (and parsing every name) was a quarter of such a login. A
Maildir changes only by entries added, removed or renamed in its directories, and each
such change sets the directory's mtime and ctime, so a value computed from a listing is
still right while the stats of those directories (inode, mtime, ctime, size, link count:
a Stamp) are the same as when the listing began.

The one trap is timestamp granularity: a change made in the same clock tick as the
stamped one leaves mtime and ctime as they were. So a stamp is trusted ("settled") only
when its newest timestamp is older than ``settle`` seconds before the stats were taken:
any later change then happens in a later tick and shows. An unsettled stamp is never
stored, so a mailbox changed in the last moments is read again at each login until it
is quiet. The stamp is taken before the listing it describes: a change made during the
listing makes the next stamp differ, so it is read again rather than missed.

Thread-safe (views are opened in worker threads); bounded by a total weight (messages
remembered), least recently used dropped first. See docs/design.md, "Maildir listing
cache", for the reasoning in full.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from daisymail.store.base import MessageInfo

T = TypeVar("T")

SETTLE_SECONDS = 2.0
"""Covers the coarsest timestamps of filesystems a Maildir lives on (2 s on FAT), and the
kernel's coarse clock lagging the wall clock by a tick."""

Key = tuple[int, int, int, int, int, int]
"""What a stat says about a file or directory: device, inode, mtime_ns, ctime_ns, size,
links."""


def _key(path: str) -> Key | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_nlink)


@dataclass(frozen=True)
class Stamp:
    """The stats of some paths at one moment (None for a missing one); settled: every
    timestamp is old enough that a later change cannot share its clock tick."""

    keys: tuple[Key | None, ...]
    settled: bool

    @property
    def missing(self) -> bool:
        return None in self.keys


class StampedCache(Generic[T]):
    """Values keyed by a name (a Maildir's path), each valid while its Stamp holds."""

    def __init__(
        self,
        *,
        max_weight: int,
        settle: float = SETTLE_SECONDS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.max_weight = max_weight
        self._settle_ns = int(settle * 1e9)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Stamp, T, int]] = OrderedDict()
        self._weight = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stamp(self, paths: Iterable[str]) -> Stamp:
        """Stat paths now. The clock is read first, so the settled test errs on the
        side of reading again."""
        now = self._clock()
        keys = tuple(_key(p) for p in paths)
        newest = max((max(k[2], k[3]) for k in keys if k is not None), default=0)
        return Stamp(keys, now - newest >= self._settle_ns)

    def get(self, name: str, stamp: Stamp) -> T | None:
        """The value stored under name with this very stamp, else None (and the stale
        value is dropped)."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            if entry[0] != stamp:
                self._drop(name)
                return None
            self._entries.move_to_end(name)
            return entry[1]

    def put(self, name: str, stamp: Stamp, value: T, weight: int = 1) -> None:
        """Remember value as what was read under stamp (taken before the reading); an
        unsettled stamp, or a value heavier than the whole cache, is not kept."""
        with self._lock:
            self._drop(name)
            if not stamp.settled or weight > self.max_weight:
                return
            self._entries[name] = (stamp, value, weight)
            self._weight += weight
            while self._weight > self.max_weight:
                self._drop(next(iter(self._entries)))

    def discard(self, name: str) -> None:
        with self._lock:
            self._drop(name)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._weight = 0

    def _drop(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._weight -= entry[2]


@dataclass(frozen=True)
class Pop3Listing:
    """What a POP3 view reads at login (store/maildir_view.py): (directory, name, received)
    of each message in delivery order, their POP3 sizes and UIDLs, and the UIDL list."""

    rows: tuple[tuple[str, str, float], ...]
    messages: tuple[MessageInfo, ...]
    uidlist: Mapping[str, str]


LISTINGS: StampedCache[Pop3Listing] = StampedCache(max_weight=100_000)
"""POP3 listings by Maildir path, valid while new/, cur/ and the UIDL list are unchanged;
weighed in messages (about 0.5 KiB each, so at most about 50 MiB)."""

TMP_SWEEPS: StampedCache[float] = StampedCache(max_weight=100_000)
"""When each Maildir's tmp/ next holds a file old enough to sweep, valid while tmp/ is
unchanged (a file written since only gets younger, so the time can only be early)."""
