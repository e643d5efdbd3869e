"""Where a domain's mail goes, and handing it over there by SMTP.

Routes are tried in this order: a static route for the domain, the smarthost, then DNS
(MX records by preference, the domain's own A/AAAA without MX, RFC 7505 null MX as a
permanent failure). Delivery uses aiosmtplib with opportunistic STARTTLS (certificates
are not checked on MX hops, as no MTA can today without DANE/MTA-STS; they are checked
for a smarthost, which is a named provider and gets our password). A failed
opportunistic handshake is retried at once in plaintext unless the destination is in
`tls_required_domains`. MAIL, RCPT and DATA are written here rather than by aiosmtplib,
so that addresses go out exactly as queued and the message streams from its file.
Every recipient gets its own outcome: delivered, temporary or permanent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import ssl
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Literal

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from daisymail.config import Queue as QueueConfig
from daisymail.config import parse_hostport
from daisymail.dns import DnspythonResolver, NotFound, Resolver, TempFail
from daisymail.observability import event
from daisymail.queue.sessions import SessionCache, quit_session
from daisymail.queue.stream import CHUNK, Body, DotStuffer

TlsMode = Literal["opportunistic", "starttls", "implicit"]
Kind = Literal["delivered", "temporary", "permanent"]
log = logging.getLogger("daisymail.queue")
current_id: ContextVar[str] = ContextVar("current_id", default="-")
"""The queue id of the message being delivered, for log lines."""


@dataclass(frozen=True)
class Hop:
    host: str
    port: int
    tls: TlsMode = "opportunistic"
    username: str = ""
    password: str = ""
    verify: bool = False


@dataclass(frozen=True)
class Route:
    """key names the destination for concurrency limits (a domain, a route or the smarthost)."""

    key: str
    hops: tuple[Hop, ...]


class RouteError(Exception):
    def __init__(self, permanent: bool, status: str, text: str) -> None:
        super().__init__(text)
        self.permanent = permanent
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    dsn_passed: bool = False
    """Delivered with NOTIFY passed on to a server that offers DSN."""


@dataclass(frozen=True)
class Outgoing:
    """One recipient to hand over, with its DSN parameters (RFC 3461) to pass on."""

    address: str
    notify: str = ""
    orcpt: str = ""


def static_route(domain: str, cfg: QueueConfig) -> Route | None:
    target = cfg.routes.get(domain) or cfg.routes.get(domain.lower())
    if target:
        host, port = parse_hostport(target)
        return Route(f"route:{domain}", (Hop(host, port, _tls_for(port)),))
    if cfg.smarthost:
        host, port = parse_hostport(cfg.smarthost)
        hop = Hop(
            host,
            port,
            _tls_for(port),
            cfg.smarthost_user,
            cfg.smarthost_password,
            verify=True,
        )
        return Route("smarthost", (hop,))
    return None


def _tls_for(port: int) -> TlsMode:
    if port == 465:
        return "implicit"
    return "starttls" if port == 587 else "opportunistic"


_system_resolver: DnspythonResolver | None = None


async def resolve_route(domain: str, cfg: QueueConfig, resolver: Resolver | None = None) -> Route:
    """resolver: the one of ``[dns]``; None: the system resolver."""
    global _system_resolver
    route = static_route(domain, cfg)
    if route is None:
        if resolver is None:
            if _system_resolver is None:
                _system_resolver = DnspythonResolver()
            resolver = _system_resolver
        route = Route(domain, tuple(Hop(h, 25) for h in await lookup_mx(domain, resolver)))
    if tls_required(domain, cfg):
        hops = tuple(
            replace(h, tls="starttls") if h.tls == "opportunistic" else h for h in route.hops
        )
        route = Route(route.key, hops)
    return route


def tls_required(domain: str, cfg: QueueConfig) -> bool:
    """The domain or a parent is in [queue] tls_required_domains: STARTTLS or no delivery."""
    domain = domain.lower().rstrip(".")
    for want in cfg.tls_required_domains:
        want = want.lower().strip(".")
        if domain == want or domain.endswith("." + want):
            return True
    return False


async def lookup_mx(domain: str, resolver: Resolver) -> list[str]:
    """Hosts to try in order; equal preferences shuffled (RFC 5321 5.1).

    RouteError: NXDOMAIN 5.1.2 and null MX 5.1.10 (permanent), a DNS failure 4.4.3."""
    try:
        records = await resolver.mx(domain)
    except NotFound as e:
        if e.nxdomain:
            raise RouteError(True, "5.1.2", f"domain {domain} does not exist") from None
        return await _implicit_mx(resolver, domain)
    except TempFail as e:
        raise RouteError(False, "4.4.3", f"DNS lookup of {domain} failed: {e}") from None
    hosts = sorted((r.preference, random.random(), r.exchange) for r in records)
    names = [name for _pref, _r, name in hosts if name]
    if not names:
        raise RouteError(True, "5.1.10", f"{domain} accepts no mail (null MX, RFC 7505)")
    return names


async def _implicit_mx(resolver: Resolver, domain: str) -> list[str]:
    """No MX: the domain itself is the host if it has an address (RFC 5321 5.1)."""
    for lookup in (resolver.a, resolver.aaaa):
        try:
            await lookup(domain)
        except NotFound:
            continue
        except TempFail as e:
            raise RouteError(False, "4.4.3", f"DNS lookup of {domain} failed: {e}") from None
        return [domain]
    raise RouteError(True, "5.1.2", f"{domain} has no MX and no address")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def deliver(
    route: Route,
    sender: str,
    recipients: Sequence[Outgoing],
    body: Body,
    *,
    helo: str,
    envid: str = "",
    ret: str = "",
    timeout: float = 60.0,
    sessions: SessionCache | None = None,
    keep_seconds: float = 0.0,
) -> dict[str, Outcome]:
    """Try each hop until every recipient has a final answer or the hops run out.

    sessions: where a hop's open sessions wait for the next message (kept
    ``keep_seconds``); None: one session per delivery."""
    outcomes: dict[str, Outcome] = {}
    todo = list(recipients)
    for hop in route.hops:
        if not todo:
            break
        results = await _deliver_hop(
            hop, sender, todo, body, helo, envid, ret, timeout, sessions, keep_seconds
        )
        outcomes.update(results)
        todo = [r for r in todo if outcomes[r.address].kind == "temporary"]
    return outcomes


@functools.cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """The client context for a hop, built once per process: building one reads the
    system's CA store, about 35 ms of CPU, which per delivery blocked the event loop
    and capped the queue near 20 messages a second. A context is safe to share."""
    if verify:
        return ssl.create_default_context()
    # Opportunistic TLS (RFC 7435): any version and cipher beats plaintext, and with
    # nothing checked there is no CA store to read.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


def _client(hop: Hop, helo: str, timeout: float) -> aiosmtplib.SMTP:
    """Opportunistic STARTTLS is done by _connect, so that a failed handshake can fall back."""
    context = tls_context(hop.verify)
    return aiosmtplib.SMTP(
        hostname=hop.host,
        port=hop.port,
        local_hostname=helo,
        timeout=timeout,
        use_tls=hop.tls == "implicit",
        start_tls=hop.tls == "starttls",
        validate_certs=hop.verify,
        tls_context=context,
    )


async def _connect(hop: Hop, helo: str, timeout: float) -> aiosmtplib.SMTP:
    """Connect, with STARTTLS when offered; a failed opportunistic handshake is retried
    at once in plaintext (Postfix's `may` level) instead of deferring the mail."""
    client = _client(hop, helo, timeout)
    await client.connect()
    if hop.tls != "opportunistic":
        return client
    try:
        await _greet(client)
    except BaseException:
        client.close()
        raise
    if not client.supports_extension("starttls"):
        return client
    try:
        await client.starttls()
    except (aiosmtplib.SMTPException, OSError) as e:
        event(
            log,
            "queue.tls_fallback",
            logging.WARNING,
            id=current_id.get(),
            relay=f"{hop.host}:{hop.port}",
            error=str(e) or type(e).__name__,
        )
        client.close()
        client = _client(hop, helo, timeout)
        await client.connect()
    return client


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO (again after STARTTLS, which forgets the extensions), HELO if refused."""
    if not client.is_ehlo_or_helo_needed:
        return
    try:
        await client.ehlo()
    except aiosmtplib.SMTPResponseException:
        await client.helo()


def _path(address: str) -> bytes:
    """The address as queued (wire form, quotes kept), in angle brackets.

    Not aiosmtplib's quote_address: it reparses with email.utils and silently changes
    what it cannot parse (``x@y\\r.test`` becomes ``<x@y>``), which would send mail to
    someone else. An address with a control character can never be sent: ValueError.
    """
    if _CONTROL.search(address):
        raise ValueError("control character in address")
    return b"<" + address.encode("utf-8") + b">"


async def _deliver_hop(
    hop: Hop,
    sender: str,
    recipients: Sequence[Outgoing],
    body: Body,
    helo: str,
    envid: str,
    ret: str,
    timeout: float,
    sessions: SessionCache | None = None,
    keep_seconds: float = 0.0,
) -> dict[str, Outcome]:
    name = hop.host

    def every(kind: Kind, status: str, text: str) -> dict[str, Outcome]:
        return {r.address: Outcome(kind, status, text, name) for r in recipients}

    session = await sessions.take(hop) if sessions is not None else None
    fresh = session is None
    if session is not None:
        client = session.client
    else:
        try:
            client = await _connect(hop, helo, timeout)
        except aiosmtplib.SMTPResponseException as e:
            kind, status = _classify(e.code, e.message)
            return every(kind, status, f"{e.code} {e.message}")
        except (aiosmtplib.SMTPException, OSError) as e:
            return every("temporary", "4.4.1", f"cannot connect to {hop.host}:{hop.port}: {e}")
        if sessions is not None:
            session = sessions.new(client)
    clean = False
    try:
        if hop.username and fresh:  # a reused session logged in when it was opened
            await client.login(hop.username, hop.password)
        results = await _transaction(client, sender, recipients, body, envid, ret, name, timeout)
        clean = True
        return results
    except aiosmtplib.SMTPResponseException as e:
        kind, status = _classify(e.code, e.message)
        if hop.username and e.code in (530, 534, 535, 538):
            kind, status = "temporary", "4.7.0"
        return every(kind, status, f"{e.code} {e.message}")
    except (aiosmtplib.SMTPException, OSError) as e:
        return every("temporary", "4.4.2", f"connection to {hop.host} failed: {e}")
    finally:
        if clean and sessions is not None and session is not None:
            sessions.give(hop, session, keep_seconds)
        elif client.is_connected:
            await quit_session(client)


async def _transaction(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[Outgoing],
    body: Body,
    envid: str,
    ret: str,
    name: str,
    timeout: float,
) -> dict[str, Outcome]:
    dsn = client.supports_extension("dsn")
    mail_opts: list[str] = []
    if dsn and ret:
        mail_opts.append(f"RET={ret.upper()}")
    if dsn and envid:
        mail_opts.append(f"ENVID={xtext(envid)}")
    if body.eight_bit and client.supports_extension("8bitmime"):
        mail_opts.append("BODY=8BITMIME")
    if body.size and client.supports_extension("size"):
        mail_opts.append(f"SIZE={body.size}")
    await _greet(client)
    try:
        sender_path = _path(sender)
    except ValueError as e:  # no server will ever take it
        text = f"invalid sender address {sender!r}: {e}"
        return {r.address: Outcome("permanent", "5.1.7", text, name) for r in recipients}
    opts_bytes = [o.encode("ascii") for o in mail_opts]
    reply = await client.execute_command(b"MAIL", b"FROM:" + sender_path, *opts_bytes)
    if reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    outcomes: dict[str, Outcome] = {}
    accepted: list[str] = []
    for r in recipients:
        opts: list[str] = []
        if dsn and r.notify:
            opts.append(f"NOTIFY={r.notify.upper()}")
        if dsn and r.orcpt:
            kind, _, addr = r.orcpt.partition(";")
            opts.append(f"ORCPT={kind.strip()};{xtext(addr.strip())}")
        try:
            path = _path(r.address)
        except ValueError as e:
            text = f"invalid recipient address {r.address!r}: {e}"
            outcomes[r.address] = Outcome("permanent", "5.1.3", text, name)
            continue
        reply = await client.execute_command(
            b"RCPT", b"TO:" + path, *(o.encode("ascii") for o in opts)
        )
        if reply.code in (250, 251):
            accepted.append(r.address)
        else:
            kind_, status = _classify(reply.code, reply.message)
            outcomes[r.address] = Outcome(kind_, status, f"{reply.code} {reply.message}", name)
    if not accepted:
        await client.rset()
        return outcomes
    try:
        reply = await _send_data(client, body, timeout)
    except aiosmtplib.SMTPDataError as e:
        kind_, status = _classify(e.code, e.message)
        outcomes.update(
            {a: Outcome(kind_, status, f"{e.code} {e.message}", name) for a in accepted}
        )
        return outcomes
    text = f"{reply.code} {reply.message}"
    outcomes.update({a: Outcome("delivered", "2.0.0", text, name, dsn) for a in accepted})
    return outcomes


async def _send_data(client: aiosmtplib.SMTP, body: Body, timeout: float) -> SMTPResponse:
    """DATA with the message streamed from its file, CHUNK bytes at a time.

    aiosmtplib's own data() wants the whole message (and copies it twice more); here it
    is read, stuffed and written piece by piece, waiting for the socket to drain between
    pieces, so a 50 MB message costs a few CHUNKs of memory.
    """
    start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("connection lost")
    stuffer = DotStuffer()
    if body.prefix:
        protocol.write(stuffer.feed(body.prefix))
    if body.data is not None:  # held in memory: no trips to a thread for the file
        protocol.write(stuffer.feed(body.data))
        await _drained(client, protocol, timeout)
    else:
        await _send_file(client, protocol, stuffer, body.path, timeout)
    protocol.write(stuffer.finish())
    try:
        reply = await protocol.read_response(timeout=timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply


async def _send_file(
    client: aiosmtplib.SMTP,
    protocol: SMTPProtocol,
    stuffer: DotStuffer,
    path: str,
    timeout: float,
) -> None:
    """A file too large to hold, CHUNK by CHUNK, each read in a thread."""
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            protocol.write(stuffer.feed(chunk))
            await _drained(client, protocol, timeout)
    finally:
        await asyncio.to_thread(f.close)


async def _drained(client: aiosmtplib.SMTP, protocol: SMTPProtocol, timeout: float) -> None:
    """The stdlib's flow control, as StreamWriter.drain uses it; a peer that stops
    reading must not hold the delivery."""
    try:
        await asyncio.wait_for(protocol._drain_helper(), timeout)
    except TimeoutError:
        client.close()
        raise aiosmtplib.SMTPTimeoutError("timed out sending the message") from None


def _classify(code: int, text: str) -> tuple[Kind, str]:
    """Permanent for 5xx, temporary otherwise; the enhanced code when the reply has one."""
    kind: Kind = "permanent" if 500 <= code < 600 else "temporary"
    first = text.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] in "245":
        return kind, first
    return kind, "5.0.0" if kind == "permanent" else "4.0.0"


def xtext(value: str) -> str:
    """RFC 3461 section 4 encoding for ENVID and ORCPT values."""
    return "".join(
        ch if 33 <= ord(ch) <= 126 and ch not in "+=" else "".join(f"+{b:02X}" for b in ch.encode())
        for ch in value
    )
