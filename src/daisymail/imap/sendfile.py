"""FETCH bodies that need no line-end conversion, sent from the page cache to a plain
socket by ``os.sendfile``: no read into Python, no copy. uvloop has no
``loop.sendfile``, so this writes around the asyncio transport, which is only right
once the transport has sent everything it holds (octets must stay in order), and
without TLS or COMPRESS (the server checks those: they change the octets).
"""

from __future__ import annotations

import asyncio
import os

from daisymail.imap.stream import FileLiteral
from daisymail.listener import Sessions


def usable(writer: asyncio.StreamWriter) -> bool:
    """A platform with sendfile and a transport on a socket of its own, not TLS."""
    return (
        hasattr(os, "sendfile")
        and writer.get_extra_info("sslcontext") is None
        and writer.get_extra_info("socket") is not None
    )


class FileSender:
    """The files of one batch of a reply; close() when it is done. When the socket is
    full, the wait for room is on a duplicate of its descriptor (event loops refuse to
    watch a transport's own), made once, with the shared write timeout."""

    def __init__(self, writer: asyncio.StreamWriter, sessions: Sessions) -> None:
        self.writer, self.sessions = writer, sessions
        self._dup: int | None = None

    async def send(self, lit: FileLiteral) -> None:
        """The file's octets, exactly lit.size of them (a file that shrank is padded:
        the literal's size is already on the wire); the file is closed."""
        await self._emptied()
        transport = self.writer.transport
        if transport.is_closing():
            raise ConnectionError("the connection is closing")
        sock = self.writer.get_extra_info("socket").fileno()
        src = lit.file.fileno()
        sent = 0
        while sent < lit.size:
            try:
                n = os.sendfile(sock, src, sent, lit.size - sent)
            except BlockingIOError:
                if self._dup is None:
                    self._dup = os.dup(sock)
                await self.sessions.writable(self.writer, self._dup)
                if transport.is_closing():
                    raise ConnectionError("the connection closed") from None
                # The transport may have closed its descriptor meanwhile and the number
                # gone to another connection: the duplicate is this connection's still.
                sock = self._dup
                continue
            if n == 0:
                break
            sent += n
        lit.file.close()
        if sent < lit.size:
            if transport.is_closing():
                raise ConnectionError("the connection closed")
            self.writer.write(b" " * (lit.size - sent))

    def close(self) -> None:
        if self._dup is not None:
            os.close(self._dup)
            self._dup = None

    async def _emptied(self) -> None:
        """Wait until the transport's buffer is empty, not merely below its low-water
        mark: the limits are 0 meanwhile, so that drain waits for exactly that."""
        transport = self.writer.transport
        if not transport.get_write_buffer_size():
            return
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            while transport.get_write_buffer_size():
                await self.sessions.drain(self.writer)
        finally:
            if not transport.is_closing():
                transport.set_write_buffer_limits(high=high, low=low)
