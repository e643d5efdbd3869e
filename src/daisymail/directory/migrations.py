"""Schema versions for the SQL directory: an ordered list of steps, each run once.

The database records how many steps it has run in ``schema_version``. Opening a directory
runs the missing steps in order, each in its own transaction together with the version
bump, so a failed step leaves the database at the previous version. Writers are
serialized first (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``), so two processes
opening an old database at once do not both migrate it.

To change the schema:

1. append a function ``_vN(conn)`` to ``STEPS`` that brings a version N-1 database to
   version N (``ALTER TABLE`` through ``conn.execute(sa.text(...))`` or ``sa.schema`` DDL,
   plus any data fix-up). Write it for both SQLite and PostgreSQL; SQLite's ALTER TABLE is
   limited (add/rename/drop column), so larger changes copy into a new table;
2. update the table definitions in ``directory/sql.py`` to the new shape;
3. never edit a step that has been released: old databases have already run it.

The test suite checks that a database built by the steps matches ``sql.metadata``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa

from daisymail.directory.base import DirectoryError

WRITE_OPTION = "daisymail_write"
"""Execution option marking a write transaction (SQLite then begins IMMEDIATE)."""

_PG_LOCK_KEY = 0x6461697379  # "daisy": serializes migrations across processes

schema_version = sa.Table(
    "schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    """The first schema: domains, mailboxes, the four rule maps, logins and meta."""
    md = sa.MetaData()
    sa.Table(
        "domains",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("login_case_sensitive", sa.Boolean, nullable=False),
        sa.Column("generics", sa.Boolean, nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.CheckConstraint("origin IN ('native', 'legacy')", name="domains_origin"),
    )
    sa.Table(
        "mailboxes",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.CheckConstraint("format IN ('maildir', 'mbox')", name="mailboxes_format"),
    )
    sa.Table(
        "address_rules",
        md,
        sa.Column("pattern", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
    )
    sa.Table(
        "sender_rules",
        md,
        sa.Column("pattern", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
    )
    sa.Table(
        "relay_rules",
        md,
        sa.Column("pattern", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.CheckConstraint("kind IN ('domain', 'network')", name="relay_rules_kind"),
    )
    sa.Table(
        "logins",
        md,
        sa.Column("domain", sa.Text, primary_key=True),
        sa.Column("user", sa.Text, primary_key=True),
        sa.Column("user_lower", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("mailbox", sa.Text, sa.ForeignKey("mailboxes.name"), nullable=False),
        sa.Index("logins_user_lower", "domain", "user_lower"),
        sa.Index("logins_mailbox", "mailbox"),
    )
    meta = sa.Table(
        "meta",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="meta_single_row"),
    )
    md.create_all(conn)
    conn.execute(sa.insert(meta).values(id=1, generation=0))


def _v2(conn: sa.Connection) -> None:
    """Admin API tokens: only a hash of each secret is kept."""
    md = sa.MetaData()
    sa.Table(
        "api_tokens",
        md,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("read_only", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    md.create_all(conn)


STEPS: Sequence[Callable[[sa.Connection], None]] = (_v1, _v2)


def upgrade(engine: sa.Engine) -> int:
    """Run the steps the database lacks; return the resulting version."""
    while True:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                version = _current_version(conn)
                if version > len(STEPS):
                    raise DirectoryError(
                        f"directory schema version {version} is newer than this Daisy "
                        f"understands ({len(STEPS)})"
                    )
                if version == len(STEPS):
                    return version
                STEPS[version](conn)
                conn.execute(sa.update(schema_version).values(version=version + 1))


def _current_version(conn: sa.Connection) -> int:
    schema_version.create(conn, checkfirst=True)
    version = conn.execute(sa.select(schema_version.c.version)).scalar()
    if version is None:
        conn.execute(sa.insert(schema_version).values(version=0))
        return 0
    return int(version)
