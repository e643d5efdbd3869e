"""systemd's sd_notify without a library: one datagram to $NOTIFY_SOCKET.

With ``Type=notify`` systemd waits for READY=1, sent once every listener accepts, so
units ordered after Daisy start only when mail can be received.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send state (``READY=1``, ``STOPPING=1``); False when not run by systemd."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state.encode())
    except OSError:
        return False
    return True
