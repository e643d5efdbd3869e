"""May this client send to this recipient domain? sendmail's check_rcpt relay rules (§2.7).

A recipient in a hosted domain is always accepted. Anything else needs a trusted client
(authenticated, in a configured or relay network, or with a confirmed host name inside a
hosted or relay domain) or a recipient domain listed as a relay domain. Relay-domains and
access ``To:`` names cover their subdomains on a label boundary unless ``hosts_only``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from daisymail.directory.model import RelayRule, Snapshot

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_IPV4_PREFIX = re.compile(r"\d{1,3}(?:\.\d{1,3}){0,3}")
_HEX_GROUP = re.compile(r"[0-9a-fA-F]{1,4}")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
# The last label may not be all digits: that is an (invalid) IPv4 prefix, not a name.
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*(?!\d+$){_LABEL}")


@dataclass(frozen=True)
class RelayDecision:
    allowed: bool
    reason: str


def relay_allowed(
    domain: str,
    *,
    client_ip: str,
    authenticated: bool,
    snapshot: Snapshot,
    networks: Sequence[str],
    hosts_only: bool,
    client_hostname: str | None = None,
) -> RelayDecision:
    """Decide whether a recipient at ``domain`` is accepted from this client.

    ``client_hostname`` must already be forward-confirmed by the caller; a forged PTR
    name must never reach here.
    """
    domain = _norm(domain)
    if snapshot.is_local_domain(domain):
        return RelayDecision(True, f"{domain} is a hosted domain")
    if authenticated:
        return RelayDecision(True, "client is authenticated")
    net = relay_network_of(client_ip, networks, snapshot)
    if net is not None:
        return RelayDecision(True, f"client {client_ip} is in relay network {net}")
    domain_rules = [r.pattern for r in snapshot.relay_rules if r.kind == "domain"]
    match = _first_domain_match(domain, domain_rules, hosts_only)
    if match is not None:
        return RelayDecision(True, f"{domain} matches relay domain {match}")
    if client_hostname:
        host = _norm(client_hostname)
        match = _first_domain_match(host, snapshot.domains, hosts_only)
        if match is not None:
            return RelayDecision(True, f"client host {host} is in hosted domain {match}")
        match = _first_domain_match(host, domain_rules, hosts_only)
        if match is not None:
            return RelayDecision(True, f"client host {host} matches relay domain {match}")
    return RelayDecision(
        False, f"relaying denied: {domain} is not hosted here and client {client_ip} may not relay"
    )


def relay_network_of(client_ip: str, networks: Sequence[str], snapshot: Snapshot) -> str | None:
    """The relay network the client is in: from ``[relay] networks`` or one added with
    ``relay add``; None when it is in neither (or the address is not an IP)."""
    address = _parse_ip(client_ip)
    if address is None:
        return None
    for net in networks:
        if address in _network(net):
            return net
    for rule in snapshot.relay_rules:
        if rule.kind == "network" and address in _network(rule.pattern):
            return rule.pattern
    return None


def relay_rule_from_class_entry(entry: str) -> RelayRule:
    """Read one relay-domains line (or access key) as a rule.

    Raises ValueError for text that is neither a domain nor a whole-octet IPv4 prefix
    nor an ``IPv6:`` address or group prefix.
    """
    text = entry.strip()
    if text[:5].lower() == "ipv6:":
        return RelayRule(str(_ipv6_network(text[5:])), "network")
    if _IPV4_PREFIX.fullmatch(text):
        octets = [int(o) for o in text.split(".")]
        if any(o > 255 for o in octets):
            raise ValueError(f"{entry!r}: not an IPv4 address prefix")
        padded = octets + [0] * (4 - len(octets))
        return RelayRule(f"{'.'.join(map(str, padded))}/{8 * len(octets)}", "network")
    name = _norm(text)
    if not _DOMAIN.fullmatch(name):
        raise ValueError(f"{entry!r}: not a domain name or IP address prefix")
    return RelayRule(name, "domain")


def relay_rule_from_admin_entry(entry: str) -> RelayRule:
    """Read a relay rule as an admin types it: everything a relay-domains line may hold,
    plus the CIDR form ``relay list`` prints (``192.168.77.0/24``, ``2001:db8::/32``,
    optionally after ``IPv6:``) and a bare IPv6 address (one host).

    Host bits after the prefix are dropped (``10.1.2.3/8`` is ``10.0.0.0/8``), as the
    directory stores networks. Raises ValueError with the reason.
    """
    text = entry.strip()
    tagged = text[:5].lower() == "ipv6:"
    bare = text[5:] if tagged else text
    if "/" in bare or (":" in bare and not tagged):
        try:
            net = ipaddress.ip_network(bare, strict=False)
        except ValueError as e:
            raise ValueError(f"{entry!r}: not an IP network ({e})") from None
        if tagged and not isinstance(net, ipaddress.IPv6Network):
            raise ValueError(f"{entry!r}: IPv6: must be followed by an IPv6 network")
        return RelayRule(str(net), "network")
    return relay_rule_from_class_entry(text)


def class_entry_from_relay_rule(rule: RelayRule) -> str:
    """Write a rule as a relay-domains line; ValueError when the legacy form cannot say it
    (a network whose prefix is not on an octet (IPv4) or group (IPv6) boundary)."""
    if rule.kind == "domain":
        return rule.pattern
    net = ipaddress.ip_network(rule.pattern)
    if isinstance(net, ipaddress.IPv4Network):
        if net.prefixlen not in (8, 16, 24, 32):
            raise ValueError(f"{rule.pattern}: relay-domains only holds whole-octet prefixes")
        return ".".join(str(net.network_address).split(".")[: net.prefixlen // 8])
    if net.prefixlen == 0 or net.prefixlen % 16:
        raise ValueError(f"{rule.pattern}: relay-domains only holds whole-group IPv6 prefixes")
    groups = [f"{int(g, 16):x}" for g in net.network_address.exploded.split(":")]
    if net.prefixlen == 128:
        return "IPv6:" + ":".join(groups)
    return "IPv6:" + ":".join(groups[: net.prefixlen // 16]) + "::"


def _ipv6_network(text: str) -> IPNetwork:
    """``2001:db8::`` and ``2001:db8`` mean the leading groups (/32); a complete address
    (eight groups, or ``::`` inside) means that one host (/128)."""
    if text.endswith("::") and text.count("::") == 1:
        groups = text[:-2].split(":") if text[:-2] else []
    elif "::" in text:
        return ipaddress.ip_network(f"{ipaddress.IPv6Address(text)}/128")
    else:
        groups = text.split(":")
    if not 0 < len(groups) <= 8 or not all(_HEX_GROUP.fullmatch(g) for g in groups):
        raise ValueError(f"IPv6:{text}: not an IPv6 address prefix")
    if len(groups) == 8:
        return ipaddress.ip_network(f"{ipaddress.IPv6Address(text)}/128")
    return ipaddress.ip_network(f"{':'.join(groups)}::/{16 * len(groups)}")


@functools.lru_cache(maxsize=256)
def _network(text: str) -> IPNetwork:
    """A relay network as configured, parsed once (each message from outside asks)."""
    return ipaddress.ip_network(text, strict=False)


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IPAddress | None:
    """A client address, parsed once while it keeps sending (the objects are immutable)."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _first_domain_match(name: str, patterns: Iterable[str], hosts_only: bool) -> str | None:
    for pattern in patterns:
        if name == pattern or (not hosts_only and name.endswith("." + pattern)):
            return pattern
    return None


def _norm(name: str) -> str:
    return name.strip().lower().rstrip(".")
