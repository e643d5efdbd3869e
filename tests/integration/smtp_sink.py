"""A small SMTP server for the other end of outbound delivery, with scripted replies."""

from __future__ import annotations

import asyncio
import threading

from tests.conftest import free_port


class Sink:
    """Records (sender, recipients, data) per accepted message; runs in its own thread."""

    def __init__(
        self,
        port: int | None = None,
        rcpt_reply: bytes = b"250 2.1.5 Ok",
        data_reply: bytes = b"250 2.0.0 Ok: queued",
        dsn: bool = True,
        broken_starttls: bool = False,
    ) -> None:
        """broken_starttls: offer STARTTLS, say 220, then answer the handshake with junk."""
        self.port = port or free_port()
        self.dsn = dsn
        self.broken_starttls = broken_starttls
        self.starttls_attempts = 0
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.rcpt_lines: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[object]] = set()
        self.connections = 0
        self.quits = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )
            ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        self.connections += 1
        writer.write(b"220 sink.test ESMTP\r\n")
        sender, rcpts = "", []
        try:
            while line := await reader.readline():
                cmd = line.decode().strip()
                verb = cmd[:4].upper()
                if verb == "EHLO":
                    ext = b"250-8BITMIME\r\n250 DSN\r\n" if self.dsn else b"250 8BITMIME\r\n"
                    tls = b"250-STARTTLS\r\n" if self.broken_starttls else b""
                    writer.write(b"250-sink.test\r\n" + tls + ext)
                elif verb == "STAR" and self.broken_starttls:
                    self.starttls_attempts += 1
                    writer.write(b"220 2.0.0 go ahead\r\n")
                    await writer.drain()
                    await reader.read(512)  # the ClientHello
                    writer.write(b"this is not a TLS record\r\n")
                    await writer.drain()
                    return
                elif verb == "MAIL":
                    sender, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    self.rcpt_lines.append(cmd)
                    if self.rcpt_reply.startswith(b"2"):
                        rcpts.append(cmd[8:].split(">")[0].lstrip("<"))
                    writer.write(self.rcpt_reply + b"\r\n")
                elif verb == "DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    data = bytearray()
                    while (chunk := await reader.readline()) != b".\r\n":
                        if not chunk:
                            return
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    if self.data_reply.startswith(b"2"):
                        self.messages.append((sender, rcpts, bytes(data)))
                    writer.write(self.data_reply + b"\r\n")
                elif verb == "QUIT":
                    self.quits += 1
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        finally:
            writer.close()

    def hang_up(self) -> None:
        """Close every open session without a word, as a server that times out idle
        clients does."""

        async def close() -> None:
            for task in list(self._sessions):
                task.cancel()
            if self._sessions:
                await asyncio.wait(set(self._sessions), timeout=5)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._sessions):  # sessions a client keeps open
                task.cancel()
            if self._sessions:
                await asyncio.wait(set(self._sessions), timeout=5)
            if self._server is not None:
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
