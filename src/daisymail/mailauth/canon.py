"""DKIM canonicalization (RFC 6376 3.4): headers, and bodies fed in chunks.

The body canonicalizers take chunks of any size and feed a hash as they go, so a large
message is never held whole: only the current partial line and a count of pending empty
lines are kept (trailing empty lines are dropped, so they can only be written once a
non-empty line follows). Lines end in CRLF or a bare LF; both count as one line end.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SP_RUN = re.compile(rb"  +")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_EOL = re.compile(rb"\r?\n")
_WSP_FIX = re.compile(rb"\t[ \t]*| [ \t]+")  # WSP runs that are not already one SP
_RELAXED_EOL = re.compile(rb" \r?\n|(?<!\r)\n")  # after WSP runs became one SP
# Searched for in whole bodies: re finds a literal of two or three bytes in half the
# time bytes' ``in`` takes in text with a space every few bytes.
_TWO_SP = re.compile(rb"  ")
_SP_CRLF = re.compile(rb" \r\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """One header field (possibly folded, with its line end) to (name, value)."""
    name, _, value = raw.partition(b":")
    return name, value


def field_name(raw: bytes) -> str:
    """A header field's name, lowercased."""
    return raw.partition(b":")[0].strip(b" \t").decode("ascii", "replace").lower()


def header_relaxed(raw: bytes) -> bytes:
    """``name:value\\r\\n`` with the name lowercased and white space reduced (3.4.2)."""
    name, _, value = raw.partition(b":")
    # Each pass only where it changes something, and by bytes methods where they do the
    # same: a pattern without a literal start is tried at every byte, some 10 ns each,
    # and a DKIM-Signature field is 500 bytes.
    if b"\n " in value or b"\n\t" in value:
        if value.count(b"\n") == value.count(b"\r\n"):  # CRLF only: removing one
            value = value.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")  # makes none
        else:
            value = _FOLD.sub(b"", value)
    value = value.rstrip(b"\r\n")
    if b"\t" in value:
        value = value.replace(b"\t", b" ")
    if b"  " in value:  # runs of SP and HTAB, now all SP, become one SP
        value = _SP_RUN.sub(b" ", value)
    return name.strip(b" \t").lower() + b":" + value.strip(b" ") + b"\r\n"


def header_simple(raw: bytes) -> bytes:
    """The field unchanged, with a CRLF line end (3.4.1)."""
    if raw.endswith(b"\r\n"):
        return raw
    return raw.rstrip(b"\n") + b"\r\n"


def canon_header(raw: bytes, relaxed: bool) -> bytes:
    return header_relaxed(raw) if relaxed else header_simple(raw)


class BodyCanon:
    """Streams a body through simple or relaxed canonicalization into ``sink``.

    Each chunk's whole lines are canonicalized together by a few regular-expression
    passes over the block (C speed) rather than line by line in Python: on a busy MX
    this runs for every signed message and was the largest part of verifying one."""

    def __init__(self, sink: Callable[[bytes], object], relaxed: bool) -> None:
        self._sink = sink
        self._relaxed = relaxed
        self._partial = b""
        self._empty = 0  # empty lines seen but not yet written
        self._any = False  # a non-empty line was written
        self.length = 0  # canonical bytes written

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        if cut:
            self._lines(data[:cut])

    def _lines(self, block: bytes) -> None:
        """Whole lines (``block`` ends in LF): canonical, CRLF-terminated, with trailing
        empty lines held back until a non-empty line follows them."""
        # Substitutions only where something changes: most lines need none, and a
        # replacement per single space or per line end costs more than the scan.
        if self._relaxed and (b"\t" in block or _TWO_SP.search(block)):
            block = _WSP_FIX.sub(b" ", block)
        if b"\r" not in block:  # LF line ends, as Daisy stores mail
            if self._relaxed:
                block = block.replace(b" \n", b"\n")
            block = block.replace(b"\n", b"\r\n")
        elif self._relaxed:
            if _crlf_only(block):  # the usual case
                if _SP_CRLF.search(block):
                    block = block.replace(b" \r\n", b"\r\n")
            else:  # the look-behind pass costs 15 times the counts: only for bare LFs
                block = _RELAXED_EOL.sub(b"\r\n", block)
        elif not _crlf_only(block):
            block = _EOL.sub(b"\r\n", block)
        # Every LF is now a line end with its CR; CRLF pairs at the very end are the
        # terminator of the last non-empty line and the empty lines after it.
        end, pairs = len(block), 0
        while end and block.endswith(b"\r\n", 0, end):
            end -= 2
            pairs += 1
        if not end:
            self._empty += pairs
            return
        out = b"\r\n" * self._empty + block[: end + 2]
        self._empty = pairs - 1
        self._any = True
        self.length += len(out)
        self._sink(out)

    def close(self) -> None:
        """Flush the last line; the simple body of nothing is one CRLF (3.4.3)."""
        if self._partial:
            last, self._partial = self._partial, b""
            self._lines(last + b"\n")
        if not self._any and not self._relaxed:
            self.length += 2
            self._sink(b"\r\n")


