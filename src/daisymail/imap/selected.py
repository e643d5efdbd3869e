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
"""

from __future__ import annotations

from collections.abc import Sequence

from daisymail.imap.parser import SequenceSet
from daisymail.imap.responses import flag_list, number_set
from daisymail.imap.snapshots import SNAPSHOTS, Shared
from daisymail.store.imap_folders import FolderSnapshot, ImapFolder, Message

MAX_DELTAS = 8  # steps to one snapshot remembered (from older snapshots, options)


class SelectedView:
    __slots__ = (
        "_own",
        "_told",
        "_uids",
        "condstore",
        "folder",
        "max_uid",
        "qresync",
        "readonly",
        "saved",
        "shared",
        "uidvalidity",
    )

    def __init__(self, folder: ImapFolder, readonly: bool, shared: Shared) -> None:
        self.folder = folder
        self.readonly = readonly
        self.shared = shared
        self.uidvalidity = shared.snap.uidvalidity
        self._uids: list[int] | None = None  # own numbering, when not shared.uids
        self._own: dict[int, Message] | None = None  # numbered here, not in shared as is
        self._told: dict[int, frozenset[str]] | None = None  # told flags unlike shared's
        self.max_uid = shared.uids[-1] if shared.uids else 0
        self.condstore = False
        self.qresync = False  # RFC 7162: VANISHED instead of EXPUNGE
        self.saved: list[int] = []  # SEARCHRES: the UIDs the last SEARCH ... SAVE found

    # -- what the client knows --------------------------------------------------------------
    @property
    def uids(self) -> Sequence[int]:
        """The UIDs by sequence number (minus one), as the client numbers them."""
        return self._uids if self._uids is not None else self.shared.uids

    def message(self, uid: int) -> Message | None:
        if self._own is not None and uid in self._own:
            return self._own[uid]
        return self.shared.by_uid.get(uid)

    def remember(self, msg: Message) -> None:
        """A message looked up again (its file was renamed): use it from now on."""
        old = self.message(msg.uid)
        if old is not None and (self._told is None or msg.uid not in self._told):
            self.tell(msg.uid, old.flags)
        if self._own is None:
            self._own = {}
        self._own[msg.uid] = msg

    def told(self, uid: int) -> frozenset[str] | None:
        """The flags the client was last told for uid (None: not a message it knows)."""
        if self._told is not None and uid in self._told:
            return self._told[uid]
        msg = self.message(uid)
        return None if msg is None else msg.flags

    def tell(self, uid: int, flags: frozenset[str]) -> None:
        """The client has been told (or has itself set) these flags of uid."""
        msg = self.message(uid)
        if msg is not None and msg.flags == flags:
            if self._told is not None:
                self._told.pop(uid, None)
            return
        if self._told is None:
            self._told = {}
        self._told[uid] = flags

    # -- news --------------------------------------------------------------------------------
    def apply(self, new: Shared, allow_expunge: bool) -> bytes:
        """Bring the view up to date with a snapshot; the untagged lines that says."""
        key = None
        if self._uids is None and self._own is None and self._told is None:
            old = self.shared  # by id, not by reference: no chain of snapshots kept alive
            key = (id(old), old.taken_ns, self.max_uid, allow_expunge, self.qresync, self.condstore)
            known = new.deltas.get(key)
            if known is not None:  # another session made exactly this step already
                self.shared, self.max_uid = new, known[1]
                return known[0]
        out = self._apply(new, allow_expunge)
        clean = self._uids is None and self._own is None and self._told is None
        if key is not None and clean and len(new.deltas) < MAX_DELTAS:
            new.deltas[key] = (out, self.max_uid)
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
        own: dict[int, Message] = {}
        told: dict[int, frozenset[str]] = {}
        for seq, uid in enumerate(kept, 1):
            msg = current.get(uid)
            before = self.told(uid)
            if msg is None:  # gone, but its number stays until EXPUNGE may be told
                old = self.message(uid)
                if old is not None:
                    own[uid] = old
                if before is not None and old is not None and before != old.flags:
                    told[uid] = before
                continue
            if msg.flags != before:
                out.append(b"* %d FETCH (%s)\r\n" % (seq, self.flags_data(msg)))
        new_ones = [m.uid for m in new.snap.messages if m.uid > self.max_uid]
        if new_ones:
            kept.extend(new_ones)
            self.max_uid = new_ones[-1]
            out.append(b"* %d EXISTS\r\n" % len(kept))
        self.shared = new
        self._own = own or None
        self._told = told or None
        self._uids = None if tuple(kept) == new.uids else kept
        return b"".join(out)

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
