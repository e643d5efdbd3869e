"""The SQL directory against real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daisymail.directory import migrations
from daisymail.directory.base import Conflict, DirectoryError, NotFound
from daisymail.directory.model import (
    AddressRule,
    Domain,
    Login,
    Mailbox,
    RelayRule,
    SenderRule,
)
from daisymail.directory.sql import SqlDirectory
from daisymail.directory.sql_schema import metadata
from tests.integration.conftest_sql import postgres_url, sqlite_url


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with postgres_url() as pg:
            yield pg


@pytest.fixture
def directory(url: str) -> Iterator[SqlDirectory]:
    d = SqlDirectory(url, create=True, refresh_interval=0)
    yield d
    d.close()


@pytest.fixture
def other(directory: SqlDirectory, url: str) -> Iterator[SqlDirectory]:
    """A second handle on the same database, as the CLI would open it."""
    d = SqlDirectory(url, refresh_interval=0)
    yield d
    d.close()


def populate(d: SqlDirectory) -> None:
    d.add_domain(Domain("example.org"))
    d.add_domain(Domain("legacy.test", fallback=True, login_case_sensitive=True, origin="legacy"))
    d.add_mailbox(Mailbox("bob"))
    d.add_mailbox(Mailbox("johnacme", format="mbox", path="/var/spool/mail/johnacme"))


def generation(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT generation FROM meta")).scalar_one())
    finally:
        engine.dispose()


def schema_version(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT version FROM schema_version")).scalar_one())
    finally:
        engine.dispose()


# -- opening and migrations ----------------------------------------------------------------


def test_fresh_database_has_the_declared_schema(directory: SqlDirectory, url: str) -> None:
    assert schema_version(url) == len(migrations.STEPS)
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        assert tables == set(metadata.tables) | {"schema_version"}
        for name, table in metadata.tables.items():
            columns = {c["name"]: c["nullable"] for c in inspector.get_columns(name)}
            declared = {c.name: c.nullable for c in table.columns}
            assert columns == declared, name
            pk = inspector.get_pk_constraint(name)["constrained_columns"]
            assert sorted(pk) == sorted(c.name for c in table.primary_key), name
        fks = inspector.get_foreign_keys("logins")
        assert [(f["constrained_columns"], f["referred_table"]) for f in fks] == [
            (["mailbox"], "mailboxes")
        ]
    finally:
        engine.dispose()


def test_reopen_keeps_data_and_version(directory: SqlDirectory, url: str) -> None:
    populate(directory)
    directory.close()
    again = SqlDirectory(url)
    try:
        assert schema_version(url) == len(migrations.STEPS)
        assert set(again.snapshot().domains) == {"example.org", "legacy.test"}
    finally:
        again.close()
    create_again = SqlDirectory(url, create=True)
    try:
        assert set(create_again.snapshot().mailboxes) == {"bob", "johnacme"}
    finally:
        create_again.close()


def test_empty_postgres_schema_is_migrated_on_open() -> None:
    with postgres_url() as url:
        d = SqlDirectory(url)
        try:
            assert schema_version(url) == len(migrations.STEPS)
            assert d.snapshot().domains == {}
        finally:
            d.close()


def test_empty_sqlite_file_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    url = f"sqlite:///{path}"
    d = SqlDirectory(url)
    try:
        assert schema_version(url) == len(migrations.STEPS)
        assert generation(url) == 0
    finally:
        d.close()


def test_missing_sqlite_file_without_create(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "directory.db"
    with pytest.raises(DirectoryError, match="does not exist"):
        SqlDirectory(f"sqlite:///{path}")
    assert not path.parent.exists()


def test_create_makes_folder_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "directory.db"
    old = os.umask(0)
    try:
        d = SqlDirectory(f"sqlite:///{path}", create=True)
    finally:
        os.umask(old)
    d.close()
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) & stat.S_IRWXO == 0


_SQLITE_SHARED_RANGE = (0x40000002, 510)  # SQLite's SHARED lock bytes in the file


def _sqlite_file_locked_by_others(path: Path) -> bool:
    """Does some other process hold SQLite's shared lock on the file (probed from a child)?"""
    start, length = _SQLITE_SHARED_RANGE
    probe = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
        "try:\n"
        f"    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, {length}, {start})\n"
        "except OSError:\n"
        "    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 3


