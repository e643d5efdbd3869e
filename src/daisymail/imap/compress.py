"""COMPRESS=DEFLATE (RFC 4978): raw deflate both ways, in the server's transport.

Each write is flushed with Z_SYNC_FLUSH, so the client can decode every reply as soon
as it arrives. Inflating is bounded per call: a small, highly compressed burst cannot
turn into a huge buffer at once; what is left waits in ``backlog`` for the next call.
"""

from __future__ import annotations

import zlib

INFLATE_STEP = 1024 * 1024


class CompressionError(ConnectionError):
    """The client's deflate stream is broken: the connection cannot go on."""


class Deflate:
    def __init__(self, level: int = 6) -> None:
        self._out = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._in = zlib.decompressobj(-15)

    def compress(self, data: bytes) -> bytes:
        return self._out.compress(data) + self._out.flush(zlib.Z_SYNC_FLUSH)

    @property
    def backlog(self) -> bool:
        return bool(self._in.unconsumed_tail)

    def inflate(self, data: bytes) -> bytes:
        """Up to INFLATE_STEP octets of what data (and the backlog) decompress to."""
        try:
            return self._in.decompress(self._in.unconsumed_tail + data, INFLATE_STEP)
        except zlib.error as e:
            raise CompressionError(f"bad deflate data: {e}") from None
