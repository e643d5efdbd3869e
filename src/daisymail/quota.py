"""Mailbox quotas: the one rule SMTP delivery and IMAP APPEND/COPY/MOVE both apply.

A mailbox may hold up to its limit in octets (``[storage] quota``, or the mailbox's own
limit set with ``daisymail mailbox set NAME --quota SIZE``; 0 is no limit). The verdict
is pure (numbers in, a decision out) so that each protocol can phrase it its own way:
a mailbox that is full now may empty (temporary: SMTP 452 4.2.2), a message larger than
the whole quota never fits (permanent: SMTP 552 5.2.2); IMAP says NO [OVERQUOTA].
"""

from __future__ import annotations

import enum
import os
import re
import threading
import time
from typing import TYPE_CHECKING

from daisymail.store.base import StorageError

if TYPE_CHECKING:
    from daisymail.directory.model import Mailbox
    from daisymail.store.files import FileStore

QUOTA_FILE = "daisymail-quota"  # in the mailbox's Maildir: its own limit, in octets
_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)i?b?\s*\Z", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_FIELD = re.compile(r",S=(\d+)")  # a Maildir file name's own size (Daisy, Dovecot)
# A directory changed this recently may change again within the same mtime tick, which
# its mtime would not show: its total is not cached until it is older (git's racy rule).
RACY_NS = 1_000_000_000


class Verdict(enum.Enum):
    OK = "ok"
    FULL = "full"  # does not fit now; may after the owner deletes mail
    TOO_BIG = "too big"  # larger than the whole quota: never fits

    @property
    def smtp(self) -> tuple[int, str]:
        """The SMTP reply for RCPT (with the size from SIZE=) or after DATA."""
        if self is Verdict.FULL:
            return 452, "4.2.2 mailbox full, try again later"
        if self is Verdict.TOO_BIG:
            return 552, "5.2.2 message larger than the mailbox quota"
        return 250, "2.0.0 ok"


def quota_check(used: int, limit: int | None, size: int) -> Verdict:
    """Whether size more octets fit in a mailbox using used of limit (None/0: no limit)."""
    if not limit:
        return Verdict.OK
    if size > limit:
        return Verdict.TOO_BIG
    if used + size > limit:
        return Verdict.FULL
    return Verdict.OK


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1048576``, ``0`` (no limit) as octets; ValueError otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (try 500M or 2G)")
    return int(m[1]) * _UNITS[m[2].lower()]


def format_size(octets: int) -> str:
    """The shortest exact way parse_size reads back: ``500M``, ``2G``, ``1000``."""
    for unit in "TGMK":
        factor = _UNITS[unit.lower()]
        if octets and octets % factor == 0:
            return f"{octets // factor}{unit}"
    return str(octets)


def own_limit(root: str) -> int | None:
    """The Maildir's own limit (``mailbox set --quota``), None when it has none."""
    try:
        with open(os.path.join(root, QUOTA_FILE), "rb") as f:
            return int(f.read().strip() or b"0")
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def mailbox_limit(root: str, default: int) -> int:
    """The limit for the Maildir at root: its own when set, else the default (0: none)."""
    own = own_limit(root)
    return default if own is None else own


def _folders(root: str) -> list[str]:
    folders = [root]
    try:
        with os.scandir(root) as it:
            folders += [e.path for e in it if e.name.startswith(".") and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return folders


def _dir_octets(path: str) -> int:
    """The octets of the files in one cur/ or new/ (sizes from the names where given)."""
    total = 0
    with os.scandir(path) as it:
        for entry in it:
            m = _SIZE_FIELD.search(entry.name)
            if m:
                total += int(m[1])
                continue
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                continue
    return total


def scan_usage(root: str) -> int:
    """Octets stored in a Maildir and its Maildir++ folders, counted afresh."""
    total = 0
    for folder in _folders(root):
        for sub in ("cur", "new"):
            try:
                total += _dir_octets(os.path.join(folder, sub))
            except (FileNotFoundError, NotADirectoryError):
                continue
    return total


class UsageCache:
    """Maildir usage without walking every message on every RCPT or GETQUOTAROOT.

    Each ``cur/`` and ``new/`` keeps its total under the directory's mtime: delivery,
    POP3 deletion, IMAP expunge and moves by any process or node all add, remove or
    rename entries, which changes that mtime, so a changed directory is counted again
    and the others cost one stat each. Nothing has to be told of a change, so no writer
    can forget to (a maildirsize file would need every writer's cooperation)."""

    def __init__(self) -> None:
        self._totals: dict[str, tuple[int, int]] = {}  # directory -> (mtime_ns, octets)
        self._lock = threading.Lock()

    def usage(self, root: str) -> int:
        root = os.path.normpath(root)
        now = time.time_ns()
        total = 0
        for folder in _folders(root):
            for sub in ("cur", "new"):
                total += self._octets(os.path.join(folder, sub), now)
        return total

    def _octets(self, path: str, now: int) -> int:
        try:
            mtime = os.stat(path).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self._totals.pop(path, None)
            return 0
        with self._lock:
            cached = self._totals.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            octets = _dir_octets(path)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        with self._lock:
            if mtime < now - RACY_NS:
                self._totals[path] = (mtime, octets)
            else:
                self._totals.pop(path, None)
        return octets


USAGE = UsageCache()  # one per process: every session and delivery shares it


def maildir_usage(root: str) -> int:
    """Octets stored in a Maildir and its Maildir++ folders (cur/ and new/ files)."""
    return USAGE.usage(root)


class Quotas:
    """The quota of each mailbox of a store: its own limit or ``default`` (0: none).

    mbox mailboxes have no quota (it needs Maildir: ``mailbox convert NAME --to
    maildir``); a mailbox whose path cannot be resolved is not refused here, its
    delivery fails on its own."""

    def __init__(self, store: FileStore, default: int = 0) -> None:
        self.store = store
        self.default = default

    def root(self, box: Mailbox) -> str | None:
        from daisymail.store.files import is_maildir

        if not is_maildir(box):
            return None
        try:
            return self.store.resolve_path(box)
        except StorageError:
            return None

    def limit(self, box: Mailbox) -> int:
        root = self.root(box)
        return mailbox_limit(root, self.default) if root else 0

    def usage(self, box: Mailbox) -> int | None:
        """Octets stored, or None for an mbox mailbox."""
        root = self.root(box)
        return maildir_usage(root) if root else None

    def check(self, box: Mailbox, size: int) -> Verdict:
        """Whether size more octets fit; at RCPT size is at least 1, so a mailbox at
        exactly its limit is full."""
        root = self.root(box)
        if root is None:
            return Verdict.OK
        limit = mailbox_limit(root, self.default)
        if not limit:
            return Verdict.OK
        return quota_check(maildir_usage(root), limit, size)
