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

import ipaddress
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from daisymail.directory import migrations
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

log = logging.getLogger(__name__)

metadata = sa.MetaData()

domains = sa.Table(
    "domains",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("login_case_sensitive", sa.Boolean, nullable=False),
    sa.Column("generics", sa.Boolean, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
)
mailboxes = sa.Table(
    "mailboxes",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("format", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
)
address_rules = sa.Table(
    "address_rules",
    metadata,
    sa.Column("pattern", sa.Text, primary_key=True),
    sa.Column("target", sa.Text, nullable=False),
)
sender_rules = sa.Table(
    "sender_rules",
    metadata,
    sa.Column("pattern", sa.Text, primary_key=True),
    sa.Column("target", sa.Text, nullable=False),
)
relay_rules = sa.Table(
    "relay_rules",
    metadata,
    sa.Column("pattern", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
)
logins = sa.Table(
    "logins",
    metadata,
    sa.Column("domain", sa.Text, primary_key=True),
    sa.Column("user", sa.Text, primary_key=True),
    # user.lower(), so case-insensitive lookups use an index and agree with Python.
    sa.Column("user_lower", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("mailbox", sa.Text, sa.ForeignKey("mailboxes.name"), nullable=False),
)
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("read_only", sa.Boolean, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)

BUSY_TIMEOUT_MS = 10_000


class SqlDirectory(Directory):
    """A Directory in an SQLite file or a PostgreSQL database.

    ``create=True`` makes the SQLite file (and its folder) if missing; either way the
    schema is brought to the current version. Without it a missing SQLite file is an error.
    """

    def __init__(self, url: str, *, create: bool = False, refresh_interval: float = 1.0) -> None:
        self._engine = _engine(url, create=create)
        try:
            migrations.upgrade(self._engine)
        except sa.exc.SQLAlchemyError as e:
            self._engine.dispose()
            raise DirectoryError(f"cannot open directory {_safe(url)}: {_one_line(e)}") from e
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
                    raise DirectoryError(f"cannot read directory: {_one_line(e)}") from e
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
                raise DirectoryError(f"cannot read directory: {_one_line(e)}") from e
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
                self._snapshot = _read_snapshot(conn)
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
            raise Conflict(f"conflicting directory write: {_one_line(e)}") from e
        except sa.exc.SQLAlchemyError as e:
            raise DirectoryError(f"directory write failed: {_one_line(e)}") from e
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
        row = _domain_row(domain)
        with self._write() as conn:
            if _exists(conn, domains.c.name == row["name"]):
                raise Conflict(f"domain {row['name']} already exists")
            conn.execute(sa.insert(domains).values(row))

    def update_domain(self, domain: Domain) -> None:
        row = _domain_row(domain)
        name = str(row["name"])
        with self._write() as conn:
            if not _exists(conn, domains.c.name == name):
                raise NotFound(f"no such domain: {name}")
            if not row["login_case_sensitive"]:
                clashes = _case_clashes(conn, name)
                if clashes:
                    raise Conflict(
                        f"domain {name} has logins that differ only in case "
                        f"({', '.join(clashes)}); it must stay case-sensitive"
                    )
            conn.execute(sa.update(domains).where(domains.c.name == name).values(row))

    def remove_domain(self, name: str, *, cascade: bool = False) -> None:
        name = _domain_name(name)
        with self._write() as conn:
            if not _exists(conn, domains.c.name == name):
                raise NotFound(f"no such domain: {name}")
            in_domain = logins.c.domain == name
            rules = address_rules.c.pattern.endswith("@" + name, autoescape=True)
            if not cascade:
                n_logins = _count(conn, in_domain)
                n_rules = _count(conn, rules)
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
        name = _checked_mailbox(mailbox)
        with self._write() as conn:
            if _exists(conn, mailboxes.c.name == name):
                raise Conflict(f"mailbox {name} already exists")
            conn.execute(
                sa.insert(mailboxes).values(name=name, format=mailbox.format, path=mailbox.path)
            )

    def update_mailbox(self, mailbox: Mailbox) -> None:
        name = _checked_mailbox(mailbox)
        with self._write() as conn:
            if not _exists(conn, mailboxes.c.name == name):
                raise NotFound(f"no such mailbox: {name}")
            conn.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.name == name)
                .values(format=mailbox.format, path=mailbox.path)
            )

    def remove_mailbox(self, name: str, *, cascade: bool = False) -> None:
        name = _mailbox_name(name)
        with self._write() as conn:
            if not _exists(conn, mailboxes.c.name == name):
                raise NotFound(f"no such mailbox: {name}")
            of_mailbox = logins.c.mailbox == name
            rules = [
                pattern
                for pattern, target in conn.execute(
                    sa.select(address_rules.c.pattern, address_rules.c.target)
                )
                if _targets_mailbox(target, name)
            ]
            if not cascade:
                n_logins = _count(conn, of_mailbox)
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
        pattern = _address_pattern(rule.pattern)
        _check_text("address rule target", rule.target)
        self._add_rule(address_rules, "address rule", pattern, target=rule.target)

    def remove_address_rule(self, pattern: str) -> None:
        self._remove_rule(address_rules, "address rule", _address_pattern(pattern))

    def add_sender_rule(self, rule: SenderRule) -> None:
        pattern = _sender_pattern(rule.pattern)
        _check_token("sender rule target", rule.target)
        self._add_rule(sender_rules, "sender rule", pattern, target=rule.target)

    def remove_sender_rule(self, pattern: str) -> None:
        self._remove_rule(sender_rules, "sender rule", _sender_pattern(pattern))

    def add_relay_rule(self, rule: RelayRule) -> None:
        if rule.kind == "network":
            pattern = _network(rule.pattern)
        elif rule.kind == "domain":
            if _parse_network(rule.pattern) is not None:
                raise DirectoryError(f"relay domain must be a name, not an address: {rule.pattern}")
            pattern = _domain_name(rule.pattern)
        else:
            raise DirectoryError(f"relay rule kind must be domain or network, not {rule.kind!r}")
        self._add_rule(relay_rules, "relay rule", pattern, kind=rule.kind)

    def remove_relay_rule(self, pattern: str) -> None:
        network = _parse_network(pattern)
        key = str(network) if network is not None else pattern.strip().lower().rstrip(".")
        self._remove_rule(relay_rules, "relay rule", key)

    def _add_rule(self, table: sa.Table, what: str, pattern: str, **values: str) -> None:
        with self._write() as conn:
            if _exists(conn, table.c.pattern == pattern):
                raise Conflict(f"{what} {pattern} already exists")
            conn.execute(sa.insert(table).values(pattern=pattern, **values))

    def _remove_rule(self, table: sa.Table, what: str, pattern: str) -> None:
        with self._write() as conn:
            if conn.execute(sa.delete(table).where(table.c.pattern == pattern)).rowcount == 0:
                raise NotFound(f"no such {what}: {pattern}")

    # -- logins -----------------------------------------------------------------------------
    def add_login(self, login: Login) -> None:
        user = _login_user(login.user)
        domain = _login_domain(login.domain)
        mailbox = _mailbox_name(login.mailbox)
        _check_text("password hash", login.password_hash, allow_empty=True)
        with self._write() as conn:
            sensitive = _case_sensitive(conn, domain)
            if not _exists(conn, mailboxes.c.name == mailbox):
                raise NotFound(f"no such mailbox: {mailbox}")
            for other in _same_folded(conn, user, domain):
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
        _check_text("password hash", password_hash, allow_empty=True)
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
        candidates = _same_folded(conn, user, domain)
        if user in candidates:
            return user
        if candidates and not _case_sensitive(conn, domain, must_exist=False):
            return candidates[0]
        raise NotFound(f"no such login: {_address(user, domain)}")


# -- engine -------------------------------------------------------------------------------


def _engine(url: str, *, create: bool) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as e:
        raise DirectoryError(f"bad directory URL {url!r}") from e
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    if backend != "sqlite":
        raise DirectoryError(f"unsupported directory URL {_safe(url)}: use sqlite or postgresql")
    path = parsed.database
    if not path or path == ":memory:" or path.startswith("file:"):
        raise DirectoryError(f"an SQLite directory needs a file path: {url}")
    file = Path(path)
    if create:
        file.parent.mkdir(parents=True, exist_ok=True)
        # Password hashes live here: never world-readable, whatever the umask.
        os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o660))
    elif not file.exists():
        raise DirectoryError(f"directory database {file} does not exist")
    engine = sa.create_engine(parsed)
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Transactions are begun explicitly in _sqlite_begin, not by the driver.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Switching a new file to WAL needs a lock that SQLite does not wait for with the
    # busy timeout: several processes opening a fresh directory at once can get
    # "database is locked" here. Retry for up to the busy timeout.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout) instead of
    # failing with SQLITE_BUSY when a read transaction later tries to write.
    write = conn.get_execution_options().get(migrations.WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _safe(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<bad url>"


def _one_line(e: Exception) -> str:
    text = str(getattr(e, "orig", None) or e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


# -- reading --------------------------------------------------------------------------------


def _read_snapshot(conn: sa.Connection) -> Snapshot:
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


def _exists(conn: sa.Connection, where: sa.ColumnElement[bool]) -> bool:
    return _count(conn, where) > 0


def _count(conn: sa.Connection, where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).where(where)).scalar_one())


def _case_sensitive(conn: sa.Connection, domain: str, *, must_exist: bool = True) -> bool:
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


def _same_folded(conn: sa.Connection, user: str, domain: str) -> list[str]:
    """Stored users of the domain equal to user ignoring case, exact match first."""
    found = conn.execute(
        sa.select(logins.c.user)
        .where(logins.c.domain == domain, logins.c.user_lower == user.lower())
        .order_by(logins.c.user)
    ).scalars()
    return sorted(found, key=lambda u: u != user)


def _case_clashes(conn: sa.Connection, domain: str) -> list[str]:
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


def _targets_mailbox(target: str, mailbox: str) -> bool:
    """Does an address-rule right-hand side deliver to this local mailbox (``bob``, ``bob+%1``)?"""
    if "@" in target or target.lower().startswith("error:"):
        return False
    return target.split("+", 1)[0].lower() == mailbox


# -- validation -----------------------------------------------------------------------------

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f]")


