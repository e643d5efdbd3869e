"""`daisymail queue`: look at and act on the outbound queue, with or without the server.

The operations live in daisymail.service.queue (the HTTP API calls them too); this only
parses and prints.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from daisymail.cli.common import errors_as_messages, json_option, print_json, print_table, state
from daisymail.service.queue import QueueOps


def _ops() -> QueueOps:
    st = state()
    return QueueOps(st.config, st.directory)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def queue() -> None:
    """The outbound queue: list, show, flush, remove, bounce."""


@queue.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Queued messages with their pending recipients."""
    msgs = QueueOps(state().config).list()
    if as_json:
        print_json(msgs)
        return
    rows = [
        (
            m.id,
            _when(m.created),
            m.sender or "<>",
            ",".join(r.address for r in m.pending),
            str(m.attempts),
            _when(m.next_attempt),
            next((r.diagnostic for r in m.pending if r.diagnostic), ""),
        )
        for m in msgs
    ]
    print_table(rows, ("id", "queued", "sender", "pending", "tries", "next", "last error"))


@queue.command()
@click.argument("msg_id", metavar="ID")
def show(msg_id: str) -> None:
    """The envelope of one message and its header."""
    ops = QueueOps(state().config)
    with errors_as_messages():
        msg = ops.get(msg_id)
        headers = ops.headers(msg_id)
    print_json(msg)
    click.echo()
    click.echo(headers, nl=False)


@queue.command()
def flush() -> None:
    """Ask the running server to retry every message now."""
    with errors_as_messages():
        QueueOps(state().config).flush()
    click.echo("flush requested; a running server retries within a second")


@queue.command()
@click.argument("msg_id", metavar="ID")
def remove(msg_id: str) -> None:
    """Delete a message without telling anyone."""
    with errors_as_messages():
        QueueOps(state().config).remove(msg_id)
    click.echo(f"removed {msg_id}")


@queue.command()
@click.argument("msg_id", metavar="ID")
def bounce(msg_id: str) -> None:
    """Return a message to its sender now and remove it."""
    with errors_as_messages():
        res = _ops().bounce(msg_id)
    click.echo(f"returned {res.id} to {res.sender}" if res.sender else f"removed {res.id}")
