"""Delivery status notifications (RFC 3464): failed, delayed, relayed and delivered.

A DSN is a multipart/report: a human-readable part, a message/delivery-status part with
one block per recipient, and the original message. A failure notice returns it whole
(``RET=FULL`` or no RET, as Postfix does) or as text/rfc822-headers for ``RET=HDRS``;
the others return only the header (RFC 3461 section 4.3: content only with failures).
It goes to the envelope sender from the null sender, so a DSN can never cause another
one. Pure: bytes in and out, LF line ends as the queue and the mailboxes store them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from typing import Literal

from daisymail.queue.spool import QueuedMessage, QueuedRecipient

EXPIRED_STATUS = "4.4.7"
"""RFC 3463 "delivery time expired", kept in the 4 class as sendmail reports it."""


Action = Literal["failed", "delayed", "relayed", "delivered"]


@dataclass(frozen=True)
class _Wording:
    subject: str
    summary: str
    default_status: str
    part: str


_WORDING: dict[Action, _Wording] = {
    "failed": _Wording(
        "Undelivered Mail Returned to Sender",
        "Your message could not be delivered to one or more recipients.",
        "5.0.0",
        "Undelivered",
    ),
    "delayed": _Wording(
        "Delayed Mail (still being retried)",
        "Your message could not be delivered yet to one or more recipients. It will be"
        " tried again until {until}; you do not need to send it again.",
        "4.0.0",
        "Delayed",
    ),
    "relayed": _Wording(
        "Successful Mail Delivery Report",
        "Your message was relayed to one or more recipients whose mail servers do not"
        " report delivery; no further notice will follow for them.",
        "2.0.0",
        "Relayed",
    ),
    "delivered": _Wording(
        "Successful Mail Delivery Report",
        "Your message was delivered to the mailbox of one or more recipients.",
        "2.0.0",
        "Delivered",
    ),
}


def should_notify(message: QueuedMessage, recipient: QueuedRecipient) -> bool:
    """A failure notice is due: not for the null sender, not for NOTIFY=NEVER or a NOTIFY
    list without FAILURE, and only once."""
    return bool(message.sender) and recipient.wants_failure_notice and not recipient.notified


def success_notice_due(message: QueuedMessage, recipient: QueuedRecipient) -> bool:
    """NOTIFY=SUCCESS and the next hop did not take the request over (no DSN there)."""
    return (
        bool(message.sender)
        and recipient.state == "delivered"
        and recipient.wants("SUCCESS")
        and not recipient.dsn_passed
        and not recipient.notified
    )


def delay_notice_due(
    message: QueuedMessage, recipient: QueuedRecipient, now: float, after: float
) -> bool:
    """NOTIFY=DELAY asked for it and the message has waited `after` seconds; once only.

    Without NOTIFY none is sent (RFC 3461 leaves it to the MTA; Postfix sends none)."""
    return (
        bool(message.sender)
        and after > 0
        and recipient.state == "pending"
        and recipient.wants("DELAY")
        and not recipient.delay_notified
        and now - message.created >= after
    )


def build_dsn(
    message: QueuedMessage,
    failed: Sequence[QueuedRecipient],
    original: bytes,
    *,
    hostname: str,
    now: float,
    action: Action = "failed",
    retry_until: float | None = None,
) -> bytes:
    """One DSN for these recipients, all with the same action."""
    wording = _WORDING[action]
    until = formatdate(retry_until or now, localtime=False, usegmt=True)
    boundary = f"{secrets.token_hex(8)}/{hostname}"
    date = formatdate(now, localtime=False, usegmt=True)
    arrival = formatdate(message.created, localtime=False, usegmt=True)
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{message.sender}>",
        f"Subject: {wording.subject}",
        f"Date: {date}",
        f"Message-ID: {make_msgid(domain=hostname)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Description: Notification",
        "",
        f"This is the mail system at {hostname}.",
        "",
        wording.summary.format(until=until),
        "",
    ]
    for r in failed:
        head.append(f"<{r.address}>: {r.diagnostic or wording.part.lower()}")
    head += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        f"Reporting-MTA: dns; {hostname}",
    ]
    if message.envid:
        head.append(f"Original-Envelope-Id: {message.envid}")
    head.append(f"Arrival-Date: {arrival}")
    for r in failed:
        head += ["", f"Final-Recipient: rfc822; {r.address}"]
        if r.orcpt:
            kind, _, addr = r.orcpt.partition(";")
            head.append(f"Original-Recipient: {kind.strip().lower()}; {addr.strip()}")
        head += [f"Action: {action}", f"Status: {r.status or wording.default_status}"]
        if r.remote_mta:
            head.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            head.append(f"Diagnostic-Code: smtp; {_one_line(r.diagnostic)}")
        head.append(f"Last-Attempt-Date: {date}")
        if action == "delayed":
            head.append(f"Will-Retry-Until: {until}")
    headers_only = action != "failed" or message.ret.upper() == "HDRS"
    kind = "text/rfc822-headers" if headers_only else "message/rfc822"
    head += ["", f"--{boundary}", f"Content-Type: {kind}"]
    head.append(f"Content-Description: {wording.part}")
    head += ["", ""]
    body = _headers_of(original) if headers_only else original
    if not body.endswith(b"\n"):
        body += b"\n"
    tail = f"\n--{boundary}--\n".encode()
    return "\n".join(head).encode("utf-8") + body + tail


def _headers_of(message: bytes) -> bytes:
    end = message.find(b"\n\n")
    return message if end < 0 else message[: end + 1]


def _one_line(text: str) -> str:
    return " ".join(text.split())