def _domain_name(name: str) -> str:
    folded = name.strip().lower().rstrip(".")
    if len(folded) > 253 or not _DOMAIN_RE.fullmatch(folded):
        raise DirectoryError(f"not a valid domain name: {name!r} (use the xn-- form for IDN)")
    return folded


def _domain_row(domain: Domain) -> dict[str, object]:
    if domain.origin not in ("native", "legacy"):
        raise DirectoryError(f"domain origin must be native or legacy, not {domain.origin!r}")
    return {
        "name": _domain_name(domain.name),
        "fallback": bool(domain.fallback),
        "login_case_sensitive": bool(domain.login_case_sensitive),
        "generics": bool(domain.generics),
        "origin": domain.origin,
    }


def _checked_mailbox(mailbox: Mailbox) -> str:
    if mailbox.format not in ("maildir", "mbox"):
        raise DirectoryError(f"mailbox format must be maildir or mbox, not {mailbox.format!r}")
    _check_text("mailbox path", mailbox.path, allow_empty=True)
    return _mailbox_name(mailbox.name)


def _mailbox_name(name: str) -> str:
    folded = name.strip().lower()
    bad = not folded or folded in (".", "..") or any(c in folded for c in "@/")
    if bad or _SPACE_RE.search(folded):
        raise DirectoryError(f"not a valid mailbox name: {name!r}")
    return folded


