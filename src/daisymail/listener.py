"""What every listener does around a session: limits, tracking, and a clean stop.

A stop closes the listening sockets, says goodbye at once to sessions that are idle
(waiting for the client's next command: 421 for SMTP, -ERR for POP3), and lets the
others finish what they are doing (a message being received, a QUIT being
committed) before they are told goodbye at their next idle moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from daisymail.limits import ConnectionLimiter
from daisymail.observability import event, new_session_id

CLOSE_WAIT = 5.0
"""Seconds to wait for a closed connection to finish closing: one whose TLS handshake
was cut short may never report closed, and would hold up a stop for its whole grace."""

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str, str], Awaitable[None]]


@dataclass
class Sessions:
    """The sessions of one listener."""

    name: str
    log: logging.Logger
    refusal: Callable[[str], bytes]  # the reply that turns a client away, given why
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    idle: dict[int, asyncio.StreamWriter] = field(default_factory=dict)
    stopping: bool = False

    async def accept(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limiter: ConnectionLimiter,
        serve: Serve,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        peer = writer.get_extra_info("peername") or ("", 0)
        ip = str(peer[0])
        sid = new_session_id()
        refused = limiter.acquire(ip)
        try:
            if refused or self.stopping:
                why = refused or "server shutting down"
                event(self.log, f"{self.name}.refused", sid=sid, client=ip, reason=why)
                writer.write(self.refusal(why))
                with contextlib.suppress(OSError):
                    await writer.drain()
                return
            await serve(reader, writer, ip, sid)
        finally:
            if not refused:
                limiter.release(ip)
            self.idle.pop(id(writer), None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT)
            self.tasks.discard(task)

    async def read(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        size: int,
        timeout: float,
        *,
        busy: bool = False,
    ) -> bytes:
        """Wait for the client. An idle session (not `busy`, e.g. not in the middle of
        a message) is told goodbye by a stop and then reads EOF.

        Raises TimeoutError when the client is silent for `timeout` seconds.
        """
        if busy:
            async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                return await reader.read(size)
        if self.stopping:
            self._goodbye(writer)
            return b""
        self.idle[id(writer)] = writer
        try:
            async with asyncio.timeout(timeout):
                return await reader.read(size)
        finally:
            self.idle.pop(id(writer), None)

    def stop(self) -> None:
        self.stopping = True
        for writer in list(self.idle.values()):
            self._goodbye(writer)

    def _goodbye(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            writer.write(self.refusal("server shutting down"))
            writer.close()
