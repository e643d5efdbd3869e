"""`daisymail queue`: look at and act on the outbound queue, with or without the server.

Everything works on the queue files. `flush` creates the trigger file ``<queue>/flush``,
which a running server notices within a second and then retries every message at once.
`bounce` returns a message to its sender now (DSN as for a permanent failure) and
removes it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from daisymail.cli.common import fail, json_option, print_json, print_table, state
from daisymail.delivery import Injector
from daisymail.mailauth.srs import from_config as srs_from_config
from daisymail.queue.spool import Queue, QueuedMessage, QueueError
from daisymail.store.base import StorageError
from daisymail.store.files import FileStore


def _queue() -> Queue:
    cfg = state().config
    return Queue(str(cfg.path(cfg.queue.dir)))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _get(queue: Queue, msg_id: str) -> QueuedMessage:
    try:
        msg = queue.get(msg_id)
    except QueueError as e:  # an unreadable envelope
        fail(str(e))
    if msg is None:
        fail(f"no message {msg_id} in the queue")
    return msg


@click.group()
def queue() -> None:
    """The outbound queue: list, show, flush, remove, bounce."""


@queue.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Queued messages with their pending recipients."""
    msgs = _queue().messages()
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
    q = _queue()
    msg = _get(q, msg_id)
    print_json(msg)
    click.echo()
    for line in q.iter_headers(msg_id):
        click.echo(line.decode("utf-8", "replace"), nl=False)


@queue.command()
def flush() -> None:
    """Ask the running server to retry every message now."""
    _queue().request_flush()
    click.echo("flush requested; a running server retries within a second")


@queue.command()
@click.argument("msg_id", metavar="ID")
def remove(msg_id: str) -> None:
    """Delete a message without telling anyone."""
    if not _queue().remove(msg_id):
        fail(f"no message {msg_id} in the queue")
    click.echo(f"removed {msg_id}")


@queue.command()
@click.argument("msg_id", metavar="ID")
def bounce(msg_id: str) -> None:
    """Return a message to its sender now and remove it."""
    st = state()
    cfg = st.config
    q = _queue()
    msg = _get(q, msg_id)
    failed = msg.pending
    for r in failed:
        r.state = "failed"
        r.status = "5.0.0"
        r.diagnostic = "returned to the sender by the postmaster"
    notify = [r for r in failed if r.wants_failure_notice]
    if msg.sender and notify:
        from daisymail.delivery import send_dsn  # it pulls in the queue and the stores

        store = FileStore(str(cfg.path(cfg.storage.mail_dir)))
        injector = Injector(
            st.directory,
            store,
            q,
            str(cfg.path(cfg.storage.spool_dir)),
            srs_from_config(cfg.srs.secret),
        )
        try:
            send_dsn(injector, cfg.hostname, msg, notify, q.read_message(msg_id), time.time())
        except (StorageError, QueueError, OSError) as e:
            fail(f"cannot return {msg_id}: {e}")
    q.remove(msg_id)
    click.echo(f"returned {msg_id} to {msg.sender or '<>'}" if msg.sender else f"removed {msg_id}")
