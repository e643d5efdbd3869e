"""A queued message on its way out: scanned once, then read and dot-stuffed in pieces.

The queue stores messages with LF line ends; SMTP wants CRLF and a dot doubled at the
start of each line (RFC 5321 4.5.2). Doing that per CHUNK, with the state a piece border
can split (a CR, the start of a line) carried over, keeps the memory of a delivery fixed
however large the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Body:
    """A queued message file to send: LF line ends as the queue stores them.

    The file is read in CHUNK-sized pieces while it is sent, so memory per delivery is
    bounded however large the message; `scan` learns what MAIL FROM must say about it.
    """

    path: str
    eight_bit: bool = False
    size: int = 0
    """Octets on the wire (CRLF line ends), for SIZE=."""
    prefix: bytes = b""
    """Header fields sent in front of the file (DKIM-Signature), LF line ends."""

    @classmethod
    def scan(cls, path: str, prefix: bytes = b"") -> Body:
        """Blocking (a pass over the file at C speed): run it in a thread."""
        eight_bit = not prefix.isascii()
        size = len(prefix) + prefix.count(b"\n")
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                eight_bit = eight_bit or not chunk.isascii()
                size += len(chunk) + chunk.count(b"\n")
        return cls(path, eight_bit, size, prefix)

    def chunks(self) -> Iterator[bytes]:
        """The file in CHUNK-sized pieces, without the prefix (blocking)."""
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


CHUNK = 256 * 1024
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")


class DotStuffer:
    """LF (or a lone CR) to CRLF and dot-stuffing (RFC 5321 4.5.2), across chunk borders."""

    def __init__(self) -> None:
        self._held = b""
        self._line_start = True
        self._empty = True

    def feed(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        if data.endswith(b"\r"):  # maybe the CR of a CRLF split across chunks
            data, self._held = data[:-1], b"\r"
        if not data:
            return b""
        out = _LINE_END.sub(b"\r\n", data).replace(b"\n.", b"\n..")
        if self._line_start and out.startswith(b"."):
            out = b"." + out
        self._line_start = out.endswith(b"\n")
        self._empty = False
        return out

    def finish(self) -> bytes:
        """The rest, a line end if the message lacks a final one, and the end marker."""
        tail = b"\r\n" if self._held else b""
        self._held = b""
        if not tail and (self._empty or not self._line_start):
            tail = b"\r\n"  # an empty message is sent as one empty line, as aiosmtplib does
        return tail + b".\r\n"
