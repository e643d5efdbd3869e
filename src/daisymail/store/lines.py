"""Stored messages as lines, read with a fixed-size buffer however long a line is.

A message may be one 50 MB line; holding whole lines would make memory grow with the
message. Pieces are cut at BLOCK bytes instead, and never between a CR and its LF, so
that the POP3 side can still turn every line end into CRLF (see base.MaildropView.lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

BLOCK = 64 * 1024


def split_lines(blocks: Iterable[bytes], limit: int = BLOCK) -> Iterator[bytes]:
    """Lines with their line ends, from blocks of at most `limit` bytes; no piece is
    longer than 2 * limit. A line longer than that comes in pieces, only the last with
    the line end; the last line may lack one."""
    pending = b""
    for block in blocks:
        data = pending + block
        cut = data.rfind(b"\n") + 1
        if cut:
            parts = data[:cut].split(b"\n")
            yield from (part + b"\n" for part in parts[:-1])
        elif len(data) >= limit:
            cut = len(data) - 1 if data.endswith(b"\r") else len(data)
            yield data[:cut]
        pending = data[cut:]
    if pending:
        yield pending
