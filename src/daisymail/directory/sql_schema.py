"""The directory's tables: one schema for SQLite and PostgreSQL (migrations.py builds it)."""

from __future__ import annotations

import sqlalchemy as sa

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
