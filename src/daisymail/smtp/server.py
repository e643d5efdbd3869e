"""asyncio glue for the SMTP protocol core: sockets, TLS, timeouts, spooling, storing.

The protocol object decides everything; this module only moves bytes, streams
message data to a spool file, makes it durable through the MailboxStore in a worker
thread, and answers with the result. Any unexpected error inside a session is
logged with its session id and answered with a 451, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import BinaryIO

from daisymail.auth import Authenticator
from daisymail.directory.base import Directory
from daisymail.directory.model import Mailbox, Snapshot
from daisymail.limits import ConnectionLimiter
from daisymail.listener import Sessions
from daisymail.observability import event
from daisymail.pop3.login import split_login
from daisymail.queue.inject import Injector
from daisymail.queue.runner import send_dsn
from daisymail.queue.spool import Prepared, Queue, QueuedMessage, QueuedRecipient, QueueError
from daisymail.routing.recipients import Deliver, Forward, Remote
from daisymail.smtp.protocol import (
    AuthAttempt,
    Close,
    Envelope,
    MessageAborted,
    MessageComplete,
    MessageData,
    MessageStarted,
    Policy,
    RcptDecision,
    Reply,
    ServerSession,
    SessionInfo,
    Settings,
    StartTLS,
)
from daisymail.smtp.submission import find_login, prepare_header, rewrite_envelope_sender
from daisymail.store.base import Delivery, MailboxStore, PendingDelivery, StorageError

log = logging.getLogger("daisymail.smtp")
READ_SIZE = 256 * 1024
HEADER_KEEP = 64 * 1024  # of each message, for the header a success DSN returns


@dataclass
class SmtpService:
    """Everything one SMTP listener needs; rebuilt settings apply to new sessions."""

    name: str  # "smtp", "submission", "submissions"
    settings: Callable[[SessionInfo], Settings]
    policy: Policy
    directory: Directory
    store: MailboxStore
    spool_dir: str
    hostname: str
    limiter: ConnectionLimiter
    auth: Authenticator
    tls_context: ssl.SSLContext | None
    implicit_tls: bool = False
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    queue: Queue | None = None
    on_queued: Callable[[], None] = lambda: None
    submission: bool = False
    masquerade_envelope: Callable[[], bool] = lambda: False
    injector: Injector | None = None  # for NOTIFY=SUCCESS notices of local deliveries
    sessions: Sessions = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.name, log, self._refusal)

    def _refusal(self, why: str) -> bytes:
        return Reply(
            421, "4.3.2" if "shutting" in why else "4.7.0", (f"{self.hostname} {why}, try later",)
        ).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.sessions.accept(reader, writer, self.limiter, self._serve)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, sid: str
    ) -> None:
        await _Connection(self, reader, writer, ip, sid).run()


class _LoggedPolicy:
    """The listener's policy, logging every refused sender or recipient with the session."""

    def __init__(self, inner: Policy, ip: str, sid: str) -> None:
        self.inner, self.ip, self.sid = inner, ip, sid

    def check_sender(
        self, session: SessionInfo, sender: str, params: dict[str, str]
    ) -> Reply | None:
        reply = self.inner.check_sender(session, sender, params)
        if reply is not None and reply.code >= 400:
            event(
                log,
                "smtp.mail.refused",
                sid=self.sid,
                client=self.ip,
                sender=sender or "<>",
                reply=f"{reply.code} {reply.enhanced or ''}".strip(),
            )
        return reply

    def check_recipient(
        self, session: SessionInfo, envelope: Envelope, address: str, params: dict[str, str]
    ) -> RcptDecision:
        decision = self.inner.check_recipient(session, envelope, address, params)
        if not decision.accepted:
            r = decision.reply
            event(
                log,
                "smtp.rcpt.refused",
                sid=self.sid,
                client=self.ip,
                sender=envelope.sender or "<>",
                rcpt=address,
                reply=" ".join(p for p in (str(r.code), r.enhanced, *r.lines[:1]) if p),
            )
        return decision


