"""Plain data for the directory: what the servers, routing and admin commands share.

Keys follow sendmail/teapop: address-rule and sender-rule keys are stored lowercased
(makemap folds keys), values verbatim. Mailbox names are lowercased (sendmail's local
mailer folds user names). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

MailboxFormat = Literal["maildir", "mbox"]
RelayKind = Literal["domain", "network"]
Origin = Literal["native", "legacy"]


@dataclass(frozen=True)
class Domain:
    """A hosted (local) domain, sendmail's class w.

    fallback: the sendmail rule "any mailbox name is reachable at this domain unless it
      has an @domain catch-all" (legacy); False means strict: only listed addresses exist.
    login_case_sensitive: POP3/SMTP-AUTH user names compared case-sensitively (teapop).
    generics: senders in this domain qualify for genericstable rewriting (class G).
    """

    name: str
    fallback: bool = False
    login_case_sensitive: bool = False
    generics: bool = True
    origin: Origin = "native"


@dataclass(frozen=True)
class Mailbox:
    """A local mailbox ("local user"). path is absolute or relative to the mail dir."""

    name: str
    format: MailboxFormat = "maildir"
    path: str = ""


@dataclass(frozen=True)
class AddressRule:
    """One virtusertable entry: key (``user@dom``, ``user+*@dom``, ``user++@dom``,
    ``+*@dom``, ``++@dom``, ``@dom``) to a right-hand side kept verbatim: a mailbox name,
    an address, or ``error:...``."""

    pattern: str
    target: str


@dataclass(frozen=True)
class SenderRule:
    """One genericstable entry: ``user``, ``user@dom`` or ``@dom`` to the public address."""

    pattern: str
    target: str


@dataclass(frozen=True)
class RelayRule:
    """Who may relay without authentication.

    kind "domain": recipient domains (and their subdomains unless hosts_only), as
      relay-domains names and access ``To:`` entries;
    kind "network": client addresses, a CIDR network (``192.168.5.0/24``).
    """

    pattern: str
    kind: RelayKind


@dataclass(frozen=True)
class Login:
    """A POP3 / SMTP AUTH account: ``user@domain`` with a password hash and its mailbox.

    domain is lowercased; user is kept as written (case rules come from the Domain).
    domain "" is the teapop ``empty`` entry (logins without a domain).
    """

    user: str
    domain: str
    password_hash: str
    mailbox: str

    @property
    def address(self) -> str:
        return f"{self.user}@{self.domain}" if self.domain else self.user


@dataclass(frozen=True)
class Snapshot:
    """Everything routing and login decisions read, as one consistent immutable view."""

    domains: Mapping[str, Domain] = field(default_factory=dict)
    mailboxes: Mapping[str, Mailbox] = field(default_factory=dict)
    address_rules: Mapping[str, str] = field(default_factory=dict)
    sender_rules: Mapping[str, str] = field(default_factory=dict)
    relay_rules: Sequence[RelayRule] = ()
    logins: Sequence[Login] = ()

    def is_local_domain(self, name: str) -> bool:
        return name.lower().rstrip(".") in self.domains

    def find_login(self, user: str, domain: str) -> Login | None:
        """Find the account for a login name already split into user and domain."""
        domain = domain.lower()
        dom = self.domains.get(domain)
        sensitive = dom.login_case_sensitive if dom is not None else True
        for login in self.logins:
            if login.domain != domain:
                continue
            if login.user == user or (not sensitive and login.user.lower() == user.lower()):
                return login
        return None
