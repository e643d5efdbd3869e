"""The Maildir layout as Daisy uses it: names, sizes, UIDLs, scanning, tmp/ sweeps.

Delivered files are named ``<unique>,S=<file size>,W=<POP3 size>`` in ``new/`` (the W
field as Dovecot does), so a view learns every size from the name. Files delivered by
other programs get their W field added on first view, once. The UIDL is the unique part
of the name (before the first ``,`` or ``:``), which survives moves to ``cur/`` and flag
changes by other mail readers, unless the Maildir's ``daisymail-uidlist`` names another
UIDL for it: a converted mbox keeps the UIDLs its POP3 clients saw there.

This is what the writers (store/maildir_write.py), the POP3 view (store/maildir_view.py),
the IMAP folders and mailbox conversion share; it neither delivers nor locks.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import math
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping

from daisymail.store.durable import make_dirs, sync_dir, write_durable

CHUNK_SIZE = 64 * 1024
UIDLIST_NAME = "daisymail-uidlist"
SUBDIRS = ("cur", "new", "tmp")
TMP_MAX_AGE = 36 * 3600

_counter = itertools.count(1)
_UIDL_OK = re.compile(rb"[\x21-\x7e]{1,70}")


def unique_name(when: float | None = None) -> str:
    """A Maildir unique name: ``<time>.M<usec>P<pid>Q<counter>.<host>``.

    when: the delivery time to record instead of now (a converted message keeps its
    date, which orders the view and drives expiry)."""
    now = time.time_ns() if when is None else int(when * 1e9)
    seconds, usec = divmod(now // 1000, 1_000_000)
    return f"{seconds}.M{usec:06d}P{os.getpid()}Q{next(_counter)}.{_host()}"


@functools.cache
def _host() -> str:
    """The host part of unique names (looked up once: it is on every delivery's path)."""
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


class Pop3Size:
    """Counts octets as POP3 sends them: a ``\\n`` not preceded by ``\\r`` counts 2."""

    def __init__(self) -> None:
        self.octets = 0
        self.size = 0
        self._last_cr = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        bare = data.count(b"\n") - data.count(b"\r\n")
        if self._last_cr and data[:1] == b"\n":
            bare -= 1
        self.size += len(data)
        self.octets += len(data) + bare
        self._last_cr = data[-1:] == b"\r"


def _read_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def ensure_maildir(path: str) -> None:
    for sub in SUBDIRS:
        make_dirs(os.path.join(path, sub))


def read_uidlist(maildir: str) -> dict[str, str]:
    """``<unique> <uidl>`` lines: the UIDLs that override those derived from names."""
    try:
        with open(os.path.join(maildir, UIDLIST_NAME), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    entries: dict[str, str] = {}
    for line in data.split(b"\n"):
        unique, space, uidl = line.partition(b" ")
        if space and unique and uidl:
            entries[os.fsdecode(unique)] = uidl.decode("latin-1")
    return entries


def write_uidlist(maildir: str, entries: Mapping[str, str]) -> None:
    """Replace the list atomically and durably (an empty list removes the file)."""
    path = os.path.join(maildir, UIDLIST_NAME)
    if not entries:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        sync_dir(maildir)
        return
    lines = (os.fsencode(u) + b" " + v.encode("latin-1") + b"\n" for u, v in entries.items())
    write_durable(path, [b"".join(lines)])


def _split_name(name: str) -> tuple[str, str, str]:
    """(unique, fields, info): ``u,S=1,W=2:2,S`` → (``u``, ``,S=1,W=2``, ``:2,S``)."""
    head, colon, info = name.partition(":")
    unique, comma, fields = head.partition(",")
    return unique, comma + fields, colon + info


def uidl_of(unique: str) -> str:
    """The UIDL a name gives: its unique part, or the MD5 of it when POP3 cannot carry it."""
    raw = unique.encode("utf-8", "surrogateescape")
    if _UIDL_OK.fullmatch(raw):
        return unique
    return hashlib.md5(raw).hexdigest()


def _pop3_size_of_file(path: str) -> int:
    counter = Pop3Size()
    for chunk in _read_chunks(path):
        counter.feed(chunk)
    return counter.octets


_OURS = re.compile(r"(\d+)\.M(\d+)P\d+Q(\d+)\.")


def _sort_key(directory: str, name: str) -> tuple[float, int, str]:
    """Delivery order: our names carry seconds, microseconds and a per-process counter;
    other names start with seconds at least (else the file's mtime is used)."""
    ours = _OURS.match(name)
    if ours:
        return int(ours[1]) + int(ours[2]) / 1e6, int(ours[3]), name
    digits = re.match(r"\d+", name)
    if digits:
        return float(digits.group()), 0, name
    return os.stat(os.path.join(directory, name)).st_mtime, 0, name


class MaildirEntry:
    """A message file found in ``new/`` or ``cur/``; received: its delivery time."""

    def __init__(self, directory: str, name: str, received: float) -> None:
        self.directory = directory
        self.name = name
        self.unique = _split_name(name)[0]
        self.received = received

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


def scan_maildir(path: str) -> list[MaildirEntry]:
    """The messages of a Maildir in delivery order; ``tmp/`` is never looked at.

    new/ is listed before cur/: a file moved between the two listings shows up twice
    (kept once), not never."""
    found: dict[str, MaildirEntry] = {}
    keys: dict[str, tuple[float, int, str]] = {}
    for sub in ("new", "cur"):
        directory = os.path.join(path, sub)
        for name in os.listdir(directory):
            if name.startswith("."):
                continue
            try:
                key = _sort_key(directory, name)
            except FileNotFoundError:
                continue
            entry = MaildirEntry(directory, name, key[0])
            keys[entry.unique] = key
            found[entry.unique] = entry
    return sorted(found.values(), key=lambda e: keys[e.unique])


def clean_tmp(maildir: str) -> float:
    """Remove what deliveries cut off by a crash or kill left in ``tmp/``; returns when
    the oldest file left there becomes due (inf when none), so that a caller may skip
    sweeps until then while ``tmp/`` is unchanged (a file written since only gets younger).

    Only files untouched for TMP_MAX_AGE go (the Maildir convention's 36 hours): a
    delivery in progress writes its tmp file continuously, and one never takes that
    long."""
    cutoff = time.time() - TMP_MAX_AGE
    oldest = math.inf
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(os.path.join(maildir, "tmp")):
            with contextlib.suppress(FileNotFoundError):
                if not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat().st_mtime
                if mtime < cutoff:
                    os.unlink(entry.path)
                else:
                    oldest = min(oldest, mtime)
    return oldest + TMP_MAX_AGE
