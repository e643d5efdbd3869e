"""The one durable hand-off of a message: into local mailboxes and the outbound queue.

Every way mail enters Daisy ends here: the SMTP session (smtp/message.py), ``daisymail
sendmail`` and the DSNs this host writes (``Injector``, ``send_dsn``). The rule kept in
this one place: local copies are made durable first, then the queued copy becomes
visible, all or nothing, so a caller that answers 250 (or exits 0) after ``deliver``
returns never loses the message and a failure leaves nothing behind.

Everything here blocks on the filesystem: callers on an event loop run it in a worker
thread. Messages are streamed through files in fixed-size chunks, never held whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate

from daisymail.directory.base import Directory
from daisymail.directory.model import Mailbox, Snapshot
from daisymail.mailauth.srs import SRSKeys
from daisymail.observability import event
from daisymail.queue.bounce import Action, build_dsn
from daisymail.queue.spool import Prepared, Queue, QueuedMessage, QueuedRecipient, QueueError
from daisymail.quota import Quotas, Verdict
from daisymail.routing.addresses import split_address
from daisymail.routing.recipients import Deliver, Forward, Reject, Remote, resolve_recipient
from daisymail.store.base import Delivery, MailboxStore, PendingDelivery, StorageError
from daisymail.store.durable import rewrite_header, write_all

log = logging.getLogger("daisymail.delivery")
JUNK = "Junk"  # the Maildir++ folder (.Junk) of mail judged spam
READ_SIZE = 256 * 1024

__all__ = [
    "Handoff",
    "Injected",
    "Injector",
    "Plan",
    "Spool",
    "enforce_quota",
    "local_mailboxes",
    "plan_delivery",
    "quota_failures",
    "quota_refusal",
    "return_path",
    "send_dsn",
    "send_success_notice",
    "success_notice_recipients",
]


def return_path(sender: str) -> bytes:
    """The Return-Path line a local copy starts with (RFC 5321 4.4)."""
    return f"Return-Path: <{sender}>\n".encode("utf-8", "surrogateescape")


@dataclass
class Plan:
    """Where one message goes: each local mailbox once, and the recipients to queue."""

    mailboxes: list[Mailbox] = field(default_factory=list)
    queued: list[QueuedRecipient] = field(default_factory=list)
    junk: bool = False  # judged spam: Maildir copies go to the Junk folder (mbox: inbox)
    # Forwards queued under an SRS-rewritten envelope sender (a queue entry of their own)
    forwarded: list[QueuedRecipient] = field(default_factory=list)
    forward_sender: str = ""

    @property
    def empty(self) -> bool:
        return not (self.mailboxes or self.queued or self.forwarded)


def plan_delivery(
    recipients: Iterable[tuple[str, object, Mapping[str, str]]],
    snapshot: Snapshot,
    *,
    sender: str = "",
    srs: SRSKeys | None = None,
) -> Plan:
    """(address as given, routing decision, RCPT parameters) of each accepted recipient.

    A forward keeps the original recipient as ORCPT unless the client gave one (RFC 3461
    4.2), so a later DSN names the address the sender used. With ``srs``, forwards of
    mail from a sender outside the hosted domains are queued under the SRS address made
    in the domain they were forwarded from, so SPF passes at the destination and a
    bounce comes back here. Raises StorageError when a mailbox was removed since the
    recipient was accepted: never accept a copy that cannot be stored."""
    plan = Plan()
    sender_domain = sender.rpartition("@")[2].lower()
    rewrite = srs is not None and bool(sender) and sender_domain not in snapshot.domains
    for address, target, params in recipients:
        if isinstance(target, Deliver):
            box = snapshot.mailboxes.get(target.mailbox)
            if box is None:
                raise StorageError(f"mailbox {target.mailbox} no longer exists")
            if box not in plan.mailboxes:
                plan.mailboxes.append(box)
        elif isinstance(target, Forward | Remote):
            orcpt = params.get("ORCPT", "")
            if not orcpt and isinstance(target, Forward):
                orcpt = f"rfc822;{address}"
            rcpt = QueuedRecipient(target.address, orcpt, params.get("NOTIFY", ""))
            if rewrite and isinstance(target, Forward):
                assert srs is not None
                if not plan.forward_sender:
                    plan.forward_sender = srs.forward(sender, address.rpartition("@")[2])
                plan.forwarded.append(rcpt)
            else:
                plan.queued.append(rcpt)
    return plan


def local_mailboxes(targets: Iterable[object], snapshot: Snapshot) -> list[Mailbox] | None:
    """The mailboxes when every recipient is stored here (so the message can stream
    straight into them), else None."""
    boxes: list[Mailbox] = []
    for target in targets:
        if not isinstance(target, Deliver):
            return None
        box = snapshot.mailboxes.get(target.mailbox)
        if box is None:
            return None
        if box not in boxes:
            boxes.append(box)
    return boxes or None


def enforce_quota(plan: Plan, quotas: Quotas | None, size: int) -> dict[str, Verdict]:
    """Take out of ``plan`` the mailboxes that a message of ``size`` octets as stored
    (Return-Path and trace included) does not fit in; their verdicts by mailbox name.

    The caller answers for them: when nothing is left, with ``quota_refusal`` as the
    transaction's reply; otherwise the rest is delivered and the refused recipients get
    a failure DSN (``quota_failures``), never silently dropped. Blocks (stat calls)."""
    refused: dict[str, Verdict] = {}
    if quotas is None:
        return refused
    for box in list(plan.mailboxes):
        verdict = quotas.check(box, size)
        if verdict is not Verdict.OK:
            refused[box.name] = verdict
            plan.mailboxes.remove(box)
    return refused


def quota_refusal(refused: Mapping[str, Verdict]) -> tuple[int, str]:
    """One reply for a message no mailbox had room for: 452 4.2.2 when any may have room
    later, 552 5.2.2 when it is larger than every quota."""
    if any(v is Verdict.FULL for v in refused.values()):
        return Verdict.FULL.smtp
    return Verdict.TOO_BIG.smtp


def quota_failures(
    recipients: Iterable[tuple[str, object, Mapping[str, str]]], refused: Mapping[str, Verdict]
) -> list[QueuedRecipient]:
    """The recipients whose mailbox had no room, as a failure DSN lists them (those that
    said NOTIFY=NEVER or without FAILURE are left out)."""
    failed = []
    for address, target, params in recipients:
        if isinstance(target, Deliver) and target.mailbox in refused:
            code, text = refused[target.mailbox].smtp
            rcpt = QueuedRecipient(
                address,
                params.get("ORCPT", ""),
                params.get("NOTIFY", ""),
                "failed",
                "5.2.2",
                f"{code} {text}",
            )
            if rcpt.wants_failure_notice:
                failed.append(rcpt)
    return failed


class Spool:
    """A message staged in the spool dir while it arrives, for the queue, the mbox
    appends and the submission header rewrite. Not fsync'd: the durable copies are the
    ones ``Handoff.deliver`` makes. The file is created on the first write."""

    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, name)
        self._fd: int | None = None
        self._made = False

    def write(self, data: bytes) -> None:
        """OSError on a full disk, say."""
        if self._fd is None:
            if self._made:
                raise OSError(f"{self.path} is closed")
            os.makedirs(self.directory, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._made = True
        write_all(self._fd, data)

    def close(self) -> None:
        """The message is complete (an empty one still gets its file)."""
        if not self._made:
            self.write(b"")
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        """Remove the file. Idempotent."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def replace_header(self, edit: Callable[[bytes], bytes | None]) -> None:
        """Give the header (up to the blank line) to edit; when it returns new header
        bytes, the file is rewritten with them (a new file renamed over this one)."""
        self.close()
        rewrite_header(self.path, edit)


