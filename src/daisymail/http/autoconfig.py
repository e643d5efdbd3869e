"""Client autoconfig: Thunderbird's config-v1.1.xml, Outlook's autodiscover, Apple profiles.

Everything a client is told comes from the config: the host is ``[http] client_host`` or
the certificate's name, the ports are the configured listeners'. Nothing is echoed from
the request except an address (or domain) that was checked to be hosted here.
"""

from __future__ import annotations

import plistlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from cryptography import x509

from daisymail.config import Config, parse_hostport
from daisymail.routing.addresses import AddressError, parse_path


@dataclass(frozen=True)
class Endpoint:
    """One service a client may use: ``kind`` imap/pop3/smtp, ``tls`` "SSL" or "STARTTLS"."""

    kind: str
    host: str
    port: int
    tls: str


# (config key under [listen], kind, socket type); preferred first within a kind.
_SERVICES = (
    ("imaps", "imap", "SSL"),
    ("imap", "imap", "STARTTLS"),
    ("pop3s", "pop3", "SSL"),
    ("pop3", "pop3", "STARTTLS"),
    ("submissions", "smtp", "SSL"),
    ("submission", "smtp", "STARTTLS"),
)

_cert_names: dict[tuple[str, float], str | None] = {}


def certificate_name(path: Path) -> str | None:
    """The first DNS name of the certificate that is not localhost (cached per mtime)."""
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _cert_names:
        name = None
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                names = san.value.get_values_for_type(x509.DNSName)
            except x509.ExtensionNotFound:
                names = []
            name = next((n for n in names if n != "localhost" and "*" not in n), None)
        except (OSError, ValueError):
            name = None
        _cert_names.clear()
        _cert_names[key] = name
    return _cert_names[key]


def client_host(cfg: Config) -> str:
    return cfg.http.client_host or certificate_name(cfg.path(cfg.tls.cert)) or cfg.hostname


def endpoints(cfg: Config) -> list[Endpoint]:
    """The configured client services; IMAP only where its listener key exists."""
    host = client_host(cfg)
    found = []
    for key, kind, tls in _SERVICES:
        addrs = getattr(cfg.listen, key, None)
        if not addrs:
            continue
        _addr, port = parse_hostport(addrs[0])
        found.append(Endpoint(kind, host, port, tls))
    return found


def hosted_address(text: str, hosted: set[str] | frozenset[str]) -> tuple[str, str] | None:
    """(address, domain) for a valid address of a hosted domain, else None."""
    text = text.strip()
    if not text or len(text) > 320 or any(c in text for c in "<>\r\n"):
        return None
    try:
        addr = parse_path(f"<{text}>", smtputf8=True)
    except AddressError:
        return None
    if addr is None or not addr.local or not addr.domain:
        return None
    domain = addr.domain.lower().rstrip(".")
    if domain not in hosted:
        return None
    return f"{addr.local}@{domain}", domain


def domain_from_host(host_header: str, hosted: set[str] | frozenset[str]) -> str | None:
    """``autoconfig.DOMAIN`` or ``DOMAIN`` from a Host header, if DOMAIN is hosted."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return None
    host = re.sub(r":\d+$", "", host).rstrip(".")
    for candidate in (host.removeprefix("autoconfig."), host):
        if candidate in hosted:
            return candidate
    return None


def thunderbird(cfg: Config, domain: str) -> str:
    """Thunderbird's clientConfig 1.1 for a hosted domain; login is %EMAILADDRESS%."""
    d = escape(domain)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{d}">',
        f"    <domain>{d}</domain>",
        f"    <displayName>{d} mail</displayName>",
        f"    <displayShortName>{d}</displayShortName>",
    ]
    for ep in endpoints(cfg):
        tag = "outgoingServer" if ep.kind == "smtp" else "incomingServer"
        out += [
            f'    <{tag} type="{ep.kind}">',
            f"      <hostname>{escape(ep.host)}</hostname>",
            f"      <port>{ep.port}</port>",
            f"      <socketType>{ep.tls}</socketType>",
            "      <authentication>password-cleartext</authentication>",
            "      <username>%EMAILADDRESS%</username>",
            f"    </{tag}>",
        ]
    out += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(out)


_AUTODISCOVER_EMAIL = re.compile(r"<(?:\w+:)?EMailAddress>\s*([^<]{1,320}?)\s*</", re.I)


def autodiscover_address(body: str) -> str | None:
    """The EMailAddress of an Outlook request, read without an XML parser (no entities)."""
    m = _AUTODISCOVER_EMAIL.search(body)
    return m.group(1) if m else None


def outlook(cfg: Config, address: str) -> str:
    """Outlook's POX autodiscover response for a hosted address."""
    a = escape(address)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">',
        '  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">',
        "    <Account>",
        "      <AccountType>email</AccountType>",
        "      <Action>settings</Action>",
    ]
    for ep in endpoints(cfg):
        crypto = (
            "      <SSL>on</SSL>"
            if ep.tls == "SSL"
            else "      <SSL>off</SSL>\n      <Encryption>TLS</Encryption>"
        )
        out += [
            "      <Protocol>",
            f"        <Type>{ep.kind.upper()}</Type>",
            f"        <Server>{escape(ep.host)}</Server>",
            f"        <Port>{ep.port}</Port>",
            "        <DomainRequired>off</DomainRequired>",
            f"        <LoginName>{a}</LoginName>",
            "        <SPA>off</SPA>",
            crypto,
            "        <AuthRequired>on</AuthRequired>",
            "      </Protocol>",
        ]
    out += ["    </Account>", "  </Response>", "</Autodiscover>", ""]
    return "\n".join(out)


def apple_profile(cfg: Config, address: str) -> bytes:
    """An Apple configuration profile (.mobileconfig) with one mail account."""
    eps = endpoints(cfg)
    incoming = next((e for e in eps if e.kind != "smtp"), None)
    outgoing = next((e for e in eps if e.kind == "smtp"), None)
    ident = f"{'.'.join(reversed(client_host(cfg).split('.')))}.mail"
    account: dict[str, object] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.account.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}#account")).upper(),
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountName": address,
        "EmailAddress": address,
    }
    if incoming is not None:
        account.update(
            EmailAccountType="EmailTypeIMAP" if incoming.kind == "imap" else "EmailTypePOP",
            IncomingMailServerHostName=incoming.host,
            IncomingMailServerPortNumber=incoming.port,
            IncomingMailServerUseSSL=incoming.tls == "SSL",
            IncomingMailServerUsername=address,
            IncomingMailServerAuthentication="EmailAuthPassword",
        )
    if outgoing is not None:
        account.update(
            OutgoingMailServerHostName=outgoing.host,
            OutgoingMailServerPortNumber=outgoing.port,
            OutgoingMailServerUseSSL=outgoing.tls == "SSL",
            OutgoingMailServerUsername=address,
            OutgoingMailServerAuthentication="EmailAuthPassword",
            OutgoingPasswordSameAsIncomingPassword=True,
        )
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}")).upper(),
        "PayloadDisplayName": f"Mail for {address}",
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile)
