"""The selected folder as one session sees it: sequence numbers, and what is news to it.

Sequence numbers are per session; the view keeps the UIDs it has told the client of,
so that at each command (and while idling) it can announce what other sessions or SMTP
deliveries changed: EXPUNGE for messages gone, EXISTS for new ones, FETCH FLAGS for
flag changes. During FETCH, STORE and SEARCH no EXPUNGE may be sent (RFC 3501 7.4.1):
messages gone meanwhile keep their numbers until a later command.

IMAP4rev1's \\Recent: the messages this session was the first to see (claimed from the
folder state by a read-write SELECT and each refresh) carry it in their flags, and news
of them says ``* n RECENT``. Keywords new to the session are announced with ``* FLAGS``
and ``PERMANENTFLAGS`` before any FETCH shows them (RFC 3501 7.2.6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from daisymail.imap.parser import SequenceSet
from daisymail.imap.responses import flag_list, number_set
from daisymail.store.imap_folders import FolderSnapshot, ImapFolder, Message

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = "\\Recent"


def keywords_of(messages: Iterable[Message]) -> set[str]:
    return {f for m in messages for f in m.flags if not f.startswith("\\")}


class SelectedView:
    def __init__(
        self, folder: ImapFolder, readonly: bool, snap: FolderSnapshot, show_recent: bool = True
    ) -> None:
        self.folder = folder
        self.readonly = readonly
        self.show_recent = show_recent  # IMAP4rev1 only: IMAP4rev2 dropped \Recent
        self.uidvalidity = snap.uidvalidity
        self.uids = [m.uid for m in snap.messages]
        self.recent = set(snap.recent)  # UIDs recent in this session
        self.messages = {m.uid: self.marked(m) for m in snap.messages}
        self.told = {m.uid: m.flags for m in snap.messages}
        self.keywords = keywords_of(snap.messages)  # announced in FLAGS
        self.max_uid = max(self.uids, default=0)
        self.fingerprint: object = None
        self.condstore = False
        self.qresync = False  # RFC 7162: VANISHED instead of EXPUNGE
        self.saved: list[int] = []  # SEARCHRES: the UIDs the last SEARCH ... SAVE found

    def marked(self, msg: Message) -> Message:
        """The message as this session shows it: with \\Recent when it is recent here."""
        if self.show_recent and msg.uid in self.recent:
            return dataclasses.replace(msg, flags=msg.flags | {RECENT})
        return msg

    def hide_recent(self) -> None:
        """ENABLE IMAP4rev2 with a folder selected: \\Recent is shown no more."""
        self.show_recent = False
        self.messages = {
            uid: dataclasses.replace(m, flags=m.flags - {RECENT}) if RECENT in m.flags else m
            for uid, m in self.messages.items()
        }

    def recent_count(self) -> int:
        return len(self.recent.intersection(self.uids)) if self.show_recent else 0

    def flags_lines(self) -> bytes:
        """``* FLAGS`` and ``PERMANENTFLAGS``: the system flags and the keywords in use."""
        keywords = sorted(self.keywords)
        flags = flag_list([*SYSTEM_FLAGS, *keywords])
        permanent = b"()" if self.readonly else flag_list([*SYSTEM_FLAGS, *keywords, "\\*"])
        return (
            b"* FLAGS " + flags + b"\r\n* OK [PERMANENTFLAGS " + permanent + b"] flags allowed\r\n"
        )

    def apply(self, snap: FolderSnapshot, allow_expunge: bool) -> bytes:
        """Bring the view up to date with a snapshot; the untagged lines that says."""
        out: list[bytes] = []
        current = {m.uid: m for m in snap.messages}
        if allow_expunge:
            vanished = []
            for i in range(len(self.uids) - 1, -1, -1):
                uid = self.uids[i]
                if uid not in current:
                    if not self.qresync:
                        out.append(b"* %d EXPUNGE\r\n" % (i + 1))
                    vanished.append(uid)
                    del self.uids[i]
                    self.messages.pop(uid, None)
                    self.told.pop(uid, None)
            if vanished and self.qresync:
                out.append(b"* VANISHED %s\r\n" % number_set(vanished).encode())
        for seq, uid in enumerate(self.uids, 1):
            msg = current.get(uid)
            if msg is None:
                continue
            msg = self.messages[uid] = self.marked(msg)
            told = self.told.get(uid)
            if told is None or msg.flags - {RECENT} != told - {RECENT}:
                self.told[uid] = msg.flags
                out.append(b"* %d FETCH (%s)\r\n" % (seq, self.flags_data(msg)))
        new = [m for m in snap.messages if m.uid > self.max_uid]
        if new:
            self.recent.update(u for u in snap.recent if u > self.max_uid)
            for m in new:
                self.uids.append(m.uid)
                self.messages[m.uid] = self.marked(m)
                self.told[m.uid] = m.flags
            self.max_uid = new[-1].uid
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if self.show_recent:
                out.append(b"* %d RECENT\r\n" % self.recent_count())
        keywords = keywords_of(current.values())
        if not keywords <= self.keywords:  # before any FETCH that shows them
            self.keywords |= keywords
            out.insert(0, self.flags_lines())
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
        self.fingerprint = self.folder.fingerprint()
        try:
            snap = self.folder.sync(claim_recent=not self.readonly)
        except FileNotFoundError:  # the folder was deleted or renamed by another session
            snap = FolderSnapshot(self.uidvalidity, self.max_uid + 1, 0, [])
        return self.apply(snap, allow_expunge)

    def changed(self) -> bool:
        """A cheap look (a few stats) whether a refresh would find anything."""
        return self.folder.fingerprint() != self.fingerprint

    def select(self, which: SequenceSet, uid: bool) -> list[tuple[int, Message]]:
        """(sequence number, message) for a sequence or UID set, in order."""
        if not self.uids:
            return []
        if which.saved:  # ``$``: the messages of the last SEARCH ... SAVE still here
            saved = set(self.saved)
            return [(seq, self.messages[u]) for seq, u in enumerate(self.uids, 1) if u in saved]
        if uid:
            ranges = which.resolve(self.uids[-1])
            return [
                (seq, self.messages[u])
                for seq, u in enumerate(self.uids, 1)
                if any(lo <= u <= hi for lo, hi in ranges)
            ]
        out = []
        for lo, hi in which.resolve(len(self.uids)):
            for seq in range(max(lo, 1), min(hi, len(self.uids)) + 1):
                out.append((seq, self.messages[self.uids[seq - 1]]))
        seen: set[int] = set()
        ordered = []
        for seq, msg in sorted(out, key=lambda p: p[0]):
            if seq not in seen:
                seen.add(seq)
                ordered.append((seq, msg))
        return ordered

    def seq_of(self, uid: int) -> int:
        return self.uids.index(uid) + 1
