"""The DNS records a hosted domain needs, and a check of what is published.

``needed()`` is pure: config and keys in, records out (printed in zone file syntax by
`daisymail dns records`). ``check()`` asks DNS through the injected resolver and says,
record by record, what is missing or differs (`daisymail dns check`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from daisymail.config import Config, parse_hostport
from daisymail.dns import DNSError, NotFound, Resolver
from daisymail.mailauth import mta_sts
from daisymail.mailauth.dkim import zone_txt
from daisymail.mailauth.dmarc import parse_record as parse_dmarc
from daisymail.mailauth.keystore import KeyInfo
from daisymail.mailauth.spf import check_host

TTL = 3600
# RFC 6186 service records, for the listeners that are on.
SRV = (("submission", "_submission._tcp"), ("submissions", "_submissions._tcp"))
SRV_POP = (("pop3", "_pop3._tcp"), ("pop3s", "_pop3s._tcp"))
SRV_IMAP = (("imap", "_imap._tcp"), ("imaps", "_imaps._tcp"))


@dataclass(frozen=True)
class Record:
    name: str  # without trailing dot
    rtype: str
    value: str  # TXT: the unsplit text; others: rdata in zone syntax
    why: str

    def zone_line(self) -> str:
        if self.rtype == "TXT":
            return zone_txt(self.name, self.value, TTL)
        return f"{self.name}. {TTL} IN {self.rtype} {self.value}"


def needed(cfg: Config, domain: str, keys: list[KeyInfo]) -> list[Record]:
    host = cfg.hostname.rstrip(".")
    out = [
        Record(domain, "MX", f"10 {host}.", "mail for the domain comes to this server"),
        Record(domain, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for the domain"),
    ]
    for k in keys:
        if k.state != "retired":
            out.append(
                Record(f"{k.selector}._domainkey.{domain}", "TXT", k.record, f"DKIM {k.state}")
            )
    out += [
        Record(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}",
            "DMARC: unauthenticated mail claiming the domain goes to Junk",
        ),
        Record(
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
            "TLS-RPT: reports of TLS failures sending to the domain",
        ),
    ]
    sts = mta_sts.txt_record(cfg)
    if sts is not None:
        out += [
            Record(f"_mta-sts.{domain}", "TXT", sts, "MTA-STS: the policy's id (RFC 8461)"),
            Record(f"mta-sts.{domain}", "CNAME", f"{host}.", "MTA-STS: where the policy is"),
        ]
    if cfg.http.listen or cfg.http.listen_tls:
        out.append(
            Record(f"autoconfig.{domain}", "CNAME", f"{host}.", "mail client autoconfiguration")
        )
    for service, label in SRV_IMAP + SRV + SRV_POP:
        listen = getattr(cfg.listen, service)
        if listen:
            port = parse_hostport(listen[0])[1]
            out.append(
                Record(f"{label}.{domain}", "SRV", f"0 1 {port} {host}.", f"{service} (RFC 6186)")
            )
    return out


def zone_text(cfg: Config, domain: str, keys: list[KeyInfo]) -> str:
    host = cfg.hostname.rstrip(".")
    lines = [f"; records for {domain} (mail server {host})"]
    for r in needed(cfg, domain, keys):
        lines += [f"; {r.why}", r.zone_line()]
    if mta_sts.txt_record(cfg) is None:
        lines += [
            "; MTA-STS: set [http.mta_sts] mode (and an HTTPS listener, [http] listen_tls) to",
            f"; serve https://mta-sts.{domain}/.well-known/mta-sts.txt and get its records here.",
        ]
    lines += [
        f"; The PTR of this server's sending address must be {host}, and {host} must",
        "; resolve to that address; the hosting provider sets the PTR.",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str


async def check(
    cfg: Config, domain: str, keys: list[KeyInfo], resolver: Resolver, ip: str = ""
) -> list[Finding]:
    """What of needed() is published; with ``ip`` (the sending address) also SPF for it
    and its PTR against the HELO name (the hostname)."""
    host = cfg.hostname.rstrip(".").lower()
    if ip:
        ipaddress.ip_address(ip)  # ValueError for the caller, before any lookup
    out: list[Finding] = []
    for r in needed(cfg, domain, keys):
        out.append(await _check_record(r, resolver, host))
    if ip:
        spf = await check_host(ip, domain, f"postmaster@{domain}", resolver, helo=host)
        out.append(Finding(spf.result == "pass", f"SPF for {ip}: {spf.result} {spf.reason}"))
        try:
            names = [n.lower() for n in await resolver.ptr(ip)]
        except DNSError as e:
            names = []
            out.append(Finding(False, f"PTR of {ip}: {e}"))
        if names:
            good = host in names
            out.append(Finding(good, f"PTR of {ip}: {', '.join(names)} (HELO is {host})"))
            if good:
                lookup = resolver.a if ipaddress.ip_address(ip).version == 4 else resolver.aaaa
                try:
                    back = ip in await lookup(host)
                except DNSError:
                    back = False
                out.append(Finding(back, f"{host} resolves back to {ip}: {back}"))
    return out


async def _check_record(r: Record, resolver: Resolver, host: str) -> Finding:
    label = f"{r.rtype} {r.name}"
    try:
        if r.rtype == "MX":
            mx = [m.exchange.lower() for m in await resolver.mx(r.name)]
            return Finding(host in mx, f"{label}: {', '.join(mx) or 'null MX'}")
        if r.rtype == "SRV":
            return Finding(True, f"{label}: not checked (optional)")
        if r.rtype == "CNAME":  # what matters is that the name reaches a server
            addresses = await resolver.a(r.name)
            return Finding(bool(addresses), f"{label}: {', '.join(addresses) or 'no address'}")
        texts = await resolver.txt(r.name)
    except NotFound:
        return Finding(False, f"{label}: missing")
    except DNSError as e:
        return Finding(False, f"{label}: lookup failed: {e}")
    if r.name.startswith("_dmarc."):
        good = [t for t in texts if parse_dmarc(t) is not None]
        return Finding(len(good) == 1, f"{label}: {good[0] if len(good) == 1 else 'missing'}")
    if r.value.startswith("v=spf1"):
        spf = [t for t in texts if t.lower().startswith("v=spf1")]
        return Finding(len(spf) == 1, f"{label}: {' | '.join(spf) or 'missing'}")
    if "._domainkey." in r.name:
        key = r.value.rpartition("p=")[2]
        same = any(t.replace(" ", "").endswith("p=" + key) for t in texts)
        return Finding(same, f"{label}: {'matches the key' if same else 'differs from the key'}")
    if r.name.startswith("_mta-sts."):  # a stale id tells senders to keep an old policy
        return Finding(r.value in texts, f"{label}: {' | '.join(texts) or 'missing'}")
    return Finding(bool(texts), f"{label}: {texts[0] if texts else 'missing'}")
