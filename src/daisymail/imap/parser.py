"""IMAP command syntax: the tokens of a complete command (line plus literals), and sets.

The framer in protocol.py hands over a command with its literals already in place
(``{n}\\r\\n`` followed by n octets), so parsing is one pass over bytes with no I/O.
Everything is bounded (nesting depth, token count) and any syntax error raises
ParseError, which the protocol answers with BAD: a client can never cause a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_DEPTH = 16
MAX_TOKENS = 10_000

# A token: an atom (str), a string (bytes: quoted or literal), or a parenthesized list.
Token = str | bytes | list["Token"]

_LITERAL = re.compile(rb"~?\{(\d{1,10})(\+?)\}\r?\n")
_ATOM_STOP = frozenset(b' ()"{\r\n')
_TAG_OK = re.compile(rb"[\x21-\x7e]+")


class ParseError(ValueError):
    """The command is malformed; str(e) is the text for the BAD reply."""


@dataclass(frozen=True)
class Command:
    tag: str
    name: str  # upper case
    args: list[Token]


def _atom_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.count = 0

    def tokens(self, depth: int, closing: bool) -> list[Token]:
        if depth > MAX_DEPTH:
            raise ParseError("lists nested too deeply")
        out: list[Token] = []
        data = self.data
        while True:
            while self.pos < len(data) and data[self.pos] == 0x20:
                self.pos += 1
            if self.pos >= len(data) or data[self.pos] in (0x0D, 0x0A):
                if closing:
                    raise ParseError("missing )")
                return out
            self.count += 1
            if self.count > MAX_TOKENS:
                raise ParseError("too many arguments")
            c = data[self.pos]
            if c == 0x28:  # (
                self.pos += 1
                out.append(self.tokens(depth + 1, True))
            elif c == 0x29:  # )
                if not closing:
                    raise ParseError("unexpected )")
                self.pos += 1
                return out
            elif c == 0x22:  # "
                out.append(self.quoted())
            elif c == 0x7B or (c == 0x7E and data[self.pos + 1 : self.pos + 2] == b"{"):
                out.append(self.literal())
            else:
                out.append(self.atom())

    def quoted(self) -> bytes:
        data, i = self.data, self.pos + 1
        buf = bytearray()
        while i < len(data):
            c = data[i]
            if c == 0x22:
                self.pos = i + 1
                return bytes(buf)
            if c == 0x5C:
                i += 1
                if i >= len(data) or data[i] not in (0x22, 0x5C):
                    raise ParseError("bad escape in quoted string")
                c = data[i]
            elif c in (0x0D, 0x0A, 0x00):
                break
            buf.append(c)
            i += 1
        raise ParseError("unterminated quoted string")

    def literal(self) -> bytes:
        m = _LITERAL.match(self.data, self.pos)
        if not m:
            raise ParseError("bad literal")
        size = int(m[1])
        start = m.end()
        if start + size > len(self.data):
            raise ParseError("literal shorter than announced")
        self.pos = start + size
        return self.data[start : self.pos]

    def atom(self) -> str:
        """An atom; a ``[...]`` inside (BODY[HEADER.FIELDS (A B)]) is kept with it whole.

        A ``[`` with no ``]`` after it on the line is an ordinary atom character: RFC 3501
        allows it in atoms, so ``SELECT a[b`` names a folder (imaptest's atoms)."""
        data, start, i = self.data, self.pos, self.pos
        while i < len(data):
            c = data[i]
            if c == 0x5B:  # [ ... ] may hold spaces, parens and quotes
                end = data.find(b"]", i)
                if end >= 0 and b"\n" not in data[i:end]:
                    i = end + 1
                    continue
            if c in _ATOM_STOP or c < 0x20 or c == 0x7F:
                break
            i += 1
        if i == start:
            raise ParseError("unexpected character")
        self.pos = i
        return _atom_text(data[start:i])


def parse_tokens(data: bytes) -> list[Token]:
    """All tokens of a line (with literals in place)."""
    return _Reader(data).tokens(0, False)


def parse_command(data: bytes) -> Command:
    """``tag SP command [SP args]`` with its literals; raises ParseError."""
    tag_end = data.find(b" ")
    line_end = len(data.rstrip(b"\r\n"))
    if tag_end <= 0:
        tag = data[:line_end]
        if not tag or not _TAG_OK.fullmatch(tag):
            raise ParseError("missing tag")
        raise ParseError("missing command")
    tag = data[:tag_end]
    if not _TAG_OK.fullmatch(tag) or any(c in b'(){%*"\\+' for c in tag):
        raise ParseError("bad tag")
    rest = _Reader(data)
    rest.pos = tag_end + 1
    tokens = rest.tokens(0, False)
    if not tokens or not isinstance(tokens[0], str):
        raise ParseError("missing command")
    return Command(_atom_text(tag), tokens[0].upper(), tokens[1:])


def tag_of(data: bytes) -> str:
    """The tag of a (perhaps malformed) command line, or ``*`` when it has none usable."""
    tag = data.split(b" ", 1)[0].rstrip(b"\r\n")
    if tag and _TAG_OK.fullmatch(tag) and len(tag) <= 64:
        return _atom_text(tag)
    return "*"


# -- argument helpers ---------------------------------------------------------------------


def astring(tok: Token) -> str:
    """An atom or string as text (UTF-8, undecodable octets kept as surrogates)."""
    if isinstance(tok, str):
        return tok
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "surrogateescape")
    raise ParseError("expected a string")


def atom(tok: Token) -> str:
    if not isinstance(tok, str):
        raise ParseError("expected an atom")
    return tok


def token_list(tok: Token) -> list[Token]:
    if not isinstance(tok, list):
        raise ParseError("expected a list")
    return tok


def number(tok: Token, *, nonzero: bool = False) -> int:
    if not isinstance(tok, str) or not tok.isdigit() or len(tok) > 10:
        raise ParseError("expected a number")
    n = int(tok)
    if n > 0xFFFFFFFF or (nonzero and n == 0):
        raise ParseError("number out of range")
    return n


def mod_sequence(tok: Token) -> int:
    """A CONDSTORE mod-sequence value (up to 2^63 - 1)."""
    if not isinstance(tok, str) or not tok.isdigit() or len(tok) > 19:
        raise ParseError("expected a mod-sequence value")
    n = int(tok)
    if n >= 1 << 63:
        raise ParseError("mod-sequence value out of range")
    return n


# -- sequence sets ---------------------------------------------------------------------------

# What ``$`` becomes when the saved SEARCH result is empty: a set of nothing (no client
# can send it: an atom never holds a NUL).
EMPTY_SET = "\x00"
# A range of a set; None stands for ``*`` (the largest number in use).
Range = tuple[int | None, int | None]
_SEQ_SET = re.compile(r"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*")


@dataclass(frozen=True)
class SequenceSet:
    ranges: tuple[Range, ...]
    saved: bool = False  # ``$``: the result of the last SEARCH (SEARCHRES), not yet offered

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges as (low, high) with ``*`` replaced by largest (0 when empty)."""
        out = []
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            out.append((lo, hi))
        return out

    def contains(self, n: int, largest: int) -> bool:
        return any(lo <= n <= hi for lo, hi in self.resolve(largest))


def sequence_set(tok: Token) -> SequenceSet:
    """``1:3,5,7:*``, or ``$`` (SEARCHRES); zero is not a message number; raises
    ParseError."""
    if tok == "$":
        return SequenceSet((), saved=True)
    if tok == EMPTY_SET:
        return SequenceSet(())
    if not isinstance(tok, str) or not _SEQ_SET.fullmatch(tok) or len(tok) > 100_000:
        raise ParseError("bad sequence set")
    ranges: list[Range] = []
    for part in tok.split(","):
        a, _, b = part.partition(":")
        lo = None if a == "*" else number(a, nonzero=True)
        hi = lo if not b else (None if b == "*" else number(b, nonzero=True))
        ranges.append((lo, hi))
    return SequenceSet(tuple(ranges))


def is_sequence_set(tok: Token) -> bool:
    return isinstance(tok, str) and (tok == EMPTY_SET or bool(_SEQ_SET.fullmatch(tok)))
