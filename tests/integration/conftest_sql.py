"""Database URLs for directory tests: a fresh SQLite file, or a throwaway PostgreSQL schema.

PostgreSQL comes from DAISYMAIL_TEST_PG_URL. Each use gets its own random schema, put first
in the search_path through libpq ``options`` and dropped afterwards, so runs never collide.
Without the variable or the server the test is skipped, except under CI=true where that
is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ENV = "DAISYMAIL_TEST_PG_URL"


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'directory.db'}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires PostgreSQL)")
    pytest.skip(reason)


@contextmanager
def postgres_url() -> Iterator[str]:
    """Yield a URL whose connections use a new, empty schema."""
    base = os.environ.get(PG_ENV)
    if not base:
        _unavailable(f"{PG_ENV} is not set")
        return
    admin = sa.create_engine(base)
    schema = f"daisy_test_{secrets.token_hex(6)}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        _unavailable(f"PostgreSQL at {PG_ENV} is unreachable: {str(e.orig).strip()}")
        return
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