def test_reopening_with_create_keeps_this_process_sqlite_locks(tmp_path: Path) -> None:
    # Closing any descriptor of a file drops every POSIX lock the process holds on it:
    # a second open of a directory this process already has open must not close one,
    # or another process could checkpoint and remove the WAL under the first.
    url = sqlite_url(tmp_path)
    path = Path(sa.make_url(url).database or "")
    first = SqlDirectory(url, create=True)
    try:
        with first._engine.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT 1 FROM meta")).all()
            assert _sqlite_file_locked_by_others(path)
            second = SqlDirectory(url, create=True)
            try:
                assert _sqlite_file_locked_by_others(path)
            finally:
                second.close()
    finally:
        first.close()


@pytest.mark.parametrize(
    "bad",
    ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:", "not a url"],
)
def test_unsupported_urls(bad: str) -> None:
    with pytest.raises(DirectoryError):
        SqlDirectory(bad, create=True)


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    d = SqlDirectory(sqlite_url(tmp_path), create=True)
    try:
        with d._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        d.close()


def test_newer_schema_is_refused(directory: SqlDirectory, url: str) -> None:
    directory.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = 999"))
    engine.dispose()
    with pytest.raises(DirectoryError, match="newer"):
        SqlDirectory(url)


def test_added_step_runs_once_and_failed_step_rolls_back(
    directory: SqlDirectory, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(directory)
    directory.close()
    base = len(migrations.STEPS)
    calls: list[int] = []

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("step failed")

    monkeypatch.setattr(migrations, "STEPS", (*migrations.STEPS, broken))
    with pytest.raises(RuntimeError):
        SqlDirectory(url)
    assert schema_version(url) == base

    def working(conn: sa.Connection) -> None:
        calls.append(1)
        conn.execute(sa.text("CREATE TABLE notes (x INTEGER)"))

    monkeypatch.setattr(migrations, "STEPS", (*migrations.STEPS[:base], working))
    for _ in range(2):
        SqlDirectory(url).close()
    assert calls == [1]
    assert schema_version(url) == base + 1
    engine = sa.create_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "notes" in names
    assert "half_done" not in names


def test_concurrent_first_opens_migrate_once(url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            barrier.wait()
            SqlDirectory(url, create=True).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert schema_version(url) == len(migrations.STEPS)
    assert generation(url) == 0


# -- snapshot caching ------------------------------------------------------------------------


def test_snapshot_is_cached_until_generation_changes(
    directory: SqlDirectory, other: SqlDirectory
) -> None:
    first = directory.snapshot()
    assert directory.snapshot() is first
    other.add_domain(Domain("example.org"))
    second = directory.snapshot()
    assert second is not first
    assert second.is_local_domain("EXAMPLE.ORG.")
    assert directory.snapshot() is second


def test_refresh_interval_delays_foreign_writes(url: str, directory: SqlDirectory) -> None:
    server = SqlDirectory(url, refresh_interval=3600)
    try:
        assert server.snapshot().domains == {}
        directory.add_domain(Domain("example.org"))
        assert server.snapshot().domains == {}
        assert "example.org" in server.refresh().domains
        assert "example.org" in server.snapshot().domains
        # Its own writes are visible at once.
        server.add_domain(Domain("own.test"))
        assert "own.test" in server.snapshot().domains
    finally:
        server.close()


def test_foreign_write_seen_within_interval(url: str, directory: SqlDirectory) -> None:
    server = SqlDirectory(url, refresh_interval=0.2)
    try:
        server.snapshot()
        directory.add_domain(Domain("example.org"))
        deadline = time.monotonic() + 5
        while "example.org" not in server.snapshot().domains:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        server.close()


def test_write_from_another_process(url: str, directory: SqlDirectory) -> None:
    server = SqlDirectory(url, refresh_interval=0)
    try:
        assert server.snapshot().domains == {}
        code = (
            "import sys\n"
            "from daisymail.directory.sql import SqlDirectory\n"
            "from daisymail.directory.model import Domain\n"
            "d = SqlDirectory(sys.argv[1])\n"
            "d.add_domain(Domain('cli.test'))\n"
            "d.close()\n"
        )
        env = {**os.environ, "PYTHONPATH": SRC}
        subprocess.run([sys.executable, "-c", code, url], check=True, env=env, timeout=60)
        assert set(server.snapshot().domains) == {"cli.test"}
    finally:
        server.close()


def test_failed_refresh_serves_the_last_snapshot(
    directory: SqlDirectory, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    directory.add_domain(Domain("example.org"))
    cached = directory.snapshot()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE meta RENAME TO meta_away"))
        assert directory.snapshot() is cached
        assert "serving the last snapshot" in caplog.text
        with pytest.raises(DirectoryError, match="cannot read directory"):
            directory.refresh()
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE meta_away RENAME TO meta"))
    finally:
        engine.dispose()
    assert directory.refresh().domains == cached.domains


def test_snapshot_content_and_immutability(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_address_rule(AddressRule("John@Example.ORG", "JohnAcme"))
    directory.add_sender_rule(SenderRule("johnacme", "John.Doe@Example.org"))
    directory.add_relay_rule(RelayRule("192.168.5.0/24", "network"))
    directory.add_relay_rule(RelayRule("Partner.Example", "domain"))
    directory.add_login(Login("John", "EXAMPLE.org", "{PLAIN}x", "JohnAcme"))
    snap = directory.snapshot()
    assert snap.domains["legacy.test"] == Domain(
        "legacy.test", fallback=True, login_case_sensitive=True, generics=True, origin="legacy"
    )
    assert snap.mailboxes["johnacme"] == Mailbox("johnacme", "mbox", "/var/spool/mail/johnacme")
    assert dict(snap.address_rules) == {"john@example.org": "JohnAcme"}
    assert dict(snap.sender_rules) == {"johnacme": "John.Doe@Example.org"}
    assert list(snap.relay_rules) == [
        RelayRule("192.168.5.0/24", "network"),
        RelayRule("partner.example", "domain"),
    ]
    assert list(snap.logins) == [Login("John", "example.org", "{PLAIN}x", "johnacme")]
    with pytest.raises(TypeError):
        snap.domains["x"] = Domain("x")  # type: ignore[index]
    assert isinstance(snap.logins, tuple)


# -- domains ---------------------------------------------------------------------------------


def test_domain_add_update_remove(directory: SqlDirectory) -> None:
    directory.add_domain(Domain("Example.ORG."))
    with pytest.raises(Conflict, match=exactly("domain example.org already exists")):
        directory.add_domain(Domain("EXAMPLE.org"))
    directory.update_domain(Domain("example.org", fallback=True, generics=False))
    assert directory.snapshot().domains["example.org"] == Domain(
        "example.org", fallback=True, generics=False
    )
    with pytest.raises(NotFound, match=exactly("no such domain: other.test")):
        directory.update_domain(Domain("other.test"))
    directory.remove_domain("EXAMPLE.org")
    assert directory.snapshot().domains == {}
    with pytest.raises(NotFound, match=exactly("no such domain: example.org")):
        directory.remove_domain("example.org")


@pytest.mark.parametrize(
    "name",
    ["", "exa mple.org", "-bad.org", "bad-.org", "a..b", "exämple.org", "a" * 64 + ".org", "a_b.c"],
)
def test_bad_domain_names(directory: SqlDirectory, name: str) -> None:
    with pytest.raises(DirectoryError, match="not a valid domain name"):
        directory.add_domain(Domain(name))
    assert directory.snapshot().domains == {}


def test_bad_domain_origin(directory: SqlDirectory) -> None:
    with pytest.raises(DirectoryError, match="origin"):
        directory.add_domain(Domain("example.org", origin="imported"))  # type: ignore[arg-type]


def test_remove_domain_refuses_while_used(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("john", "example.org", "h", "bob"))
    directory.add_login(Login("mary", "example.org", "h", "bob"))
    directory.add_address_rule(AddressRule("info@example.org", "bob"))
    directory.add_address_rule(AddressRule("info@legacy.test", "bob"))
    directory.add_address_rule(AddressRule("x@sub.example.org", "bob"))
    with pytest.raises(Conflict, match="2 logins and 1 address rule;"):
        directory.remove_domain("example.org")
    assert "example.org" in directory.snapshot().domains

    directory.remove_domain("example.org", cascade=True)
    snap = directory.snapshot()
    assert "example.org" not in snap.domains
    assert snap.logins == ()
    assert set(snap.address_rules) == {"info@legacy.test", "x@sub.example.org"}
    assert set(snap.mailboxes) == {"bob", "johnacme"}


def test_remove_domain_with_only_rules(directory: SqlDirectory) -> None:
    directory.add_domain(Domain("example.org"))
    directory.add_address_rule(AddressRule("@example.org", "error:nouser 550 No such user"))
    with pytest.raises(Conflict, match=r"still has 1 address rule;"):
        directory.remove_domain("example.org")


def test_like_wildcards_in_domain_do_not_leak(directory: SqlDirectory) -> None:
    directory.add_domain(Domain("a-b.org"))
    directory.add_address_rule(AddressRule("x@a-b.org", "bob"))
    directory.add_address_rule(AddressRule("x@aab.org", "bob"))
    directory.remove_domain("a-b.org", cascade=True)
    assert set(directory.snapshot().address_rules) == {"x@aab.org"}


# -- mailboxes -------------------------------------------------------------------------------


def test_mailbox_add_and_remove(directory: SqlDirectory) -> None:
    directory.add_mailbox(Mailbox("Bob", "mbox", "bob.mbox"))
    assert directory.snapshot().mailboxes == {"bob": Mailbox("bob", "mbox", "bob.mbox")}
    with pytest.raises(Conflict, match=exactly("mailbox bob already exists")):
        directory.add_mailbox(Mailbox("BOB"))
    directory.remove_mailbox("BOB")
    assert directory.snapshot().mailboxes == {}
    with pytest.raises(NotFound, match=exactly("no such mailbox: bob")):
        directory.remove_mailbox("bob")


def test_mailbox_format_checked(directory: SqlDirectory) -> None:
    with pytest.raises(DirectoryError, match="maildir or mbox"):
        directory.add_mailbox(Mailbox("bob", "mh"))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a b", "a@b", "../x", "a/b", ".", "..", "tab\tx"])
def test_bad_mailbox_names(directory: SqlDirectory, name: str) -> None:
    with pytest.raises(DirectoryError, match="not a valid mailbox name"):
        directory.add_mailbox(Mailbox(name))


def test_remove_mailbox_refuses_while_used(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("bob", "example.org", "h", "bob"))
    directory.add_address_rule(AddressRule("bob@example.org", "Bob"))
    directory.add_address_rule(AddressRule("bob+*@example.org", "bob+%1"))
    directory.add_address_rule(AddressRule("bobby@example.org", "bobby"))
    directory.add_address_rule(AddressRule("fwd@example.org", "bob@elsewhere.test"))
    directory.add_address_rule(AddressRule("err@example.org", "error:bob"))
    with pytest.raises(Conflict, match="used by 1 login and 2 address rules;"):
        directory.remove_mailbox("bob")
    directory.remove_mailbox("bob", cascade=True)
    snap = directory.snapshot()
    assert set(snap.mailboxes) == {"johnacme"}
    assert snap.logins == ()
    assert set(snap.address_rules) == {"bobby@example.org", "fwd@example.org", "err@example.org"}


def test_foreign_key_protects_login_mailbox(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("bob", "example.org", "h", "bob"))
    with pytest.raises(Conflict), directory.transaction():
        conn = directory._local.conn
        conn.execute(sa.text("DELETE FROM mailboxes WHERE name = 'bob'"))
    assert "bob" in directory.snapshot().mailboxes


# -- rule maps -------------------------------------------------------------------------------


def test_address_rules(directory: SqlDirectory) -> None:
    for pattern in ["John@Example.org", "John+*@example.org", "++@Example.org", "@EXAMPLE.org"]:
        directory.add_address_rule(AddressRule(pattern, "Target " + pattern))
    assert dict(directory.snapshot().address_rules) == {
        "john@example.org": "Target John@Example.org",
        "john+*@example.org": "Target John+*@example.org",
        "++@example.org": "Target ++@Example.org",
        "@example.org": "Target @EXAMPLE.org",
    }
    with pytest.raises(Conflict, match=exactly("address rule john@example.org already exists")):
        directory.add_address_rule(AddressRule("JOHN@example.ORG", "x"))
    directory.remove_address_rule("JOHN@EXAMPLE.ORG.")
    assert "john@example.org" not in directory.snapshot().address_rules
    with pytest.raises(NotFound, match=exactly("no such address rule: john@example.org")):
        directory.remove_address_rule("john@example.org")


@pytest.mark.parametrize(
    ("pattern", "target"),
    [("john", "bob"), ("jo hn@example.org", "bob"), ("john@", "bob"), ("j@x.org", ""),
     ("j@x.org", "bob\nevil")],
)  # fmt: skip
def test_bad_address_rules(directory: SqlDirectory, pattern: str, target: str) -> None:
    with pytest.raises(DirectoryError):
        directory.add_address_rule(AddressRule(pattern, target))
    assert directory.snapshot().address_rules == {}


def test_sender_rules(directory: SqlDirectory) -> None:
    directory.add_sender_rule(SenderRule("JohnAcme", "John.Doe@Example.org"))
    directory.add_sender_rule(SenderRule("@Old.Example", "@new.example"))
    directory.add_sender_rule(SenderRule("Mary@Old.Example", "mary@new.example"))
    assert dict(directory.snapshot().sender_rules) == {
        "johnacme": "John.Doe@Example.org",
        "@old.example": "@new.example",
        "mary@old.example": "mary@new.example",
    }
    with pytest.raises(Conflict, match=exactly("sender rule johnacme already exists")):
        directory.add_sender_rule(SenderRule("JOHNACME", "x@y.org"))
    for bad in [SenderRule("", "x@y.org"), SenderRule("a b", "x@y.org"), SenderRule("a", "x y")]:
        with pytest.raises(DirectoryError):
            directory.add_sender_rule(bad)
    directory.remove_sender_rule("JohnAcme")
    with pytest.raises(NotFound, match=exactly("no such sender rule: johnacme")):
        directory.remove_sender_rule("johnacme")
    assert set(directory.snapshot().sender_rules) == {"@old.example", "mary@old.example"}


def test_relay_rules(directory: SqlDirectory) -> None:
    directory.add_relay_rule(RelayRule("192.168.5.7/24", "network"))
    directory.add_relay_rule(RelayRule("2001:DB8::/32", "network"))
    directory.add_relay_rule(RelayRule("10.1.2.3", "network"))
    directory.add_relay_rule(RelayRule("Partner.Example.", "domain"))
    assert set(directory.snapshot().relay_rules) == {
        RelayRule("192.168.5.0/24", "network"),
        RelayRule("2001:db8::/32", "network"),
        RelayRule("10.1.2.3/32", "network"),
        RelayRule("partner.example", "domain"),
    }
    with pytest.raises(Conflict, match=exactly("relay rule 192.168.5.0/24 already exists")):
        directory.add_relay_rule(RelayRule("192.168.5.0/24", "network"))
    directory.remove_relay_rule("192.168.5.9/24")
    directory.remove_relay_rule("10.1.2.3")
    directory.remove_relay_rule("PARTNER.example")
    assert directory.snapshot().relay_rules == (RelayRule("2001:db8::/32", "network"),)
    with pytest.raises(NotFound, match=exactly("no such relay rule: partner.example")):
        directory.remove_relay_rule("partner.example")


@pytest.mark.parametrize(
    ("pattern", "kind", "message"),
    [
        ("192.168.5", "network", "not an IP network"),
        ("example.org", "network", "not an IP network"),
        ("10.0.0.1", "domain", "not an address"),
        ("bad domain", "domain", "not a valid domain name"),
        ("example.org", "host", "kind must be domain or network"),
    ],
)
def test_bad_relay_rules(directory: SqlDirectory, pattern: str, kind: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=message):
        directory.add_relay_rule(RelayRule(pattern, kind))  # type: ignore[arg-type]


# -- logins ----------------------------------------------------------------------------------


def test_login_keys(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("John", "Example.ORG", "h1", "BOB"))
    directory.add_login(Login("nodomain", "", "h2", "bob"))
    logins = directory.snapshot().logins
    assert Login("John", "example.org", "h1", "bob") in logins
    assert Login("nodomain", "", "h2", "bob") in logins


def test_login_references_are_checked(directory: SqlDirectory) -> None:
    populate(directory)
    with pytest.raises(NotFound, match=exactly("no such mailbox: nobody")):
        directory.add_login(Login("john", "example.org", "h", "nobody"))
    with pytest.raises(NotFound, match=exactly("no such domain: missing.test")):
        directory.add_login(Login("john", "missing.test", "h", "bob"))
    for user in ["", "jo hn", "john@x", "john%x"]:
        with pytest.raises(DirectoryError, match="not a valid login user name"):
            directory.add_login(Login(user, "example.org", "h", "bob"))
    assert directory.snapshot().logins == ()


def test_case_insensitive_domain_refuses_case_variants(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("John", "example.org", "h", "bob"))
    with pytest.raises(Conflict, match=exactly("login John@example.org already exists")):
        directory.add_login(Login("John", "example.org", "h", "bob"))
    with pytest.raises(Conflict, match=r"John@example\.org already exists and .* case-insensitive"):
        directory.add_login(Login("john", "example.org", "h", "bob"))
    # Another domain is another namespace.
    directory.add_login(Login("john", "legacy.test", "h", "bob"))


def test_case_sensitive_domain_keeps_case_variants_apart(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("John", "legacy.test", "upper", "bob"))
    directory.add_login(Login("john", "legacy.test", "lower", "johnacme"))
    with pytest.raises(Conflict, match=exactly("login john@legacy.test already exists")):
        directory.add_login(Login("john", "legacy.test", "h", "bob"))
    snap = directory.snapshot()
    assert snap.find_login("John", "legacy.test") == Login("John", "legacy.test", "upper", "bob")
    assert snap.find_login("john", "LEGACY.TEST") == Login(
        "john", "legacy.test", "lower", "johnacme"
    )
    assert snap.find_login("JOHN", "legacy.test") is None
    # Making the domain case-insensitive would make two accounts one: refused.
    with pytest.raises(Conflict, match=r"differ only in case \(John, john\)"):
        directory.update_domain(Domain("legacy.test", login_case_sensitive=False))
    assert directory.snapshot().domains["legacy.test"].login_case_sensitive


def test_set_password_follows_case_rule(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("John", "example.org", "old", "bob"))
    directory.add_login(Login("Mary", "legacy.test", "old", "bob"))
    directory.set_password("JOHN", "EXAMPLE.ORG", "new")
    assert directory.snapshot().find_login("john", "example.org") == Login(
        "John", "example.org", "new", "bob"
    )
    with pytest.raises(NotFound, match=exactly("no such login: mary@legacy.test")):
        directory.set_password("mary", "legacy.test", "new")
    directory.set_password("Mary", "legacy.test", "new")
    assert directory.snapshot().find_login("Mary", "legacy.test") == Login(
        "Mary", "legacy.test", "new", "bob"
    )
    with pytest.raises(NotFound, match=exactly("no such login: x@nowhere.test")):
        directory.set_password("x", "nowhere.test", "new")


def test_exact_match_wins_in_a_case_sensitive_domain(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("John", "legacy.test", "a", "bob"))
    directory.add_login(Login("john", "legacy.test", "b", "bob"))
    directory.set_password("john", "legacy.test", "changed")
    snap = directory.snapshot()
    assert snap.find_login("john", "legacy.test").password_hash == "changed"  # type: ignore[union-attr]
    assert snap.find_login("John", "legacy.test").password_hash == "a"  # type: ignore[union-attr]


def test_remove_login(directory: SqlDirectory) -> None:
    populate(directory)
    directory.add_login(Login("John", "example.org", "h", "bob"))
    directory.add_login(Login("Mary", "legacy.test", "h", "bob"))
    directory.add_login(Login("root", "", "h", "bob"))
    with pytest.raises(NotFound, match=exactly("no such login: mary@legacy.test")):
        directory.remove_login("mary", "legacy.test")
    with pytest.raises(NotFound, match=exactly("no such login: ROOT")):
        directory.remove_login("ROOT", "")
    directory.remove_login("john", "Example.Org")
    directory.remove_login("Mary", "legacy.test")
    directory.remove_login("root", "")
    assert directory.snapshot().logins == ()


# -- transactions ----------------------------------------------------------------------------


def test_transaction_bumps_generation_once(directory: SqlDirectory, url: str) -> None:
    before = generation(url)
    with directory.transaction():
        populate(directory)
        with directory.transaction():
            directory.add_login(Login("john", "example.org", "h", "bob"))
    assert generation(url) == before + 1
    directory.add_mailbox(Mailbox("third"))
    assert generation(url) == before + 2
    assert len(directory.snapshot().logins) == 1


def test_transaction_rolls_back_on_error(directory: SqlDirectory, url: str) -> None:
    populate(directory)
    before = generation(url)
    snap = directory.snapshot()
    with (
        pytest.raises(Conflict, match=exactly("mailbox bob already exists")),
        directory.transaction(),
    ):
        directory.add_domain(Domain("new.test"))
        directory.add_login(Login("john", "new.test", "h", "bob"))
        directory.add_mailbox(Mailbox("bob"))
    assert generation(url) == before
    assert directory.snapshot() == snap
    assert "new.test" not in directory.snapshot().domains


def test_transaction_rolls_back_on_foreign_exception(directory: SqlDirectory) -> None:
    with pytest.raises(KeyError), directory.transaction():
        directory.add_domain(Domain("new.test"))
        raise KeyError("importer bug")
    assert directory.snapshot().domains == {}
    directory.add_domain(Domain("new.test"))  # the handle is usable again


def test_concurrent_case_variants_only_one_wins(url: str, directory: SqlDirectory) -> None:
    populate(directory)
    variants = ["john", "John", "JOHN", "jOhn", "joHn", "johN"]
    barrier = threading.Barrier(len(variants))
    results: dict[str, str] = {}

    def worker(user: str) -> None:
        d = SqlDirectory(url)
        try:
            barrier.wait()
            d.add_login(Login(user, "example.org", "h", "bob"))
            results[user] = "ok"
        except Conflict:
            results[user] = "conflict"
        finally:
            d.close()

    threads = [threading.Thread(target=worker, args=(v,)) for v in variants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["conflict"] * (len(variants) - 1) + ["ok"]
    assert len(directory.snapshot().logins) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from(["a@x.org", "A@X.org", "b@x.org", "@x.org", "a+*@x.org"]),
            st.sampled_from(["bob", "Bob", "x@y.org"]),
        ),
        max_size=12,
    )
)
def test_address_rules_behave_like_a_case_folded_map(ops: list[tuple[bool, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = SqlDirectory(sqlite_url(Path(tmp)), create=True, refresh_interval=0)
        try:
            model: dict[str, str] = {}
            for add, pattern, target in ops:
                key = pattern.lower()
                if add:
                    if key in model:
                        with pytest.raises(Conflict):
                            d.add_address_rule(AddressRule(pattern, target))
                    else:
                        d.add_address_rule(AddressRule(pattern, target))
                        model[key] = target
                elif key in model:
                    d.remove_address_rule(pattern)
                    del model[key]
                else:
                    with pytest.raises(NotFound):
                        d.remove_address_rule(pattern)
            assert dict(d.snapshot().address_rules) == model
        finally:
            d.close()


def test_update_mailbox_changes_format_and_path_only(tmp_path: Path) -> None:
    d = SqlDirectory(sqlite_url(tmp_path), create=True, refresh_interval=0)
    d.add_domain(Domain("acme.com"))
    d.add_mailbox(Mailbox("box", "mbox", "/var/spool/mail/box"))
    d.add_login(Login("u", "acme.com", "$argon2id$x", "box"))
    d.update_mailbox(Mailbox("box", "maildir", "/srv/mail/box/"))
    snap = d.snapshot()
    assert snap.mailboxes["box"] == Mailbox("box", "maildir", "/srv/mail/box/")
    assert [x.mailbox for x in snap.logins] == ["box"]
    with pytest.raises(NotFound):
        d.update_mailbox(Mailbox("ghost", "mbox", ""))
    with pytest.raises(DirectoryError):
        d.update_mailbox(Mailbox("box", "mh", ""))  # type: ignore[arg-type]
    d.close()
