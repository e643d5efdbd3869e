"""Turning on the HTTP side of a test server (off in tests unless asked for)."""

from __future__ import annotations

from tests.conftest import Daisy, free_port


def with_http(d: Daisy, *, tls: bool = False) -> Daisy:
    """Serve HTTP (and HTTPS when tls) on free ports; Daisy.start waits for them too."""
    d.ports["http"] = free_port()
    d.set_config("[http]", "listen", f'["127.0.0.1:{d.ports["http"]}"]')
    if tls:
        d.ports["https"] = free_port()
        d.set_config("[http]", "listen_tls", f'["127.0.0.1:{d.ports["https"]}"]')
    return d
