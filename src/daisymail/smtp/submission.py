"""What ports 587 and 465 accept: authenticated users, sending as themselves.

A user may use as envelope sender and in From: its login address or any address whose
virtusertable rule leads to its own mailbox; anything else is ``553 5.7.1`` (the rule is
inbound.may_send_as, shared with port 25 where AUTH is allowed there). Recipients
anywhere are accepted (the session is authenticated, so relaying is allowed), hosted
ones as routing decides. After DATA the header is checked and rewritten here: header
senders through genericstable (SPEC §2.6), a missing Date and Message-ID added.
Pure functions on header bytes; the server does the file work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate, getaddresses, make_msgid

from daisymail.config import Relay
from daisymail.directory.base import Directory
from daisymail.directory.model import Login, Snapshot
from daisymail.quota import Quotas
from daisymail.routing.senders import rewrite_sender
from daisymail.smtp.inbound import InboundPolicy, may_send_as, not_yours
from daisymail.smtp.protocol import Reply, SessionInfo

SENDER_HEADERS = frozenset({"from", "sender", "reply-to", "resent-from", "resent-sender"})
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


class SubmissionPolicy(InboundPolicy):
    """Port 25's rules, sender ownership included; here a session must be authenticated."""

    def __init__(
        self, directory: Directory, relay: Relay, hostname: str, quotas: Quotas | None = None
    ) -> None:
        super().__init__(directory, relay, queue_available=True, hostname=hostname, quotas=quotas)

    def check_sender(
        self, session: SessionInfo, sender: str, params: dict[str, str]
    ) -> Reply | None:
        if session.authenticated_as is None:  # the protocol asks for AUTH first anyway
            return not_yours(sender)
        return super().check_sender(session, sender, params)


@dataclass(frozen=True)
class HeaderResult:
    header: bytes
    refused: Reply | None = None


def prepare_header(
    header: bytes,
    *,
    login: Login,
    snapshot: Snapshot,
    hostname: str,
    now: float,
) -> HeaderResult:
    """Check From: against the user, then complete and rewrite the header.

    header: the message's header lines up to (not including) the blank line, LF ends.
    """
    for name, raw in header_fields(header):
        if name == "from":
            for _display, addr in getaddresses([field_value(raw)]):
                if not addr or not may_send_as(login, addr, snapshot, hostname):
                    return HeaderResult(header, not_yours(addr or "(empty From:)"))
    default_from = f"From: <{login.address}>\n"
    return HeaderResult(complete_header(header, snapshot, hostname, now, default_from))


def complete_header(
    header: bytes, snapshot: Snapshot, hostname: str, now: float, default_from: str
) -> bytes:
    """Header senders through genericstable; From (default_from, rewritten too), Date and
    Message-ID added when missing, after the fields that are there."""
    fields = header_fields(header)
    names = {name for name, _raw in fields}
    if "from" not in names:
        fields.append(("from", default_from.encode("utf-8", "surrogateescape")))
    out: list[bytes] = []
    for name, raw in fields:
        out.append(_rewrite_field(raw, snapshot, hostname) if name in SENDER_HEADERS else raw)
    if "date" not in names:
        out.append(f"Date: {formatdate(now, localtime=True)}\n".encode())
    if "message-id" not in names:
        out.append(f"Message-ID: {make_msgid(domain=hostname)}\n".encode())
    return b"".join(out)


def rewrite_envelope_sender(sender: str, snapshot: Snapshot, hostname: str) -> str:
    """``masquerade_envelope``: the envelope sender through genericstable too."""
    if not sender:
        return sender
    return rewrite_sender(sender, snapshot, hostname) or sender


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """(lowercased name, raw field with its continuation lines) per field; a line that
    is neither is kept as a nameless field so nothing is lost."""
    fields: list[tuple[str, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
            continue
        match = _FIELD_NAME.match(line)
        fields.append((match.group(1).decode("ascii").lower() if match else "", line))
    return fields


def field_value(raw: bytes) -> str:
    text = raw.decode("utf-8", "surrogateescape")
    return text.partition(":")[2].replace("\r", "").replace("\n", "")


def _rewrite_field(raw: bytes, snapshot: Snapshot, hostname: str) -> bytes:
    text = raw.decode("utf-8", "surrogateescape")
    name, colon, value = text.partition(":")
    for _display, addr in getaddresses([value.replace("\n", "")]):
        if not addr:
            continue
        new = rewrite_sender(addr, snapshot, hostname)
        if new is None:
            continue
        pattern = re.compile(r"(?<![\w.+@-])" + re.escape(addr) + r"(?![\w.+@-])")
        matches = list(pattern.finditer(value))
        if matches:
            last = matches[-1]
            value = value[: last.start()] + new + value[last.end() :]
    return (name + colon + value).encode("utf-8", "surrogateescape")
