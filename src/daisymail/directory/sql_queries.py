"""Queries the SQL directory runs: the whole snapshot, and the checks its writes make."""

from __future__ import annotations

from types import MappingProxyType

import sqlalchemy as sa

from daisymail.directory.base import NotFound
from daisymail.directory.model import Domain, Login, Mailbox, RelayRule, Snapshot
from daisymail.directory.sql_schema import (
    address_rules,
    domains,
    logins,
    mailboxes,
    relay_rules,
    sender_rules,
)


def read_snapshot(conn: sa.Connection) -> Snapshot:
    return Snapshot(
        domains=MappingProxyType(
            {
                r.name: Domain(
                    name=r.name,
                    fallback=r.fallback,
                    login_case_sensitive=r.login_case_sensitive,
                    generics=r.generics,
                    origin=r.origin,
                )
                for r in conn.execute(sa.select(domains))
            }
        ),
        mailboxes=MappingProxyType(
            {
                r.name: Mailbox(name=r.name, format=r.format, path=r.path)
                for r in conn.execute(sa.select(mailboxes))
            }
        ),
        address_rules=MappingProxyType(
            {r.pattern: r.target for r in conn.execute(sa.select(address_rules))}
        ),
        sender_rules=MappingProxyType(
            {r.pattern: r.target for r in conn.execute(sa.select(sender_rules))}
        ),
        relay_rules=tuple(
            RelayRule(pattern=r.pattern, kind=r.kind)
            for r in conn.execute(sa.select(relay_rules).order_by(relay_rules.c.pattern))
        ),
        logins=tuple(
            Login(user=r.user, domain=r.domain, password_hash=r.password_hash, mailbox=r.mailbox)
            for r in conn.execute(sa.select(logins).order_by(logins.c.domain, logins.c.user))
        ),
    )


def exists(conn: sa.Connection, where: sa.ColumnElement[bool]) -> bool:
    return count(conn, where) > 0


def count(conn: sa.Connection, where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).where(where)).scalar_one())


def case_sensitive(conn: sa.Connection, domain: str, *, must_exist: bool = True) -> bool:
    """The domain's login case rule; the domainless ("") logins are case-sensitive."""
    if domain == "":
        return True
    value = conn.execute(
        sa.select(domains.c.login_case_sensitive).where(domains.c.name == domain)
    ).scalar()
    if value is None:
        if must_exist:
            raise NotFound(f"no such domain: {domain}")
        return True
    return bool(value)


def same_folded(conn: sa.Connection, user: str, domain: str) -> list[str]:
    """Stored users of the domain equal to user ignoring case, exact match first."""
    found = conn.execute(
        sa.select(logins.c.user)
        .where(logins.c.domain == domain, logins.c.user_lower == user.lower())
        .order_by(logins.c.user)
    ).scalars()
    return sorted(found, key=lambda u: u != user)


def case_clashes(conn: sa.Connection, domain: str) -> list[str]:
    folded = (
        sa.select(logins.c.user_lower)
        .where(logins.c.domain == domain)
        .group_by(logins.c.user_lower)
        .having(sa.func.count() > 1)
    )
    return list(
        conn.execute(
            sa.select(logins.c.user)
            .where(logins.c.domain == domain, logins.c.user_lower.in_(folded))
            .order_by(logins.c.user)
        ).scalars()
    )


def targets_mailbox(target: str, mailbox: str) -> bool:
    """Does an address-rule right-hand side deliver to this local mailbox (``bob``, ``bob+%1``)?"""
    if "@" in target or target.lower().startswith("error:"):
        return False
    return target.split("+", 1)[0].lower() == mailbox
