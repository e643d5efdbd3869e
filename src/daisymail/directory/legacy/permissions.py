"""Can Daisy's service user use the legacy spool? Findings, and the fixes an admin can apply.

On the legacy box each ``/var/spool/mail/USER`` belongs to its user, often mode 600, and
teapop ran as root. Daisy runs as a service user in group ``mail``, so every spool file
must be group ``mail`` and group read-write (660), and each spool directory group
``mail`` and group-writable (for the dotlocks; Debian ships /var/mail as 2775 root:mail).
The owner is never changed: procmail and the users' own tools keep working.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass

from daisymail.directory.legacy.findings import Finding
from daisymail.directory.legacy.importer import Plan

FILE_BITS = 0o660
DIR_BITS = 0o2070


@dataclass(frozen=True)
class Fix:
    path: str
    gid: int
    mode: int

    def apply(self) -> None:
        os.chown(self.path, -1, self.gid, follow_symlinks=False)
        os.chmod(self.path, self.mode)


def group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def spool_permissions(plan: Plan, group: str) -> tuple[list[Finding], list[Fix]]:
    """A finding and a fix for each mbox or spool directory the group cannot use."""
    gid = group_id(group)
    if gid is None:
        note = Finding(
            "/etc/group",
            0,
            "warning",
            f"group {group} does not exist: spool permissions not checked",
        )
        return [note], []
    findings: list[Finding] = []
    fixes: list[Fix] = []
    folders: dict[str, None] = {}
    for box in sorted(plan.mailboxes.values(), key=lambda b: b.path):
        if box.format != "mbox" or not box.path.startswith("/"):
            continue
        folders.setdefault(os.path.dirname(box.path))
        try:
            st = os.lstat(box.path)
        except OSError:
            continue  # a missing file is created by the first delivery, 660 group mail
        if not stat.S_ISREG(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        if st.st_gid == gid and mode & FILE_BITS == FILE_BITS:
            continue
        fixes.append(Fix(box.path, gid, mode | FILE_BITS))
        findings.append(
            Finding(
                box.path,
                0,
                "warning",
                f"mailbox {box.name}: {_owner(st)} mode {mode:03o}: Daisy's service user "
                f"(in group {group}) cannot read and rewrite it; --fix-permissions makes it "
                f"group {group}, mode {mode | FILE_BITS:03o} (the owner is kept)",
            )
        )
    for folder in folders:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        sticky_open = mode & 0o1777 == 0o1777
        if sticky_open or (st.st_gid == gid and mode & 0o070 == 0o070):
            continue
        fixes.append(Fix(folder, gid, mode | DIR_BITS))
        findings.append(
            Finding(
                folder,
                0,
                "warning",
                f"spool directory: {_owner(st)} mode {mode:04o}: Daisy's service user (in "
                f"group {group}) cannot create lock files here; --fix-permissions makes it "
                f"group {group}, mode {mode | DIR_BITS:04o}",
            )
        )
    return findings, fixes


def _owner(st: os.stat_result) -> str:
    return f"{_name(st.st_uid, user=True)}:{_name(st.st_gid, user=False)}"


def _name(num: int, *, user: bool) -> str:
    try:
        return pwd.getpwuid(num).pw_name if user else grp.getgrgid(num).gr_name
    except KeyError:
        return str(num)
