"""IMAP mailbox state: UIDVALIDITY, UIDs, flags and MODSEQs of one folder, kept durably.

Maildir file names carry the unique part (which POP3 UIDLs come from) and the system
flags, but not IMAP's UIDs, keywords or modification sequences. MailboxState is the
small interface that keeps those; FileMailboxState is the one-node implementation, a
file per folder on the mail volume replaced atomically (write, fsync, rename, fsync
directory) under an flock, so a crash leaves the old state or the new one, never a mix.
A SQL implementation for several nodes fills the same four methods (see docs/design.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from daisymail.store.durable import write_durable

STATE_NAME = "daisymail-imap-uids"
LOCK_NAME = "daisymail-imap.lock"
UIDVALIDITY_NAME = "daisymail-uidvalidity"  # in the account root: the last value given
_HEADER = b"DAISY-IMAP 1"
MAX_VANISHED = 20_000  # expunged UIDs remembered per folder for QRESYNC


@dataclass
class Entry:
    uid: int
    modseq: int
    flags: frozenset[str]


@dataclass
class FolderState:
    """What IMAP remembers of a folder; entries are keyed by the Maildir unique name."""

    uidvalidity: int
    uidnext: int = 1
    highestmodseq: int = 1
    entries: dict[str, Entry] = field(default_factory=dict)
    # QRESYNC (RFC 7162): the UIDs of expunged messages with the MODSEQ of their expunge,
    # so that a client can be told which of the messages it knows are gone since then.
    vanished: dict[int, int] = field(default_factory=dict)
    # Older expunges are forgotten (MAX_VANISHED): a client resyncing from before this
    # MODSEQ is told every UID it may know that is not here (RFC 7162 allows that).
    vanished_floor: int = 0
    # RFC 3501 \Recent: messages from this UID on have not been seen by any session
    # yet; the first session to select the folder read-write takes them (and moves this
    # to uidnext), so each message is recent in exactly one session.
    recent_from: int = 1

    def claim_recent(self) -> frozenset[int]:
        """The UIDs recent for the session asking; no other session gets them."""
        recent = self.recent_uids()
        self.recent_from = self.uidnext
        return recent

    def recent_uids(self) -> frozenset[int]:
        return frozenset(e.uid for e in self.entries.values() if e.uid >= self.recent_from)

    def next_modseq(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def forget(self, unique: str, modseq: int) -> None:
        """A message is gone: remember its UID as vanished at modseq (the oldest ones
        beyond MAX_VANISHED are dropped, raising vanished_floor)."""
        entry = self.entries.pop(unique)
        self.vanished[entry.uid] = modseq
        if len(self.vanished) > MAX_VANISHED:
            oldest = sorted(self.vanished.items(), key=lambda item: item[1])
            for uid, old in oldest[: len(self.vanished) - MAX_VANISHED // 2]:
                del self.vanished[uid]
                self.vanished_floor = max(self.vanished_floor, old)


class MailboxState(ABC):
    """Where a folder's IMAP state lives. Callers hold lock() around load..save."""

    @abstractmethod
    def lock(self, folder: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive among every session of every process using this state."""

    @abstractmethod
    def load(self, folder: str) -> FolderState | None:
        """The saved state, or None when there is none (a new UIDVALIDITY follows)."""

    @abstractmethod
    def save(self, folder: str, state: FolderState) -> None:
        """Make the state durable before returning."""

    @abstractmethod
    def version(self, folder: str) -> object:
        """Something that changes whenever save() ran: a cheap check for IDLE polling."""


def new_uidvalidity(account: str | None = None) -> int:
    """Seconds since the epoch, and above every value given before in this account (the
    last one is kept in its root): a folder made twice within a second, or deleted and
    made again, never gets a UIDVALIDITY it had (RFC 3501 2.3.1.1)."""
    now = max(1, int(time.time()) & 0xFFFFFFFF)
    if account is None:
        return now
    fd = os.open(os.path.join(account, UIDVALIDITY_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            last = int(os.read(fd, 32).split()[0])
        except (ValueError, IndexError):  # new, or torn by a crash: the clock decides
            last = 0
        value = now if now > last else last + 1
        if value > 0xFFFFFFFF:
            value = 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % value)
        os.fsync(fd)
        return value
    finally:
        os.close(fd)


class FileMailboxState(MailboxState):
    """One text file per folder: a header line, then ``uid modseq unique flags...``
    (the unique name %-escaped: Maildir allows spaces in it, other writers use them),
    and ``~uid[:uid] modseq`` for ranges of expunged UIDs and ``recent uid`` for the first
    UID no session has seen (two fields, so that a reader that does not know them skips
    them)."""

    def _path(self, folder: str) -> str:
        return os.path.join(folder, STATE_NAME)

    @contextlib.contextmanager
    def lock(self, folder: str) -> Iterator[None]:
        fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self, folder: str) -> FolderState | None:
        try:
            with open(self._path(folder), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        lines = data.split(b"\n")
        head = lines[0].split()
        if len(head) != 5 or b" ".join(head[:2]) != _HEADER:
            return None  # unreadable: start over with a new UIDVALIDITY
        try:
            state = FolderState(int(head[2]), int(head[3]), int(head[4]))
            state.recent_from = state.uidnext  # a state saved before \Recent was kept
            for line in lines[1:]:
                parts = line.split(b" ")
                if len(parts) == 2 and parts[0] == b"recent":
                    state.recent_from = int(parts[1])
                    continue
                if len(parts) == 2 and parts[0] == b"~0":  # the floor: UID 0 is no UID
                    state.vanished_floor = int(parts[1])
                    continue
                if len(parts) == 2 and parts[0].startswith(b"~"):
                    lo, _, hi = parts[0][1:].partition(b":")
                    for uid in range(int(lo), int(hi or lo) + 1):
                        state.vanished[uid] = int(parts[1])
                    continue
                if len(parts) < 3:
                    continue
                flags = frozenset(p.decode("ascii", "replace") for p in parts[3:] if p)
                unique = os.fsdecode(urllib.parse.unquote_to_bytes(parts[2]))
                state.entries[unique] = Entry(int(parts[0]), int(parts[1]), flags)
        except ValueError:
            return None
        return state

    def save(self, folder: str, state: FolderState) -> None:
        out = [b"%s %d %d %d\n" % (_HEADER, state.uidvalidity, state.uidnext, state.highestmodseq)]
        for unique, e in sorted(state.entries.items(), key=lambda item: item[1].uid):
            flags = " ".join(sorted(e.flags)).encode("ascii", "replace")
            name = urllib.parse.quote_from_bytes(os.fsencode(unique), safe="").encode()
            out.append(b"%d %d %s %s\n" % (e.uid, e.modseq, name, flags))
        if state.vanished_floor:
            out.append(b"~0 %d\n" % state.vanished_floor)
        out.append(b"recent %d\n" % state.recent_from)
        out.extend(_vanished_lines(state.vanished))
        write_durable(self._path(folder), [b"".join(out)])

    def version(self, folder: str) -> object:
        try:
            st = os.stat(self._path(folder))
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)


def _vanished_lines(vanished: dict[int, int]) -> list[bytes]:
    """Runs of consecutive UIDs expunged at one MODSEQ as one ``~lo:hi modseq`` line."""
    out: list[bytes] = []
    run: list[int] = []  # lo, hi, modseq
    for uid in sorted(vanished):
        modseq = vanished[uid]
        if run and uid == run[1] + 1 and modseq == run[2]:
            run[1] = uid
            continue
        if run:
            out.append(_run_line(run))
        run = [uid, uid, modseq]
    if run:
        out.append(_run_line(run))
    return out


def _run_line(run: list[int]) -> bytes:
    lo, hi, modseq = run
    if lo == hi:
        return b"~%d %d\n" % (lo, modseq)
    return b"~%d:%d %d\n" % (lo, hi, modseq)