class _Connection:
    def __init__(
        self,
        svc: SmtpService,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ip: str,
        sid: str,
    ) -> None:
        self.svc = svc
        self.reader = reader
        self.writer = writer
        self.ip = ip
        self.sid = sid
        self.tls_info: str | None = None
        if svc.implicit_tls:
            self.tls_info = _describe_tls(writer)
        self.info = SessionInfo(
            client_ip=ip,
            client_name="",
            tls=svc.implicit_tls,
            authenticated_as=None,
            session_id=sid,
        )
        policy = _LoggedPolicy(svc.policy, ip, sid)
        self.session = ServerSession(svc.settings(self.info), policy, self.info)
        self.spool: BinaryIO | None = None
        self.direct: PendingDelivery | None = None
        self.write_error: BaseException | None = None
        self.spool_path = ""
        self.in_message = False
        self.messages = 0
        self.notice_rcpts: list[QueuedRecipient] = []  # local NOTIFY=SUCCESS recipients
        self.data_started = self.store_seconds = 0.0  # latency metrics (monotonic seconds)
        self.header = bytearray()  # their DSN returns the message header, kept as it arrives

    async def run(self) -> None:
        event(
            log,
            "smtp.connect",
            sid=self.sid,
            client=self.ip,
            service=self.svc.name,
            tls=bool(self.tls_info),
        )
        try:
            self.session.start()
            await self._flush()
            while True:
                ev = self.session.next_event()
                if ev is None:
                    await self._flush()
                    timeout = self.svc.data_timeout if self.in_message else self.svc.command_timeout
                    try:
                        data = await self.svc.sessions.read(
                            self.reader, self.writer, READ_SIZE, timeout, busy=self.in_message
                        )
                    except TimeoutError:
                        self.session.timeout()
                        event(log, "smtp.timeout", sid=self.sid, client=self.ip)
                        await self._flush()
                        continue
                    except (ConnectionError, ssl.SSLError):
                        data = b""
                    self.session.receive_data(data)
                    if not data:
                        ev = self.session.next_event()
                        if ev is None:
                            break
                    else:
                        continue
                if isinstance(ev, Close):
                    await self._flush()
                    break
                await self._handle(ev)
                await self._flush()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("smtp.error sid=%s client=%s", self.sid, self.ip)
            with contextlib.suppress(Exception):
                self.writer.write(
                    Reply(451, "4.3.0", ("Internal error, try again later",)).encode()
                )
                await self.svc.sessions.drain(self.writer)
        finally:
            self._discard_spool()
            event(log, "smtp.disconnect", sid=self.sid, client=self.ip, messages=self.messages)

    async def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)
            await self.svc.sessions.drain(self.writer)

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, MessageStarted):
            self.data_started = time.monotonic()  # for the transaction latency metric
            self._discard_spool()
            self.notice_rcpts = _success_notice_rcpts(ev.envelope)
            self.header = bytearray()
            self.direct = self._open_direct(ev.envelope)
            if self.direct is None:
                self._spool_write(b"")
            self.in_message = True
        elif isinstance(ev, MessageData):
            self._message_write(ev.data)
        elif isinstance(ev, MessageComplete):
            if self.direct is not None or self.write_error is not None:
                reply = await self._store_direct(ev.envelope)
            else:
                reply = await self._store(ev.envelope)
            self.session.message_result(reply)
        elif isinstance(ev, MessageAborted):
            event(log, "smtp.message.aborted", sid=self.sid, client=self.ip, reason=ev.reason)
            self._discard_spool()
        elif isinstance(ev, StartTLS):
            await self._start_tls()
        elif isinstance(ev, AuthAttempt):
            ok, identity = await self._authenticate(ev)
            self.session.auth_result(ok, identity)

    # -- TLS ---------------------------------------------------------------------------
    async def _start_tls(self) -> None:
        await self._flush()
        assert self.svc.tls_context is not None
        try:
            await self.writer.start_tls(self.svc.tls_context)
        except (ssl.SSLError, ConnectionError, OSError) as e:
            event(log, "smtp.tls.failed", sid=self.sid, client=self.ip, error=str(e))
            raise ConnectionError("TLS handshake failed") from None
        self.tls_info = _describe_tls(self.writer)
        self.info.tls = True
        event(log, "smtp.tls", sid=self.sid, client=self.ip, cipher=self.tls_info)
        self.session.tls_started()

    # -- AUTH --------------------------------------------------------------------------
    async def _authenticate(self, ev: AuthAttempt) -> tuple[bool, str | None]:
        user, domain = split_login(ev.username)
        snap = self.svc.directory.snapshot()
        login = snap.find_login(user, domain)
        if not await self.svc.auth.verify(self.ip, ev.username, login, ev.password):
            event(
                log,
                "smtp.auth.failed",
                logging.WARNING,
                sid=self.sid,
                client=self.ip,
                user=ev.username,
                mechanism=ev.mechanism,
            )
            return False, None
        assert login is not None
        self.info.authenticated_as = login.address
        event(
            log,
            "smtp.auth",
            sid=self.sid,
            client=self.ip,
            user=login.address,
            mechanism=ev.mechanism,
        )
        return True, login.address

    # -- message data ------------------------------------------------------------------
    def _open_direct(self, env: Envelope) -> PendingDelivery | None:
        """Local-only mail on port 25 streams straight into its mailboxes (no spool copy).

        Submission (headers are checked and rewritten after DATA) and anything for the
        queue take the spool file instead."""
        if self.svc.submission:
            return None
        snap = self.svc.directory.snapshot()
        boxes: list[Mailbox] = []
        for rcpt in env.recipients:
            target = rcpt.target
            if not isinstance(target, Deliver):
                return None
            box = snap.mailboxes.get(target.mailbox)
            if box is None:
                return None
            if box not in boxes:
                boxes.append(box)
        if not boxes:
            return None
        msg_id = f"{self.sid}{self.messages:02d}"
        prefix = f"Return-Path: <{env.sender}>\n".encode("utf-8", "surrogateescape")
        prefix += self._trace_headers(env, msg_id)
        try:
            return self.svc.store.open_delivery(boxes, prefix, env.sender)
        except (StorageError, OSError) as e:
            self.write_error = e
            return None

    def _message_write(self, data: bytes) -> None:
        if self.notice_rcpts and len(self.header) < HEADER_KEEP and b"\n\n" not in self.header:
            self.header += data[: HEADER_KEEP - len(self.header)]
        if self.write_error is not None:
            return
        try:
            if self.direct is not None:
                self.direct.write(data)
            else:
                self._spool_write(data)
        except OSError as e:  # a full disk: read on to the end, then answer 452
            self.write_error = e
            self._discard_spool()
            self.in_message = True

    async def _store_direct(self, env: Envelope) -> Reply:
        direct, self.direct = self.direct, None
        error, self.write_error = self.write_error, None
        self.in_message = False
        msg_id = f"{self.sid}{self.messages:02d}"
        if direct is not None and error is None:
            try:
                await asyncio.to_thread(direct.commit)
            except StorageError as e:
                error = e
        if error is not None or direct is None:
            if direct is not None:
                direct.abort()
            self._log_deferred(env, msg_id, error)
            return Reply(452, "4.3.1", ("Insufficient system storage, try again later",))
        self._log_accepted(
            env,
            msg_id,
            env.sender,
            [r.target.mailbox for r in env.recipients if isinstance(r.target, Deliver)],
            "",
        )
        self.messages += 1
        if self.notice_rcpts:
            await self._success_notice(env, env.sender, msg_id)
        return Reply(250, "2.0.0", (f"Ok: stored as {msg_id}",))

    def _spool_write(self, data: bytes) -> None:
        if self.spool is None:
            os.makedirs(self.svc.spool_dir, exist_ok=True)
            self.spool_path = os.path.join(
                self.svc.spool_dir, f"{time.time_ns()}.{self.sid}.{self.messages}"
            )
            self.spool = open(self.spool_path, "wb")  # noqa: SIM115 - closed in _discard_spool
            self.in_message = True
        self.spool.write(data)

    def _discard_spool(self) -> None:
        if self.direct is not None:
            self.direct.abort()
            self.direct = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self.spool_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.spool_path)
            self.spool_path = ""
        self.in_message = False

    async def _store(self, env: Envelope) -> Reply:
        if self.spool is None:
            self._spool_write(b"")
        assert self.spool is not None
        self.spool.close()
        self.spool = None
        self.in_message = False
        msg_id = f"{self.sid}{self.messages:02d}"
        snap = self.svc.directory.snapshot()
        sender = env.sender
        try:
            if self.svc.submission:
                refused = await asyncio.to_thread(self._prepare_submission, snap)
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
            mailboxes = []
            queued: list[QueuedRecipient] = []
            for rcpt in env.recipients:
                target = rcpt.target
                if isinstance(target, Deliver):
                    box = snap.mailboxes.get(target.mailbox)
                    if box is None:  # removed since RCPT: never accept a copy we cannot store
                        raise StorageError(f"mailbox {target.mailbox} no longer exists")
                    if box not in mailboxes:
                        mailboxes.append(box)
                elif isinstance(target, Forward | Remote):
                    orcpt = rcpt.params.get("ORCPT", "")
                    if not orcpt and isinstance(target, Forward):
                        orcpt = f"rfc822;{rcpt.address}"
                    queued.append(
                        QueuedRecipient(target.address, orcpt, rcpt.params.get("NOTIFY", ""))
                    )
            received = self._trace_headers(env, msg_id)
            prefix = f"Return-Path: <{sender}>\n".encode("utf-8", "surrogateescape") + received
            stored = time.monotonic()
            queue_id = await asyncio.to_thread(
                self._make_durable, env, sender, mailboxes, queued, prefix, received
            )
            self.store_seconds = time.monotonic() - stored
        except (StorageError, QueueError) as e:
            self._log_deferred(env, msg_id, e)
            return Reply(452, "4.3.1", ("Insufficient system storage, try again later",))
        finally:
            self._discard_spool()
        if queue_id:
            self.svc.on_queued()
        self.messages += 1
        self._log_accepted(env, msg_id, sender, [b.name for b in mailboxes], queue_id)
        if self.notice_rcpts:
            await self._success_notice(env, sender, msg_id)
        return Reply(250, "2.0.0", (f"Ok: stored as {msg_id}",))

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
                send_dsn,
                self.svc.injector,
                self.svc.hostname,
                msg,
                rcpts,
                bytes(self.header),
                msg.created,
                "delivered",
            )
        except (StorageError, QueueError, OSError) as e:
            event(log, "smtp.dsn.failed", logging.WARNING, sid=self.sid, id=msg_id, error=str(e))

    def _log_deferred(self, env: Envelope, msg_id: str, error: BaseException | None) -> None:
        event(
            log,
            "smtp.message.deferred",
            logging.WARNING,
            sid=self.sid,
            client=self.ip,
            id=msg_id,
            sender=env.sender or "<>",
            error=str(error),
        )

    def _log_accepted(
        self, env: Envelope, msg_id: str, sender: str, mailboxes: list[str], queue_id: str
    ) -> None:
        event(
            log,
            "smtp.message.accepted",
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
        )

    def _make_durable(
        self,
        env: Envelope,
        sender: str,
        mailboxes: list[Mailbox],
        queued: list[QueuedRecipient],
        prefix: bytes,
        received: bytes,
    ) -> str:
        """Local copies first, then the queued one becomes visible: all or nothing."""
        prepared: Prepared | None = None
        if queued:
            assert self.svc.queue is not None
            prepared = self.svc.queue.prepare(
                _chunks(received, self.spool_path),
                sender,
                queued,
                envid=env.mail_params.get("ENVID", ""),
                ret=env.mail_params.get("RET", ""),
            )
        try:
            if mailboxes:
                self.svc.store.deliver(mailboxes, Delivery(self.spool_path, prefix, sender))
        except BaseException:
            if prepared is not None:
                prepared.abort()
            raise
        return prepared.commit() if prepared is not None else ""

    def _prepare_submission(self, snap: Snapshot) -> Reply | None:
        """Check and rewrite the header of the spooled message (a new file, renamed over)."""
        login = find_login(snap, self.info.authenticated_as or "")
        if login is None:
            return Reply(530, "5.7.0", ("Authentication required",))
        with open(self.spool_path, "rb") as f:
            header = bytearray()
            for line in f:
                if line in (b"\n", b"\r\n"):
                    break
                header += line
            else:
                line = b""
            result = prepare_header(
                bytes(header),
                login=login,
                snapshot=snap,
                hostname=self.svc.hostname,
                now=time.time(),
            )
            if result.refused is not None:
                return result.refused
            tmp = self.spool_path + ".sub"
            with open(tmp, "wb") as out:
                out.write(result.header)
                out.write(line)
                shutil.copyfileobj(f, out, READ_SIZE)
        os.replace(tmp, self.spool_path)
        return None

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


def _success_notice_rcpts(env: Envelope) -> list[QueuedRecipient]:
    """The recipients stored here that asked for NOTIFY=SUCCESS, as their DSN lists them."""
    rcpts = [
        QueuedRecipient(
            r.address, r.params.get("ORCPT", ""), r.params["NOTIFY"], "delivered", "2.0.0"
        )
        for r in env.recipients
        if isinstance(r.target, Deliver) and "NOTIFY" in r.params
    ]
    return [r for r in rcpts if r.wants("SUCCESS")]


def _chunks(first: bytes, path: str) -> Iterator[bytes]:
    yield first
    with open(path, "rb") as f:
        while chunk := f.read(READ_SIZE):
            yield chunk


def _describe_tls(writer: asyncio.StreamWriter) -> str | None:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    cipher = obj.cipher()
    version = obj.version() or "TLS"
    name = cipher[0] if cipher else "unknown"
    bits = cipher[2] if cipher else 0
    return f"using {version} with cipher {name} ({bits}/{bits} bits)"
