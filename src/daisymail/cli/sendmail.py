"""`daisymail sendmail`: the sendmail command line, for cron and scripts.

Works without a running server: hosted recipients are delivered into the store
directly, the others written into the queue, which a running server picks up within a
second (or at its next start). Run it as the user that owns the data dir.
The sender is ``-f`` or the login name; unqualified names get the hostname. Header
senders go through genericstable, the envelope too with ``masquerade_envelope``.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from email.utils import formatdate, getaddresses

import click

from daisymail.cli.common import fail, state
from daisymail.delivery import Injector
from daisymail.mailauth.srs import from_config as srs_from_config
from daisymail.queue.spool import Queue, QueueError
from daisymail.quota import Quotas, parse_size
from daisymail.routing.addresses import AddressError, parse_path
from daisymail.routing.senders import rewrite_sender
from daisymail.smtp.submission import complete_header, field_value, header_fields
from daisymail.store.base import StorageError
from daisymail.store.files import FileStore

EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_USAGE = 64


def read_message(data: bytes, ignore_dots: bool) -> bytes:
    """LF line ends; without -i a line with a single dot ends the message."""
    text = data.replace(b"\r\n", b"\n")
    if not ignore_dots:
        if text.startswith(b".\n") or text == b".":
            return b""
        end = text.find(b"\n.\n")
        if end >= 0:
            text = text[: end + 1]
        elif text.endswith(b"\n."):
            text = text[:-1]
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header lines, rest starting with the blank line); no header means all body."""
    if message.startswith(b"\n"):
        return b"", message
    end = message.find(b"\n\n")
    if end < 0:
        return message, b""
    return message[: end + 1], message[end + 1 :]


def header_recipients(header: bytes) -> tuple[list[str], bytes]:
    """-t: addresses in To, Cc and Bcc; the header without its Bcc fields."""
    found: list[str] = []
    kept: list[bytes] = []
    for name, raw in header_fields(header):
        if name in ("to", "cc", "bcc"):
            found += [a for _n, a in getaddresses([field_value(raw)]) if a]
        if name != "bcc":
            kept.append(raw)
    return found, b"".join(kept)


def check_address(what: str, address: str) -> None:
    """Refuse what no SMTP server would take (CR/LF, bad syntax) before it is queued:
    a queue entry with such an address could only fail on every attempt."""
    try:
        parsed = parse_path(address, smtputf8=True)
    except AddressError as e:
        fail(f"{what} {address!r} is not a valid address: {e.text}", EX_USAGE)
    if parsed is None and what == "recipient":
        fail("the null address <> cannot be a recipient", EX_USAGE)


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("-t", "from_headers", is_flag=True, help="Take recipients from To, Cc, Bcc.")
@click.option("-f", "-r", "sender", metavar="ADDR", help="Envelope sender.")
@click.option("-F", "full_name", metavar="NAME", default="", help="Full name for a From: added.")
@click.option("-i", "ignore_dots", is_flag=True, help="A line with a single dot is data.")
@click.option("-o", "options", multiple=True, metavar="OPT", help="-oi as -i; others ignored.")
@click.option("-B", "body_type", metavar="TYPE", help="Ignored (accepted for compatibility).")
@click.argument("recipients", nargs=-1)
def sendmail(
    from_headers: bool,
    sender: str | None,
    full_name: str,
    ignore_dots: bool,
    options: tuple[str, ...],
    body_type: str | None,
    recipients: tuple[str, ...],
) -> None:
    """Send the message on standard input (sendmail compatible)."""
    st = state()
    cfg = st.config
    hostname = cfg.hostname
    ignore_dots = ignore_dots or "i" in options
    message = read_message(sys.stdin.buffer.read(), ignore_dots)
    header, body = split_message(message)
    rcpts = list(recipients)
    if from_headers:
        found, header = header_recipients(header)
        rcpts += found
    if not rcpts:
        fail("no recipients given", EX_USAGE)
    if sender:
        check_address("sender", sender)
    for rcpt in rcpts:
        check_address("recipient", rcpt)
    directory = st.directory
    snap = directory.snapshot()
    name = sender if sender is not None else getpass.getuser()
    envelope = name if "@" in name or not name else f"{name}@{hostname}"
    if cfg.rewrite.masquerade_envelope and name:
        envelope = rewrite_sender(name, snap, hostname) or envelope
    shown = f"{full_name} <{name}>" if full_name else name
    now = time.time()
    header = complete_header(header, snap, hostname, now, f"From: {shown}\n")
    queue = Queue(str(cfg.path(cfg.queue.dir)))
    store = FileStore(str(cfg.path(cfg.storage.mail_dir)))
    injector = Injector(
        directory,
        store,
        queue,
        str(cfg.path(cfg.storage.spool_dir)),
        srs_from_config(cfg.srs.secret),
        Quotas(store, parse_size(cfg.storage.quota)),
    )
    trace = (
        f"Received: by {hostname} (Daisy sendmail, uid {os.getuid()});\n"
        f"\t{formatdate(now, localtime=False, usegmt=True)}\n"
    ).encode()
    try:
        result = injector.inject(header + body, envelope, rcpts, trace=trace)
    except (StorageError, QueueError, OSError) as e:
        fail(f"message not sent: {e}", EX_TEMPFAIL)
    for address, reply in result.rejected:
        click.echo(f"daisymail: {address}: {reply}", err=True)
    if result.rejected:
        # a full mailbox (452) may have room later: a temporary failure, as for a 4xx
        temporary = all(reply.startswith("4") for _, reply in result.rejected)
        sys.exit(EX_TEMPFAIL if temporary else EX_NOUSER)
