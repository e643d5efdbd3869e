"""What the directory accepts as names, patterns and networks: pure checks, one place.

Each returns the canonical (folded) form it stores, or raises DirectoryError with the
text an admin sees."""

from __future__ import annotations

import ipaddress
import re

from daisymail.directory.base import DirectoryError
from daisymail.directory.model import Domain, Mailbox

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f]")


def domain_name(name: str) -> str:
    folded = name.strip().lower().rstrip(".")
    if len(folded) > 253 or not _DOMAIN_RE.fullmatch(folded):
        raise DirectoryError(f"not a valid domain name: {name!r} (use the xn-- form for IDN)")
    return folded


def domain_row(domain: Domain) -> dict[str, object]:
    if domain.origin not in ("native", "legacy"):
        raise DirectoryError(f"domain origin must be native or legacy, not {domain.origin!r}")
    return {
        "name": domain_name(domain.name),
        "fallback": bool(domain.fallback),
        "login_case_sensitive": bool(domain.login_case_sensitive),
        "generics": bool(domain.generics),
        "origin": domain.origin,
    }


def checked_mailbox(mailbox: Mailbox) -> str:
    if mailbox.format not in ("maildir", "mbox"):
        raise DirectoryError(f"mailbox format must be maildir or mbox, not {mailbox.format!r}")
    check_text("mailbox path", mailbox.path, allow_empty=True)
    return mailbox_name(mailbox.name)


def mailbox_name(name: str) -> str:
    folded = name.strip().lower()
    bad = not folded or folded in (".", "..") or any(c in folded for c in "@/")
    if bad or _SPACE_RE.search(folded):
        raise DirectoryError(f"not a valid mailbox name: {name!r}")
    return folded


def login_user(user: str) -> str:
    if not user or _SPACE_RE.search(user) or any(c in user for c in "@%"):
        raise DirectoryError(f"not a valid login user name: {user!r}")
    return user


def login_domain(domain: str) -> str:
    return "" if domain == "" else domain_name(domain)


def address_pattern(pattern: str) -> str:
    folded = pattern.strip().lower()
    local, at, domain = folded.rpartition("@")
    if not at or _SPACE_RE.search(local):
        raise DirectoryError(f"address rule needs user@domain, +*@domain or @domain: {pattern!r}")
    return f"{local}@{domain_name(domain)}"


def sender_pattern(pattern: str) -> str:
    folded = pattern.strip().lower()
    check_token("sender rule", folded)
    local, at, domain = folded.rpartition("@")
    return f"{local}@{domain_name(domain)}" if at else folded


def parse_network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(pattern.strip(), strict=False)
    except ValueError:
        return None


def network(pattern: str) -> str:
    network = parse_network(pattern)
    if network is None:
        raise DirectoryError(f"not an IP network: {pattern!r} (use CIDR, like 192.168.5.0/24)")
    return str(network)


def check_text(what: str, value: str, *, allow_empty: bool = False) -> None:
    if (not value and not allow_empty) or _CONTROL_RE.search(value):
        raise DirectoryError(f"not a valid {what}: {value!r}")


def check_token(what: str, value: str) -> None:
    if not value or _SPACE_RE.search(value):
        raise DirectoryError(f"not a valid {what}: {value!r}")
