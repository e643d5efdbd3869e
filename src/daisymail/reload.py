"""SIGHUP: the re-read config applied to the running server, for new sessions and
messages; what needs a restart (the listeners, the HTTP side's sockets) is kept as it is.

The parts of [verify] and [filter], and the warning that [srs] is off, are made here
for the start as for a reload, so that both make them the same way.
"""

from __future__ import annotations

import logging
from typing import Protocol

from daisymail import config as config_mod
from daisymail.auth import Authenticator
from daisymail.config import Config, ConfigError
from daisymail.delivery import Injector
from daisymail.dns import DnspythonResolver
from daisymail.dns import from_config as resolver_from_config
from daisymail.filter.rspamd import SpamFilter
from daisymail.imap.server import ImapService
from daisymail.limits import ConnectionLimiter
from daisymail.mailauth.service import MailAuth
from daisymail.mailauth.srs import from_config as srs_from_config
from daisymail.mailauth.workers import VerdictWorkers
from daisymail.observability import event
from daisymail.pop3.server import Pop3Service
from daisymail.queue.runner import Runner
from daisymail.quota import parse_size
from daisymail.smtp.inbound import InboundPolicy
from daisymail.smtp.server import SmtpService
from daisymail.tls import ServerTLS, TLSError

log = logging.getLogger("daisymail")


class Running(Protocol):
    """What a reload reads and swaps of the running server (app.App), named here so that
    this module does not depend on the one that calls it."""

    cfg: Config
    config_path: str | None
    auth: Authenticator
    limiter: ConnectionLimiter
    tls: ServerTLS
    services: list[SmtpService | Pop3Service | ImapService]
    runner: Runner | None
    resolver: DnspythonResolver | None
    injector: Injector | None
    inbound_policy: InboundPolicy | None
    verdict_workers: VerdictWorkers | None


def reload(app: Running) -> None:
    """SIGHUP: re-read the config file; a file that does not load changes nothing."""
    try:
        new = config_mod.load(app.config_path)
    except ConfigError as e:
        event(log, "reload.failed", logging.ERROR, error=str(e))
        return
    if new.listen != app.cfg.listen:
        event(
            log,
            "reload.listen_unchanged",
            logging.WARNING,
            note="listener changes need a restart",
        )
    app.cfg.limits = new.limits
    app.auth.failure_delay = new.limits.auth_failure_delay
    app.auth.cache.ttl = new.auth.cache_ttl
    if not app.auth.cache.enabled:
        app.auth.cache.clear()
    app.cfg.relay = new.relay
    app.cfg.pop3 = new.pop3
    app.cfg.auth = new.auth
    app.cfg.smtp = new.smtp
    app.cfg.queue = new.queue
    app.cfg.rewrite = new.rewrite
    # The HTTP side's sockets and API switch need a restart; what it serves does not.
    app.cfg.http.metrics_networks = new.http.metrics_networks
    app.cfg.http.client_host = new.http.client_host
    app.cfg.http.mta_sts = new.http.mta_sts
    _reload_quota(app, new.storage.quota)
    app.limiter.total = new.limits.max_connections
    app.limiter.per_ip = new.limits.max_connections_per_ip
    for svc in app.services:
        svc.sessions.write_timeout = new.limits.write_timeout
    _reload_trust(app, new)
    try:
        app.tls.reload()
    except TLSError as e:
        event(log, "reload.tls_failed", logging.ERROR, error=str(e))
    event(log, "reloaded", config=app.cfg.source)


def _reload_quota(app: Running, text: str) -> None:
    """[storage] quota applies to new SMTP transactions and IMAP logins at once."""
    octets = parse_size(text)  # load() checked it
    app.cfg.storage.quota = text
    for svc in app.services:
        if isinstance(svc, SmtpService) and svc.quotas is not None:
            svc.quotas.default = octets  # the one Quotas of policies, hand-off, queue
        elif isinstance(svc, ImapService):
            svc.quota = octets


def _reload_trust(app: Running, new: Config) -> None:
    """[dns], [verify], [filter] and [srs] as reloaded: their parts are rebuilt and
    swapped in for the next message; a message being checked ends with the old ones.
    The resolver (and its cache) is kept unless [dns] changed."""
    old_srs = app.cfg.srs
    if new.dns != app.cfg.dns or app.resolver is None:
        app.resolver = resolver_from_config(new.dns.nameservers, new.dns.timeout)
        if app.runner is not None:
            app.runner.resolver = app.resolver
    app.cfg.dns, app.cfg.verify = new.dns, new.verify
    app.cfg.filter, app.cfg.srs = new.filter, new.srs
    mail_auth = mail_auth_for(app.cfg, app.resolver, app.verdict_workers)
    spam_filter = spam_filter_for(app.cfg)
    srs = srs_from_config(new.srs.secret)
    for svc in app.services:
        if isinstance(svc, SmtpService):
            svc.srs = srs
            if not svc.submission:
                svc.mail_auth, svc.spam_filter = mail_auth, spam_filter
    if app.inbound_policy is not None:
        app.inbound_policy.srs = srs.reverse if srs is not None else None
    if app.injector is not None:
        app.injector.srs = srs
    if srs is None and old_srs.secret:
        log_srs_off()


def mail_auth_for(
    cfg: Config, resolver: DnspythonResolver, workers: VerdictWorkers | None
) -> MailAuth | None:
    """The port 25 checks of ``[verify]``; None when they are off. The verdict workers
    are the server's ([verify] workers is read at start only)."""
    return MailAuth(cfg, resolver, workers) if cfg.verify.enabled else None


def spam_filter_for(cfg: Config) -> SpamFilter | None:
    """rspamd of ``[filter]``; None when it is off."""
    f = cfg.filter
    return SpamFilter(f.rspamd_url, f.timeout) if f.rspamd_url else None


def log_srs_off() -> None:
    event(
        log,
        "srs.off",
        logging.WARNING,
        reason="[srs] secret is empty: forwards keep their sender, SPF may fail there",
    )
