"""Becoming the service user after the ports are bound, without breaking the sessions.

Started as root, Daisy binds its ports, reads its keys and opens the directory, then
becomes ``user`` before the first session is served. After that it can read only what
that user can read. Python imports some modules on first use (``time.strptime`` imports
``_strptime``, a codec lookup imports ``encodings.idna``), so a Python installation the
service user cannot read (say, under /root) used to fail the first POP3 login with
``-ERR [SYS/TEMP]``. So: everything the session path imports is imported before the
drop, and Daisy refuses to drop into a user that cannot read its own code or the
Python it runs on, naming the path.
"""

from __future__ import annotations

import grp
import importlib
import os
import pwd
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

# Imported on first use somewhere on a session's path; imported here before the drop.
SESSION_MODULES = (
    "_strptime",
    "encodings.ascii",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.punycode",
    "encodings.utf_8",
    "encodings.utf_8_sig",
    "stringprep",
    "unicodedata",
    "email.charset",
    "email.errors",
    "email.feedparser",
    "email.generator",
    "email.header",
    "email.headerregistry",
    "email.message",
    "email.parser",
    "email.policy",
    "email.utils",
    "daisymail.store.mbox_view",
    "daisymail.store.mbox_inplace",
)


class PrivilegeError(Exception):
    """Daisy cannot (or must not) become the configured user; the message says why."""


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def owns_or_shares(self, st: os.stat_result) -> int:
        """The shift of the permission bits that apply to this user (owner/group/other)."""
        if st.st_uid == self.uid:
            return 6
        if st.st_gid in self.groups:
            return 3
        return 0

    def may(self, st: os.stat_result, bits: int) -> bool:
        """bits: 4 read, 2 write, 1 search/execute, as the kernel checks (ACLs aside)."""
        return (st.st_mode >> self.owns_or_shares(st)) & bits == bits


def service_user(name: str) -> ServiceUser | None:
    """The user to become: None when not root or when the config keeps the current user."""
    if os.getuid() != 0 or not name:
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(
            f"user {name!r} does not exist: create it (useradd --system {name}) "
            'or set user = "" in the config to keep running as root'
        ) from None
    groups = {pw.pw_gid, *(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)}
    return ServiceUser(name, pw.pw_uid, pw.pw_gid, tuple(sorted(groups)))


def make_dirs(paths: Iterable[str], user: ServiceUser | None) -> None:
    """Create missing directories (0750), owned by the service user when there is one,
    and refuse to start when an existing one is not writable by it."""
    for path in paths:
        missing = []
        current = os.path.abspath(path)
        while not os.path.exists(current):
            missing.append(current)
            current = os.path.dirname(current)
        for folder in reversed(missing):
            try:
                os.mkdir(folder, 0o750)
                if user is not None:
                    os.chown(folder, user.uid, user.gid)
            except FileExistsError:
                pass
            except OSError as e:
                raise PrivilegeError(f"cannot create {folder}: {e.strerror}") from None
        if user is not None:
            st = os.stat(path)
            if not user.may(st, 3):
                raise PrivilegeError(
                    f"{path} is not writable by user {user.name} (owner uid {st.st_uid}, "
                    f"mode {stat.S_IMODE(st.st_mode):o}): chown -R {user.name}: {path}"
                )


def preload() -> None:
    """Import now what a session would import on first use, while every file is readable."""
    for name in SESSION_MODULES:
        importlib.import_module(name)
    time.strptime("Mon Jan  5 10:00:00 2004", "%a %b %d %H:%M:%S %Y")
    "preload.example".encode("idna")
    from passlib import hash as passlib_hash

    for name in ("des_crypt", "md5_crypt", "apr_md5_crypt", "sha256_crypt", "sha512_crypt"):
        get_backend = getattr(getattr(passlib_hash, name), "get_backend", None)
        if get_backend is not None:
            get_backend()


def loaded_code_dirs() -> set[str]:
    """The directories Python loaded modules from: Daisy, its libraries, the stdlib."""
    dirs = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.isabs(path):
            dirs.add(os.path.dirname(os.path.realpath(path)))
    return dirs


def unreadable(user: ServiceUser, dirs: Iterable[str]) -> list[str]:
    """Each path that keeps user from reading modules in dirs (the first one per dir)."""
    checked: dict[str, bool] = {}
    problems: list[str] = []

    def ok(path: str, bits: int) -> bool:
        key = f"{bits}:{path}"
        if key not in checked:
            try:
                checked[key] = user.may(os.stat(path), bits)
            except OSError:
                checked[key] = False
        return checked[key]

    for folder in sorted(dirs):
        parts = folder.split("/")
        ancestors = ["/"] + ["/".join(parts[:i]) for i in range(2, len(parts))]
        bad = next((a for a in ancestors if not ok(a, 1)), None)
        if bad is None and not ok(folder, 5):
            bad = folder
        if bad is not None and bad not in problems:
            problems.append(bad)
    return problems


def check_readable(user: ServiceUser) -> None:
    """Refuse to drop into a user that cannot read Daisy's code or Python's library."""
    problems = unreadable(user, loaded_code_dirs())
    if problems:
        shown = ", ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
        raise PrivilegeError(
            f"user {user.name} cannot read Daisy's code or the Python it runs on "
            f"({shown} is not readable by it): install Daisy and Python where "
            f"{user.name} can read them (e.g. a virtualenv under /opt), or set "
            'user = "" to keep running as root'
        )


def drop(user: ServiceUser) -> None:
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
