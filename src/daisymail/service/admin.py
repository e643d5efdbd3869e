"""Directory admin operations: domains, mailboxes, users, aliases, sender and relay rules.

Callers parse their input (argv, JSON) and print or serialize the result; every check
and every write lives here, so the CLI and the API accept and refuse the same things.
Passwords are only ever set: nothing here returns a hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

from daisymail.directory.base import Directory
from daisymail.directory.model import (
    AddressRule,
    Domain,
    Login,
    Mailbox,
    MailboxFormat,
    RelayRule,
    SenderRule,
    Snapshot,
)
from daisymail.routing.addresses import AddressError, parse_path
from daisymail.routing.relay import relay_rule_from_admin_entry
from daisymail.service.errors import ServiceError, conflict, directory_errors, invalid, not_found


def hash_password(password: str) -> str:
    """argon2, passlib and libsodium load only for the operations that hash a password."""
    from daisymail.directory.passwords import hash_password as hash_

    return hash_(password)


_MAILBOX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FORMATS = ("maildir", "mbox")


@dataclass
class Admin:
    """The operations over one directory; ``default_format`` is [storage] default_format."""

    directory: Directory
    default_format: str = "maildir"

    def snapshot(self) -> Snapshot:
        return self.directory.snapshot()

    # -- domains --------------------------------------------------------------------------
    def list_domains(self, name: str | None = None) -> list[Domain]:
        doms = sorted(self.snapshot().domains.values(), key=lambda d: d.name)
        if name:
            doms = [d for d in doms if d.name == name.lower()]
            if not doms:
                raise not_found(f"no such domain: {name.lower()}", "name")
        return doms

    def add_domain(
        self, name: str, fallback: bool | None = None, login_case: str | None = None
    ) -> Domain:
        name = check_domain_name(name)
        _check_login_case(login_case)
        dom = Domain(
            name=name, fallback=bool(fallback), login_case_sensitive=login_case == "sensitive"
        )
        with directory_errors("name"):
            self.directory.add_domain(dom)
        return dom

    def update_domain(
        self, name: str, fallback: bool | None = None, login_case: str | None = None
    ) -> Domain:
        _check_login_case(login_case)
        current = self.snapshot().domains.get(name.lower())
        if current is None:
            raise not_found(f"no such domain: {name.lower()}", "name")
        if fallback is None and login_case is None:
            raise invalid("nothing to change: give --fallback/--strict or --login-case", "fallback")
        updated = Domain(
            name=current.name,
            fallback=current.fallback if fallback is None else fallback,
            login_case_sensitive=current.login_case_sensitive
            if login_case is None
            else login_case == "sensitive",
            generics=current.generics,
            origin=current.origin,
        )
        with directory_errors("name"):
            self.directory.update_domain(updated)
        return updated

    def remove_domain(self, name: str) -> None:
        with directory_errors("name"):
            self.directory.remove_domain(name.lower())

    # -- mailboxes ------------------------------------------------------------------------
    def list_mailboxes(self, name: str | None = None) -> list[Mailbox]:
        boxes = sorted(self.snapshot().mailboxes.values(), key=lambda m: m.name)
        if name:
            boxes = [b for b in boxes if b.name == name.lower()]
            if not boxes:
                raise not_found(f"no such mailbox: {name.lower()}", "name")
        return boxes

    def add_mailbox(self, name: str, fmt: str | None = None, path: str = "") -> Mailbox:
        name = check_mailbox_name(name)
        chosen = fmt or self.default_format
        if chosen not in FORMATS:
            raise invalid(f"bad format {chosen!r}: expected maildir or mbox", "format")
        if "\0" in path or "\n" in path:
            raise invalid("bad path: control characters", "path")
        box = Mailbox(name=name, format=cast(MailboxFormat, chosen), path=path)
        with directory_errors("name"):
            self.directory.add_mailbox(box)
        return box

    def remove_mailbox(self, name: str) -> None:
        with directory_errors("name"):
            self.directory.remove_mailbox(name.lower())

    # -- users ----------------------------------------------------------------------------
    def list_users(self, domain: str | None = None) -> list[dict[str, str]]:
        logins = sorted(self.snapshot().logins, key=lambda x: (x.domain, x.user))
        if domain:
            logins = [x for x in logins if x.domain == domain.lower()]
        return [{"address": x.address, "mailbox": x.mailbox} for x in logins]

    def check_new_user(self, address: str, mailbox: str | None = None) -> tuple[str, str, str]:
        """(user, domain, mailbox) of a user that may be added, else a ServiceError."""
        local, dom = split_address(address)
        snap = self.snapshot()
        require_domain(snap, dom, "address")
        name = check_mailbox_name(mailbox or default_mailbox_name(local, dom), "mailbox")
        if snap.find_login(local, dom) is not None:
            raise conflict(f"user {local}@{dom} already exists", "address")
        pattern = f"{local}@{dom}".lower()
        existing_rule = snap.address_rules.get(pattern)
        if existing_rule is not None and existing_rule.lower() != name:
            raise conflict(
                f"address {pattern} already routes to {existing_rule!r}; remove that alias first",
                "address",
            )
        return local, dom, name

    def add_user(self, address: str, password: str, mailbox: str | None = None) -> Login:
        """A login, its address rule and (if missing) its mailbox, all or nothing."""
        local, dom, name = self.check_new_user(address, mailbox)
        check_password(password)
        d = self.directory
        snap = d.snapshot()
        pattern = f"{local}@{dom}".lower()
        existing_rule = snap.address_rules.get(pattern)
        login = Login(user=local, domain=dom, password_hash=hash_password(password), mailbox=name)
        with directory_errors("address"), d.transaction():
            if name not in snap.mailboxes:
                fmt = cast(MailboxFormat, self.default_format)
                d.add_mailbox(Mailbox(name=name, format=fmt))
            d.add_login(login)
            if existing_rule is None:
                d.add_address_rule(AddressRule(pattern=pattern, target=name))
        return login

    def find_user(self, address: str) -> Login:
        local, dom = split_address(address)
        login = self.snapshot().find_login(local, dom)
        if login is None:
            raise not_found(f"no such user: {local}@{dom}", "address")
        return login

    def set_password(self, address: str, password: str) -> Login:
        login = self.find_user(address)
        check_password(password)
        with directory_errors("address"):
            self.directory.set_password(login.user, login.domain, hash_password(password))
        return login

    def remove_user(self, address: str) -> Login:
        """The login and its address rule go; the mailbox (and its mail) stays."""
        login = self.find_user(address)
        snap = self.snapshot()
        pattern = f"{login.user}@{login.domain}".lower()
        with directory_errors("address"), self.directory.transaction():
            self.directory.remove_login(login.user, login.domain)
            if snap.address_rules.get(pattern, "").lower() == login.mailbox:
                self.directory.remove_address_rule(pattern)
        return login

    # -- aliases --------------------------------------------------------------------------
    def list_aliases(self, domain: str | None = None) -> list[dict[str, str]]:
        rules = sorted(self.snapshot().address_rules.items())
        if domain:
            rules = [(p, t) for p, t in rules if p.rsplit("@", 1)[-1] == domain.lower()]
        return [{"pattern": p, "target": t} for p, t in rules]

    def add_alias(self, pattern: str, target: str, create_mailbox: bool = False) -> AddressRule:
        d = self.directory
        snap = d.snapshot()
        dom = check_pattern(pattern)
        require_domain(snap, dom, "pattern")
        if not target.strip():
            raise invalid("empty target", "target")
        if any(c in target for c in "\r\n\0"):
            raise invalid("bad target: control characters", "target")
        is_mailbox = not target.startswith("error:") and "@" not in target and "%" not in target
        rule = AddressRule(pattern=pattern.lower(), target=target)
        with directory_errors("pattern"), d.transaction():
            if is_mailbox:
                base = target.split("+", 1)[0].lower()
                if base not in snap.mailboxes:
                    if not create_mailbox:
                        raise not_found(
                            f"no such mailbox: {base} (use --create-mailbox to create it)",
                            "target",
                        )
                    name = check_mailbox_name(base, "target")
                    fmt = cast(MailboxFormat, self.default_format)
                    d.add_mailbox(Mailbox(name=name, format=fmt))
            d.add_address_rule(rule)
        return rule

    def remove_alias(self, pattern: str) -> None:
        with directory_errors("pattern"):
            self.directory.remove_address_rule(pattern.lower())

    # -- sender rules ---------------------------------------------------------------------
    def list_senders(self) -> list[dict[str, str]]:
        return [
            {"pattern": p, "target": t} for p, t in sorted(self.snapshot().sender_rules.items())
        ]

    def add_sender(self, pattern: str, target: str) -> SenderRule:
        if not pattern.strip() or any(c.isspace() for c in pattern):
            raise invalid(f"bad sender pattern {pattern!r}", "pattern")
        if not target.strip() or any(c.isspace() for c in target):
            raise invalid(f"bad sender address {target!r}", "target")
        rule = SenderRule(pattern=pattern.lower(), target=target)
        with directory_errors("pattern"):
            self.directory.add_sender_rule(rule)
        return rule

    def remove_sender(self, pattern: str) -> None:
        with directory_errors("pattern"):
            self.directory.remove_sender_rule(pattern.lower())

    # -- relay rules ----------------------------------------------------------------------
    def list_relays(self) -> list[RelayRule]:
        return sorted(self.snapshot().relay_rules, key=lambda r: (r.kind, r.pattern))

    def add_relay(self, entry: str) -> RelayRule:
        rule = relay_rule(entry)
        with directory_errors("entry"):
            self.directory.add_relay_rule(rule)
        return rule

    def remove_relay(self, entry: str) -> RelayRule:
        rule = relay_rule(entry)
        with directory_errors("entry"):
            self.directory.remove_relay_rule(rule.pattern)
        return rule


# -- validation shared by the operations ---------------------------------------------------
def split_address(text: str, field: str = "address") -> tuple[str, str]:
    try:
        addr = parse_path(f"<{text}>", smtputf8=True)
    except AddressError as e:
        raise invalid(f"bad address {text!r}: {e.text}", field) from None
    if addr is None or not addr.domain or not addr.local:
        raise invalid(f"bad address {text!r}: expected user@domain", field)
    return addr.local, addr.domain


def check_domain_name(name: str) -> str:
    name = name.strip().lower()
    if not name or len(name) > 253 or any(c.isspace() or c in '@<>/\\"\0' for c in name):
        raise invalid(f"bad domain {name!r}: expected a domain name", "name")
    return name


def require_domain(snap: Snapshot, domain: str, field: str) -> None:
    if domain not in snap.domains:
        raise ServiceError(
            f"domain {domain} is not hosted here (add it with: daisymail domain add {domain})",
            field,
            "not_found",
        )


def check_mailbox_name(name: str, field: str = "name") -> str:
    name = name.lower()
    if not _MAILBOX_NAME.match(name):
        raise invalid(
            f"bad mailbox name {name!r}: use letters, digits, '.', '_' and '-' (at most 64)", field
        )
    return name


def default_mailbox_name(user: str, domain: str) -> str:
    return re.sub(r"[^a-z0-9._-]", "_", f"{user}.{domain}".lower())[:64]


def check_password(password: str) -> None:
    if not password:
        raise invalid("empty password", "password")
    if any(c in password for c in "\r\n\0"):
        raise invalid("a password cannot hold line breaks or NUL", "password")


def check_pattern(pattern: str) -> str:
    """The domain of an alias pattern; its user part (``user``, ``user+*``, ``user++``,
    ``+*``) must be what an address can hold: ``@@example.test`` never matches."""
    if "@" not in pattern:
        raise invalid(f"bad pattern {pattern!r}: expected user@domain or @domain", "pattern")
    local, _, domain = pattern.rpartition("@")
    if local:
        try:
            addr = parse_path(f"<{local}@{domain}>", smtputf8=True)
        except AddressError as e:
            raise invalid(f"bad pattern {pattern!r}: {e.text}", "pattern") from None
        if addr is None:
            raise invalid(f"bad pattern {pattern!r}: expected user@domain or @domain", "pattern")
    return domain.lower()


def relay_rule(entry: str) -> RelayRule:
    try:
        return relay_rule_from_admin_entry(entry)
    except ValueError as e:
        raise invalid(f"bad relay entry {entry!r}: {e}", "entry") from None


def _check_login_case(login_case: str | None) -> None:
    if login_case not in (None, "sensitive", "insensitive"):
        raise invalid("login_case: expected sensitive or insensitive", "login_case")


def as_dict(obj: Any) -> Any:
    """Plain data for JSON (dataclasses to dicts; never a password hash)."""
    from dataclasses import asdict, is_dataclass

    if isinstance(obj, Login):
        return {"address": obj.address, "mailbox": obj.mailbox}
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, list | tuple):
        return [as_dict(x) for x in obj]
    return obj
