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

QUOTA_FILE = "daisymail-quota"  # in the mailbox's Maildir: its own limit, in octets
_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)i?b?\s*\Z", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


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


def mailbox_limit(root: str, default: int) -> int:
    """The limit for the Maildir at root: its own when set, else the default (0: none)."""
    try:
        with open(os.path.join(root, QUOTA_FILE), "rb") as f:
            return int(f.read().strip() or b"0")
    except (FileNotFoundError, ValueError):
        return default


def maildir_usage(root: str) -> int:
    """Octets stored in a Maildir and its Maildir++ folders (cur/ and new/ files)."""
    total = 0
    folders = [root]
    try:
        folders += [e.path for e in os.scandir(root) if e.name.startswith(".") and e.is_dir()]
    except FileNotFoundError:
        return 0
    for folder in folders:
        for sub in ("cur", "new"):
            try:
                with os.scandir(os.path.join(folder, sub)) as it:
                    for entry in it:
                        try:
                            total += entry.stat().st_size
                        except FileNotFoundError:
                            continue
            except (FileNotFoundError, NotADirectoryError):
                continue
    return total