def _chunks(first: bytes, path: str) -> Iterator[bytes]:
    yield first
    with open(path, "rb") as f:
        while chunk := f.read(READ_SIZE):
            yield chunk


class Handoff:
    """The store and the queue, as one hand-off; queue None: no outbound delivery."""

    def __init__(self, store: MailboxStore, queue: Queue | None) -> None:
        self.store = store
        self.queue = queue

    def deliver(
        self,
        source: str,
        sender: str,
        plan: Plan,
        trace: bytes,
        *,
        envid: str = "",
        ret: str = "",
    ) -> str:
        """Make the message at ``source`` (LF line ends) durable everywhere ``plan`` says;
        the queue id ("" when nothing was queued).

        trace: the Received header(s) to put in front; local copies also get the
        Return-Path. The queued copy is written first but made visible only after every
        local copy is durable. Raises StorageError or QueueError, leaving nothing."""
        prepared: list[Prepared] = []
        for rcpts, envelope_sender in (
            (plan.queued, sender),
            (plan.forwarded, plan.forward_sender),
        ):
            if not rcpts:
                continue
            if self.queue is None:
                raise QueueError("outbound delivery is not available")
            try:
                prepared.append(
                    self.queue.prepare(
                        _chunks(trace, source), envelope_sender, rcpts, envid=envid, ret=ret
                    )
                )
            except BaseException:
                for p in prepared:
                    p.abort()
                raise
        try:
            if plan.mailboxes:
                folder = JUNK if plan.junk else ""
                self.store.deliver(
                    plan.mailboxes,
                    Delivery(source, return_path(sender) + trace, sender, folder=folder),
                )
        except BaseException:
            for p in prepared:
                p.abort()
            raise
        return ",".join(p.commit() for p in prepared)

    def open_direct(
        self, mailboxes: Sequence[Mailbox], sender: str, trace: bytes, junk: bool = False
    ) -> PendingDelivery:
        """Stream a local-only message straight into its mailboxes (no spool copy where
        the format allows); its commit() is the durable point. StorageError/OSError.
        ``junk``: judged spam, filed in the Junk folder (as ``Plan.junk``)."""
        return self.store.open_delivery(
            mailboxes, return_path(sender) + trace, sender, JUNK if junk else ""
        )


