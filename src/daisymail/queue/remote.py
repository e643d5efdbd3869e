"""Where a domain's mail goes, and handing it over there by SMTP.

Routes are tried in this order: a static route for the domain, the smarthost, then DNS
(MX records by preference, the domain's own A/AAAA without MX, RFC 7505 null MX as a
permanent failure). Delivery uses aiosmtplib with opportunistic STARTTLS (certificates
are not checked on MX hops, as no MTA can today without DANE/MTA-STS; they are checked
for a smarthost, which is a named provider and gets our password). Every recipient
gets its own outcome: delivered, temporary or permanent.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver

from daisymail.config import Queue as QueueConfig
from daisymail.config import parse_hostport

TlsMode = Literal["opportunistic", "starttls", "implicit"]
Kind = Literal["delivered", "temporary", "permanent"]


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


async def resolve_route(domain: str, cfg: QueueConfig, timeout: float = 30.0) -> Route:
    route = static_route(domain, cfg)
    if route is not None:
        return route
    return Route(domain, tuple(Hop(h, 25) for h in await lookup_mx(domain, timeout)))


async def lookup_mx(domain: str, timeout: float = 30.0) -> list[str]:
    """Hosts to try in order; equal preferences shuffled (RFC 5321 5.1)."""
    resolver = dns.asyncresolver.Resolver()
    try:
        answer = await resolver.resolve(domain, "MX", lifetime=timeout)
    except dns.resolver.NXDOMAIN:
        raise RouteError(True, "5.1.2", f"domain {domain} does not exist") from None
    except dns.resolver.NoAnswer:
        return await _implicit_mx(resolver, domain, timeout)
    except dns.exception.DNSException as e:
        raise RouteError(False, "4.4.3", f"DNS lookup of {domain} failed: {e}") from None
    records = sorted((r.preference, random.random(), r.exchange.to_text()) for r in answer)
    if len(records) == 1 and records[0][2] == ".":
        raise RouteError(True, "5.1.10", f"{domain} accepts no mail (null MX, RFC 7505)")
    return [name.rstrip(".") for _pref, _r, name in records if name != "."]


async def _implicit_mx(
    resolver: dns.asyncresolver.Resolver, domain: str, timeout: float
) -> list[str]:
    """No MX: the domain itself is the host if it has an address (RFC 5321 5.1)."""
    for rdtype in ("A", "AAAA"):
        try:
            await resolver.resolve(domain, rdtype, lifetime=timeout)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as e:
            raise RouteError(False, "4.4.3", f"DNS lookup of {domain} failed: {e}") from None
        return [domain]
    raise RouteError(True, "5.1.2", f"{domain} has no MX and no address")


async def deliver(
    route: Route,
    sender: str,
    recipients: Sequence[Outgoing],
    message: bytes,
    *,
    helo: str,
    envid: str = "",
    ret: str = "",
    timeout: float = 60.0,
) -> dict[str, Outcome]:
    """Try each hop until every recipient has a final answer or the hops run out."""
    outcomes: dict[str, Outcome] = {}
    todo = list(recipients)
    for hop in route.hops:
        if not todo:
            break
        results = await _deliver_hop(hop, sender, todo, message, helo, envid, ret, timeout)
        outcomes.update(results)
        todo = [r for r in todo if outcomes[r.address].kind == "temporary"]
    return outcomes


async def _deliver_hop(
    hop: Hop,
    sender: str,
    recipients: Sequence[Outgoing],
    message: bytes,
    helo: str,
    envid: str,
    ret: str,
    timeout: float,
) -> dict[str, Outcome]:
    name = hop.host
    context = ssl.create_default_context()
    if not hop.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client = aiosmtplib.SMTP(
        hostname=hop.host,
        port=hop.port,
        local_hostname=helo,
        timeout=timeout,
        use_tls=hop.tls == "implicit",
        start_tls=True if hop.tls == "starttls" else None if hop.tls == "opportunistic" else False,
        validate_certs=hop.verify,
        tls_context=context,
    )

    def every(kind: Kind, status: str, text: str) -> dict[str, Outcome]:
        return {r.address: Outcome(kind, status, text, name) for r in recipients}

    try:
        await client.connect()
    except aiosmtplib.SMTPResponseException as e:
        kind, status = _classify(e.code, e.message)
        return every(kind, status, f"{e.code} {e.message}")
    except (aiosmtplib.SMTPException, OSError) as e:
        return every("temporary", "4.4.1", f"cannot connect to {hop.host}:{hop.port}: {e}")
    try:
        if hop.username:
            await client.login(hop.username, hop.password)
        return await _transaction(client, sender, recipients, message, envid, ret, name)
    except aiosmtplib.SMTPResponseException as e:
        kind, status = _classify(e.code, e.message)
        if hop.username and e.code in (530, 534, 535, 538):
            kind, status = "temporary", "4.7.0"
        return every(kind, status, f"{e.code} {e.message}")
    except (aiosmtplib.SMTPException, OSError) as e:
        return every("temporary", "4.4.2", f"connection to {hop.host} failed: {e}")
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


async def _transaction(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[Outgoing],
    message: bytes,
    envid: str,
    ret: str,
    name: str,
) -> dict[str, Outcome]:
    dsn = client.supports_extension("dsn")
    mail_opts: list[str] = []
    if dsn and ret:
        mail_opts.append(f"RET={ret.upper()}")
    if dsn and envid:
        mail_opts.append(f"ENVID={xtext(envid)}")
    if any(b > 0x7F for b in message) and client.supports_extension("8bitmime"):
        mail_opts.append("BODY=8BITMIME")
    await client.mail(sender, options=mail_opts, encoding="utf-8")
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
            await client.rcpt(r.address, options=opts, encoding="utf-8")
        except aiosmtplib.SMTPRecipientRefused as e:
            kind_, status = _classify(e.code, e.message)
            outcomes[r.address] = Outcome(kind_, status, f"{e.code} {e.message}", name)
        else:
            accepted.append(r.address)
    if not accepted:
        await client.rset()
        return outcomes
    if not message.endswith(b"\n"):
        message += b"\n"
    try:
        reply = await client.data(message)
    except aiosmtplib.SMTPDataError as e:
        kind_, status = _classify(e.code, e.message)
        outcomes.update(
            {a: Outcome(kind_, status, f"{e.code} {e.message}", name) for a in accepted}
        )
        return outcomes
    text = f"{reply.code} {reply.message}"
    outcomes.update({a: Outcome("delivered", "2.0.0", text, name, dsn) for a in accepted})
    return outcomes


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
