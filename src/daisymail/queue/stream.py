"""A queued message on its way out: scanned once, then read and dot-stuffed in pieces.

The queue stores messages with LF line ends; SMTP wants CRLF and a dot doubled at the
start of each line (RFC 5321 4.5.2). Doing that per CHUNK, with the state a piece border
can split (a CR, the start of a line) carried over, keeps the memory of a delivery fixed
however large the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Body:
    """A queued message file to send: LF line ends as the queue stores them.

    A large file is read in CHUNK-sized pieces while it is sent, so memory per delivery
    is bounded however large the message; a small one (most mail) is read once, by
    `scan`, and kept, so that sending it takes no more trips to a worker thread.
    `scan` also learns what MAIL FROM must say about it.
    """

    path: str
    eight_bit: bool = False
    size: int = 0
    """Octets on the wire (CRLF line ends), for SIZE=."""
    prefix: bytes = b""
    """Header fields sent in front of the file (DKIM-Signature), LF line ends."""
    data: bytes | None = field(default=None, repr=False)
    """The whole file, when it is at most HELD bytes; None: read it while sending."""

    @classmethod
    def scan(cls, path: str, prefix: bytes = b"") -> Body:
        """Blocking (a pass over the file at C speed): run it in a thread."""
        eight_bit, size = False, 0
        pieces: list[bytes] | None = []
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                eight_bit = eight_bit or not chunk.isascii()
                size += len(chunk) + chunk.count(b"\n")
                if pieces is not None:
                    pieces.append(chunk)
                    if size > HELD:
                        pieces = None
        data = None if pieces is None else b"".join(pieces)
        return cls(path, eight_bit, size, b"", data).with_prefix(prefix)

    def with_prefix(self, prefix: bytes) -> Body:
        """The same file with header fields in front (the size and 8-bit flag follow)."""
        if not prefix:
            return self
        return replace(
            self,
            eight_bit=self.eight_bit or not prefix.isascii(),
            size=self.size + len(prefix) + prefix.count(b"\n"),
            prefix=self.prefix + prefix,
        )

    def chunks(self) -> Iterator[bytes]:
        """The file in CHUNK-sized pieces, without the prefix (blocking when not held)."""
        if self.data is not None:
            yield self.data
            return
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


CHUNK = 256 * 1024
HELD = 64 * 1024
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
        # LF line ends (as the queue stores mail) need no regular-expression pass.
        lf_only = b"\r" not in data
        out = data.replace(b"\n", b"\r\n") if lf_only else _LINE_END.sub(b"\r\n", data)
        out = out.replace(b"\n.", b"\n..")
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
