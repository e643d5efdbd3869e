"""Builds the parts from the config, runs the listeners, stops them and reloads them.

The only module that chooses implementations: the directory backend, the mailbox
store, TLS. stop() stops accepting, gives sessions in flight a grace period to finish,
then closes them; reload() applies a re-read config (settings for new sessions) and
the certificates (daisymail.reload). The process around it (event loop, signals, data
folders, privileges) is daisymail.process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from daisymail.auth import Authenticator
from daisymail.authcache import CredentialCache
from daisymail.config import Config, parse_hostport
from daisymail.delivery import Injector
from daisymail.directory.base import Directory
from daisymail.directory.factory import open_directory
from daisymail.dns import DnspythonResolver
from daisymail.dns import from_config as resolver_from_config
from daisymail.imap import protocol as imap_protocol
from daisymail.imap.server import ImapService
from daisymail.limits import ConnectionLimiter, raise_open_files
from daisymail.mailauth.keystore import KeyStore
from daisymail.mailauth.signing import sign_message, store_for
from daisymail.mailauth.srs import from_config as srs_from_config
from daisymail.mailauth.workers import VerdictWorkers, default_count, signer
from daisymail.observability import event
from daisymail.pop3 import protocol as pop3_protocol
from daisymail.pop3.server import Pop3Service, is_loopback
from daisymail.queue.runner import Runner
from daisymail.queue.spool import Queue
from daisymail.quota import Quotas, parse_size
from daisymail.reload import log_srs_off, mail_auth_for, spam_filter_for
from daisymail.reload import reload as reload_config
from daisymail.smtp import protocol as smtp_protocol
from daisymail.smtp.inbound import InboundPolicy
from daisymail.smtp.server import SmtpService
from daisymail.smtp.submission import SubmissionPolicy
from daisymail.store.base import ViewOptions
from daisymail.store.files import FileStore
from daisymail.store.imap_state import FileMailboxState
from daisymail.store.intake import IntakeJournal, ReplayResult, replay
from daisymail.throttle import AuthThrottle
from daisymail.tls import ServerTLS, TLSError

if TYPE_CHECKING:
    from daisymail.http.server import HttpSide

log = logging.getLogger("daisymail")
GRACE_SECONDS = 20.0


class StartupError(Exception):
    pass


@dataclass
class App:
    cfg: Config
    config_path: str | None
    directory: Directory
    tls: ServerTLS
    limiter: ConnectionLimiter
    auth: Authenticator
    servers: list[asyncio.Server] = field(default_factory=list)
    services: list[SmtpService | Pop3Service | ImapService] = field(default_factory=list)
    runner: Runner | None = None
    runner_task: asyncio.Task[None] | None = None
    refresher_task: asyncio.Task[None] | None = None
    journal: IntakeJournal | None = None
    listening: list[tuple[str, asyncio.Server]] = field(default_factory=list)
    http: HttpSide | None = None
    # what [dns], [verify], [filter] and [srs] build; a reload swaps them (daisymail.reload)
    resolver: DnspythonResolver | None = None
    injector: Injector | None = None
    inbound_policy: InboundPolicy | None = None
    verdict_workers: VerdictWorkers | None = None  # kept across reloads
    dkim_keys: KeyStore | None = None

    @classmethod
    def build(cls, cfg: Config, config_path: str | None) -> App:
        try:
            tls = ServerTLS(
                cfg.path(cfg.tls.cert),
                cfg.path(cfg.tls.key),
                {
                    name: (cfg.path(d) / "cert.pem", cfg.path(d) / "key.pem")
                    for name, d in cfg.tls.sni.items()
                },
            )
        except TLSError as e:
            raise StartupError(f"{e} (run daisymail init to create a self-signed one)") from None
        directory = open_directory(cfg)
        limiter = ConnectionLimiter(cfg.limits.max_connections, cfg.limits.max_connections_per_ip)
        raise_open_files(cfg.limits.max_connections)
        throttle = AuthThrottle(time.monotonic, base_delay=cfg.limits.auth_failure_delay)
        auth = Authenticator(
            directory,
            throttle,
            cfg.limits.auth_failure_delay,
            default_domain=lambda: cfg.default_login_domain,  # cfg is updated by reload()
            cache=CredentialCache(time.monotonic, cfg.auth.cache_ttl),
        )
        return cls(
            cfg=cfg,
            config_path=config_path,
            directory=directory,
            tls=tls,
            limiter=limiter,
            auth=auth,
        )

    # -- per-session settings, read from the current config --------------------------------
    def smtp_settings(self, service: str) -> smtp_protocol.Settings:
        c = self.cfg
        submission = service != "smtp"
        auth = submission or c.smtp.mx_auth
        return smtp_protocol.Settings(
            hostname=c.hostname,
            max_message_size=c.limits.max_message_size,
            max_recipients=c.limits.max_recipients,
            max_line_length=c.limits.max_line_length,
            max_errors=c.limits.max_errors,
            max_hops=c.limits.max_hops,
            starttls_available=service != "submissions",
            auth_mechanisms=("PLAIN", "LOGIN") if auth else (),
            auth_requires_tls=True,
            require_auth_for_mail=submission,
        )

    def pop3_settings(self, ip: str, tls_active: bool) -> pop3_protocol.Settings:
        c = self.cfg.pop3
        return pop3_protocol.Settings(
            hostname=self.cfg.hostname,
            tls_active=tls_active,
            stls_available=not tls_active,
            allow_plaintext=tls_active or is_loopback(ip) or c.allow_plaintext_auth,
            apop_enabled=c.apop,
            expire_days=c.expire_days or None,
            login_delay=c.login_delay or None,
            delete_after_retr=c.delete_after_retr,
            delete_after_top=c.delete_after_top,
        )

    def imap_settings(self, ip: str, tls_active: bool) -> imap_protocol.Settings:
        """Plaintext logins follow the POP3 rule and setting: TLS, loopback, or allowed."""
        return imap_protocol.Settings(
            hostname=self.cfg.hostname,
            tls_active=tls_active,
            starttls_available=not tls_active,
            allow_plaintext=tls_active or is_loopback(ip) or self.cfg.pop3.allow_plaintext_auth,
            max_line=max(self.cfg.limits.max_line_length, 64 * 1024),
            max_literal=self.cfg.limits.max_message_size,
            max_errors=self.cfg.limits.max_errors,
        )

    def view_options(self) -> ViewOptions:
        return ViewOptions(
            use_x_uidl=self.cfg.pop3.use_x_uidl,
            hide_imap_control_message=self.cfg.pop3.hide_imap_control_message,
        )

    # -- listeners ----------------------------------------------------------------------------
    def mail_auth_busy(self) -> bool:
        """Whether the mail-auth workers have work now: checks on, or a DKIM key to sign
        with. Without either they start with the first request (an idle worker is some
        30 MB)."""
        keys = self.dkim_keys
        return self.cfg.verify.enabled or (keys is not None and not keys.empty())

    async def start(self) -> None:
        c = self.cfg
        spool = str(c.path(c.storage.spool_dir))
        os.makedirs(spool, exist_ok=True)
        if c.storage.intake_journal:
            self.journal = IntakeJournal(intake_dir(c))
        store = FileStore(str(c.path(c.storage.mail_dir)), journal=self.journal)
        queue = Queue(str(c.path(c.queue.dir)))
        try:
            queue.ensure()
        except OSError as e:
            raise StartupError(f"cannot create the queue dir {queue.directory}: {e}") from None
        srs = srs_from_config(c.srs.secret)
        if srs is None:
            log_srs_off()
        quotas = Quotas(store, parse_size(c.storage.quota))
        injector = self.injector = Injector(self.directory, store, queue, spool, srs, quotas)
        own = [
            parse_hostport(a)
            for n in ("smtp", "submission", "submissions")
            for a in getattr(c.listen, n)
        ]
        keys = self.dkim_keys = store_for(c)
        seal_id = c.verify.authserv_id or c.hostname
        count = default_count() if c.verify.workers < 0 else c.verify.workers
        workers = self.verdict_workers = VerdictWorkers(count) if count else None
        sign_elsewhere = None
        if workers is not None:
            workers.configure_signing(str(keys.root), seal_id)
            sign_elsewhere = signer(workers, keys)
        resolver = self.resolver = resolver_from_config(c.dns.nameservers, c.dns.timeout)
        self.runner = Runner(
            queue,
            lambda: self.cfg.queue,
            injector,
            c.hostname,
            listeners=own,
            sign=lambda chunks, sender: sign_message(keys, chunks, sender, authserv_id=seal_id),
            sign_elsewhere=sign_elsewhere,
            resolver=resolver,
        )
        policy = self.inbound_policy = InboundPolicy(
            self.directory,
            c.relay,
            queue_available=True,
            hostname=c.hostname,
            srs=srs.reverse if srs is not None else None,
            quotas=quotas,
        )
        submission = SubmissionPolicy(self.directory, c.relay, c.hostname, quotas)
        ctx = self.tls.context
        mail_auth = mail_auth_for(c, resolver, workers)
        spam_filter = spam_filter_for(c)
        for name in ("smtp", "submission", "submissions"):
            svc = SmtpService(
                name=name,
                settings=lambda info, n=name: self.smtp_settings(n),  # type: ignore[misc]
                policy=policy if name == "smtp" else submission,
                directory=self.directory,
                store=store,
                spool_dir=spool,
                hostname=c.hostname,
                limiter=self.limiter,
                auth=self.auth,
                tls_context=self.tls.mx_context if name == "smtp" else ctx,
                implicit_tls=name == "submissions",
                command_timeout=c.limits.command_timeout,
                data_timeout=c.limits.data_timeout,
                queue=queue,
                on_queued=self.runner.wake,
                submission=name != "smtp",
                masquerade_envelope=lambda: self.cfg.rewrite.masquerade_envelope,
                injector=injector,
                mail_auth=mail_auth if name == "smtp" else None,
                spam_filter=spam_filter if name == "smtp" else None,
                relay_networks=lambda: self.cfg.relay.networks,
                srs=srs,
                quotas=quotas,
            )
            await self._listen(svc, getattr(c.listen, name), ctx if svc.implicit_tls else None)
        for name in ("pop3", "pop3s"):
            psvc = Pop3Service(
                name=name,
                settings=self.pop3_settings,
                directory=self.directory,
                store=store,
                view_options=self.view_options,
                hostname=c.hostname,
                limiter=self.limiter,
                auth=self.auth,
                tls_context=ctx,
                implicit_tls=name == "pop3s",
                timeout=c.limits.pop3_timeout,
            )
            await self._listen(psvc, getattr(c.listen, name), ctx if psvc.implicit_tls else None)
        imap_state = FileMailboxState()
        for name in ("imap", "imaps"):
            isvc = ImapService(
                name=name,
                settings=self.imap_settings,
                directory=self.directory,
                store=store,
                state=imap_state,
                hostname=c.hostname,
                limiter=self.limiter,
                auth=self.auth,
                tls_context=ctx,
                implicit_tls=name == "imaps",
                append_limit=c.limits.max_message_size,
                quota=parse_size(c.storage.quota),
            )
            await self._listen(isvc, getattr(c.listen, name), ctx if isvc.implicit_tls else None)
        if c.http.listen or c.http.listen_tls:
            self._bind_http()

    def _bind_http(self) -> None:
        """The HTTP side's sockets, bound now (a low port needs root) and served later."""
        from daisymail.http.metrics import Metrics, ScrapeSources
        from daisymail.http.server import HttpConfigError, HttpContext, HttpSide
        from daisymail.observability import add_hook

        c = self.cfg
        metrics = Metrics()
        metrics.add_sources(
            ScrapeSources(
                sessions_open=lambda: {s.name: len(s.sessions.tasks) for s in self.services},
                queue_dir=lambda: str(self.cfg.path(self.cfg.queue.dir)),
                certificates=self._certificates,
            )
        )
        add_hook(metrics.on_event)
        api = None
        if c.http.api:
            from daisymail.directory.tokens import TokenStore
            from daisymail.http.api import Api

            # The SQL directory has the database open: never re-create it (see TokenStore).
            tokens = TokenStore(c.database_url, create=c.directory.backend != "sql")
            api = Api(lambda: self.cfg, self.directory, tokens)
        ctx = HttpContext(
            config=lambda: self.cfg,
            directory=self.directory,
            metrics=metrics,
            tls_context=self.tls.context,
            listeners_up=lambda: {n: s.is_serving() for n, s in self.listening},
            api=api,
        )
        self.http = HttpSide(ctx)
        try:
            self.http.bind()
        except HttpConfigError as e:
            raise StartupError(str(e)) from None

    def _certificates(self) -> list[Path]:
        c = self.cfg
        return [c.path(c.tls.cert), *(c.path(d) / "cert.pem" for d in c.tls.sni.values())]

    def _start_journal(self) -> ReplayResult:
        """Replay what a crash left, also when the journal is now switched off: copies
        acknowledged under it may still need their bytes."""
        if self.journal is not None:
            return self.journal.start()
        return replay(intake_dir(self.cfg))

    async def serve_sessions(self) -> None:
        """Replay the intake journal, then accept connections and run the queue: only
        after the privileges are dropped (a replay writes into the users' Maildirs)."""
        try:
            replayed = await asyncio.to_thread(self._start_journal)
        except OSError as e:
            raise StartupError(f"cannot replay the intake journal: {e}") from None
        if replayed.segments:
            event(
                log,
                "intake.replayed",
                segments=replayed.segments,
                records=replayed.records,
                rewritten=replayed.rewritten,
                absent=replayed.absent,
            )
        for server in self.servers:
            await server.start_serving()
        if self.http is not None:
            await self.http.start()
        assert self.runner is not None
        self.runner_task = asyncio.create_task(self.runner.run())
        if self.directory.refresh_in_background():
            self.refresher_task = asyncio.create_task(self._refresh_directory())

    async def _refresh_directory(self) -> None:
        """Sessions read the directory snapshot from memory; this keeps it current, the
        database work in a worker thread, one check at a time, a few times a second."""
        while True:
            await asyncio.sleep(self.directory.poll_interval)
            t0 = time.monotonic()
            try:
                changed = await asyncio.to_thread(self.directory.poll)
            except Exception as e:  # the last snapshot stays in service
                event(log, "directory.refresh.failed", logging.WARNING, error=str(e))
                continue
            if changed:
                self.auth.sync(self.directory.snapshot())  # departed accounts leave the cache
                event(log, "directory.reloaded", seconds=round(time.monotonic() - t0, 3))

    async def _listen(
        self,
        svc: SmtpService | Pop3Service | ImapService,
        addrs: list[str],
        ctx: ssl.SSLContext | None,
    ) -> None:
        if not addrs:
            return
        svc.sessions.write_timeout = self.cfg.limits.write_timeout
        self.services.append(svc)
        for addr in addrs:
            host, port = parse_hostport(addr)
            try:
                server = await asyncio.start_server(
                    svc.handle,
                    host,
                    port,
                    ssl=ctx,
                    reuse_address=True,
                    backlog=1024,
                    limit=1 << 20,
                    ssl_handshake_timeout=30 if ctx else None,
                    start_serving=False,
                )
            except OSError as e:
                raise StartupError(f"cannot listen on {addr} ({svc.name}): {e.strerror}") from None
            self.servers.append(server)
            self.listening.append((svc.name, server))
            event(log, "listen", service=svc.name, address=addr)

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Stop accepting; let sessions finish for `grace` seconds; then cancel them."""
        for server in self.servers:
            server.close()
        if self.http is not None:
            await self.http.stop()
            from daisymail.observability import remove_hook

            remove_hook(self.http.ctx.metrics.on_event)
        for svc in self.services:
            svc.sessions.stop()
        tasks = [t for svc in self.services for t in svc.sessions.tasks]
        event(log, "stopping", sessions=len(tasks), grace=grace)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self.runner is not None:
            await self.runner.stop()
        for task in (self.runner_task, self.refresher_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.verdict_workers is not None:
            await self.verdict_workers.wait_closed()
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        self.directory.close()

    def reload(self) -> None:
        """SIGHUP: the re-read config applied to the running server (daisymail.reload)."""
        reload_config(self)


def intake_dir(cfg: Config) -> str:
    """The intake journal lives on the mail filesystem, next to the copies it covers."""
    return os.path.join(cfg.path(cfg.storage.mail_dir), ".intake")
