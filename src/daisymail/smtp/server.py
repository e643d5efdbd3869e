"""asyncio glue for the SMTP protocol core: sockets, TLS, timeouts, the session's I/O.

The protocol object decides everything; this module only moves bytes: it reads commands
and message data, answers, runs STARTTLS and AUTH, and passes the message events to the
session's MessageIntake (smtp/message.py), which receives and stores the message. Any
unexpected error inside a session is logged with its session id and answered with a
451, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from daisymail.auth import Authenticator
from daisymail.delivery import Handoff, Injector
from daisymail.directory.base import Directory
from daisymail.filter.rspamd import SpamFilter
from daisymail.limits import ConnectionLimiter
from daisymail.listener import Sessions
from daisymail.mailauth.service import MailAuth
from daisymail.mailauth.srs import SRSKeys
from daisymail.observability import event
from daisymail.queue.spool import Queue
from daisymail.quota import Quotas
from daisymail.smtp.message import MessageIntake
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
from daisymail.store.base import MailboxStore

log = logging.getLogger("daisymail.smtp")
READ_SIZE = 256 * 1024


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
    mail_auth: MailAuth | None = None  # SPF/DKIM/DMARC verdicts ([verify], port 25)
    spam_filter: SpamFilter | None = None  # rspamd ([filter], port 25)
    relay_networks: Callable[[], Sequence[str]] = lambda: ()  # [relay] networks, as reloaded
    srs: SRSKeys | None = None  # rewrites the sender of forwarded mail ([srs] secret)
    quotas: Quotas | None = None  # mailbox quotas, checked again with the real size
    sessions: Sessions = field(init=False)
    handoff: Handoff = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.name, log, self._refusal)
        self.handoff = Handoff(self.store, self.queue)

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
        self.intake = MessageIntake(svc, self.info, self.tls_info)

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
                    busy = self.intake.in_message
                    timeout = self.svc.data_timeout if busy else self.svc.command_timeout
                    try:
                        data = await self.svc.sessions.read(
                            self.reader, self.writer, READ_SIZE, timeout, busy=busy
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
            self.intake.discard()
            messages = self.intake.messages
            event(log, "smtp.disconnect", sid=self.sid, client=self.ip, messages=messages)

    async def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)
            await self.svc.sessions.drain(self.writer)

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, MessageStarted):
            await self.intake.start(ev.envelope)
        elif isinstance(ev, MessageData):
            await self.intake.write(ev.data)
        elif isinstance(ev, MessageComplete):
            self.session.message_result(await self.intake.complete(ev.envelope))
        elif isinstance(ev, MessageAborted):
            event(log, "smtp.message.aborted", sid=self.sid, client=self.ip, reason=ev.reason)
            self.intake.discard()
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
        self.tls_info = self.intake.tls_info = _describe_tls(self.writer)
        self.info.tls = True
        event(log, "smtp.tls", sid=self.sid, client=self.ip, cipher=self.tls_info)
        self.session.tls_started()

    # -- AUTH --------------------------------------------------------------------------
    async def _authenticate(self, ev: AuthAttempt) -> tuple[bool, str | None]:
        login = await self.svc.auth.verify(self.ip, ev.username, ev.password, sid=self.sid)
        if login is None:
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


def _describe_tls(writer: asyncio.StreamWriter) -> str | None:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    cipher = obj.cipher()
    version = obj.version() or "TLS"
    name = cipher[0] if cipher else "unknown"
    bits = cipher[2] if cipher else 0
    return f"using {version} with cipher {name} ({bits}/{bits} bits)"
