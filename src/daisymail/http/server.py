"""The HTTP side: metrics, health, client autoconfig, MTA-STS and the admin API.

Sockets are bound with the mail listeners (before privileges are dropped, so port 443
works) and served afterwards. HTTPS uses the mail listeners' TLS context, so the same
certificates, SNI choices and reloads apply. Any failure inside a handler is answered
with a JSON 500 and logged; a client never sees a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daisymail.config import Config, parse_hostport
from daisymail.directory.base import Directory
from daisymail.http import autoconfig
from daisymail.http.api import Api
from daisymail.http.health import HealthSources, readiness
from daisymail.http.metrics import Metrics
from daisymail.mailauth import mta_sts
from daisymail.observability import event

log = logging.getLogger("daisymail.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 256 * 1024


class HttpConfigError(Exception):
    """The HTTP side cannot start as configured; str(e) says why."""


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(cfg: Config) -> None:
    """The admin API is never served over plain HTTP on a non-loopback address."""
    if not cfg.http.api:
        return
    for addr in cfg.http.listen:
        host, _port = parse_hostport(addr)
        if not is_loopback_host(host):
            raise HttpConfigError(
                f"http.api is on and http.listen has {addr}: the API is served over plain "
                "HTTP only on loopback; use http.listen_tls for other addresses"
            )


@dataclass
class HttpContext:
    config: Callable[[], Config]
    directory: Directory
    metrics: Metrics
    tls_context: ssl.SSLContext
    listeners_up: Callable[[], Mapping[str, bool]]
    api: Api | None = None


def _in_networks(ip: str | None, networks: list[str]) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if request.path.startswith("/api/") and e.status >= 400:
            return web.json_response({"error": e.reason}, status=e.status)
        raise
    except Exception as e:
        event(log, "http.error", logging.ERROR, path=request.path, error=repr(e)[:300])
        return web.json_response({"error": "internal error"}, status=500)


class HttpSide:
    def __init__(self, ctx: HttpContext) -> None:
        self.ctx = ctx
        self.sockets: list[tuple[socket.socket, bool]] = []
        self.runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def bind(self) -> None:
        cfg = self.ctx.config()
        check_config(cfg)
        for addrs, tls in ((cfg.http.listen, False), (cfg.http.listen_tls, True)):
            for addr in addrs:
                host, port = parse_hostport(addr)
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                try:
                    sock = socket.create_server((host, port), family=family, reuse_port=False)
                except OSError as e:
                    raise HttpConfigError(f"cannot listen on {addr} (http): {e.strerror}") from None
                self.sockets.append((sock, tls))
                event(log, "listen", service="https" if tls else "http", address=addr)

    async def start(self) -> None:
        app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        for path in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"):
            app.router.add_get(path, self.thunderbird)
        for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
            app.router.add_post(path, self.outlook)
        app.router.add_get("/apple/mail.mobileconfig", self.apple)
        app.router.add_get("/.well-known/mta-sts.txt", self.mta_sts)
        if self.ctx.api is not None:
            self.ctx.api.add_routes(app)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        for sock, tls in self.sockets:
            site = web.SockSite(
                self.runner, sock, ssl_context=self.ctx.tls_context if tls else None
            )
            await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        for sock, _tls in self.sockets:
            sock.close()

    # -- handlers -------------------------------------------------------------------------
    async def metrics(self, request: web.Request) -> web.Response:
        if not _in_networks(request.remote, self.ctx.config().http.metrics_networks):
            raise web.HTTPForbidden(text="metrics are not served to this address\n")
        body = generate_latest(self.ctx.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        sources = HealthSources(self.ctx.config, self.ctx.directory, self.ctx.listeners_up)
        ready, detail = await readiness(sources)
        return web.json_response(detail, status=200 if ready else 503)

    def _hosted(self) -> frozenset[str]:
        return frozenset(self.ctx.directory.snapshot().domains)

    async def thunderbird(self, request: web.Request) -> web.Response:
        hosted = self._hosted()
        given = request.query.get("emailaddress")
        if given is not None:
            found = autoconfig.hosted_address(given, hosted)
            domain = found[1] if found else None
        else:
            domain = autoconfig.domain_from_host(request.host, hosted)
        if domain is None:
            raise web.HTTPNotFound(text="no such domain here\n")
        text = autoconfig.thunderbird(self.ctx.config(), domain)
        return web.Response(text=text, content_type="application/xml", charset="utf-8")

    async def outlook(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8", "replace")  # bad bytes: no address
        given = autoconfig.autodiscover_address(body)
        found = autoconfig.hosted_address(given, self._hosted()) if given else None
        if found is None:
            raise web.HTTPNotFound(text="no such address here\n")
        text = autoconfig.outlook(self.ctx.config(), found[0])
        return web.Response(text=text, content_type="application/xml", charset="utf-8")

    async def apple(self, request: web.Request) -> web.Response:
        given = request.query.get("emailaddress", "")
        found = autoconfig.hosted_address(given, self._hosted())
        if found is None:
            raise web.HTTPNotFound(text="no such address here\n")
        body = autoconfig.apple_profile(self.ctx.config(), found[0])
        return web.Response(
            body=body,
            headers={
                "Content-Type": "application/x-apple-aspen-config",
                "Content-Disposition": 'attachment; filename="mail.mobileconfig"',
            },
        )

    async def mta_sts(self, request: web.Request) -> web.Response:
        text = mta_sts.policy_text(self.ctx.config())
        if text is None or mta_sts.policy_domain(request.host, self._hosted()) is None:
            raise web.HTTPNotFound(text="no MTA-STS policy here\n")
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
