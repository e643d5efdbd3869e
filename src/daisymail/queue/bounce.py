"""Delivery status notifications (RFC 3464) for recipients that failed for good.

A DSN is a multipart/report: a human-readable part, a message/delivery-status part with
one block per failed recipient, and the original message, whole (``RET=FULL`` or no RET,
as Postfix does) or as text/rfc822-headers for ``RET=HDRS``. It goes to the envelope
sender from the null sender, so a DSN can never cause another one. Pure: bytes in and
out, LF line ends as the queue and the mailboxes store them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from email.utils import formatdate, make_msgid

from daisymail.queue.spool import QueuedMessage, QueuedRecipient

EXPIRED_STATUS = "4.4.7"
"""RFC 3463 "delivery time expired", kept in the 4 class as sendmail reports it."""


def should_notify(message: QueuedMessage, recipient: QueuedRecipient) -> bool:
    """A failure notice is due: not for the null sender, not for NOTIFY=NEVER or a NOTIFY
    list without FAILURE, and only once."""
    return bool(message.sender) and recipient.wants_failure_notice and not recipient.notified


def build_dsn(
    message: QueuedMessage,
    failed: Sequence[QueuedRecipient],
    original: bytes,
    *,
    hostname: str,
    now: float,
) -> bytes:
    boundary = f"{secrets.token_hex(8)}/{hostname}"
    date = formatdate(now, localtime=False, usegmt=True)
    arrival = formatdate(message.created, localtime=False, usegmt=True)
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{message.sender}>",
        "Subject: Undelivered Mail Returned to Sender",
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
        "Your message could not be delivered to one or more recipients.",
        "",
    ]
    for r in failed:
        head.append(f"<{r.address}>: {r.diagnostic or 'delivery failed'}")
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
        head += ["Action: failed", f"Status: {r.status or '5.0.0'}"]
        if r.remote_mta:
            head.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            head.append(f"Diagnostic-Code: smtp; {_one_line(r.diagnostic)}")
        head.append(f"Last-Attempt-Date: {date}")
    headers_only = message.ret.upper() == "HDRS"
    kind = "text/rfc822-headers" if headers_only else "message/rfc822"
    head += ["", f"--{boundary}", f"Content-Type: {kind}", "Content-Description: Undelivered"]
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
