"""A stored message in POP3's wire form (RFC 1939 section 3): CRLF line ends and
dot-stuffing, streamed in blocks, optionally cut to the header and the first lines of the
body (TOP). The final ``.`` line is the server's to send.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator

CRLF = b"\r\n"
_SEND_BLOCK = 64 * 1024


class ReadToEnd:
    """A message's lines that record whether they were all read: after format_message
    with a TOP limit, ``whole`` says nothing was cut off (see top_sent)."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._lines = lines
        self.whole = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._lines
        self.whole = True


def format_message(
    lines: Iterable[bytes], top_lines: int | None = None
) -> Generator[bytes, None, None]:
    """The wire form of a message, without the final ``.``: CRLF line ends, dot-stuffing.

    lines are stored lines (LF or CRLF; a piece without a line end continues on the next
    piece). top_lines: send the header, the blank line, and this many body lines (TOP).
    """
    out = bytearray()
    at_line_start = True
    in_header = True
    body_left = top_lines
    for piece in lines:
        if at_line_start:
            if not in_header and body_left is not None:
                if body_left <= 0:
                    break
                body_left -= 1
            if piece.startswith(b"."):
                out += b"."
        if piece.endswith(b"\n"):
            content = piece[:-2] if piece.endswith(b"\r\n") else piece[:-1]
            if at_line_start and not content:
                in_header = False
            out += content
            out += CRLF
            at_line_start = True
        else:
            out += piece
            at_line_start = False
        if len(out) >= _SEND_BLOCK:
            yield bytes(out)
            out.clear()
    if not at_line_start:
        out += CRLF
    if out:
        yield bytes(out)