def _crlf_only(block: bytes) -> bool:
    """No bare CR and no bare LF: as many CRs as LFs, and each CR followed by an LF.
    (One-byte counts and a search from each CR: a third cheaper than counting CRLF
    pairs. A block with a bare CR but no bare LF is told apart only by the slower
    pass, which writes it the same.)"""
    return block.count(b"\r") == block.count(b"\n") and not _BARE_CR.search(block)


class HeaderSplitter:
    """Separates a message fed in chunks into header fields and body chunks.

    The header section is buffered (it is small and needed whole for signing); body
    bytes are passed on to ``body`` as they come.
    """

    def __init__(self, body: Callable[[bytes], object], max_header: int = 1 << 20) -> None:
        self._body = body
        self._buf = b""
        self._in_body = False
        self._max = max_header
        self.fields: list[bytes] = []
        self._names: list[str] | None = None

    @property
    def names(self) -> list[str]:
        """Each field's name, lowercased, in order (computed once, after the header)."""
        if self._names is None or len(self._names) != len(self.fields):
            self._names = [field_name(f) for f in self.fields]
        return self._names

    def feed(self, chunk: bytes) -> None:
        if self._in_body:
            self._body(chunk)
            return
        self._buf += chunk
        m = end_of_header(self._buf)
        if m is None:
            if len(self._buf) <= self._max:
                return
            # No end of header in sight: what has come is header, the rest body. Never
            # fail here; a signature over such a message simply will not verify.
            cut = self._buf.rfind(b"\n") + 1 or len(self._buf)
            head, rest = self._buf[:cut], self._buf[cut:]
        else:
            head, rest = self._buf[: m[0]], self._buf[m[1] :]
        self._buf = b""
        self._in_body = True
        self.fields = split_fields(head)
        if rest:
            self._body(rest)

    def close(self) -> None:
        """A message without a body: all of it is header."""
        if not self._in_body:
            self.fields = split_fields(self._buf)
            self._buf = b""
            self._in_body = True


def end_of_header(buf: bytes) -> tuple[int, int] | None:
    """Where the blank line ending the header starts and ends: at the very start, or
    after a line end; None if there is none yet. (bytes.find, not a regular expression
    with a look-behind, which tries every position.)"""
    if buf[:1] == b"\n":
        return 0, 1
    if buf[:2] == b"\r\n":
        return 0, 2
    crlf = buf.find(b"\n\r\n")
    # A bare-LF blank line counts only before the first CRLF one: in CRLF mail (all of
    # it on port 25) the search stops there instead of scanning the whole body.
    lf = buf.find(b"\n\n", 0, len(buf) if crlf < 0 else crlf + 1)
    if lf < 0 and crlf < 0:
        return None
    if crlf < 0 or 0 <= lf < crlf:
        return lf + 1, lf + 2
    return crlf + 1, crlf + 3


def split_fields(head: bytes) -> list[bytes]:
    """Header fields with their continuation lines and line ends."""
    fields: list[bytes] = []
    lines = head.split(b"\n")  # a split by one byte, not a pattern matched per line
    last = lines.pop()  # after the last LF: a line without its end, or nothing
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\n"
        elif line.strip(b"\r"):
            fields.append(line + b"\n")
    if last:
        if last[:1] in (b" ", b"\t") and fields:
            fields[-1] += last
        elif last.strip(b"\r"):
            fields.append(last)
    return fields