@dataclass
class Injected:
    local: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    queue_id: str = ""


class Injector:
    """Mail made on this host (sendmail, DSNs): route each recipient as the SMTP server
    would (without a session or a relay check: the sender is local), then hand off."""

    def __init__(
        self,
        directory: Directory,
        store: MailboxStore,
        queue: Queue,
        spool_dir: str,
        srs: SRSKeys | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.directory = directory
        self.handoff = Handoff(store, queue)
        self.quotas = quotas
        self.spool_dir = spool_dir
        self.srs = srs

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
        routed: list[tuple[str, object, Mapping[str, str]]] = []
        for rcpt in recipients:
            reverse = self.srs.reverse if self.srs is not None else None
            decision = resolve_recipient(split_address(rcpt), snap, reverse).decision
            if isinstance(decision, Reject):
                result.rejected.append((rcpt, decision.reply()))
                continue
            routed.append((rcpt, decision, {}))
            if isinstance(decision, Deliver):
                result.local.append(rcpt)
            else:
                assert isinstance(decision, Forward | Remote)
                result.queued.append(decision.address)
        plan = plan_delivery(routed, snap, sender=sender, srs=self.srs)
        size = len(return_path(sender)) + len(trace) + len(message)
        refused = enforce_quota(plan, self.quotas, size)
        for rcpt, target, _ in routed:
            if isinstance(target, Deliver) and target.mailbox in refused:
                code, text = refused[target.mailbox].smtp
                result.local.remove(rcpt)
                result.rejected.append((rcpt, f"{code} {text}"))
        if plan.empty:
            return result
        spool = Spool(self.spool_dir, f"local.{time.time_ns()}.{os.getpid()}.{id(self)}")
        try:
            spool.write(message)
            spool.close()
            result.queue_id = self.handoff.deliver(
                spool.path, sender, plan, trace, envid=envid, ret=ret
            )
        except OSError as e:
            raise StorageError(f"cannot stage the message: {e}") from e
        finally:
            spool.abort()
        return result


def send_dsn(
    injector: Injector,
    hostname: str,
    msg: QueuedMessage,
    failed: list[QueuedRecipient],
    data: bytes,
    now: float,
    action: Action = "failed",
    retry_until: float | None = None,
) -> None:
    """Deliver a DSN about ``failed`` to the envelope sender, locally or through the
    queue. A DSN has the null sender, so it never causes another DSN."""
    dsn = build_dsn(
        msg, failed, data, hostname=hostname, now=now, action=action, retry_until=retry_until
    )
    trace = (
        f"Received: by {hostname} (Daisy) id {msg.id}-dsn;\n"
        f"\t{formatdate(now, localtime=False, usegmt=True)}\n"
    ).encode()
    result = injector.inject(dsn, "", [msg.sender], trace=trace)
    if result.rejected:
        event(
            log,
            "queue.bounce_undeliverable",
            logging.WARNING,
            id=msg.id,
            reason=result.rejected[0][1],
        )
    else:
        event(
            log,
            "queue.bounced" if action == "failed" else "queue.dsn",
            id=msg.id,
            to=msg.sender,
            action=None if action == "failed" else action,
            rcpts=",".join(r.address for r in failed),
        )


def success_notice_recipients(
    recipients: Iterable[tuple[str, object, Mapping[str, str]]],
) -> list[QueuedRecipient]:
    """The recipients stored here that asked for NOTIFY=SUCCESS, as their "delivered" DSN
    lists them (RFC 3461 5.2.2); queued ones get theirs from the queue."""
    rcpts = [
        QueuedRecipient(address, params.get("ORCPT", ""), params["NOTIFY"], "delivered", "2.0.0")
        for address, target, params in recipients
        if isinstance(target, Deliver) and "NOTIFY" in params
    ]
    return [r for r in rcpts if r.wants("SUCCESS")]


def send_success_notice(
    injector: Injector, hostname: str, msg: QueuedMessage, header: bytes
) -> None:
    """The "delivered" DSN for msg.recipients, stored here at msg.created; header: the
    message's header, which the DSN returns."""
    send_dsn(injector, hostname, msg, msg.recipients, header, msg.created, "delivered")
