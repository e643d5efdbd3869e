"""One shared, immutable picture of each folder for every session that has it selected.

A phone, a laptop and thousands of idle IMAP sessions on the same folder would each
hold their own list of the folder's messages (about 1 MB for 1,000 messages). Instead
the newest FolderSnapshot of a folder is published here once, with its indexes, and
every SelectedView references it; a view keeps only what differs for its client (see
selected.py). A snapshot is never changed after publication: news makes a new one.

Entries are weak: a folder nobody has selected costs nothing once it has also left the
few most recently used ones (KEEP_MESSAGES messages in all). Message objects
that did not change are carried over from the previous snapshot, so that two
generations alive at once (sessions not yet caught up) share them.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from daisymail.store.imap_folders import FolderSnapshot, ImapFolder, Message

# Many sessions on one folder look for news at about the same time: a fingerprint
# (three stat calls) taken this recently is good enough for all of them.
FINGERPRINT_TTL = 0.2
# File systems stamp mtimes from a coarse clock: a second change within the same tick
# as the one a fingerprint saw leaves the fingerprint as it was. A fingerprint is only
# trusted once its newest mtime is older than this when it is taken.
SETTLE_NS = 100_000_000
# Messages of recently used folders kept after their last session (about 0.5 KB each).
KEEP_MESSAGES = 100_000


Recent = range | frozenset[int] | None  # a session's \Recent UIDs; usually one range


@dataclass(frozen=True)
class Delta:
    """One step from an older snapshot, as every clean view making it is told it."""

    news: bytes
    max_uid: int
    recent: Recent


@dataclass(frozen=True, eq=False)
class Shared:
    """A folder's messages as of `fingerprint` (taken before the scan, so that a change
    racing the scan is found again at the next look). Read it, never change it."""

    snap: FolderSnapshot
    uids: tuple[int, ...]
    by_uid: dict[int, Message]
    fingerprint: object
    settled: bool  # fingerprint proves that nothing changed since (see SETTLE_NS)
    taken_ns: int  # when the fingerprint was taken: the scan began after it
    keywords: frozenset[str]  # the keywords in use: views announce them (selected.py)
    # What views that were exactly an older snapshot are told to become this one: all
    # the sessions idling on a folder get the same news, worked out once (selected.py).
    deltas: dict[tuple[object, ...], Delta] = field(default_factory=dict)
    # [True] once a read-write session claimed the \Recent messages of snap.recent: the
    # claim took them all, so the other sessions on this snapshot need not look again.
    claimed: list[bool] = field(default_factory=list)

    @classmethod
    def of(cls, snap: FolderSnapshot, fingerprint: object, taken_ns: int) -> Shared:
        uids = tuple(m.uid for m in snap.messages)
        by_uid = {m.uid: m for m in snap.messages}
        keywords = frozenset(f for m in snap.messages for f in m.flags if not f.startswith("\\"))
        is_settled = settled(fingerprint, taken_ns)
        return cls(snap, uids, by_uid, fingerprint, is_settled, taken_ns, keywords)

    @property
    def unclaimed(self) -> frozenset[int]:
        """The messages of snap no session has taken as \\Recent (as far as known here)."""
        return frozenset() if self.claimed else self.snap.recent

    def still(self, fingerprint: object) -> bool:
        """Whether the folder with this fingerprint is surely still this snapshot."""
        return self.settled and fingerprint == self.fingerprint


class Snapshots:
    """The newest Shared of each folder in use in this process, by folder path."""

    def __init__(self) -> None:
        self._latest: weakref.WeakValueDictionary[str, Shared] = weakref.WeakValueDictionary()
        self._looked: dict[str, tuple[float, object]] = {}  # path: (when, fingerprint)
        self._lock = threading.Lock()
        # One sync of a folder at a time: sessions woken together by the same news wait
        # for the sync under way and take its result when it began after they asked.
        self._syncing = [threading.Lock() for _ in range(64)]
        # The folders opened last stay for a while after their last session has gone:
        # a mail program polling (log in, select, fetch, log out) finds its folder made.
        self._kept: OrderedDict[str, Shared] = OrderedDict()
        self._kept_messages = 0

    def fingerprint(self, folder: ImapFolder, fresh: bool = False) -> object:
        """The folder's fingerprint, at most FINGERPRINT_TTL old unless fresh."""
        now = time.monotonic()
        if not fresh:
            seen = self._looked.get(folder.path)
            if seen is not None and now - seen[0] < FINGERPRINT_TTL:
                return seen[1]
        fp = folder.fingerprint()
        with self._lock:
            self._looked[folder.path] = (now, fp)
            if len(self._looked) > 4 * len(self._latest) + 1000:  # folders nobody uses
                self._looked = {p: v for p, v in self._looked.items() if p in self._latest}
        return fp

    def current(self, folder: ImapFolder) -> Shared:
        """The folder as it is now: the published snapshot when nothing changed since,
        else a new one made by a sync (which gives new messages their UIDs)."""
        asked = time.time_ns()
        fp = self.fingerprint(folder, fresh=True)
        latest = self._latest.get(folder.path)
        if latest is not None and latest.still(fp):
            return latest
        with self._syncing[hash(folder.path) % len(self._syncing)]:
            latest = self._latest.get(folder.path)
            if latest is not None and latest.taken_ns > asked:
                return latest  # made from a look begun after this caller asked
            taken = time.time_ns()
            fp = self.fingerprint(folder, fresh=True)
            return self.publish(folder, folder.sync(), fp, taken)

    def publish(
        self, folder: ImapFolder, snap: FolderSnapshot, fingerprint: object, taken_ns: int
    ) -> Shared:
        """Make snap, synced after fingerprint was taken, the folder's shared picture."""
        with self._lock:
            latest = self._latest.get(folder.path)
            if latest is not None:
                if latest.still(fingerprint):
                    return latest
                snap = _reuse(latest.by_uid, snap)
            shared = Shared.of(snap, fingerprint, taken_ns)
            self._latest[folder.path] = shared
            self._keep(folder.path, shared)
            return shared

    def _keep(self, path: str, shared: Shared) -> None:
        """Hold shared strongly, the oldest kept ones let go beyond KEEP_MESSAGES."""
        old = self._kept.pop(path, None)
        if old is not None:
            self._kept_messages -= len(old.uids)
        self._kept[path] = shared
        self._kept_messages += len(shared.uids)
        while self._kept_messages > KEEP_MESSAGES and len(self._kept) > 1:
            _, gone = self._kept.popitem(last=False)
            self._kept_messages -= len(gone.uids)

    def claim_recent(self, folder: ImapFolder, shared: Shared) -> frozenset[int]:
        """For a read-write session on shared: the messages it is the first to see.
        The folder state is written (and so the fingerprint changed, and the snapshot
        made again once) only when shared has unclaimed messages, and once per snapshot."""
        if not shared.unclaimed:
            return frozenset()
        with self._syncing[hash(folder.path) % len(self._syncing)]:
            if shared.claimed:
                return frozenset()
            recent = folder.claim_recent()
            shared.claimed.append(True)
        return recent

    def latest(self, folder: ImapFolder) -> Shared | None:
        return self._latest.get(folder.path)


def settled(fingerprint: object, taken_ns: int) -> bool:
    """No nanosecond mtime in the fingerprint is within SETTLE_NS of when it was taken."""
    if isinstance(fingerprint, tuple):
        return all(settled(part, taken_ns) for part in fingerprint)
    if isinstance(fingerprint, int) and fingerprint > 10**17:  # an mtime in ns
        return fingerprint < taken_ns - SETTLE_NS
    return True


def _reuse(before: dict[int, Message], snap: FolderSnapshot) -> FolderSnapshot:
    """snap with the unchanged Message objects of the previous snapshot in its place."""
    messages = []
    for m in snap.messages:
        old = before.get(m.uid)
        same = old is not None and (old.flags, old.modseq, old.path) == (m.flags, m.modseq, m.path)
        messages.append(old if same and old is not None else m)
    snap.messages = messages
    return snap


SNAPSHOTS = Snapshots()
