"""QUOTA (RFC 9208): one STORAGE quota root per account, named ``""``.

The limit and usage are those of the account's Maildir (all folders); GETQUOTA and
GETQUOTAROOT report them in units of 1024 octets, and APPEND, COPY and MOVE that would
go over get ``NO [OVERQUOTA]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from daisymail.imap.common import CommandFailed
from daisymail.imap.events import Execute
from daisymail.imap.parser import ParseError, astring
from daisymail.imap.responses import tagged
from daisymail.quota import Verdict, mailbox_limit, maildir_usage, quota_check
from daisymail.store.imap_folders import AccountFolders

if TYPE_CHECKING:
    from daisymail.imap.commands import MailSession


@dataclass
class Quota:
    default: int | None  # octets for a mailbox without its own limit (None, 0: none)

    def limit(self, folders: AccountFolders) -> int:
        return mailbox_limit(folders.root, self.default or 0)

    def check(self, folders: AccountFolders, size: int) -> None:
        limit = self.limit(folders)
        if not limit:
            return
        verdict = quota_check(maildir_usage(folders.root), limit, size)
        if verdict is not Verdict.OK:
            raise CommandFailed(f"mailbox quota exceeded ({verdict.value})", "OVERQUOTA")

    def line(self, folders: AccountFolders) -> bytes:
        limit = self.limit(folders)
        used = maildir_usage(folders.root)
        return b'* QUOTA "" (STORAGE %d %d)\r\n' % ((used + 1023) // 1024, limit // 1024)


def cmd_getquotaroot(session: MailSession, ev: Execute) -> bytes:
    if len(ev.args) != 1:
        raise ParseError("GETQUOTAROOT needs a folder name")
    name = session.mailbox(ev.args[0])
    if not session.folders.exists(name):
        raise CommandFailed("no such folder", "NONEXISTENT")
    shown = session.shown(name)
    if not session.quota.limit(session.folders):
        return b"* QUOTAROOT " + shown + b"\r\n" + tagged(ev.tag, "OK", "no quota")
    out = b"* QUOTAROOT " + shown + b' ""\r\n' + session.quota.line(session.folders)
    return out + tagged(ev.tag, "OK", "GETQUOTAROOT completed")


def cmd_getquota(session: MailSession, ev: Execute) -> bytes:
    if len(ev.args) != 1:
        raise ParseError("GETQUOTA needs a quota root")
    if astring(ev.args[0]) != "" or not session.quota.limit(session.folders):
        raise CommandFailed("no such quota root", "NONEXISTENT")
    return session.quota.line(session.folders) + tagged(ev.tag, "OK", "GETQUOTA completed")


def cmd_setquota(session: MailSession, ev: Execute) -> bytes:
    raise CommandFailed("quotas are set by the administrator", "NOPERM")
