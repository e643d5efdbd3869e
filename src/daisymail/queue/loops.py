"""Is the next hop this host itself? Then the mail would come straight back: a loop.

sendmail and Postfix refuse to connect to themselves ("mail for DOMAIN loops back to
myself"); so does the queue. Our own SMTP listeners are given as (address, port); a
wildcard listener stands for every address of this host on its port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from daisymail.queue.remote import Hop, Route


def is_local_address(ip: str) -> bool:
    """Is `ip` an address of this host? Binding to it succeeds exactly when it is."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    if addr.is_loopback or addr.is_unspecified:
        return True
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((str(addr), 0))
    except OSError:
        return False
    return True


async def points_to_self(host: str, port: int, listeners: Sequence[tuple[str, int]]) -> bool:
    """Would connecting to host:port reach one of our own SMTP listeners?"""
    ports = {p for _h, p in listeners}
    if port not in ports:
        return False
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False  # connecting will fail and say why
    ips = {str(info[4][0]) for info in infos}
    for ip in ips:
        for lhost, lport in listeners:
            if lport != port:
                continue
            if lhost in ("", "0.0.0.0", "::", "*"):
                if await asyncio.to_thread(is_local_address, ip):
                    return True
            elif _same_ip(lhost, ip):
                return True
    return False


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


async def without_self(route: Route, listeners: Sequence[tuple[str, int]]) -> Route:
    """The route's hops before the first one that is this host itself.

    A hop that reaches one of our own SMTP listeners would hand the mail back to us (a
    backup MX lists us after better ones; a route names our own port). An empty result
    means the mail loops back to ourselves (RFC 5321 5.1) and must bounce.
    """
    hops: list[Hop] = []
    for hop in route.hops:
        if listeners and await points_to_self(hop.host, hop.port, listeners):
            break
        hops.append(hop)
    return Route(route.key, tuple(hops))
