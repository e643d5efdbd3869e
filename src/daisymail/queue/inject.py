"""Mail made on this host (sendmail, bounces): route each recipient, store or queue it.

The same decisions as the SMTP server, without a session: hosted addresses go through
virtusertable into the store, everything else into the queue. Local copies are durable
before queued ones become visible, as in the server, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field

from daisymail.directory.base import Directory
from daisymail.directory.model import Mailbox
from daisymail.queue.spool import Queue, QueuedRecipient
from daisymail.routing.addresses import split_address
from daisymail.routing.recipients import Deliver, Forward, Reject, Remote, resolve_recipient
from daisymail.store.base import Delivery, MailboxStore


@dataclass
class Injected:
    local: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    queue_id: str = ""


class Injector:
    def __init__(
        self, directory: Directory, store: MailboxStore, queue: Queue, spool_dir: str
    ) -> None:
        self.directory = directory
        self.store = store
        self.queue = queue
        self.spool_dir = spool_dir

    def inject(
        self,
        message: bytes,
        sender: str,
        recipients: list[str],
        *,
        trace: bytes,
        envid: str = "",
        ret: str = "",
    ) -> Injected:
        """message: LF line ends; trace: the Received header(s) to put in front.

        Raises StorageError or QueueError when nothing could be made durable.
        """
        snap = self.directory.snapshot()
        result = Injected()
        boxes: list[Mailbox] = []
        remote: list[QueuedRecipient] = []
        for rcpt in recipients:
            decision = resolve_recipient(split_address(rcpt), snap).decision
            if isinstance(decision, Deliver):
                box = snap.mailboxes[decision.mailbox]
                if box not in boxes:
                    boxes.append(box)
                result.local.append(rcpt)
            elif isinstance(decision, Forward | Remote):
                orcpt = f"rfc822;{rcpt}" if isinstance(decision, Forward) else ""
                remote.append(QueuedRecipient(decision.address, orcpt=orcpt))
                result.queued.append(decision.address)
            else:
                assert isinstance(decision, Reject)
                result.rejected.append((rcpt, decision.reply()))
        prepared = (
            self.queue.prepare([trace, message], sender, remote, envid=envid, ret=ret)
            if remote
            else None
        )
        try:
            if boxes:
                self._deliver_local(boxes, message, sender, trace)
        except BaseException:
            if prepared is not None:
                prepared.abort()
            raise
        if prepared is not None:
            result.queue_id = prepared.commit()
        return result

    def _deliver_local(
        self, boxes: list[Mailbox], message: bytes, sender: str, trace: bytes
    ) -> None:
        os.makedirs(self.spool_dir, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="local.", dir=self.spool_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(message)
            prefix = f"Return-Path: <{sender}>\n".encode("utf-8", "surrogateescape") + trace
            self.store.deliver(boxes, Delivery(path, prefix, sender))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
