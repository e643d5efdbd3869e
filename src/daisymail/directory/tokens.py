"""Admin API bearer tokens, kept in the directory database as hashes only.

A token is ``dm_<id>_<secret>``: the id finds the row, the secret is compared with
its SHA-256 in constant time. The secret is 256 random bits, so a fast hash is enough
(no password stretching needed), and a copied database gives no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from daisymail.directory import migrations
from daisymail.directory.base import DirectoryError, NotFound
from daisymail.directory.sql_engine import open_engine
from daisymail.directory.sql_schema import api_tokens

PREFIX = "dm_"


@dataclass(frozen=True)
class TokenInfo:
    id: str
    read_only: bool
    created: float
    note: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, url: str, *, create: bool = False) -> None:
        # create=True only where nothing else in this process has the file open: making
        # it opens and closes the file, and closing any descriptor of an SQLite file drops
        # every POSIX lock this process holds on it (another process may then delete the
        # WAL the directory is still writing to).
        self._engine = open_engine(url, create=create)
        try:
            migrations.upgrade(self._engine)
        except sa.exc.SQLAlchemyError as e:
            self._engine.dispose()
            raise DirectoryError(f"cannot open the token store: {e}") from e

    def close(self) -> None:
        self._engine.dispose()

    def _write(self) -> sa.Connection:
        conn = self._engine.connect()
        conn.execution_options(**{migrations.WRITE_OPTION: True})
        return conn

    def create(self, read_only: bool, note: str = "") -> tuple[str, TokenInfo]:
        """A new token (shown once) and its record."""
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        info = TokenInfo(token_id, read_only, time.time(), note)
        with self._write() as conn, conn.begin():
            conn.execute(
                sa.insert(api_tokens).values(
                    id=token_id,
                    secret_hash=_digest(secret),
                    read_only=read_only,
                    created=info.created,
                    note=note,
                )
            )
        return f"{PREFIX}{token_id}_{secret}", info

    def list(self) -> list[TokenInfo]:
        with self._engine.connect() as conn, conn.begin():
            rows = conn.execute(sa.select(api_tokens).order_by(api_tokens.c.created)).all()
        return [TokenInfo(r.id, bool(r.read_only), float(r.created), r.note) for r in rows]

    def revoke(self, token_id: str) -> None:
        with self._write() as conn, conn.begin():
            res = conn.execute(sa.delete(api_tokens).where(api_tokens.c.id == token_id))
        if not res.rowcount:
            raise NotFound(f"no such token: {token_id}")

    def verify(self, token: str) -> TokenInfo | None:
        """The token's record when it is valid, else None."""
        if not token.startswith(PREFIX):
            return None
        token_id, sep, secret = token[len(PREFIX) :].partition("_")
        if not sep or not token_id or not secret or len(token) > 200:
            return None
        # An explicit transaction: each check reads the current tokens, never a stale view.
        with self._engine.connect() as conn, conn.begin():
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _digest(secret)):
            return None
        return TokenInfo(row.id, bool(row.read_only), float(row.created), row.note)
