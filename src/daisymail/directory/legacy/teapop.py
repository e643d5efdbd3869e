"""teapop's files: ``teapop.passwd`` and the per-domain ``textfile``/``htpasswd`` password
files, read as teapop 0.3.8 read them (SPEC §1.2, §1.5–§1.7).

Where teapop silently did something an admin would not expect (the traps of SPEC "Daisy's
decisions"), the account is still read and a finding says what teapop did. Lines teapop
could not use either are skipped with an error finding. Sans-I/O: bytes in, data out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from daisymail.directory.legacy.findings import Finding, Severity

# teapop reads teapop.passwd with fgets into a 512-byte buffer: line + newline <= 511.
MAX_PASSWD_LINE = 510
# Values of hash at or above this are ignored (treated as 0).
MAX_HASH = 511
EMPTY_ENTRY = "empty"
DEFAULT_ENTRY = "default"
# Fields after the method that must each be followed by ':' (SPEC §1.2 table).
_REQUIRED = {
    "reject": 0,
    "passwd": 2,
    "textfile": 6,
    "htpasswd": 6,
    "mysql": 13,
    "pgsql": 13,
    "java": 4,
    "ldap": 6,
}
_NOT_IMPORTED = {
    "passwd": "system accounts (getpwnam); create these logins with `daisymail user add`",
    "mysql": "accounts in a MySQL table; export them to a textfile first",
    "pgsql": "accounts in a PostgreSQL table; export them to a textfile first",
    "java": "accounts checked by a Java helper; not importable",
    "ldap": "accounts in LDAP; not importable",
}
# Stored-hash forms a password field may hold (written by `daisymail export legacy`, or a
# patched teapop); anything else in a textfile is a cleartext password.
HASH_PREFIXES = ("$argon2id$", "$argon2i$", "$1$", "$apr1$", "$5$", "$6$", "{SHA}", "{PLAIN}")


@dataclass(frozen=True)
class Entry:
    """One usable teapop.passwd line. domain is lowercased ("empty"/"default" kept as words);
    max_accounts None means no limit."""

    domain: str
    ip: str
    method: str
    maildir: str
    hash: int
    uid: str
    gid: str
    pwfile: str
    max_accounts: int | None
    line: int


@dataclass(frozen=True)
class Account:
    """One login read from a password file. secret is cleartext unless hashed."""

    user: str
    secret: str
    hashed: bool
    path: str
    maildir: bool
    source: str
    line: int


def parse_teapop_passwd(data: bytes, source: str) -> tuple[list[Entry], list[Finding]]:
    """Every entry that decides for its domain, in file order, and what was odd."""
    entries: list[Entry] = []
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    for lineno, raw, terminated in _lines(data):
        if len(raw) > MAX_PASSWD_LINE:
            findings.append(
                Finding(
                    source,
                    lineno,
                    "error",
                    f"line longer than {MAX_PASSWD_LINE} bytes; teapop could not read it, skipped",
                )
            )
            continue
        text = raw.decode("utf-8", "surrogateescape")
        text = text.split(";", 1)[0].split("#", 1)[0].strip(" ")
        if not text:
            continue
        if not terminated:
            findings.append(
                Finding(
                    source,
                    lineno,
                    "warning",
                    "last line has no newline: teapop ignored this entry; Daisy imports it",
                )
            )
        entry = _entry(text, lineno, source, findings)
        if entry is None:
            continue
        first = seen.get(entry.domain)
        if first is not None:
            findings.append(
                Finding(
                    source,
                    lineno,
                    "warning",
                    f"a second entry for {entry.domain}: teapop always used the first one "
                    f"(line {first}); skipped",
                )
            )
            continue
        seen[entry.domain] = lineno
        entries.append(entry)
    return entries, findings


def _entry(text: str, lineno: int, source: str, findings: list[Finding]) -> Entry | None:
    def note(severity: Severity, message: str) -> None:
        findings.append(Finding(source, lineno, severity, message))

    fields = text.split(":")
    if len(fields) < 3:
        note("error", "corrupt entry (needs domain:ip:method...); teapop skipped it too")
        return None
    domain, ip, method = fields[0].strip().lower(), fields[1], fields[2].lower()
    if not domain:
        note("error", "entry without a domain; teapop skipped it too")
        return None
    if method not in _REQUIRED:
        note("error", f"unknown method {fields[2]!r}; teapop skipped the entry")
        return None
    rest = fields[3:]
    colons = len(fields) - 1
    need = 3 + _REQUIRED[method]
    max_accounts: int | None = None
    if method in ("textfile", "htpasswd"):
        if colons < need - 2:
            note("error", f"corrupt {method} entry (no password file field); skipped")
            return None
        if colons < need:
            note(
                "warning",
                "no max field: teapop 0.3.8 ignored this entry, so its logins fell through "
                "to the default entry; Daisy imports it with no account limit",
            )
        else:
            max_accounts = _max_field(rest[5], note)
    elif colons < need and method != "reject":
        note("error", f"corrupt {method} entry (missing fields); teapop skipped it too")
        return None
    if ip and not ip.startswith("*"):
        note(
            "info",
            f"entry only for connections to {ip}; Daisy applies it to every listening address",
        )
    if method in _NOT_IMPORTED:
        note("info", f"method {method}: {_NOT_IMPORTED[method]}; not imported")
    padded = [*rest, "", "", "", "", "", ""]
    return Entry(
        domain=domain,
        ip=ip,
        method=method,
        maildir=padded[0],
        hash=_atoi(padded[1]) if method != "ldap" else 0,
        uid=padded[2],
        gid=padded[3],
        pwfile=padded[4] if method in ("textfile", "htpasswd") else "",
        max_accounts=max_accounts,
        line=lineno,
    )


def _max_field(value: str, note: Callable[[Severity, str], None]) -> int | None:
    if value.strip() == "":
        note(
            "warning",
            "empty max field: teapop read it as 0 and let nobody log in; Daisy imports "
            "the accounts with no limit",
        )
        return None
    number = _atoi(value)
    if number <= 0:
        note(
            "warning",
            f"max {value!r} is 0: teapop let nobody log in; Daisy imports the accounts "
            "with no limit",
        )
        return None
    return number


def parse_password_file(
    data: bytes, source: str, entry: Entry
) -> tuple[list[Account], list[Finding]]:
    """Accounts of a textfile or htpasswd file, with their mailbox paths (§1.5–§1.7)."""
    accounts: list[Account] = []
    findings: list[Finding] = []
    users: dict[str, Account] = {}
    counted = 0
    stopped_at: int | None = None
    over_max: list[int] = []
    crlf_noted = False

    def note(lineno: int, severity: Severity, message: str) -> None:
        findings.append(Finding(source, lineno, severity, message))

    for lineno, raw, terminated in _lines(data):
        text = raw.decode("utf-8", "surrogateescape").lstrip(" \t\v\f\r")
        if text.startswith(("#", ";")):
            continue
        counted += 1
        if entry.max_accounts is not None and counted > entry.max_accounts:
            over_max.append(lineno)
            continue
        if entry.method == "textfile":
            user, sep1, rest = text.partition(":")
            password, sep2, mailbox = rest.partition(":")
            corrupt = not (sep1 and sep2)
        else:
            user, sep1, rest = text.partition(":")
            password = rest.split(":", 1)[0]
            mailbox = user
            corrupt = not sep1
        if corrupt:
            if stopped_at is None:
                stopped_at = lineno
            what = (
                "blank line" if not text.strip() else "corrupt line (needs user:password:mailbox)"
            )
            note(
                lineno,
                "warning" if not text.strip() else "error",
                f"{what}: teapop stopped reading the file here, so nobody listed after it "
                "could log in; skipped, the accounts after it are imported",
            )
            continue
        if not terminated:
            note(
                lineno,
                "warning",
                "last line has no newline: teapop skipped it, so this user could not log in; "
                "Daisy imports it",
            )
        if mailbox.endswith("\r") or password.endswith("\r"):
            if not crlf_noted:
                note(
                    lineno,
                    "warning",
                    "CRLF line endings: teapop kept the \\r in the mailbox name and so opened "
                    "a mailbox that does not exist (the user saw no mail); Daisy drops the \\r",
                )
                crlf_noted = True
            mailbox = mailbox.rstrip("\r")
            password = password.rstrip("\r") if entry.method == "htpasswd" else password
        if not user or any(c in user for c in " \t@%"):
            note(
                lineno,
                "error",
                f"user name {user!r} can never log in (teapop splits at @ and %); skipped",
            )
            continue
        if not mailbox:
            note(lineno, "error", f"{user}: empty mailbox name; skipped")
            continue
        if _leaves_spool(mailbox):
            note(
                lineno,
                "error",
                f"{user}: mailbox name {mailbox!r} points at the spool directory or above it "
                "('.' or '..'); skipped",
            )
            continue
        hashed = entry.method == "htpasswd" or password.startswith(HASH_PREFIXES)
        if hashed and entry.method == "textfile":
            note(
                lineno,
                "warning",
                f"{user}: the password looks like a stored hash; teapop compared it as plain "
                "text, Daisy keeps it as a hash",
            )
        path, maildir = mailbox_path(entry.maildir, entry.hash, mailbox)
        if entry.maildir and mailbox.startswith("/"):
            note(
                lineno,
                "info",
                f"{user}: absolute mailbox under a base directory: teapop (as root) chrooted "
                f"to {entry.maildir}, so the mailbox is {path}",
            )
        account = Account(user, password, hashed, path, maildir, source, lineno)
        first = users.get(user)
        if first is not None:
            same = first.secret == password and first.path == path
            note(
                lineno,
                "info" if same else "warning",
                f"{user} is listed again (first on line {first.line})"
                + ("" if same else ": teapop accepted either password; Daisy keeps the first")
                + "; skipped",
            )
            continue
        users[user] = account
        accounts.append(account)
    if stopped_at is not None and (later := [a.user for a in accounts if a.line > stopped_at]):
        note(
            stopped_at,
            "warning",
            f"under teapop these accounts after line {stopped_at} could not log in: "
            + ", ".join(later),
        )
    if over_max:
        note(
            over_max[0],
            "warning",
            f"max {entry.max_accounts}: teapop let only the first {entry.max_accounts} "
            f"accounts log in; {len(over_max)} line(s) from here on are not imported",
        )
    return accounts, findings


def _leaves_spool(name: str) -> bool:
    """A relative mailbox name made of '.' and '..' steps that end at or above the spool
    directory: teapop would have opened a directory or another file there."""
    if name.startswith("/"):
        return False  # an absolute path is the admin's explicit choice (§1.7)
    return posixpath.normpath(name.rstrip("/") or ".").split("/")[0] in (".", "..")


def mailbox_path(base: str, hash_depth: int, name: str) -> tuple[str, bool]:
    """Where teapop (running as root) opened a mailbox, and whether it is a Maildir (§1.7)."""
    maildir = name.endswith("/")
    parts = [base] if base else ["/"]
    if 0 < hash_depth < MAX_HASH:
        parts.extend(name[:hash_depth])
    parts.append(name.lstrip("/") if base else name)
    path = posixpath.normpath(posixpath.join(*parts) if not name.startswith("/") or base else name)
    if not path.startswith("/"):
        path = posixpath.normpath("/" + path)
    return (path + "/" if maildir else path), maildir


def _atoi(text: str) -> int:
    """C atoi: leading blanks, an optional sign, digits; anything else stops it."""
    s = text.lstrip(" \t\n\v\f\r")
    sign = -1 if s.startswith("-") else 1
    s = s[1:] if s[:1] in "+-" else s
    digits = ""
    for ch in s:
        if not ch.isascii() or not ch.isdigit():
            break
        digits += ch
    return sign * int(digits) if digits else 0


def _lines(data: bytes) -> list[tuple[int, bytes, bool]]:
    """(number, line without newline, ended with a newline)."""
    parts = data.split(b"\n")
    tail = parts.pop()
    out = [(i, p, True) for i, p in enumerate(parts, start=1)]
    if tail:
        out.append((len(parts) + 1, tail, False))
    return out
