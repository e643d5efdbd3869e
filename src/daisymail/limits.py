"""Connection limits shared by every listener: in total and per client address."""

from __future__ import annotations

import resource
from collections import Counter


def raise_open_files(connections: int) -> int:
    """Raise the soft limit of open files (not above the hard one) so that the process
    can hold max_connections sockets and the files and listeners they use: 10,000
    idle IMAP sessions need more than the usual default of 1,024. The limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + connections // 4 + 256
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    return soft


class ConnectionLimiter:
    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self._by_ip: Counter[str] = Counter()
        self._count = 0

    def acquire(self, ip: str) -> str | None:
        """Count a new connection; return why it must be refused, or None."""
        if self._count >= self.total:
            return "too many connections"
        if self._by_ip[ip] >= self.per_ip:
            return "too many connections from your address"
        self._count += 1
        self._by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self._count -= 1
        self._by_ip[ip] -= 1
        if self._by_ip[ip] <= 0:
            del self._by_ip[ip]

    @property
    def active(self) -> int:
        return self._count
