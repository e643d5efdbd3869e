"""Idle connections: open many, wait for each greeting, hold them, close them.

A connection counts as accepted when the server's greeting (`220` for SMTP, `+OK` for
POP3) arrives; a refusal (`421`, `-ERR`), a close or no greeting within the timeout
counts against the server. Connects go out a batch at a time so that the client, not
the listen backlog, sets the pace.
"""

from __future__ import annotations

import asyncio
import resource
import time

BATCH = 50


def raise_fd_limit(need: int) -> None:
    """Let this process (and the servers it starts, which inherit it) open need files:
    the soft limit up to the hard one, and the hard one too when allowed (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, need))
            hard = need
        except (ValueError, OSError):
            pass  # not root: as far as the hard limit goes
    want = min(max(soft, need), hard) if hard != resource.RLIM_INFINITY else max(soft, need)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class IdleClients:
    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.refused = 0

    async def _one(self, host: str, port: int, ok: bytes, timeout: float) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            self.refused += 1
            return
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except (OSError, TimeoutError):
            line = b""
        if line.startswith(ok):
            self.writers.append(writer)
        else:
            self.refused += 1
            writer.close()

    async def open(self, host: str, port: int, count: int, ok: bytes, timeout: float) -> float:
        """Open count connections; returns the seconds it took."""
        t0 = time.perf_counter()
        for start in range(0, count, BATCH):
            n = min(BATCH, count - start)
            await asyncio.gather(*(self._one(host, port, ok, timeout) for _ in range(n)))
        return time.perf_counter() - t0

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        for w in self.writers:
            try:
                await w.wait_closed()
            except OSError:
                pass
        self.writers = []
