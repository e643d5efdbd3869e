"""QRESYNC (RFC 7162): a client that knows a folder's UIDVALIDITY and a MODSEQ learns
only what changed since then, at SELECT and with ``UID FETCH ... (CHANGEDSINCE m
VANISHED)``: the UIDs expunged since (``VANISHED (EARLIER)``, from the expunged UIDs the
folder state keeps with their MODSEQ) and the messages whose flags changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from daisymail.imap.parser import (
    ParseError,
    SequenceSet,
    Token,
    atom,
    mod_sequence,
    number,
    sequence_set,
    token_list,
)
from daisymail.imap.responses import number_set
from daisymail.imap.selected import SelectedView
from daisymail.store.imap_folders import FolderSnapshot

if TYPE_CHECKING:
    from daisymail.imap.commands import MailSession


@dataclass(frozen=True)
class Resync:
    uidvalidity: int
    modseq: int
    known: SequenceSet | None  # the UIDs the client has; None: all


def parse_resync(params: list[Token]) -> Resync:
    """``(uidvalidity modseq [known-uids [(seq-match-data)]])``; the sequence match data
    is only a hint for finding expunges and is not needed here."""
    if not 2 <= len(params) <= 4:
        raise ParseError("QRESYNC needs a UIDVALIDITY and a MODSEQ")
    validity = number(params[0], nonzero=True)
    modseq = mod_sequence(params[1])
    known = None
    if len(params) >= 3:
        if isinstance(params[2], list):
            if len(params) == 4:
                raise ParseError("bad QRESYNC parameters")
        else:
            known = sequence_set(params[2])
    return Resync(validity, modseq, known)


def vanished_earlier(snap: FolderSnapshot, since: int, within: SequenceSet | None) -> bytes:
    """``* VANISHED (EARLIER)`` for the UIDs (within the set) expunged after since. When
    since is older than what the state remembers, every UID the client may know that is
    not here is named: more than gone since then, which RFC 7162 allows."""
    largest = max(snap.uidnext - 1, 0)
    if since < snap.vanished_floor:
        present = {m.uid for m in snap.messages}
        ranges = within.resolve(largest) if within is not None else [(1, largest)]
        gone = [
            uid
            for lo, hi in ranges
            for uid in range(max(lo, 1), min(hi, largest) + 1)
            if uid not in present
        ]
    else:
        gone = [
            uid
            for uid, modseq in snap.vanished.items()
            if modseq > since and (within is None or within.contains(uid, largest))
        ]
    if not gone:
        return b""
    return b"* VANISHED (EARLIER) %s\r\n" % number_set(gone).encode()


def select_news(view: SelectedView, snap: FolderSnapshot, resync: Resync) -> bytes:
    """What a QRESYNC SELECT adds: expunges and flag changes since the client's MODSEQ
    (nothing when its UIDVALIDITY is not this folder's: it must start over)."""
    if resync.uidvalidity != snap.uidvalidity:
        return b""
    out = [vanished_earlier(snap, resync.modseq, resync.known)]
    largest = max(snap.uidnext - 1, 0)
    for seq, msg in enumerate(snap.messages, 1):
        if msg.modseq <= resync.modseq:
            continue
        if resync.known is not None and not resync.known.contains(msg.uid, largest):
            continue
        out.append(b"* %d FETCH (%s)\r\n" % (seq, view.flags_data(msg)))
    return b"".join(out)


def fetch_modifiers(session: MailSession, tok: Token, uid: bool) -> tuple[int, bool]:
    """FETCH's ``(CHANGEDSINCE n [VANISHED])``: the MODSEQ, and whether VANISHED was asked."""
    mods = token_list(tok)
    changed_since = None
    vanished = False
    i = 0
    while i < len(mods):
        word = atom(mods[i]).upper()
        if word == "CHANGEDSINCE" and i + 1 < len(mods):
            changed_since = mod_sequence(mods[i + 1])
            i += 2
        elif word == "VANISHED":
            if not uid or not session.qresync:
                raise ParseError("VANISHED needs UID FETCH and QRESYNC enabled")
            vanished = True
            i += 1
        else:
            raise ParseError("unknown FETCH modifier")
    if changed_since is None:
        raise ParseError("FETCH modifiers need CHANGEDSINCE")
    return changed_since, vanished
