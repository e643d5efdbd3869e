"""APPEND: a message into a folder, from a buffered literal or streamed to disk.

A literal up to Settings.stream_over arrives whole with the command; a larger one is
checked first (folder, APPENDLIMIT, quota) and then written into the folder's ``tmp/``
chunk by chunk as it arrives, so memory stays small whatever the message size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from daisymail.imap import binary
from daisymail.imap.common import CommandFailed
from daisymail.imap.messages import parse_flags
from daisymail.imap.parser import ParseError, Token
from daisymail.imap.responses import tagged
from daisymail.imap.stream import Spool
from daisymail.store.imap_folders import ImapFolder

if TYPE_CHECKING:
    from daisymail.imap.commands import MailSession

_APPEND_DATE = re.compile(r"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-]\d{4})$")


@dataclass
class Pending:
    """A streamed APPEND between its command line and the end of its literal."""

    folder: ImapFolder
    flags: frozenset[str]
    when: float | None
    spool: Spool


def append_date(text: str) -> float:
    """``"17-Jul-1996 02:44:25 -0700"`` as seconds since the epoch."""
    m = _APPEND_DATE.match(text)
    if not m:
        raise ParseError("bad date-time")
    day, month, year, hh, mm, ss, zone = m.groups()
    try:
        return parsedate_to_datetime(f"{day} {month} {year} {hh}:{mm}:{ss} {zone}").timestamp()
    except (TypeError, ValueError):
        raise ParseError("bad date-time") from None


def _options(session: MailSession, args: list[Token]) -> tuple[str, frozenset[str], float | None]:
    """Folder name, flags and date of an APPEND (args without the message literal)."""
    if not args:
        raise ParseError("APPEND needs a folder name and a message literal")
    name = session.mailbox(args[0])
    flags: frozenset[str] = frozenset()
    when: float | None = None
    for extra in args[1:]:
        if isinstance(extra, list):
            flags = parse_flags(extra)
        elif isinstance(extra, bytes):
            when = append_date(extra.decode("ascii", "replace"))
        else:
            raise ParseError("bad APPEND argument")
    return name, flags - {"\\Recent"}, when


def _target(session: MailSession, name: str, size: int) -> ImapFolder:
    """The folder a message of this size may go into; CommandFailed says why not."""
    if size > session.append_limit:
        raise CommandFailed("message too big", "TOOBIG")
    if not session.folders.exists(name):
        raise CommandFailed("no such folder", "TRYCREATE")
    session.check_quota(name, size)
    return session.folders.folder(name)


def _done(session: MailSession, tag: str, folder: ImapFolder, uid: int) -> bytes:
    validity = folder.sync().uidvalidity
    news = session.view.refresh(True) if session.view is not None else b""
    return news + tagged(tag, "OK", "APPEND completed", f"APPENDUID {validity} {uid}")


def cmd_append(session: MailSession, tag: str, args: list[Token]) -> bytes:
    last = args[-1] if args else None
    before = args[-2] if len(args) >= 2 else None
    if isinstance(before, str) and before.upper() == "UTF8" and isinstance(last, list):
        # RFC 6855: ``UTF8 (~{n}...)``, a message with UTF-8 headers; stored as it is
        if len(last) != 1 or not isinstance(last[0], bytes):
            raise ParseError("UTF8 needs one message literal in parentheses")
        args = [*args[:-2], last[0]]
    if len(args) < 2 or not isinstance(args[-1], bytes):
        raise ParseError("APPEND needs a folder name and a message literal")
    name, flags, when = _options(session, args[:-1])
    data: bytes = binary.nul_parts_as_base64(args[-1])
    folder = _target(session, name, len(data))
    uid = folder.append(data, flags, when)
    return _done(session, tag, folder, uid)


def begin(session: MailSession, tag: str, args: list[Token], size: int) -> Pending | bytes:
    """Check a streamed APPEND before its literal: a Pending, or the NO/BAD reply."""
    try:
        name, flags, when = _options(session, args)
        folder = _target(session, name, size)
    except CommandFailed as e:
        return tagged(tag, "NO", str(e), e.code)
    except ParseError as e:
        return tagged(tag, "BAD", str(e))
    return Pending(folder, flags, when, Spool(folder.path, size))


def finish(session: MailSession, tag: str, pending: Pending, ok: bool) -> bytes:
    """The literal is on disk: make it a message (or drop it when the command was bad)."""
    spool = pending.spool
    if not ok:
        spool.discard()
        return tagged(tag, "BAD", "APPEND takes one message")
    try:
        spool.finish()
        folder = pending.folder
        uid = folder.append_file(
            spool.path, spool.unique, spool.counter, pending.flags, pending.when
        )
    except BaseException:
        spool.discard()
        raise
    return _done(session, tag, folder, uid)
