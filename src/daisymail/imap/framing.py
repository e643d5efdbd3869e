"""Cutting the client's byte stream into IMAP commands (a line and its literals) or lines.

A command line ending in ``{n}`` announces a literal of n octets: the client waits for
a ``+`` continuation (unless it wrote ``{n+}``, LITERAL+), sends the octets, and the
command goes on after them. The framer keeps the literals in place, bounded: a line
longer than max_line or a literal over the caller's limit never grows the buffer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from daisymail.imap.parser import tag_of
from daisymail.imap.responses import tagged

CONTINUE = b"+ Ready for literal data\r\n"
_APPEND = re.compile(rb"[^ ]+ APPEND ", re.I)
_LITERAL_END = re.compile(rb"~?\{(\d{1,10})(\+?)\}\r?\n\Z")


class FrameError(Exception):
    """The stream cannot be followed any more (line or non-synchronizing literal too
    long); str(e) is the reason for the BYE."""


@dataclass(frozen=True)
class StreamStart:
    """An APPEND whose message literal is to be streamed, not buffered: ``line`` is the
    command up to the literal, which follows in the buffer (the client waits for ``+``
    unless ``nonsync``)."""

    line: bytes
    size: int
    nonsync: bool


class Framer:
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.buffer = bytearray()
        self.replies: list[bytes] = []  # continuations and refusals to send, in order
        self._scan = 0  # where the current command's unread part starts
        self._literal_left = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def clear(self) -> None:
        """Forget everything buffered (STARTTLS: nothing sent before it counts)."""
        self.buffer.clear()
        self._scan = 0
        self._literal_left = 0

    def _fail(self, why: str) -> FrameError:
        self.clear()
        return FrameError(why)

    def line(self) -> bytes | None:
        """The next complete line, without literal handling (IDLE's DONE, SASL)."""
        end = self.buffer.find(b"\n")
        if end < 0:
            if len(self.buffer) > self.max_line:
                raise self._fail("line too long")
            return None
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def take(self, limit: int) -> bytes:
        """Up to limit buffered octets (a streamed literal's next chunk)."""
        data = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return data

    def command(
        self, literal_limit: int, stream_over: int | None = None
    ) -> bytes | StreamStart | None:
        """A whole command with its literals, or None until more data comes.

        A synchronizing literal over literal_limit is refused with ``BAD [TOOBIG]`` (the
        client has not sent it); a non-synchronizing one raises FrameError. An APPEND
        literal over stream_over is left in the buffer and a StreamStart returned."""
        while True:
            if self._literal_left:
                if len(self.buffer) - self._scan < self._literal_left:
                    return None
                self._scan += self._literal_left
                self._literal_left = 0
            end = self.buffer.find(b"\n", self._scan)
            if (end < 0 and len(self.buffer) - self._scan > self.max_line) or (
                end - self._scan > self.max_line
            ):
                raise self._fail("line too long")
            if end < 0:
                return None
            m = _LITERAL_END.search(self.buffer, max(self._scan, end - 20), end + 1)
            if m is None:
                data = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                self._scan = 0
                return data
            size, nonsync = int(m[1]), bool(m[2])
            if size > literal_limit or end + 1 + size > 2 * literal_limit + self.max_line:
                tag = tag_of(bytes(self.buffer[:end]))
                if nonsync:  # RFC 7888: BAD [TOOBIG]; its octets are on the way: close
                    self.replies.append(tagged(tag, "BAD", "literal too big", "TOOBIG"))
                    raise self._fail("literal too big")
                del self.buffer[: end + 1]
                self._scan = 0
                self.replies.append(tagged(tag, "BAD", "literal too big", "TOOBIG"))
                continue
            if stream_over is not None and size > stream_over and _APPEND.match(self.buffer):
                line = bytes(self.buffer[: m.start()])
                del self.buffer[: end + 1]
                self._scan = 0
                return StreamStart(line, size, nonsync)
            self._scan = end + 1
            self._literal_left = size
            if not nonsync and len(self.buffer) - self._scan < size:
                self.replies.append(CONTINUE)
