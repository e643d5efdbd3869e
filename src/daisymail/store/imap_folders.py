"""Maildir++ folders for IMAP: INBOX is the Maildir itself, ``.Name`` its subfolders.

System flags live in the file name's info (``:2,FRS``), as every Maildir reader
expects; UIDs, keywords and MODSEQs live in a MailboxState. Renaming a file to set its
flags keeps its unique part and its ``,S=``/``,W=`` fields, so POP3 still finds it under
the same UIDL. Special folders (Sent, Drafts, Junk, Trash, Archive) are made at the
first IMAP login and carry their RFC 6154 attribute.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from daisymail.store.durable import sync_dir, write_durable, write_file
from daisymail.store.imap_state import Entry, FolderState, MailboxState, new_uidvalidity
from daisymail.store.maildir import (
    MaildirEntry,
    Pop3Size,
    _pop3_size_of_file,
    _split_name,
    ensure_maildir,
    scan_maildir,
    unique_name,
)
from daisymail.store.maildir_write import _link_or_copy, remove_files

INBOX = "INBOX"
SEPARATOR = "."
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Trash": "\\Trash",
    "Archive": "\\Archive",
}
USE_ATTRIBUTES = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")
SPECIAL_USE_FILE = "daisymail-special-use"  # CREATE-SPECIAL-USE: a folder's own attributes
LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
FLAG_LETTERS = {flag: letter for letter, flag in LETTERS.items()}
SUBSCRIPTIONS = "subscriptions"
MAX_NAME = 200


class FolderError(Exception):
    """A folder operation the client asked for cannot be done; str(e) says why."""


def flags_of_name(name: str) -> frozenset[str]:
    info = _split_name(name)[2]
    if not info.startswith(":2,"):
        return frozenset()
    return frozenset(LETTERS[c] for c in info[3:] if c in LETTERS)


def name_with_flags(name: str, flags: Iterable[str]) -> str:
    """The file name with its info set to these system flags; other letters are kept."""
    unique, fields, info = _split_name(name)
    kept = {c for c in info[3:] if c not in LETTERS} if info.startswith(":2,") else set()
    letters = kept | {FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS}
    return f"{unique}{fields}:2,{''.join(sorted(letters))}"


def _size_field(name: str) -> int | None:
    for part in _split_name(name)[1].split(","):
        if part.startswith("W=") and part[2:].isdigit():
            return int(part[2:])
    return None


@dataclass
class Message:
    """One message of a synchronized folder; size: octets with CRLF line ends."""

    uid: int
    unique: str
    flags: frozenset[str]
    modseq: int
    path: str

    @property
    def size(self) -> int:
        known = _size_field(os.path.basename(self.path))
        return known if known is not None else _pop3_size_of_file(self.path)

    @property
    def internal_date(self) -> float:
        return os.stat(self.path).st_mtime


@dataclass
class FolderSnapshot:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: list[Message]  # in UID order
    vanished: dict[int, int] = field(default_factory=dict)  # expunged UID: its MODSEQ
    vanished_floor: int = 0  # expunges before this MODSEQ are no longer known one by one
    recent: frozenset[int] = frozenset()  # \Recent: claimed by this sync, or not yet by any


class ImapFolder:
    def __init__(self, name: str, path: str, state: MailboxState) -> None:
        self.name, self.path, self.state = name, path, state

    def fingerprint(self) -> object:
        """Changes whenever a message arrives, goes, or is renamed, or the state is saved."""
        out: list[object] = [self.state.version(self.path)]
        for sub in ("new", "cur"):
            try:
                out.append(os.stat(os.path.join(self.path, sub)).st_mtime_ns)
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    @property
    def account(self) -> str:
        """The account's Maildir: INBOX itself, the parent of a ``.Name`` folder."""
        return self.path if self.name == INBOX else os.path.dirname(self.path)

    def _sync_locked(self) -> tuple[FolderState, dict[str, MaildirEntry]]:
        st = self.state.load(self.path)
        changed = st is None
        if st is None:
            st = FolderState(new_uidvalidity(self.account))
        try:
            scanned = scan_maildir(self.path)
        except FileNotFoundError:
            if not os.path.isdir(self.path):
                raise  # deleted or renamed meanwhile: never made again behind the client
            ensure_maildir(self.path)
            scanned = scan_maildir(self.path)
        present: dict[str, MaildirEntry] = {}
        for found in scanned:
            present[found.unique] = found
            system = flags_of_name(found.name)
            entry = st.entries.get(found.unique)
            if entry is None:
                st.entries[found.unique] = Entry(st.uidnext, st.next_modseq(), system)
                st.uidnext += 1
                changed = True
                continue
            flags = system | {f for f in entry.flags if not f.startswith("\\")}
            if flags != entry.flags:
                entry.flags, entry.modseq = flags, st.next_modseq()
                changed = True
        gone = [u for u in st.entries if u not in present]
        if gone:  # removed by POP3 or another Maildir reader
            modseq = st.next_modseq()
            for unique in gone:
                st.forget(unique, modseq)
            changed = True
        if changed:
            self.state.save(self.path, st)
        return st, present

    def sync(self, claim_recent: bool = False) -> FolderSnapshot:
        """The folder now. snapshot.recent: the messages no session has seen yet, taken
        for this session when claim_recent (a read-write SELECT), else only looked at."""
        with self.state.lock(self.path):
            st, present = self._sync_locked()
            if claim_recent and st.recent_from < st.uidnext:
                recent = st.claim_recent()
                self.state.save(self.path, st)
            else:
                recent = st.recent_uids()
        return self._snapshot(st, present, recent)

    def claim_recent(self) -> frozenset[int]:
        """The messages no session has seen yet, taken for the session asking (a
        read-write one) without a rescan; the state is written only when there are any."""
        with self.state.lock(self.path):
            st = self.state.load(self.path)
            if st is None or st.recent_from >= st.uidnext:
                return frozenset()
            recent = st.claim_recent()
            self.state.save(self.path, st)
        return recent

    @staticmethod
    def _snapshot(
        st: FolderState, present: dict[str, MaildirEntry], recent: frozenset[int] = frozenset()
    ) -> FolderSnapshot:
        messages = [
            Message(e.uid, unique, e.flags, e.modseq, present[unique].path)
            for unique, e in st.entries.items()
        ]
        messages.sort(key=lambda m: m.uid)
        return FolderSnapshot(
            st.uidvalidity,
            st.uidnext,
            st.highestmodseq,
            messages,
            dict(st.vanished),
            st.vanished_floor,
            recent,
        )

    def store_flags(
        self,
        uids: Sequence[int],
        mode: str,
        flags: frozenset[str],
        *,
        unchanged_since: int | None = None,
        failed: list[int] | None = None,
    ) -> FolderSnapshot:
        """mode: ``+`` adds, ``-`` removes, ``=`` replaces. Renames cur/ files; durable.

        unchanged_since (CONDSTORE): messages changed after that MODSEQ are left alone
        and their UIDs appended to failed; the check and the change are one step."""
        with self.state.lock(self.path):
            st, present = self._sync_locked()
            by_uid = {e.uid: u for u, e in st.entries.items()}
            touched: set[str] = set()
            changed = False
            for uid in uids:
                unique = by_uid.get(uid)
                if unique is None:
                    continue
                entry = st.entries[unique]
                if unchanged_since is not None and entry.modseq > unchanged_since:
                    if failed is not None:
                        failed.append(uid)
                    continue
                if mode == "+":
                    new = entry.flags | flags
                elif mode == "-":
                    new = entry.flags - flags
                else:
                    new = flags
                if new == entry.flags:
                    continue
                found = present[unique]
                target = name_with_flags(found.name, new)
                dest = os.path.join(self.path, "cur", target)
                if found.path != dest:
                    os.rename(found.path, dest)
                    touched.update({found.directory, os.path.dirname(dest)})
                    found.directory, found.name = os.path.dirname(dest), target
                entry.flags, entry.modseq = new, st.next_modseq()
                changed = True
            for directory in touched:
                sync_dir(directory)
            if changed:
                self.state.save(self.path, st)
        return self._snapshot(st, present)

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove these messages for good (files unlinked and synced before returning)."""
        wanted = set(uids)
        with self.state.lock(self.path):
            st, present = self._sync_locked()
            gone: list[int] = []
            directories: set[str] = set()
            modseq = st.highestmodseq + 1
            for unique, entry in list(st.entries.items()):
                if entry.uid not in wanted:
                    continue
                try:
                    os.unlink(present[unique].path)
                except FileNotFoundError:
                    pass
                directories.add(present[unique].directory)
                st.forget(unique, modseq)
                gone.append(entry.uid)
            for directory in directories:
                sync_dir(directory)
            if gone:
                st.next_modseq()
                self.state.save(self.path, st)
        return sorted(gone)

    def add_files(self, sources: Sequence[tuple[str, frozenset[str]]]) -> list[int]:
        """Copy message files (hard links where possible) in, with flags; their new UIDs.

        All or nothing: when one source cannot be read (another session expunged or
        renamed it), the copies made so far are removed and the OSError raised."""
        made: list[tuple[str, frozenset[str]]] = []
        paths: list[str] = []
        try:
            for src, flags in sources:
                flags -= {"\\Recent"}  # a session's view of the source, never stored
                unique = unique_name()
                fields = _split_name(os.path.basename(src))[1]
                if _size_field(os.path.basename(src)) is None:
                    fields += f",W={_pop3_size_of_file(src)}"
                dest = os.path.join(self.path, "cur", name_with_flags(unique + fields, flags))
                _link_or_copy(src, self.path, dest)
                made.append((unique, flags))
                paths.append(dest)
            if made:
                sync_dir(os.path.join(self.path, "cur"))
        except OSError:
            remove_files(paths)
            raise
        return self._register(made)

    def append(self, data: bytes, flags: frozenset[str], when: float | None) -> int:
        """Store a message durably (tmp/, fsync, link into cur/, sync); its UID."""
        counter = Pop3Size()
        counter.feed(data)
        unique = unique_name()
        tmp = os.path.join(self.path, "tmp", unique)
        write_file(tmp, [data])
        return self.append_file(tmp, unique, counter, flags, when)

    def append_file(
        self, tmp: str, unique: str, counter: Pop3Size, flags: frozenset[str], when: float | None
    ) -> int:
        """Move a complete, fsynced file from tmp/ into cur/ (a streamed APPEND); its UID."""
        try:
            if when is not None:
                os.utime(tmp, (when, when))
            name = f"{unique},S={counter.size},W={counter.octets}"
            os.link(tmp, os.path.join(self.path, "cur", name_with_flags(name, flags)))
        finally:
            os.unlink(tmp)
        sync_dir(os.path.join(self.path, "cur"))
        return self._register([(unique, flags)])[0]

    def _register(self, made: Sequence[tuple[str, frozenset[str]]]) -> list[int]:
        with self.state.lock(self.path):
            st, _present = self._sync_locked()
            uids = []
            for unique, flags in made:
                entry = st.entries[unique]
                if entry.flags != flags:
                    entry.flags, entry.modseq = flags, st.next_modseq()
                uids.append(entry.uid)
            self.state.save(self.path, st)
        return uids


def valid_name(name: str) -> bool:
    """A folder name we can keep as ``.Name`` in the Maildir (modified UTF-7 is ASCII)."""
    return (
        0 < len(name) <= MAX_NAME
        and all(0x20 <= ord(c) < 0x7F for c in name)
        and "/" not in name
        and not name.startswith(SEPARATOR)
        and not name.endswith(SEPARATOR)
        and ".." not in name
        and name.upper() != INBOX
        and not name.upper().startswith(INBOX + SEPARATOR)
    )


def folder_for_delivery(root: str, name: str) -> str:
    """The Maildir of folder ``name`` of the account Maildir ``root`` (with a trailing
    ``/``), made as IMAP makes folders when missing: mail filed into Junk. OSError."""
    path = os.path.join(root.rstrip("/"), SEPARATOR + name)
    if not os.path.isdir(os.path.join(path, "new")):
        ensure_maildir(root)
        AccountFolders._make(path)
        subs_file = os.path.join(root.rstrip("/"), SUBSCRIPTIONS)
        if os.path.exists(subs_file):  # else the first IMAP login subscribes it
            with open(subs_file, "rb") as f:
                subs = {s for s in f.read().decode("utf-8", "replace").splitlines() if s}
            if name not in subs:
                data = "".join(f"{s}\n" for s in sorted(subs | {name})).encode()
                write_durable(subs_file, [data])
    return path + "/"


class AccountFolders:
    """The folders of one Maildir (one account's mailbox)."""

    def __init__(self, root: str, state: MailboxState) -> None:
        self.root = root.rstrip("/")
        self.state = state

    @staticmethod
    def canonical(name: str) -> str:
        return INBOX if name.upper() == INBOX else name

    def path_of(self, name: str) -> str:
        name = self.canonical(name)
        if name == INBOX:
            return self.root
        if not valid_name(name):
            raise FolderError("invalid folder name")
        return os.path.join(self.root, SEPARATOR + name)

    def exists(self, name: str) -> bool:
        name = self.canonical(name)
        return name == INBOX or name in self.names()

    def folder(self, name: str) -> ImapFolder:
        name = self.canonical(name)
        if not self.exists(name):
            raise FolderError("no such folder")
        return ImapFolder(name, self.path_of(name), self.state)

    def names(self) -> list[str]:
        out = [INBOX]
        try:
            listing = sorted(os.scandir(self.root), key=lambda d: d.name)
        except FileNotFoundError:
            return out
        for d in listing:
            if d.name.startswith(SEPARATOR) and d.is_dir() and valid_name(d.name[1:]):
                out.append(d.name[1:])
        return out

    def ensure_defaults(self) -> None:
        """Make INBOX and the special folders (and subscribe them) when missing."""
        ensure_maildir(self.root)
        subs = self.subscriptions()
        fresh = not os.path.exists(os.path.join(self.root, SUBSCRIPTIONS))
        for name in SPECIAL_USE:
            path = self.path_of(name)
            if not os.path.isdir(path):
                self._make(path)
                subs.add(name)
            elif fresh:  # made before the first login (Junk, by a delivery)
                subs.add(name)
        if not os.path.exists(os.path.join(self.root, SUBSCRIPTIONS)):
            subs.add(INBOX)
            self._write_subscriptions(subs)
        elif subs != self.subscriptions():
            self._write_subscriptions(subs)

    @staticmethod
    def _make(path: str) -> None:
        ensure_maildir(path)
        write_file(os.path.join(path, "maildirfolder"), [])
        sync_dir(os.path.dirname(path))

    def create(self, name: str) -> None:
        name = self.canonical(name.rstrip(SEPARATOR))
        if self.exists(name):
            raise FolderError("folder exists")
        path = self.path_of(name)
        parts = name.split(SEPARATOR)
        for i in range(1, len(parts)):  # parents too, so that LIST shows the hierarchy
            parent = self.path_of(SEPARATOR.join(parts[:i]))
            if not os.path.isdir(parent):
                self._make(parent)
        self._make(path)

    def delete(self, name: str) -> None:
        name = self.canonical(name)
        if name == INBOX:
            raise FolderError("INBOX cannot be deleted")
        if not self.exists(name):
            raise FolderError("no such folder")
        path = self.path_of(name)
        doomed = os.path.join(self.root, f"daisymail-deleting-{time.time_ns()}")
        os.rename(path, doomed)
        sync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)
        # The subscription stays: RFC 3501 6.3.6 forbids the server to drop it (LIST
        # (SUBSCRIBED) shows it \NonExistent), and a folder made again is subscribed.

    def rename(self, old: str, new: str) -> None:
        old, new = self.canonical(old), self.canonical(new)
        if old == INBOX:
            raise FolderError("renaming INBOX is not supported")
        if not self.exists(old):
            raise FolderError("no such folder")
        if not valid_name(new) or self.exists(new):
            raise FolderError("target folder exists or is invalid")
        moves = [
            (n, new + n[len(old) :])
            for n in self.names()
            if n == old or n.startswith(old + SEPARATOR)
        ]
        for src, dst in moves:
            os.rename(self.path_of(src), self.path_of(dst))
        sync_dir(self.root)

    def special_use(self, name: str) -> list[str]:
        """The folder's RFC 6154 attributes: as made with CREATE-SPECIAL-USE, else by name."""
        name = self.canonical(name)
        if name == INBOX:
            return []
        try:
            with open(os.path.join(self.path_of(name), SPECIAL_USE_FILE), "rb") as f:
                words = f.read().decode("ascii", "replace").split()
            return [w for w in words if w in USE_ATTRIBUTES]
        except (FileNotFoundError, NotADirectoryError, FolderError):
            pass
        return [SPECIAL_USE[name]] if name in SPECIAL_USE else []

    def set_special_use(self, name: str, uses: list[str]) -> None:
        data = " ".join(uses).encode() + b"\n"
        write_durable(os.path.join(self.path_of(name), SPECIAL_USE_FILE), [data])

    def subscriptions(self) -> set[str]:
        try:
            with open(os.path.join(self.root, SUBSCRIPTIONS), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return set()
        return {line for line in lines if line}

    def subscribe(self, name: str, on: bool) -> None:
        name = self.canonical(name)
        subs = self.subscriptions()
        if on and not self.exists(name):
            raise FolderError("no such folder")
        if (name in subs) != on:
            subs = subs | {name} if on else subs - {name}
            self._write_subscriptions(subs)

    def _write_subscriptions(self, subs: set[str]) -> None:
        data = "".join(f"{s}\n" for s in sorted(subs)).encode()
        write_durable(os.path.join(self.root, SUBSCRIPTIONS), [data])
