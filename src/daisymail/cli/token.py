"""`daisymail token`: bearer tokens for the admin HTTP API, stored hashed in the directory."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from daisymail.cli.common import errors_as_messages, fail, json_option, print_json, print_table
from daisymail.cli.common import state as cli_state
from daisymail.directory.base import DirectoryError
from daisymail.directory.tokens import TokenStore


def _store() -> TokenStore:
    cfg = cli_state().config
    try:
        store = TokenStore(cfg.database_url)
    except DirectoryError as e:
        fail(str(e))
    cli_state().closers.append(store.close)
    return store


@click.group()
def token() -> None:
    """Bearer tokens for the admin API ([http] api = true)."""


@token.command("create")
@click.option("--read-only", is_flag=True, help="The token may only read (GET).")
@click.option("--note", default="", help="What the token is for, shown by token list.")
def token_create(read_only: bool, note: str) -> None:
    """Make a token; it is printed once, alone on the last line, and stored only hashed."""
    with errors_as_messages():
        secret, info = _store().create(read_only, note)
    click.echo(f"token {info.id} created ({'read-only' if read_only else 'read-write'})")
    click.echo(secret)


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """List tokens (their ids, never their secrets)."""
    tokens = _store().list()
    if as_json:
        print_json(tokens)
        return
    rows = [
        (
            t.id,
            "read-only" if t.read_only else "read-write",
            datetime.fromtimestamp(t.created, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            t.note,
        )
        for t in tokens
    ]
    print_table(rows, ("ID", "ACCESS", "CREATED", "NOTE"))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
def token_revoke(token_id: str) -> None:
    """Revoke a token at once (a running server checks every request)."""
    with errors_as_messages():
        _store().revoke(token_id.removeprefix("dm_").split("_", 1)[0])
    click.echo(f"token {token_id} revoked")
