"""SMTP sessions kept open between deliveries to the same hop (a connection cache).

Opening a session costs a TCP handshake, the greeting and EHLO (and with STARTTLS a TLS
handshake and a second EHLO): most of a delivery's round trips and much of its CPU,
before MAIL FROM. A destination that gets a steady stream (a large provider, the
smarthost, a relay) gets each message over the session the one before it left open, as
with Postfix's connection cache. A session is kept only after a transaction ended
cleanly, for ``[queue] idle_connection_seconds`` (then closed with QUIT), and retired
after ``MAX_USES`` messages or ``MAX_AGE`` seconds. Before it is used again it is
checked with RSET; one that fails the check is dropped and a new one is opened, so a
message never pays for a session the other end has timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import aiosmtplib

MAX_USES = 100
MAX_AGE = 300.0  # seconds from the connection on
CHECK_TIMEOUT = 10.0  # seconds for the RSET before reuse, and for the QUIT at the end


@dataclass
class Session:
    client: aiosmtplib.SMTP
    opened: float
    uses: int = 0
    expires: float = 0.0
    """While idle: when it is closed unless taken."""


class SessionCache:
    """Idle sessions by hop; one event loop uses it, so it needs no lock. Each hop holds
    at most as many as ran at once, which ``destination_concurrency`` bounds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._idle: dict[Hashable, list[Session]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def new(self, client: aiosmtplib.SMTP) -> Session:
        return Session(client, self.clock())

    async def take(self, hop: Hashable) -> Session | None:
        """A live idle session to ``hop``, checked with RSET; None: open a new one."""
        while sessions := self._idle.get(hop):
            session = sessions.pop()  # the most recently used: the likeliest to be alive
            if not sessions:
                del self._idle[hop]
            if session.expires < self.clock() or not session.client.is_connected:
                self._close(session)
                continue
            try:
                await session.client.rset(timeout=CHECK_TIMEOUT)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                session.client.close()  # timed out by the other end while idle
                continue
            return session
        return None

    def give(self, hop: Hashable, session: Session, keep_seconds: float) -> None:
        """After a clean end of transaction: keep it for the next message, or close it."""
        session.uses += 1
        now = self.clock()
        if (
            keep_seconds <= 0
            or session.uses >= MAX_USES
            or now - session.opened >= MAX_AGE
            or not session.client.is_connected
        ):
            self._close(session)
            return
        session.expires = now + keep_seconds
        self._idle.setdefault(hop, []).append(session)

    def expire(self) -> None:
        """Close the sessions idle past their time (called on each queue scan)."""
        now = self.clock()
        for hop, sessions in list(self._idle.items()):
            for s in sessions:
                if s.expires < now:
                    self._close(s)
            sessions[:] = [s for s in sessions if s.expires >= now]
            if not sessions:
                del self._idle[hop]

    def idle(self) -> int:
        return sum(len(s) for s in self._idle.values())

    async def close(self) -> None:
        """At shutdown: QUIT every idle session and wait for the QUITs."""
        for sessions in self._idle.values():
            for s in sessions:
                self._close(s)
        self._idle.clear()
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=CHECK_TIMEOUT)

    def _close(self, session: Session) -> None:
        if not session.client.is_connected:
            return
        task = asyncio.get_running_loop().create_task(quit_session(session.client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def quit_session(client: aiosmtplib.SMTP) -> None:
    """QUIT, politely; a peer that does not answer is hung up on."""
    try:
        await client.quit(timeout=CHECK_TIMEOUT)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        with contextlib.suppress(Exception):
            client.close()
