"""Opening the directory database: URL checks, SQLite file mode, pragmas and locking."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from daisymail.directory import migrations
from daisymail.directory.base import DirectoryError

BUSY_TIMEOUT_MS = 10_000


def open_engine(url: str, *, create: bool) -> sa.Engine:
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
        raise DirectoryError(f"unsupported directory URL {safe_url(url)}: use sqlite or postgresql")
    path = parsed.database
    if not path or path == ":memory:" or path.startswith("file:"):
        raise DirectoryError(f"an SQLite directory needs a file path: {url}")
    file = Path(path)
    if create:
        file.parent.mkdir(parents=True, exist_ok=True)
        # Password hashes live here: never world-readable, whatever the umask. An
        # existing file is left unopened: closing any descriptor of a file drops every
        # POSIX lock this process holds on it, and SQLite's locks are POSIX locks, so
        # opening a directory this process already has open must not touch the file.
        try:
            os.close(os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o660))
        except FileExistsError:
            pass
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


def safe_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<bad url>"


def one_line(e: Exception) -> str:
    text = str(getattr(e, "orig", None) or e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__
