"""The selected folder as one session sees it: sequence numbers, and what is news to it.

Sequence numbers are per session; the view keeps the UIDs it has told the client of,
so that at each command (and while idling) it can announce what other sessions or SMTP
deliveries changed: EXPUNGE for messages gone, EXISTS for new ones, FETCH FLAGS for
flag changes. During FETCH, STORE and SEARCH no EXPUNGE may be sent (RFC 3501 7.4.1):
messages gone meanwhile keep their numbers until a later command.

The folder's messages are not copied into each view: a view references the folder's
shared snapshot (snapshots.py) and keeps only what differs for its own client, copied
on write: its own UID list while it numbers messages differently (an expunge not yet
told), the messages gone from the snapshot it still numbers, and flags it told that
differ from the snapshot's. An idle view that is up to date holds none of these.

IMAP4rev1's \\Recent: the messages this session was the first to see (claimed from the
folder state by a read-write SELECT and each refresh, once per snapshot) carry it in
their flags as the session shows them, and news of them says ``* n RECENT``. They are
kept as a range of UIDs (or a small set), None when there are none; the shared
messages are never marked, the mark is added when a message is handed out. Keywords
new to the session are announced with ``* FLAGS`` and ``PERMANENTFLAGS`` before any
FETCH shows them (RFC 3501 7.2.6); the keywords a session knows are usually the very
set of a shared snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from daisymail.imap.parser import SequenceSet
from daisymail.imap.responses import flag_list, number_set
from daisymail.imap.snapshots import SNAPSHOTS, Delta, Recent, Shared
from daisymail.store.imap_folders import FolderSnapshot, ImapFolder, Message

MAX_DELTAS = 8  # steps to one snapshot remembered (from older snapshots, options)
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = "\\Recent"


def compact(uids: Iterable[int]) -> Recent:
    """UIDs as a range when they follow each other (the usual \\Recent), else a set."""
    found = frozenset(uids)
    if not found:
        return None
    lo, hi = min(found), max(found)
    return range(lo, hi + 1) if hi - lo + 1 == len(found) else found


class SelectedView:
    __slots__ = (
        "_keywords",
        "_own",
        "_recent",
        "_told",
        "_uids",
        "condstore",
        "folder",
        "max_uid",
        "qresync",
        "readonly",
        "saved",
        "shared",
        "show_recent",
        "uidvalidity",
    )

    def __init__(
        self,
        folder: ImapFolder,
        readonly: bool,
        shared: Shared,
        show_recent: bool = True,
        recent: Iterable[int] = (),
    ) -> None:
        self.folder = folder
        self.readonly = readonly
        self.shared = shared
        self.show_recent = show_recent  # IMAP4rev1 only: IMAP4rev2 dropped \Recent
        self.uidvalidity = shared.snap.uidvalidity
        self._uids: list[int] | None = None  # own numbering, when not shared.uids
        self._own: dict[int, Message] | None = None  # numbered here, not in shared as is
        self._told: dict[int, frozenset[str]] | None = None  # told flags unlike shared's
        self._recent: Recent = compact(recent) if show_recent else None  # recent here
        self._keywords = shared.keywords  # announced in FLAGS
        self.max_uid = shared.uids[-1] if shared.uids else 0
        self.condstore = False
        self.qresync = False  # RFC 7162: VANISHED instead of EXPUNGE
        self.saved: list[int] = []  # SEARCHRES: the UIDs the last SEARCH ... SAVE found

    @classmethod
    def open(cls, folder: ImapFolder, readonly: bool, show_recent: bool = True) -> SelectedView:
        """SELECT or EXAMINE: the folder's shared snapshot, and the messages recent here
        (a read-write SELECT takes those no session has seen; EXAMINE only looks)."""
        shared = SNAPSHOTS.current(folder)
        recent = shared.unclaimed if readonly else SNAPSHOTS.claim_recent(folder, shared)
        return cls(folder, readonly, shared, show_recent, recent)

    # -- what the client knows --------------------------------------------------------------
    @property
    def uids(self) -> Sequence[int]:
        """The UIDs by sequence number (minus one), as the client numbers them."""
        return self._uids if self._uids is not None else self.shared.uids

    @property
    def keywords(self) -> frozenset[str]:
        return self._keywords

    def _base(self, uid: int) -> Message | None:
        if self._own is not None and uid in self._own:
            return self._own[uid]
        return self.shared.by_uid.get(uid)

    def message(self, uid: int) -> Message | None:
        """The message as this session shows it: with \\Recent when it is recent here."""
        msg = self._base(uid)
        if msg is None or not self.is_recent(uid):
            return msg
        return dataclasses.replace(msg, flags=msg.flags | {RECENT})

    def is_recent(self, uid: int) -> bool:
        return self.show_recent and self._recent is not None and uid in self._recent

    def hide_recent(self) -> None:
        """ENABLE IMAP4rev2 with a folder selected: \\Recent is shown no more."""
        self.show_recent = False
        self._recent = None

    def recent_count(self) -> int:
        if not self.show_recent or self._recent is None:
            return 0
        numbered = self.shared.by_uid if self._uids is None else set(self._uids)
        return sum(1 for u in self._recent if u in numbered)

    def flags_lines(self) -> bytes:
        """``* FLAGS`` and ``PERMANENTFLAGS``: the system flags and the keywords in use."""
        keywords = sorted(self._keywords)
        flags = flag_list([*SYSTEM_FLAGS, *keywords])
        permanent = b"()" if self.readonly else flag_list([*SYSTEM_FLAGS, *keywords, "\\*"])
        return (
            b"* FLAGS " + flags + b"\r\n* OK [PERMANENTFLAGS " + permanent + b"] flags allowed\r\n"
        )

    def remember(self, msg: Message) -> None:
        """A message looked up again (its file was renamed): use it from now on."""
        old = self._base(msg.uid)
        if old is not None and (self._told is None or msg.uid not in self._told):
            self.tell(msg.uid, old.flags)
        if self._own is None:
            self._own = {}
        self._own[msg.uid] = msg

    def told(self, uid: int) -> frozenset[str] | None:
        """The flags the client was last told for uid (None: not a message it knows),
        without \\Recent, which only this session's claim changes."""
        if self._told is not None and uid in self._told:
            return self._told[uid]
        msg = self._base(uid)
        return None if msg is None else msg.flags

    def tell(self, uid: int, flags: frozenset[str]) -> None:
        """The client has been told (or has itself set) these flags of uid."""
        flags = flags - {RECENT}
        msg = self._base(uid)
        if msg is not None and msg.flags == flags:
            if self._told is not None:
                self._told.pop(uid, None)
            return
        if self._told is None:
            self._told = {}
        self._told[uid] = flags

    # -- news --------------------------------------------------------------------------------
    def _delta_key(self, new: Shared, allow_expunge: bool) -> tuple[object, ...] | None:
        """What decides the news of a step to new, when it is the same for every view
        with it; None when this view holds state of its own (then no reuse)."""
        if self._uids is not None or self._own is not None or self._told is not None:
            return None
        old = self.shared  # by id, not by reference: no chain of snapshots kept alive
        if new.keywords <= self._keywords:
            announce = False  # nothing to announce: what the view knew does not matter
        elif self._keywords == old.keywords:
            announce = True  # announced: the old snapshot's keywords and the new ones
        else:
            return None
        return (
            id(old),
            old.taken_ns,
            self.max_uid,
            allow_expunge,
            self.qresync,
            self.condstore,
            self.readonly,
            bool(new.claimed),  # what a read-only view takes as recent
            self.show_recent,
            self._recent,
            announce,
        )

    def apply(self, new: Shared, allow_expunge: bool) -> bytes:
        """Bring the view up to date with a snapshot; the untagged lines that says."""
        key = self._delta_key(new, allow_expunge)
        if key is not None:
            known = new.deltas.get(key)
            if known is not None:  # another session made exactly this step already
                self.shared, self.max_uid, self._recent = new, known.max_uid, known.recent
                self._keywords = self._known_after(new)
                return known.news
        out = self._apply(new, allow_expunge)
        clean = self._uids is None and self._own is None and self._told is None
        if key is not None and clean and len(new.deltas) < MAX_DELTAS:
            new.deltas[key] = Delta(out, self.max_uid, self._recent)
        return out

    def _apply(self, new: Shared, allow_expunge: bool) -> bytes:
        out: list[bytes] = []
        current = new.by_uid
        kept: list[int] = []
        gone: list[tuple[int, int]] = []  # (sequence number, uid) expunged, told now
        for seq, uid in enumerate(self.uids, 1):
            if uid in current or not allow_expunge:
                kept.append(uid)
            else:
                gone.append((seq, uid))
        if gone:
            gone.reverse()  # each EXPUNGE numbers the messages as the previous left them
            if self.qresync:
                out.append(b"* VANISHED %s\r\n" % number_set([u for _, u in gone]).encode())
            else:
                out.extend(b"* %d EXPUNGE\r\n" % seq for seq, _ in gone)
            if self._recent is not None:
                self._recent = compact(u for u in self._recent if u in current or u > self.max_uid)
        own: dict[int, Message] = {}
        told: dict[int, frozenset[str]] = {}
        for seq, uid in enumerate(kept, 1):
            msg = current.get(uid)
            before = self.told(uid)
            if msg is None:  # gone, but its number stays until EXPUNGE may be told
                old = self._base(uid)
                if old is not None:
                    own[uid] = old
                if before is not None and old is not None and before != old.flags:
                    told[uid] = before
                continue
            if msg.flags != before:
                if self.is_recent(uid):
                    msg = dataclasses.replace(msg, flags=msg.flags | {RECENT})
                out.append(b"* %d FETCH (%s)\r\n" % (seq, self.flags_data(msg)))
        new_ones = [m.uid for m in new.snap.messages if m.uid > self.max_uid]
        if new_ones:
            if self.readonly:  # a read-only view only looks at the unclaimed ones
                seen = new.unclaimed
                if seen:
                    self._add_recent(u for u in new_ones if u in seen)
            kept.extend(new_ones)
            self.max_uid = new_ones[-1]
            out.append(b"* %d EXISTS\r\n" % len(kept))
        self.shared = new
        self._own = own or None
        self._told = told or None
        self._uids = None if tuple(kept) == new.uids else kept
        if new_ones and self.show_recent:
            out.append(b"* %d RECENT\r\n" % self.recent_count())
        announce = not new.keywords <= self._keywords
        self._keywords = self._known_after(new)
        if announce:  # before any FETCH that shows them
            out.insert(0, self.flags_lines())
        return b"".join(out)

    def _known_after(self, new: Shared) -> frozenset[str]:
        """The keywords the client knows once told of new: the shared set when equal."""
        both = self._keywords | new.keywords
        return new.keywords if both == new.keywords else both

    def _add_recent(self, uids: Iterable[int]) -> None:
        added = frozenset(uids)
        if added and self.show_recent:  # claimed all the same under IMAP4rev2, not shown
            self._recent = compact(added.union(self._recent or ()))

    def flags_data(self, msg: Message, uid: bool = True) -> bytes:
        """``UID n FLAGS (...)`` and, once CONDSTORE is on, ``MODSEQ (m)``."""
        data = b"FLAGS " + flag_list(msg.flags)
        if uid:
            data = b"UID %d " % msg.uid + data
        if self.condstore:
            data += b" MODSEQ (%d)" % msg.modseq
        return data

    def refresh(self, allow_expunge: bool = True) -> bytes:
        try:
            new = SNAPSHOTS.current(self.folder)
        except FileNotFoundError:  # the folder was deleted or renamed by another session
            empty = FolderSnapshot(self.uidvalidity, self.max_uid + 1, 0, [])
            new = Shared.of(empty, None, 0)
        if not self.readonly and new.unclaimed:  # a read-write view takes them
            self._add_recent(SNAPSHOTS.claim_recent(self.folder, new))
        if new is self.shared and self._told is None and (self._own is None or not allow_expunge):
            return b""  # nothing new, nothing of its own to settle
        return self.apply(new, allow_expunge)

    def changed(self) -> bool:
        """A cheap look (a few stats, shared by the sessions on the folder) whether a
        refresh would find anything."""
        return not self.shared.still(SNAPSHOTS.fingerprint(self.folder))

    def select(self, which: SequenceSet, uid: bool) -> list[tuple[int, Message]]:
        """(sequence number, message) for a sequence or UID set, in order."""
        uids = self.uids
        if not uids:
            return []
        if which.saved:  # ``$``: the messages of the last SEARCH ... SAVE still here
            saved = set(self.saved)
            return [(seq, self._msg(u)) for seq, u in enumerate(uids, 1) if u in saved]
        if uid:
            ranges = which.resolve(uids[-1])
            return [
                (seq, self._msg(u))
                for seq, u in enumerate(uids, 1)
                if any(lo <= u <= hi for lo, hi in ranges)
            ]
        out = []
        for lo, hi in which.resolve(len(uids)):
            for seq in range(max(lo, 1), min(hi, len(uids)) + 1):
                out.append((seq, self._msg(uids[seq - 1])))
        seen: set[int] = set()
        ordered = []
        for seq, msg in sorted(out, key=lambda p: p[0]):
            if seq not in seen:
                seen.add(seq)
                ordered.append((seq, msg))
        return ordered

    def _msg(self, uid: int) -> Message:
        msg = self.message(uid)
        assert msg is not None, "every numbered UID has its message"
        return msg

    def seq_of(self, uid: int) -> int:
        return self.uids.index(uid) + 1
