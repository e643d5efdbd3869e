"""The SQL directory: SQLite by default, PostgreSQL for several nodes, one schema for both.

Servers read an immutable in-memory Snapshot; it is re-read only when the ``generation``
counter in ``meta`` changed, checked at most every ``refresh_interval`` seconds, so a write
by another process (the CLI) reaches a running server within that interval. A server
calls refresh_in_background(): from then on snapshot() never touches the database (it is
called on the event loop, per command) and poll(), run in a worker thread a few times a
second, does the generation check and the reload, so a slow database stalls no session.

Every write transaction first bumps ``generation``. That one row update also serializes
writers (a row lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so the checks a write
makes before inserting (duplicates, case rules, references) cannot race another writer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from daisymail.directory import migrations
from daisymail.directory import sql_names as names
from daisymail.directory import sql_queries as q
from daisymail.directory.base import Conflict, Directory, DirectoryError, NotFound
from daisymail.directory.model import (
    AddressRule,
    Domain,
    Login,
    Mailbox,
    RelayRule,
    SenderRule,
    Snapshot,
)
from daisymail.directory.sql_engine import one_line, open_engine, safe_url
from daisymail.directory.sql_schema import (
    address_rules,
    domains,
    logins,
    mailboxes,
    meta,
    relay_rules,
    sender_rules,
)

log = logging.getLogger(__name__)


class SqlDirectory(Directory):
    """A Directory in an SQLite file or a PostgreSQL database.

    ``create=True`` makes the SQLite file (and its folder) if missing; either way the
    schema is brought to the current version. Without it a missing SQLite file is an error.
    """

    def __init__(self, url: str, *, create: bool = False, refresh_interval: float = 1.0) -> None:
        self._engine = open_engine(url, create=create)
        try:
            migrations.upgrade(self._engine)
        except sa.exc.SQLAlchemyError as e:
            self._engine.dispose()
            raise DirectoryError(f"cannot open directory {safe_url(url)}: {one_line(e)}") from e
        except BaseException:
            self._engine.dispose()
            raise
        self._refresh_interval = refresh_interval
        self._lock = threading.Lock()
        self._local = threading.local()
        self._snapshot: Snapshot | None = None
        self._generation: int | None = None
        self._checked = float("-inf")
        self._background = False

    # -- reads ----------------------------------------------------------------------------
    @property
    def poll_interval(self) -> float:
        # A quarter of the interval: one cheap query in a thread, and a CLI write is
        # seen about as soon as when snapshot() itself checked after a quiet second.
        return self._refresh_interval / 4

    def refresh_in_background(self) -> bool:
        """Serve snapshot() from memory from now on; poll() keeps it current."""
        self.snapshot()  # loaded once here, before serving; DirectoryError if it cannot be
        self._background = True
        return True

    def poll(self) -> bool:
        """Re-read if the generation changed (blocking: run it in a worker thread).

        True when a new snapshot is in service."""
        with self._lock:
            before = self._snapshot
            try:
                self._load(force=False)
            except sa.exc.SQLAlchemyError as e:
                log.warning("directory refresh failed, serving the last snapshot: %s", e)
            self._checked = time.monotonic()
            return self._snapshot is not before

    def snapshot(self) -> Snapshot:
        cached = self._snapshot
        if self._background and cached is not None:
            return cached  # no lock: a poll in progress must not block the caller
        with self._lock:
            now = time.monotonic()
            if self._snapshot is not None and now - self._checked < self._refresh_interval:
                return self._snapshot
            try:
                self._load(force=False)
            except sa.exc.SQLAlchemyError as e:
                if self._snapshot is None:
                    raise DirectoryError(f"cannot read directory: {one_line(e)}") from e
                log.warning("directory refresh failed, serving the last snapshot: %s", e)
            self._checked = now
            assert self._snapshot is not None
            return self._snapshot

    def ping(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(sa.select(meta.c.generation)).scalar()

    def refresh(self) -> Snapshot:
        """Re-read everything now, whatever the generation and the interval."""
        with self._lock:
            try:
                self._load(force=True)
            except sa.exc.SQLAlchemyError as e:
                raise DirectoryError(f"cannot read directory: {one_line(e)}") from e
            self._checked = time.monotonic()
            assert self._snapshot is not None
            return self._snapshot

    def _load(self, *, force: bool) -> None:
        with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                generation = conn.execute(sa.select(meta.c.generation)).scalar_one()
                if not force and self._snapshot is not None and generation == self._generation:
                    return
                self._snapshot = q.read_snapshot(conn)
                self._generation = generation

    def close(self) -> None:
        self._engine.dispose()

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Apply the writes made inside atomically, with one generation bump.

        An exception rolls all of them back. Nested use joins the outer transaction.
        """
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{migrations.WRITE_OPTION: True})
                with conn.begin():
                    conn.execute(sa.update(meta).values(generation=meta.c.generation + 1))
                    self._local.conn = conn
                    try:
                        yield
                    finally:
                        self._local.conn = None
        except sa.exc.IntegrityError as e:
            raise Conflict(f"conflicting directory write: {one_line(e)}") from e
        except sa.exc.SQLAlchemyError as e:
            raise DirectoryError(f"directory write failed: {one_line(e)}") from e
        finally:
            self._checked = float("-inf")
        if self._background:
            # Read your own writes: the next snapshot() (an API call right after this
            # one) must see them without waiting for the background poll. The writer
            # is already off the event loop, so the reload costs no session anything.
            self.poll()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.transaction():
            conn: sa.Connection = self._local.conn
            yield conn

    # -- domains ----------------------------------------------------------------------------
    def add_domain(self, domain: Domain) -> None:
        row = names.domain_row(domain)
        with self._write() as conn:
            if q.exists(conn, domains.c.name == row["name"]):
                raise Conflict(f"domain {row['name']} already exists")
            conn.execute(sa.insert(domains).values(row))

    def update_domain(self, domain: Domain) -> None:
        row = names.domain_row(domain)
        name = str(row["name"])
        with self._write() as conn:
            if not q.exists(conn, domains.c.name == name):
                raise NotFound(f"no such domain: {name}")
            if not row["login_case_sensitive"]:
                clashes = q.case_clashes(conn, name)
                if clashes:
                    raise Conflict(
                        f"domain {name} has logins that differ only in case "
                        f"({', '.join(clashes)}); it must stay case-sensitive"
                    )
            conn.execute(sa.update(domains).where(domains.c.name == name).values(row))

    def remove_domain(self, name: str, *, cascade: bool = False) -> None:
        name = names.domain_name(name)
        with self._write() as conn:
            if not q.exists(conn, domains.c.name == name):
                raise NotFound(f"no such domain: {name}")
            in_domain = logins.c.domain == name
            rules = address_rules.c.pattern.endswith("@" + name, autoescape=True)
            if not cascade:
                n_logins = q.count(conn, in_domain)
                n_rules = q.count(conn, rules)
                if n_logins or n_rules:
                    raise Conflict(
                        f"domain {name} still has "
                        f"{_and(_plural(n_logins, 'login'), _plural(n_rules, 'address rule'))}"
                        "; remove them first or cascade"
                    )
            conn.execute(sa.delete(logins).where(in_domain))
            conn.execute(sa.delete(address_rules).where(rules))
            conn.execute(sa.delete(domains).where(domains.c.name == name))

    # -- mailboxes --------------------------------------------------------------------------
    def add_mailbox(self, mailbox: Mailbox) -> None:
        name = names.checked_mailbox(mailbox)
        with self._write() as conn:
            if q.exists(conn, mailboxes.c.name == name):
                raise Conflict(f"mailbox {name} already exists")
            conn.execute(
                sa.insert(mailboxes).values(name=name, format=mailbox.format, path=mailbox.path)
            )

    def update_mailbox(self, mailbox: Mailbox) -> None:
        name = names.checked_mailbox(mailbox)
        with self._write() as conn:
            if not q.exists(conn, mailboxes.c.name == name):
                raise NotFound(f"no such mailbox: {name}")
            conn.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.name == name)
                .values(format=mailbox.format, path=mailbox.path)
            )

    def remove_mailbox(self, name: str, *, cascade: bool = False) -> None:
        name = names.mailbox_name(name)
        with self._write() as conn:
            if not q.exists(conn, mailboxes.c.name == name):
                raise NotFound(f"no such mailbox: {name}")
            of_mailbox = logins.c.mailbox == name
            rules = [
                pattern
                for pattern, target in conn.execute(
                    sa.select(address_rules.c.pattern, address_rules.c.target)
                )
                if q.targets_mailbox(target, name)
            ]
            if not cascade:
                n_logins = q.count(conn, of_mailbox)
                if n_logins or rules:
                    raise Conflict(
                        f"mailbox {name} is still used by "
                        f"{_and(_plural(n_logins, 'login'), _plural(len(rules), 'address rule'))}"
                        "; remove them first or cascade"
                    )
            conn.execute(sa.delete(logins).where(of_mailbox))
            if rules:
                conn.execute(sa.delete(address_rules).where(address_rules.c.pattern.in_(rules)))
            conn.execute(sa.delete(mailboxes).where(mailboxes.c.name == name))

    # -- rule maps --------------------------------------------------------------------------
    def add_address_rule(self, rule: AddressRule) -> None:
        pattern = names.address_pattern(rule.pattern)
        names.check_text("address rule target", rule.target)
        self._add_rule(address_rules, "address rule", pattern, target=rule.target)

    def remove_address_rule(self, pattern: str) -> None:
        self._remove_rule(address_rules, "address rule", names.address_pattern(pattern))

    def add_sender_rule(self, rule: SenderRule) -> None:
        pattern = names.sender_pattern(rule.pattern)
        names.check_token("sender rule target", rule.target)
        self._add_rule(sender_rules, "sender rule", pattern, target=rule.target)

    def remove_sender_rule(self, pattern: str) -> None:
        self._remove_rule(sender_rules, "sender rule", names.sender_pattern(pattern))

    def add_relay_rule(self, rule: RelayRule) -> None:
        if rule.kind == "network":
            pattern = names.network(rule.pattern)
        elif rule.kind == "domain":
            if names.parse_network(rule.pattern) is not None:
                raise DirectoryError(f"relay domain must be a name, not an address: {rule.pattern}")
            pattern = names.domain_name(rule.pattern)
        else:
            raise DirectoryError(f"relay rule kind must be domain or network, not {rule.kind!r}")
        self._add_rule(relay_rules, "relay rule", pattern, kind=rule.kind)

    def remove_relay_rule(self, pattern: str) -> None:
        network = names.parse_network(pattern)
        key = str(network) if network is not None else pattern.strip().lower().rstrip(".")
        self._remove_rule(relay_rules, "relay rule", key)

    def _add_rule(self, table: sa.Table, what: str, pattern: str, **values: str) -> None:
        with self._write() as conn:
            if q.exists(conn, table.c.pattern == pattern):
                raise Conflict(f"{what} {pattern} already exists")
            conn.execute(sa.insert(table).values(pattern=pattern, **values))

    def _remove_rule(self, table: sa.Table, what: str, pattern: str) -> None:
        with self._write() as conn:
            if conn.execute(sa.delete(table).where(table.c.pattern == pattern)).rowcount == 0:
                raise NotFound(f"no such {what}: {pattern}")

    # -- logins -----------------------------------------------------------------------------
    def add_login(self, login: Login) -> None:
        user = names.login_user(login.user)
        domain = names.login_domain(login.domain)
        mailbox = names.mailbox_name(login.mailbox)
        names.check_text("password hash", login.password_hash, allow_empty=True)
        with self._write() as conn:
            sensitive = q.case_sensitive(conn, domain)
            if not q.exists(conn, mailboxes.c.name == mailbox):
                raise NotFound(f"no such mailbox: {mailbox}")
            for other in q.same_folded(conn, user, domain):
                if other == user:
                    raise Conflict(f"login {_address(user, domain)} already exists")
                if not sensitive:
                    raise Conflict(
                        f"login {_address(other, domain)} already exists "
                        f"and {domain} logins are case-insensitive"
                    )
            conn.execute(
                sa.insert(logins).values(
                    domain=domain,
                    user=user,
                    user_lower=user.lower(),
                    password_hash=login.password_hash,
                    mailbox=mailbox,
                )
            )

    def set_password(self, user: str, domain: str, password_hash: str) -> None:
        names.check_text("password hash", password_hash, allow_empty=True)
        domain = domain.lower()
        with self._write() as conn:
            stored = self._lookup_login(conn, user, domain)
            conn.execute(
                sa.update(logins)
                .where(logins.c.domain == domain, logins.c.user == stored)
                .values(password_hash=password_hash)
            )

    def remove_login(self, user: str, domain: str) -> None:
        domain = domain.lower()
        with self._write() as conn:
            stored = self._lookup_login(conn, user, domain)
            conn.execute(
                sa.delete(logins).where(logins.c.domain == domain, logins.c.user == stored)
            )

    @staticmethod
    def _lookup_login(conn: sa.Connection, user: str, domain: str) -> str:
        """The stored user name a login name refers to, by the domain's case rule."""
        candidates = q.same_folded(conn, user, domain)
        if user in candidates:
            return user
        if candidates and not q.case_sensitive(conn, domain, must_exist=False):
            return candidates[0]
        raise NotFound(f"no such login: {_address(user, domain)}")


def _address(user: str, domain: str) -> str:
    return f"{user}@{domain}" if domain else user


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}" if n else ""


def _and(*parts: str) -> str:
    return " and ".join(p for p in parts if p)
