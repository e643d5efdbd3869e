"""A legacy sendmail + teapop tree read into one plan: the directory it describes.

The same plan serves the one-shot import (applied to the SQL directory in one transaction)
and the live backend (turned into a Snapshot), so both route mail identically. Mailboxes
keep their legacy paths and are served in place.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from daisymail.directory.legacy.findings import Finding, Severity
from daisymail.directory.legacy.maps import _parse_map, parse_access_relays, parse_class_file
from daisymail.directory.legacy.sources import MAX_FILE_SIZE, LegacyPaths, Reader
from daisymail.directory.legacy.teapop import (
    DEFAULT_ENTRY,
    EMPTY_ENTRY,
    Account,
    parse_password_file,
    parse_teapop_passwd,
)
from daisymail.directory.model import Domain, Login, Mailbox, RelayRule, Snapshot
from daisymail.directory.passwords import plaintext_hash
from daisymail.routing.addresses import Address
from daisymail.routing.recipients import Deliver, Forward, Reject, resolve_recipient
from daisymail.routing.relay import relay_rule_from_class_entry

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_BAD_NAME_RE = re.compile(r"[\s\x00-\x1f\x7f@/]")
_TRAILING = " \t\r"


@dataclass(frozen=True)
class PlannedLogin:
    """A login as the legacy files give it: a cleartext password or a stored hash."""

    user: str
    domain: str
    secret: str
    hashed: bool
    mailbox: str

    @property
    def address(self) -> str:
        return f"{self.user}@{self.domain}" if self.domain else self.user

    def live_hash(self) -> str:
        """The stored form the live backend verifies from (cleartext stays cleartext)."""
        return self.secret if self.hashed else plaintext_hash(self.secret)


@dataclass
class Plan:
    domains: dict[str, Domain] = field(default_factory=dict)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    address_rules: dict[str, str] = field(default_factory=dict)
    sender_rules: dict[str, str] = field(default_factory=dict)
    relay_rules: list[RelayRule] = field(default_factory=list)
    logins: list[PlannedLogin] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    watched: dict[str, object] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.domains or self.address_rules or self.logins or self.relay_rules)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            domains=MappingProxyType(dict(self.domains)),
            mailboxes=MappingProxyType(dict(self.mailboxes)),
            address_rules=MappingProxyType(dict(self.address_rules)),
            sender_rules=MappingProxyType(dict(self.sender_rules)),
            relay_rules=tuple(self.relay_rules),
            logins=tuple(
                Login(pl.user, pl.domain, pl.live_hash(), pl.mailbox) for pl in self.logins
            ),
        )


def read_legacy(paths: LegacyPaths, *, drift: bool = True) -> Plan:
    """Everything the legacy tree says, with a finding for each surprise."""
    return _Builder(paths).build(drift=drift)


class _Builder:
    def __init__(self, paths: LegacyPaths) -> None:
        self.paths = paths
        self.reader = Reader()
        self.plan = Plan()
        self.by_path: dict[str, str] = {}
        self.spool = posixpath.normpath(paths.spool_dir or "/")
        self.crlf_noted: dict[str, bool] = {}
        self.vut_path = "virtusertable"
        self.vut_lines: dict[str, int] = {}
        self.login_lines: dict[tuple[str, str], tuple[str, int]] = {}

    def note(self, source: str, line: int, severity: Severity, message: str) -> None:
        self.plan.findings.append(Finding(source, line, severity, message))

    def build(self, *, drift: bool) -> Plan:
        if self.paths.spool_from_teapop:
            self.spool_from_teapop()
        local = self.class_file_first(("local-host-names", "sendmail.cw"), "class w")
        generics = {n.lower() for n in self.class_file_first(("sendmail.cG",), "class G")}
        for name in local:
            self.add_domain(name, fallback=True, generics=name.lower() in generics, source="")
        self.read_virtusertable()
        self.read_genericstable()
        self.read_relays()
        self.read_teapop(generics)
        for name in sorted(generics - set(self.plan.domains)):
            self.note(
                "sendmail.cG",
                0,
                "info",
                f"{name} is in class G but is not hosted here; Daisy rewrites senders of "
                "hosted domains only",
            )
        if drift:
            self.check_drift()
        self.plan.findings[:0] = self.reader.findings
        self.plan.watched = dict(self.reader.watched)
        return self.plan

    def spool_from_teapop(self) -> None:
        """Take the spool directory from teapop.passwd's base directory field, when its
        entries name one: one spool file is one mailbox, whichever program names it."""
        try:
            with open(self.paths.teapop_passwd, "rb") as f:
                data = f.read(MAX_FILE_SIZE)
        except OSError:
            return  # read_teapop reports it
        entries, _ = parse_teapop_passwd(data, self.paths.teapop_passwd)
        bases: dict[str, list[int]] = {}
        for entry in entries:
            if entry.method in ("textfile", "htpasswd") and entry.maildir and not entry.hash:
                base = posixpath.normpath(entry.maildir)
                if base.startswith("/"):
                    bases.setdefault(base, []).append(entry.line)
        if not bases:
            return
        chosen = max(bases, key=lambda b: len(bases[b]))  # the first of the most used
        source, line = self.paths.teapop_passwd, bases[chosen][0]
        others = [b for b in bases if b != chosen]
        if others:
            self.note(
                source,
                line,
                "info",
                f"teapop.passwd names several spool directories; {chosen} is used for "
                f"virtusertable's mailbox names (also named: {', '.join(others)})",
            )
        if _real(chosen) != _real(self.spool):
            self.note(
                source,
                line,
                "info",
                f"spool directory taken from teapop.passwd: {chosen} (not {self.spool}); "
                "give --spool-dir to choose another",
            )
        self.spool = chosen

    # -- sendmail ---------------------------------------------------------------------------
    def find(self, name: str) -> str | None:
        for path in self.paths.candidates(name):
            if self.reader.exists(path):
                return path
        return None

    def class_file_first(self, names: tuple[str, ...], what: str) -> list[str]:
        found = [p for p in (self.find(n) for n in names) if p is not None]
        if not found:
            self.note(
                self.paths.sendmail_dir,
                0,
                "warning" if what == "class w" else "info",
                f"no {' or '.join(names)} found ({what} is empty)",
            )
            return []
        if len(found) > 1:
            self.note(
                found[1],
                0,
                "warning",
                f"both {found[0]} and {found[1]} exist; only {found[0]} is read "
                "(check that the other one holds nothing you need)",
            )
        data = self.reader.read(found[0])
        if data is None:
            return []
        names_read, findings = parse_class_file(data, found[0])
        self.plan.findings.extend(findings)
        return names_read

    def add_domain(self, name: str, *, fallback: bool, generics: bool, source: str) -> bool:
        folded = name.lower().rstrip(".")
        if folded in self.plan.domains:
            return True
        if folded != DEFAULT_ENTRY and (len(folded) > 253 or not _DOMAIN_RE.fullmatch(folded)):
            self.note(
                source or "local-host-names", 0, "error", f"{name!r} is not a domain name; skipped"
            )
            return False
        self.plan.domains[folded] = Domain(
            folded,
            fallback=fallback,
            login_case_sensitive=True,
            generics=generics,
            origin="legacy",
        )
        return True

    def read_map(self, name: str) -> tuple[str, dict[str, tuple[int, str]]] | None:
        path = self.find(name)
        if path is None:
            self.note(self.paths.sendmail_dir, 0, "info", f"no {name} found")
            return None
        data = self.reader.read(path)
        if data is None:
            return None
        entries, findings = _parse_map(data, path)
        self.plan.findings.extend(findings)
        return path, entries

    def clean_value(self, path: str, line: int, key: str, value: str) -> str | None:
        cleaned = value.rstrip(_TRAILING)
        if cleaned != value and "\r" in value and not self.crlf_noted.get(path):
            self.crlf_noted[path] = True
            self.note(
                path,
                line,
                "info",
                "CRLF line endings: values end in \\r; sendmail dropped it when it read "
                "the address, and so does Daisy",
            )
        if not cleaned or _CONTROL_RE.search(cleaned):
            self.note(
                path, line, "error", f"{key}: value {value!r} has control characters; skipped"
            )
            return None
        return cleaned

    def read_virtusertable(self) -> None:
        found = self.read_map("virtusertable")
        if found is None:
            return
        path, entries = found
        self.vut_path = path
        for key, (line, value) in entries.items():
            local, at, domain = key.rpartition("@")
            if not at or not _DOMAIN_RE.fullmatch(domain) or _CONTROL_RE.search(local):
                self.note(
                    path, line, "error", f"key {key!r} is not user@domain or @domain; skipped"
                )
                continue
            target = self.clean_value(path, line, key, value)
            if target is None:
                continue
            self.plan.address_rules[key] = target
            self.vut_lines[key] = line
            if domain not in self.plan.domains:
                self.note(
                    path,
                    line,
                    "info",
                    f"{key}: {domain} is not a local domain, so sendmail never used this "
                    "entry (Daisy neither); imported as it is",
                )
            self.target_mailbox(path, line, key, target)

    def target_mailbox(self, path: str, line: int, key: str, target: str) -> None:
        if target.lower().startswith("error:") or "@" in target:
            return
        user = target.split("+", 1)[0]
        if "%" in user:
            self.note(
                path,
                line,
                "info",
                f"{key} -> {target}: the mailbox depends on the address; create the "
                "mailboxes it can reach with `daisymail mailbox add NAME --format mbox`",
            )
            return
        name = user.lower()
        if not name or _BAD_NAME_RE.search(name) or name in (".", ".."):
            self.note(
                path, line, "error", f"{key} -> {target}: not a mailbox name; no mailbox made"
            )
            return
        self.mailbox_for(posixpath.join(self.spool, name), maildir=False, preferred=name)

    def mailbox_for(self, path: str, *, maildir: bool, preferred: str | None = None) -> str:
        """The mailbox name for a legacy path, the same name for the same path every time."""
        key = path.rstrip("/")
        known = self.by_path.get(_real(key))
        if known is not None:
            return known
        rel = posixpath.relpath(_real(key), _real(self.spool))
        if preferred is None:
            preferred = (rel if not rel.startswith("..") else key.lstrip("/")).replace("/", ".")
            preferred = _BAD_NAME_RE.sub("_", preferred.lower()) or "mailbox"
        name, n = preferred, 1
        while name in self.plan.mailboxes:
            n += 1
            name = f"{preferred}-{n}"
        if n > 1:
            self.note(path, 0, "info", f"mailbox name {preferred} is taken; this one is {name}")
        self.plan.mailboxes[name] = Mailbox(
            name, "maildir" if maildir else "mbox", key + ("/" if maildir else "")
        )
        self.by_path[_real(key)] = name
        return name

    def read_genericstable(self) -> None:
        found = self.read_map("genericstable")
        if found is None:
            return
        path, entries = found
        for key, (line, value) in entries.items():
            local, at, domain = key.rpartition("@")
            if (at and not _DOMAIN_RE.fullmatch(domain)) or _BAD_NAME_RE.search(local):
                self.note(
                    path, line, "error", f"key {key!r} is not user, user@domain or @domain; skipped"
                )
                continue
            target = self.clean_value(path, line, key, value)
            if target is None:
                continue
            if any(c.isspace() for c in target):
                self.note(path, line, "error", f"{key}: {target!r} is not one address; skipped")
                continue
            self.plan.sender_rules[key] = target

    def read_relays(self) -> None:
        rules: list[RelayRule] = []
        path = self.find("relay-domains")
        if path is None:
            self.note(self.paths.sendmail_dir, 0, "info", "no relay-domains found")
        elif (data := self.reader.read(path)) is not None:
            names, findings = parse_class_file(data, path)
            self.plan.findings.extend(findings)
            for entry in names:
                try:
                    rules.append(relay_rule_from_class_entry(entry))
                except ValueError as e:
                    self.note(path, 0, "error", f"{e}; skipped")
        access = self.find("access")
        if access is not None and (data := self.reader.read(access)) is not None:
            access_rules, findings = parse_access_relays(data, access)
            self.plan.findings.extend(findings)
            rules.extend(access_rules)
        seen: set[str] = set()
        for rule in rules:
            if rule.pattern not in seen:
                seen.add(rule.pattern)
                self.plan.relay_rules.append(rule)

    # -- teapop -----------------------------------------------------------------------------
    def read_teapop(self, generics: set[str]) -> None:
        source = self.paths.teapop_passwd
        data = self.reader.read(source)
        if data is None:
            return
        entries, findings = parse_teapop_passwd(data, source)
        self.plan.findings.extend(findings)
        for entry in entries:
            if entry.method not in ("textfile", "htpasswd"):
                continue
            domain = {EMPTY_ENTRY: "", DEFAULT_ENTRY: DEFAULT_ENTRY}.get(entry.domain, entry.domain)
            if domain and domain not in self.plan.domains:
                if domain == DEFAULT_ENTRY:
                    self.note(
                        source,
                        entry.line,
                        "info",
                        "the default entry's logins are kept under the pseudo-domain "
                        "'default', used for login names whose domain has no entry",
                    )
                else:
                    self.note(
                        source,
                        entry.line,
                        "warning",
                        f"{domain} has POP3 accounts but is not in local-host-names; added "
                        "as a strict hosted domain (only listed addresses receive mail)",
                    )
                if not self.add_domain(
                    domain, fallback=False, generics=domain in generics, source=source
                ):
                    continue
            if entry.method == "textfile" and (not entry.uid or not entry.gid):
                self.note(
                    source,
                    entry.line,
                    "warning",
                    "empty uid or gid: teapop running as root could not drop privileges, so "
                    "every login failed; Daisy imports the accounts",
                )
            pwfile = entry.pwfile
            if not pwfile:
                self.note(source, entry.line, "error", "no password file named; skipped")
                continue
            if not pwfile.startswith("/"):
                pwfile = posixpath.join(posixpath.dirname(source) or ".", pwfile)
            pw_data = self.reader.read(pwfile)
            if pw_data is None:
                continue
            accounts, pw_findings = parse_password_file(pw_data, pwfile, entry)
            self.plan.findings.extend(pw_findings)
            for account in accounts:
                self.add_login(account, domain)

    def add_login(self, account: Account, domain: str) -> None:
        if _CONTROL_RE.search(account.secret) or _CONTROL_RE.search(account.path):
            self.note(
                account.source,
                account.line,
                "error",
                f"{account.user}: control characters; skipped",
            )
            return
        for other in self.plan.logins:
            if other.domain == domain and other.user == account.user:
                self.note(
                    account.source,
                    account.line,
                    "warning",
                    f"{account.user}@{domain or '(no domain)'} is already a login; skipped",
                )
                return
        mailbox = self.mailbox_for(account.path, maildir=account.maildir)
        self.login_lines[(account.user, domain)] = (account.source, account.line)
        self.plan.logins.append(
            PlannedLogin(account.user, domain, account.secret, account.hashed, mailbox)
        )

    # -- drift ------------------------------------------------------------------------------
    def check_drift(self) -> None:
        snap = self.plan.snapshot()
        login_boxes = {pl.mailbox for pl in self.plan.logins}
        targeted: set[str] = set()
        for key, target in self.plan.address_rules.items():
            if target.lower().startswith("error:") or "@" in target:
                continue
            name = target.split("+", 1)[0].lower()
            if name in self.plan.mailboxes:
                targeted.add(name)
                if name not in login_boxes:
                    self.note(
                        self.vut_path,
                        self.vut_lines.get(key, 0),
                        "warning",
                        f"drift: {key} delivers to {self.plan.mailboxes[name].path}, which no "
                        "POP3 login reads",
                    )
        open_domains = [
            d
            for d in self.plan.domains.values()
            if d.fallback and f"@{d.name}" not in self.plan.address_rules
        ]
        for pl in self.plan.logins:
            box = self.plan.mailboxes[pl.mailbox]
            in_spool = _real(box.path.rstrip("/")) == _real(posixpath.join(self.spool, pl.mailbox))
            source, line = self.login_lines.get((pl.user, pl.domain), (self.paths.teapop_passwd, 0))
            if pl.mailbox not in targeted and not (in_spool and open_domains):
                self.note(
                    source,
                    line,
                    "warning",
                    f"drift: login {pl.address} reads {box.path}, but no address delivers there",
                )
            hosted = snap.domains.get(pl.domain)
            if hosted is None or not hosted.fallback:
                continue
            resolution = resolve_recipient(Address(pl.user, pl.domain), snap)
            decision = resolution.decision
            if isinstance(decision, Deliver) and decision.mailbox == pl.mailbox:
                continue
            if isinstance(decision, Deliver):
                where = self.plan.mailboxes[decision.mailbox].path
            elif isinstance(decision, Forward):
                where = f"{decision.address} (forwarded)"
            elif isinstance(decision, Reject):
                where = f"a rejection ({decision.code} {decision.enhanced})"
            else:
                where = "another server"
            rule = resolution.rule
            by = (
                f"by {self.vut_path}:{self.vut_lines[rule]} ({rule})"
                if rule in self.vut_lines
                else "by sendmail's local-user rule"
            )
            self.note(
                source,
                line,
                "warning",
                f"drift: mail to {pl.address} goes to {where} {by}, but the login "
                f"{pl.address} reads {box.path}",
            )


def _real(path: str) -> str:
    """The path with symlinks resolved (/var/spool/mail -> /var/mail on Debian), so two
    spellings of one spool file make one mailbox."""
    return os.path.realpath(path)