def _login_user(user: str) -> str:
    if not user or _SPACE_RE.search(user) or any(c in user for c in "@%"):
        raise DirectoryError(f"not a valid login user name: {user!r}")
    return user


def _login_domain(domain: str) -> str:
    return "" if domain == "" else _domain_name(domain)


def _address_pattern(pattern: str) -> str:
    folded = pattern.strip().lower()
    local, at, domain = folded.rpartition("@")
    if not at or _SPACE_RE.search(local):
        raise DirectoryError(f"address rule needs user@domain, +*@domain or @domain: {pattern!r}")
    return f"{local}@{_domain_name(domain)}"


def _sender_pattern(pattern: str) -> str:
    folded = pattern.strip().lower()
    _check_token("sender rule", folded)
    local, at, domain = folded.rpartition("@")
    return f"{local}@{_domain_name(domain)}" if at else folded


def _parse_network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(pattern.strip(), strict=False)
    except ValueError:
        return None


def _network(pattern: str) -> str:
    network = _parse_network(pattern)
    if network is None:
        raise DirectoryError(f"not an IP network: {pattern!r} (use CIDR, like 192.168.5.0/24)")
    return str(network)


def _check_text(what: str, value: str, *, allow_empty: bool = False) -> None:
    if (not value and not allow_empty) or _CONTROL_RE.search(value):
        raise DirectoryError(f"not a valid {what}: {value!r}")


def _check_token(what: str, value: str) -> None:
    if not value or _SPACE_RE.search(value):
        raise DirectoryError(f"not a valid {what}: {value!r}")


def _address(user: str, domain: str) -> str:
    return f"{user}@{domain}" if domain else user


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}" if n else ""


def _and(*parts: str) -> str:
    return " and ".join(p for p in parts if p)
