"""Message intake of an SMTP session: from DATA/BDAT to the reply that ends it.

The bytes of a message go to disk (a spool file, or straight into the mailboxes), or are
held in memory while their verdict is pending; then the verdicts are asked for, quotas
applied with the real size, and the message handed to daisymail.delivery, the one
durable hand-off, with the notices that follow it (the MessageNotices mixin,
smtp/message_notices.py). Every file operation runs in an I/O thread. The connection
(smtp/server.py) owns one intake per session and feeds it the protocol's message events;
it knows nothing of files, verdicts or quotas.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from email.utils import formatdate

from daisymail.delivery import (
    Plan,
    Spool,
    enforce_quota,
    local_mailboxes,
    plan_delivery,
    return_path,
    success_notice_recipients,
)
from daisymail.directory.model import Mailbox, Snapshot
from daisymail.filter.rspamd import Envelope as FilterEnvelope
from daisymail.logins import resolve_login
from daisymail.mailauth.inbound import InboundCheck, Judgement
from daisymail.mailauth.service import (
    MailAuth,
    strip_own_results,
    strip_own_results_in,
    verdict_fields,
)
from daisymail.observability import event
from daisymail.queue.spool import QueuedRecipient, QueueError
from daisymail.quota import Verdict
from daisymail.routing.recipients import Deliver
from daisymail.routing.relay import relay_network_of
from daisymail.smtp import filework
from daisymail.smtp.filework import FileWork
from daisymail.smtp.intake_parts import Service
from daisymail.smtp.message_notices import HEADER_KEEP, MessageNotices
from daisymail.smtp.protocol import Envelope, Reply, SessionInfo
from daisymail.smtp.submission import prepare_header, rewrite_envelope_sender
from daisymail.store.base import PendingDelivery, StorageError

log = logging.getLogger("daisymail.smtp")
BLOCK_SIZE = 64 * 1024  # message bytes gathered before a write in an I/O thread


class MessageIntake(MessageNotices):
    """The messages of one session, one at a time: what it receives, holds, stores."""

    def __init__(self, svc: Service, info: SessionInfo, tls_info: str | None) -> None:
        self.svc = svc
        self.info = info  # shared with the session: HELO name, TLS, login as they change
        self.ip = info.client_ip
        self.sid = info.session_id
        self.tls_info = tls_info  # for the Received: line; set again after STARTTLS
        self.sink: Spool | PendingDelivery | None = None  # the message being received
        self.block = bytearray()  # its bytes not yet handed to the I/O thread
        self.io = FileWork()  # this session's calls into the I/O threads, in order
        self.write_error: BaseException | None = None
        self.in_message = False
        self.messages = 0
        self.notice_rcpts: list[QueuedRecipient] = []  # local NOTIFY=SUCCESS recipients
        self.direct: tuple[list[Mailbox], int] = ([], 0)  # streamed into: mailboxes, prefix
        self.data_started = self.store_seconds = 0.0  # latency metrics (monotonic seconds)
        self.header = bytearray()  # their DSN returns the message header, kept as it arrives
        self.check: InboundCheck | None = None  # SPF/DKIM/DMARC of the message, fed as it streams
        # the checks that began it: a reload swapping the service's for the next message
        # (or turning them off) does not change how this one ends
        self.checker: MailAuth | None = None
        self.held = False  # checked local mail kept in self.block until its verdict
        self.judged: Judgement | None = None  # its verdict, for the accepted line

    async def start(self, env: Envelope) -> None:
        """MessageStarted: the transaction's latency is counted from here."""
        self.data_started = time.monotonic()
        await self._start_message(env)

    async def complete(self, env: Envelope) -> Reply:
        """MessageComplete: store the message; the reply to send for it."""
        self.in_message = False
        if self.held:
            return await self._store_held(env)
        if self.write_error is not None or self.sink is None:
            reply = self._storage_failed(env, self.write_error)
            await self.io.settle()
            return reply
        if isinstance(self.sink, Spool):
            return await self._store(env, self.sink)
        return await self._store_direct(env, self.sink)

    @property
    def _submitted(self) -> bool:
        """Mail from an authenticated user, on any port: its header is checked (send-as)
        and completed as submission does."""
        return self.svc.submission or self.info.authenticated_as is not None

    # -- message data ------------------------------------------------------------------
    # Every file operation of a message runs in an I/O thread (smtp/filework.py); the
    # bytes go there in blocks of about BLOCK_SIZE, so a session holds at most one block
    # and one read in memory.
    def _msg_id(self) -> str:
        return f"{self.sid}{self.messages:02d}"

    async def _start_message(self, env: Envelope) -> None:
        """Local-only mail on port 25 streams straight into its mailboxes (no spool copy).
        Submission (the header is checked and rewritten after DATA) and anything for the
        queue are staged in a spool file instead."""
        self.discard()
        self.write_error = None
        self.in_message = True
        self.notice_rcpts = success_notice_recipients(
            (r.address, r.target, r.params) for r in env.recipients
        )
        self.header = bytearray()
        boxes = None
        checks = self.svc.mail_auth is not None or self.svc.spam_filter is not None
        outside = checks and self._from_outside()  # one relay-network check per message
        mail_auth = self.svc.mail_auth if outside else None
        if not self._submitted and not self._filtered(outside):
            snap = self.svc.directory.snapshot()
            boxes = local_mailboxes((r.target for r in env.recipients), snap)
        if boxes and self._limited(boxes):
            boxes = None  # staged, so that a mailbox without room can be left out
        self.direct = (boxes or [], 0)
        if mail_auth is not None:
            # SPF/DKIM/DMARC verdicts for mail from outside on port 25, when configured
            self.check = mail_auth.begin(self.ip, self.info.client_name, env.sender)
            self.checker = mail_auth
        if boxes is None:
            self._stage()
            return
        if self.check is not None:
            # The verdict goes in front of the message: local mail is held in memory
            # until it is known, and staged only if it outgrows one block.
            self.held = True
            return
        trace = self._trace_headers(env, self._msg_id())
        self.direct = (boxes, len(return_path(env.sender)) + len(trace))
        handoff = self.svc.handoff
        try:
            if handoff.store.opening_touches_files(boxes):
                self.sink = await self.io.run(handoff.open_direct, boxes, env.sender, trace)
            else:  # no I/O to wait for: a thread hand-off would cost more than the call
                self.sink = handoff.open_direct(boxes, env.sender, trace)
        except (StorageError, OSError) as e:  # read on to the end, then answer 452
            self.write_error = e

    def _stage(self) -> None:
        """Receive the message into a spool file (the file is made on the first write)."""
        self.held = False
        self.sink = Spool(self.svc.spool_dir, f"{time.time_ns()}.{self.sid}.{self.messages}")

    def _limited(self, boxes: Sequence[Mailbox]) -> bool:
        """Several mailboxes, one with a quota: streamed into one file for all, the
        message could not leave out one without room. One mailbox streams as usual and
        is refused whole when the message does not fit."""
        quotas = self.svc.quotas
        return quotas is not None and len(boxes) > 1 and any(quotas.limit(b) for b in boxes)

    async def write(self, data: bytes) -> None:
        if self.notice_rcpts and len(self.header) < HEADER_KEEP and b"\n\n" not in self.header:
            self.header += data[: HEADER_KEEP - len(self.header)]
        if self.write_error is not None or (self.sink is None and not self.held):
            return
        self.block += data
        if len(self.block) >= BLOCK_SIZE:
            if self.held:
                self._stage()
            assert self.sink is not None
            await self._write_block(self.sink)

    async def _write_block(self, sink: Spool | PendingDelivery) -> None:
        block, self.block = bytes(self.block), bytearray()
        try:
            await self.io.run(filework.write, sink, block, self.check)
        except OSError as e:  # a full disk: read on to the end, then answer 452
            self.write_error = e
            self.discard()
            self.in_message = True

    def discard(self) -> None:
        """Drop the message being received. Its files are removed in an I/O thread, after
        any write of it still running there, so no fd is closed under a writer."""
        sink, self.sink = self.sink, None
        self.block = bytearray()
        self.in_message = False
        self.check = self.checker = None
        self.held = False
        self.judged = None
        if sink is not None:
            self.io.abort(sink)

    async def _store_held(self, env: Envelope) -> Reply:
        """Checked local mail that fit in one block: judged, then streamed into its
        mailboxes with the verdict in front, as unchecked mail is (no staging copy)."""
        check, mail_auth = self.check, self.checker
        assert check is not None and mail_auth is not None
        self.held = False
        message = bytes(self.block)
        verdict = self.judged = await mail_auth.judge_whole(check, message, self.sid)
        if verdict.reply is not None:
            self.discard()
            return Reply(verdict.reply[0], verdict.reply[1], (verdict.reply[2],))
        if verdict.forged:
            message = strip_own_results_in(message, mail_auth.authserv_id)
        self.block = bytearray(message)
        boxes = self.direct[0]
        trace = verdict.header.replace(b"\r\n", b"\n")
        trace += self._trace_headers(env, self._msg_id())
        self.direct = (boxes, len(return_path(env.sender)) + len(trace))
        handoff, junk = self.svc.handoff, verdict.action == "junk"
        try:
            if junk or handoff.store.opening_touches_files(boxes):
                sink = await self.io.run(handoff.open_direct, boxes, env.sender, trace, junk)
            else:  # no I/O to wait for: a thread hand-off would cost more than the call
                sink = handoff.open_direct(boxes, env.sender, trace)
        except (StorageError, OSError) as e:
            return self._storage_failed(env, e)
        self.sink = sink
        return await self._store_direct(env, sink)

    async def _store_direct(self, env: Envelope, sink: Spool | PendingDelivery) -> Reply:
        assert isinstance(sink, PendingDelivery)
        msg_id = self._msg_id()
        rest, self.block = bytes(self.block), bytearray()
        self.sink = None  # from here on, only a failed commit may remove what it wrote
        boxes, prefix = self.direct
        if self.svc.quotas is not None:
            size = prefix + env.size
            full = await self.io.run(enforce_quota, Plan(list(boxes)), self.svc.quotas, size)
            if full:
                self.io.abort(sink)
                await self.io.settle()
                return self._quota_refused(env, msg_id, full)
        stored = time.monotonic()
        try:
            await self.io.run(filework.finish_direct, sink, rest)
            self.store_seconds = time.monotonic() - stored
        except (StorageError, OSError) as e:
            self.io.abort(sink)
            await self.io.settle()
            return self._storage_failed(env, e)
        self._log_accepted(
            env,
            msg_id,
            env.sender,
            [r.target.mailbox for r in env.recipients if isinstance(r.target, Deliver)],
            "",
            self.judged,
        )
        self.judged = None
        self.messages += 1
        if self.notice_rcpts:
            await self._success_notice(env, env.sender, msg_id)
        return Reply(250, "2.0.0", (f"Ok: stored as {msg_id}",))

    def _storage_failed(self, env: Envelope, error: BaseException | None) -> Reply:
        self.discard()
        self.write_error = None
        event(
            log,
            "smtp.message.deferred",
            logging.WARNING,
            sid=self.sid,
            client=self.ip,
            id=self._msg_id(),
            sender=env.sender or "<>",
            error=str(error),
        )
        return Reply(452, "4.3.1", ("Insufficient system storage, try again later",))

    async def _store(self, env: Envelope, spool: Spool) -> Reply:
        """The staged message is complete: check it (submission), then hand it off."""
        msg_id = self._msg_id()
        snap = self.svc.directory.snapshot()
        sender = env.sender
        rest, self.block = bytes(self.block), bytearray()
        judged: Judgement | None = None
        try:
            check = self.check
            await self.io.run(filework.finish_spool, spool, rest, check)
            if self._submitted:
                refused = await self.io.run(self._prepare_submission, snap, spool)
                if refused is not None:
                    event(
                        log,
                        "smtp.message.refused",
                        sid=self.sid,
                        client=self.ip,
                        reason=refused.lines[0],
                    )
                    return refused
                if self.svc.masquerade_envelope():
                    sender = rewrite_envelope_sender(sender, snap, self.svc.hostname)
            plan = plan_delivery(
                ((r.address, r.target, r.params) for r in env.recipients),
                snap,
                sender=sender,
                srs=self.svc.srs,
            )
            trace = self._trace_headers(env, msg_id)
            if check is not None:
                mail_auth = self.checker
                assert mail_auth is not None
                verdict = judged = await mail_auth.judge(check, self.sid)
                if verdict.reply is not None:
                    return Reply(verdict.reply[0], verdict.reply[1], (verdict.reply[2],))
                if verdict.forged:
                    await self.io.run(strip_own_results, spool.path, mail_auth.authserv_id)
                trace = verdict.header.replace(b"\r\n", b"\n") + trace
                plan.junk = plan.junk or verdict.action == "junk"
            if self._filtered():
                assert self.svc.spam_filter is not None
                decision = await self.svc.spam_filter.judge(
                    spool.path,
                    FilterEnvelope(
                        self.ip,
                        self.info.client_name,
                        env.sender,
                        [r.address for r in env.recipients],
                        self.info.authenticated_as or "",
                        msg_id,
                    ),
                    self.sid,
                )
                if decision.reply is not None:
                    return Reply(decision.reply[0], decision.reply[1], (decision.reply[2],))
                trace = decision.header + trace
                plan.junk = plan.junk or decision.action == "junk"
            stored = time.monotonic()
            full: dict[str, Verdict] = {}
            returned = b""
            if plan.mailboxes and self.svc.quotas is not None:
                full, returned = await self.io.run(
                    self._check_quota, plan, spool.path, sender, trace
                )
            if full and plan.empty:
                return self._quota_refused(env, msg_id, full)
            queue_id = await self.io.run(
                functools.partial(
                    self.svc.handoff.deliver,
                    envid=env.mail_params.get("ENVID", ""),
                    ret=env.mail_params.get("RET", ""),
                ),
                spool.path,
                sender,
                plan,
                trace,
            )
            self.store_seconds = time.monotonic() - stored
        except (StorageError, QueueError, OSError) as e:
            return self._storage_failed(env, e)
        finally:
            self.discard()
        if queue_id:
            self.svc.on_queued()
        self.messages += 1
        mailboxes = [b.name for b in plan.mailboxes]
        self._log_accepted(env, msg_id, sender, mailboxes, queue_id, judged)
        if full:
            await self._quota_bounce(env, sender, msg_id, full, returned)
        if self.notice_rcpts:
            await self._success_notice(env, sender, msg_id)
        return Reply(250, "2.0.0", (f"Ok: stored as {msg_id}",))

    def _log_accepted(
        self,
        env: Envelope,
        msg_id: str,
        sender: str,
        mailboxes: list[str],
        queue_id: str,
        judged: Judgement | None,
    ) -> None:
        """One line per accepted message, with its verdict when it was checked."""
        verdict = verdict_fields(judged) if judged is not None else {}
        event(
            log,
            "smtp.message.accepted",
            logging.INFO,
            sid=self.sid,
            client=self.ip,
            id=msg_id,
            sender=sender or "<>",
            rcpts=",".join(r.address for r in env.recipients),
            size=env.size,
            mailboxes=",".join(dict.fromkeys(mailboxes)),
            queued=queue_id or None,
            seconds=round(time.monotonic() - self.data_started, 4),
            store_seconds=round(self.store_seconds, 4),
            **verdict,
        )

    def _prepare_submission(self, snap: Snapshot, spool: Spool) -> Reply | None:
        """Check and rewrite the header of the spooled message (I/O thread)."""
        login = resolve_login(snap, self.info.authenticated_as or "")
        if login is None:
            return Reply(530, "5.7.0", ("Authentication required",))
        refused: list[Reply] = []

        def edit(header: bytes) -> bytes | None:
            result = prepare_header(
                header, login=login, snapshot=snap, hostname=self.svc.hostname, now=time.time()
            )
            if result.refused is not None:
                refused.append(result.refused)
                return None
            return result.header

        spool.replace_header(edit)
        return refused[0] if refused else None

    def _from_outside(self) -> bool:
        """Port 25 mail from a client neither logged in nor in a relay network ([relay]
        networks or ``relay add``, as the relay check sees them): what SPF/DKIM/DMARC
        and rspamd judge."""
        if self.svc.submission or self.info.authenticated_as is not None:
            return False
        snap = self.svc.directory.snapshot()
        return relay_network_of(self.ip, self.svc.relay_networks(), snap) is None

    def _filtered(self, outside: bool | None = None) -> bool:
        """Mail from outside on port 25 is checked by rspamd when configured."""
        if self.svc.spam_filter is None:
            return False
        return self._from_outside() if outside is None else outside

    def _trace_headers(self, env: Envelope, msg_id: str) -> bytes:
        helo = self.info.client_name or "unknown"
        # RFC 3848 / RFC 6531 protocol names: ESMTP[S][A], UTF8SMTP[S][A]
        with_ = ("UTF8SMTP" if env.smtputf8 else "ESMTP") + ("S" if self.info.tls else "")
        with_ += "A" if self.info.authenticated_as else ""
        lines = [
            f"Received: from {helo} ([{self.ip}])",
            f"\tby {self.svc.hostname} (Daisy) with {with_} id {msg_id}",
        ]
        if self.tls_info:
            lines.append(f"\t({self.tls_info})")
        for_part = f"\tfor <{env.recipients[0].address}>;" if len(env.recipients) == 1 else "\t;"
        lines.append(f"{for_part} {formatdate(localtime=False, usegmt=True)}")
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
