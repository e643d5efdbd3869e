"""Message body decoders for DATA (RFC 5321 4.1.1.4, 4.5.2) and BDAT (RFC 3030).

Both store LF line ends, the form the mailbox files use. They work on whole chunks with
bytes methods rather than byte by byte, so a 50 MB message costs a few passes of C code.
"""

from __future__ import annotations

import re

_END = b"\r\n.\r\n"


def _held_back(buf: bytes) -> int:
    """Length of the longest tail of `buf` that could still grow into the end marker."""
    for size in (4, 3, 2, 1):
        if buf.endswith(_END[:size]):
            return size
    return 0


class DotDecoder:
    """Finds the end of DATA and undoes dot-stuffing.

    Only CRLF `.` CRLF ends the message (the CRLF of the DATA line counts, so an empty
    message is just `.` CRLF). `\\n.\\n`, `\\r.\\r`, `\\n.\\r\\n` and `\\r\\n.\\n` are data: a
    server that ended there would let one message smuggle a second past the next hop's
    checks. Dots are unstuffed only on lines that begin after a CRLF; bare CR and bare LF
    are kept as they came.
    """

    def __init__(self) -> None:
        self._carry = b"\r\n"
        self._at_start = True
        self.size = 0
        """Octets of the message as sent, after unstuffing, counting CRLF as two."""

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """Decode `data`; return the body bytes and, once the end was seen, the input after it."""
        buf = self._carry + data
        end = buf.find(_END)
        rest: bytes | None
        if end >= 0:
            body, rest, self._carry = buf[: end + 2], buf[end + 5 :], b""
        else:
            cut = len(buf) - _held_back(buf)
            body, rest, self._carry = buf[:cut], None, buf[cut:]
        unstuffed = body.replace(b"\r\n.", b"\r\n")
        out = unstuffed.replace(b"\r\n", b"\n")
        self.size += len(unstuffed)
        if self._at_start and body:
            self._at_start = False
            self.size -= 2
            out = out[1:]
        return out, rest


class CrlfDecoder:
    """BDAT chunks: byte counts are exact, so only CRLF becomes LF, even across chunks."""

    def __init__(self) -> None:
        self._pending_cr = False
        self.size = 0
        """Octets received in all chunks so far."""

    def feed(self, data: bytes) -> bytes:
        self.size += len(data)
        if self._pending_cr:
            data = b"\r" + data
        self._pending_cr = data.endswith(b"\r")
        if self._pending_cr:
            data = data[:-1]
        return data.replace(b"\r\n", b"\n")

    def finish(self) -> bytes:
        """What is still held back once the last chunk is in: a final bare CR, if any."""
        held, self._pending_cr = self._pending_cr, False
        return b"\r" if held else b""


_RECEIVED = re.compile(rb"\n(?i:received)[ \t]{0,20}:")
_KEEP = 32
"""Bytes held back between chunks: longer than any match of _RECEIVED or a header end."""


class HopCounter:
    """Counts `Received:` fields in the header section of a decoded (LF) body as it streams.

    RFC 5321 6.3: a message that went through too many relays is looping. Only the header
    section is scanned, with regex passes over each chunk and a short carry between chunks,
    so the count costs no buffering and stops once it passes `limit`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._carry = b"\n"  # the message starts at the beginning of a line
        self._done = False

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    def feed(self, data: bytes) -> None:
        if self._done or not data:
            return
        buf = self._carry + data
        ends = [i for i in (buf.find(b"\n\n"), buf.find(b"\n\r\n")) if i >= 0]
        if ends:
            cut, self._done, self._carry = min(ends) + 1, True, b""
            self.count += len(_RECEIVED.findall(buf, 0, cut))
        else:
            cut = max(len(buf) - _KEEP, 0)
            for match in _RECEIVED.finditer(buf):
                if match.start() >= cut:
                    break
                self.count += 1
                if self.exceeded:
                    break
            self._carry = buf[cut:]
        if self.exceeded:
            self._done, self._carry = True, b""
