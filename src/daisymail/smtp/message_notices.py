"""Quotas with the real size, and the notices that follow a message: the 452/552 when no
mailbox has room, a failure DSN for the recipients a full mailbox left out, and the
NOTIFY=SUCCESS "delivered" DSN.

A mixin of MessageIntake (smtp/message.py), which provides what IntakeParts declares.
Kept apart because it is one job that starts once the message is stored or refused: it
tells the sender, and only reads what receiving the message gathered (the header kept
for a DSN, the recipients that asked for notice).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from daisymail.delivery import (
    Plan,
    enforce_quota,
    quota_failures,
    quota_refusal,
    return_path,
    send_dsn,
    send_success_notice,
)
from daisymail.observability import event
from daisymail.queue.spool import QueuedMessage, QueueError
from daisymail.quota import Verdict
from daisymail.routing.recipients import Deliver
from daisymail.smtp.intake_parts import IntakeParts
from daisymail.smtp.protocol import Envelope, Reply
from daisymail.store.base import StorageError

log = logging.getLogger("daisymail.smtp")
HEADER_KEEP = 64 * 1024  # of each message, for the header a success DSN returns


class MessageNotices(IntakeParts):
    """Quotas and notices of MessageIntake, which provides what IntakeParts declares."""

    # -- quotas ------------------------------------------------------------------------
    # RCPT refuses a full mailbox (policy); here the real size decides (I/O thread). A
    # message no mailbox has room for gets 452/552; if others took it, the recipients
    # left out get a failure DSN, as one reply after DATA cannot refuse only some.
    def _check_quota(
        self, plan: Plan, source: str, sender: str, trace: bytes
    ) -> tuple[dict[str, Verdict], bytes]:
        size = len(return_path(sender)) + len(trace) + os.path.getsize(source)
        refused = enforce_quota(plan, self.svc.quotas, size)
        if not refused or plan.empty:
            return refused, b""
        with open(source, "rb") as f:  # the header, for the DSN
            head = f.read(HEADER_KEEP)
        end = head.find(b"\n\n")
        return refused, head if end < 0 else head[: end + 1]

    def _quota_refused(self, env: Envelope, msg_id: str, refused: dict[str, Verdict]) -> Reply:
        code, text = quota_refusal(refused)
        enhanced, _, words = text.partition(" ")
        event(
            log,
            "smtp.message.over_quota",
            sid=self.sid,
            client=self.ip,
            id=msg_id,
            sender=env.sender or "<>",
            mailboxes=",".join(refused),
            reply=f"{code} {enhanced}",
        )
        return Reply(code, enhanced, (words,))

    async def _quota_bounce(
        self, env: Envelope, sender: str, msg_id: str, refused: dict[str, Verdict], header: bytes
    ) -> None:
        """A failure DSN (headers only) for the recipients whose mailbox had no room."""
        failed = quota_failures(((r.address, r.target, r.params) for r in env.recipients), refused)
        left_out = {
            r.address
            for r in env.recipients
            if isinstance(r.target, Deliver) and r.target.mailbox in refused
        }
        self.notice_rcpts = [r for r in self.notice_rcpts if r.address not in left_out]
        event(
            log,
            "smtp.rcpt.over_quota",
            logging.WARNING,
            sid=self.sid,
            id=msg_id,
            mailboxes=",".join(refused),
            rcpts=",".join(sorted(left_out)),
        )
        if not sender or not failed or self.svc.injector is None:
            return
        envid = env.mail_params.get("ENVID", "")
        msg = QueuedMessage(msg_id, sender, failed, time.time(), envid=envid, ret="HDRS")
        injector, hostname = self.svc.injector, self.svc.hostname
        try:
            await self.io.run(send_dsn, injector, hostname, msg, failed, header, msg.created)
        except (StorageError, QueueError, OSError) as e:
            event(log, "smtp.dsn.failed", logging.WARNING, sid=self.sid, id=msg_id, error=str(e))

    async def _success_notice(self, env: Envelope, sender: str, msg_id: str) -> None:
        """NOTIFY=SUCCESS for recipients stored here: a "delivered" DSN (RFC 3461 5.2.2).

        Best effort: the message itself is safe whatever happens to its notice."""
        rcpts = self.notice_rcpts
        if not sender or self.svc.injector is None:
            return
        msg = QueuedMessage(
            msg_id,
            sender,
            rcpts,
            time.time(),
            envid=env.mail_params.get("ENVID", ""),
            ret=env.mail_params.get("RET", ""),
        )
        try:
            await asyncio.to_thread(
                send_success_notice, self.svc.injector, self.svc.hostname, msg, bytes(self.header)
            )
        except (StorageError, QueueError, OSError) as e:
            event(log, "smtp.dsn.failed", logging.WARNING, sid=self.sid, id=msg_id, error=str(e))
