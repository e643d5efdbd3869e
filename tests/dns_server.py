"""A small authoritative DNS server on loopback for the tests (UDP and TCP).

Zones are given as zone text or as Python data ``{"name": [("TXT", "v=spf1 -all"), ...]}``
(names relative to the origin, "@" for the origin). Names listed in ``servfail`` answer
SERVFAIL and names in ``drop`` are never answered (a timeout), so temporary failures are
tested for real. A UDP answer too large for the client's buffer is truncated (TC), so
clients retry over TCP as they would on the Internet.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone

ZoneData = Mapping[str, Sequence[tuple[str, str]]]

_SOA = "ns.{origin} hostmaster.{origin} 1 3600 600 86400 60"


def txt(value: str) -> str:
    """A TXT rdata for any length: split into quoted strings of at most 255 bytes."""
    parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


def make_zone(origin: str, data: ZoneData | str, ttl: int = 300) -> dns.zone.Zone:
    if isinstance(data, str):
        return dns.zone.from_text(data, origin=origin, relativize=False, check_origin=False)
    lines = [f"@ {ttl} IN SOA {_SOA.format(origin=origin.rstrip('.') + '.')}"]
    for name, records in data.items():
        for rdtype, value in records:
            rd = txt(value) if rdtype.upper() == "TXT" and not value.startswith('"') else value
            lines.append(f"{name} {ttl} IN {rdtype} {rd}")
    return dns.zone.from_text(
        "\n".join(lines) + "\n", origin=origin, relativize=False, check_origin=False
    )


class DNSServer:
    """Serves zones on 127.0.0.1:port until stop(); zones can be replaced while running."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.zones: dict[dns.name.Name, dns.zone.Zone] = {}
        self.servfail: set[str] = set()
        self.drop: set[str] = set()
        self.queries: list[tuple[str, str, str]] = []  # (transport, name, type)
        self._servers: list[socketserver.BaseServer] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_zone(self, origin: str, data: ZoneData | str) -> None:
        zone = make_zone(origin, data)
        self.zones[zone.origin] = zone

    def answer(self, wire: bytes, max_size: int | None) -> bytes | None:
        """The response to one query, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        resp = dns.message.make_response(query)
        if not query.question:
            resp.set_rcode(dns.rcode.FORMERR)
            return resp.to_wire()
        q = query.question[0]
        qname = q.name.to_text(omit_final_dot=True).lower()
        self.queries.append(("udp" if max_size else "tcp", qname, dns.rdatatype.to_text(q.rdtype)))
        if qname in self.drop:
            return None
        if qname in self.servfail:
            resp.set_rcode(dns.rcode.SERVFAIL)
            return resp.to_wire()
        self._fill(resp, q.name, q.rdtype)
        if max_size is None:
            return resp.to_wire(max_size=65535)
        limit = query.payload if query.edns >= 0 else 512
        try:
            return resp.to_wire(max_size=limit)
        except dns.exception.TooBig:
            short = dns.message.make_response(query)
            short.flags |= dns.flags.TC
            return short.to_wire()

    def _fill(
        self, resp: dns.message.Message, qname: dns.name.Name, rdtype: int, depth: int = 0
    ) -> None:
        zone = max(
            (z for o, z in self.zones.items() if qname.is_subdomain(o)),
            key=lambda z: len(z.origin),
            default=None,
        )
        if zone is None:
            # As the rest of the DNS would answer: a name outside the test zones is not there.
            resp.set_rcode(dns.rcode.NXDOMAIN)
            return
        resp.flags |= dns.flags.AA
        soa = zone.find_rrset(zone.origin, dns.rdatatype.SOA)
        node = zone.get_node(qname)
        if node is None:
            # An empty non-terminal (a name with names below it) exists without records.
            if not any(n != qname and n.is_subdomain(qname) for n in zone.nodes):
                resp.set_rcode(dns.rcode.NXDOMAIN)
            resp.authority.append(soa)
            return
        rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
        if rds is None:
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is not None:
                resp.answer.append(zone.find_rrset(qname, dns.rdatatype.CNAME))
                if depth < 8:  # chase it as a recursive resolver would, in any test zone
                    self._fill(resp, cname[0].target, rdtype, depth + 1)
                return
            resp.authority.append(soa)
            return
        resp.answer.append(zone.find_rrset(qname, rdtype))

    def start(self) -> None:
        outer = self

        class UDP(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                out = outer.answer(data, 65535)
                if out is not None:
                    sock.sendto(out, self.client_address)

        class TCP(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(5)
                try:
                    while True:
                        head = _recv(conn, 2)
                        if head is None:
                            return
                        data = _recv(conn, struct.unpack("!H", head)[0])
                        if data is None:
                            return
                        out = outer.answer(data, None)
                        if out is None:
                            return
                        conn.sendall(struct.pack("!H", len(out)) + out)
                except OSError:
                    return

        class UDPServer(socketserver.ThreadingUDPServer):
            daemon_threads = True
            allow_reuse_address = True

        class TCPServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        for cls, handler in ((UDPServer, UDP), (TCPServer, TCP)):
            srv: Any = cls(("127.0.0.1", self.port), handler)
            self._servers.append(srv)
            threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers.clear()


def _recv(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve(port: int, zones: Iterable[tuple[str, ZoneData | str]] = ()) -> DNSServer:
    """A started server with the given zones."""
    server = DNSServer(port)
    for origin, data in zones:
        server.add_zone(origin, data)
    server.start()
    return server
