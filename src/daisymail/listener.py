"""What every listener does around a session: limits, tracking, and a clean stop.

A stop closes the listening sockets, says goodbye at once to sessions that are idle
(waiting for the client's next command: 421 for SMTP, -ERR for POP3), and lets the
others finish what they are doing (a message being received, a QUIT being
committed) before they are told goodbye at their next idle moment.

Every write goes through Sessions.drain, which bounds how long a write may make no
progress: a client that stops reading (a RETR of a large message, replies to pipelined
commands) would otherwise hold its session, and the locks that come with it, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn

from daisymail.limits import ConnectionLimiter
from daisymail.observability import event, new_session_id

CLOSE_WAIT = 5.0
"""Seconds to wait for a closed connection to finish closing: one whose TLS handshake
was cut short may never report closed, and would hold up a stop for its whole grace."""

WRITE_TIMEOUT = 300.0
"""Default seconds a write may make no progress ([limits] write_timeout)."""

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str, str], Awaitable[None]]


class WriteTimeout(ConnectionError):
    """The client stopped reading: the connection was aborted. A ConnectionError, so
    that every session treats it as the client going away (nothing is committed)."""


@dataclass
class Sessions:
    """The sessions of one listener."""

    name: str
    log: logging.Logger
    refusal: Callable[[str], bytes]  # the reply that turns a client away, given why
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    idle: dict[int, asyncio.StreamWriter] = field(default_factory=dict)
    stopping: bool = False
    write_timeout: float = WRITE_TIMEOUT
    peers: dict[int, tuple[str, str]] = field(default_factory=dict)  # id(writer): (sid, ip)

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
        self.peers[id(writer)] = (sid, ip)
        try:
            if refused or self.stopping:
                why = refused or "server shutting down"
                event(self.log, f"{self.name}.refused", sid=sid, client=ip, reason=why)
                writer.write(self.refusal(why))
                with contextlib.suppress(OSError):
                    await self.drain(writer)
                return
            await serve(reader, writer, ip, sid)
        finally:
            if not refused:
                limiter.release(ip)
            self.idle.pop(id(writer), None)
            self.peers.pop(id(writer), None)
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

    async def drain(self, writer: asyncio.StreamWriter) -> None:
        """Wait until the client has taken what was written (down to the transport's
        low-water mark), as writer.drain() does, but give up when write_timeout seconds
        pass without the client taking a single byte: then the connection is aborted
        (close() would wait for the unsent data) and WriteTimeout is raised.

        A slow reader that keeps making progress is not cut off.
        """
        transport = writer.transport
        while True:
            before = transport.get_write_buffer_size()
            try:
                async with asyncio.timeout(self.write_timeout):
                    await writer.drain()
                return
            except TimeoutError:
                if transport.get_write_buffer_size() < before:
                    continue
            self._give_up(writer)

    async def writable(self, writer: asyncio.StreamWriter, fd: int) -> None:
        """Wait until the socket takes octets again after a write around the transport
        (sendfile) found it full, with drain's write timeout. fd is a duplicate of the
        socket's descriptor: event loops refuse to watch a transport's own."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, wake)
        try:
            async with asyncio.timeout(self.write_timeout):
                await ready
        except TimeoutError:
            self._give_up(writer)
        finally:
            loop.remove_writer(fd)

    def _give_up(self, writer: asyncio.StreamWriter) -> NoReturn:
        """A client that took nothing for write_timeout seconds: aborted, WriteTimeout."""
        transport = writer.transport
        sid, ip = self.peers.get(id(writer), ("", ""))
        event(
            self.log,
            f"{self.name}.write_timeout",
            logging.WARNING,
            sid=sid or None,
            client=ip or None,
            seconds=self.write_timeout,
            unsent=transport.get_write_buffer_size(),
        )
        transport.abort()
        raise WriteTimeout(f"the client took nothing for {self.write_timeout:g} seconds")

    def stop(self) -> None:
        self.stopping = True
        for writer in list(self.idle.values()):
            self._goodbye(writer)

    def _goodbye(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            writer.write(self.refusal("server shutting down"))
            writer.close()
