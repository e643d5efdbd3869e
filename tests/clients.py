"""Client-side helpers the integration tests share (real stdlib clients, a little tuned)."""

from __future__ import annotations

import poplib
import socket
import ssl


def tls_context() -> ssl.SSLContext:
    """A client context that accepts the test server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Pop3From(poplib.POP3):
    """poplib with a chosen source address (127.0.0.x), so that each test is a client of
    its own for the per-client throttle."""

    def __init__(self, port: int, source: str) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._source, 0)
        )
