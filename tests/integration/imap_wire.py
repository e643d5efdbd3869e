"""Reading IMAP response data back into values, to compare two servers' answers.

imaplib hands FETCH data back as lines and (line, literal) pairs; this joins them again
and parses the parenthesized lists, quoted strings, literals, numbers and NIL.
"""

from __future__ import annotations

import re

Parsed = bytes | int | None | list["Parsed"]

_LITERAL = re.compile(rb"\{(\d+)\}")


def joined(data: list[bytes | tuple[bytes, bytes] | None]) -> bytes:
    """imaplib's pieces of one response, literals put back where their `{n}` was."""
    out = b""
    for piece in data:
        if piece is None:
            continue
        if isinstance(piece, tuple):
            out += piece[0] + piece[1]
        else:
            out += piece
    return out


def parse(text: bytes) -> list[Parsed]:
    """Every value in ``text`` (a response without its leading ``* n FETCH``)."""
    values, _ = _values(text, 0, top=True)
    return values


def _values(text: bytes, pos: int, top: bool = False) -> tuple[list[Parsed], int]:
    out: list[Parsed] = []
    while pos < len(text):
        c = text[pos : pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
        elif c == b"(":
            inner, pos = _values(text, pos + 1)
            out.append(inner)
        elif c == b")":
            if top:
                raise ValueError(f"unbalanced ')' at {pos}")
            return out, pos + 1
        elif c == b'"':
            buf = b""
            pos += 1
            while text[pos : pos + 1] != b'"':
                if text[pos : pos + 1] == b"\\":
                    pos += 1
                buf += text[pos : pos + 1]
                pos += 1
            out.append(buf)
            pos += 1
        elif c == b"{":
            m = _LITERAL.match(text, pos)
            if m is None:
                raise ValueError(f"bad literal at {pos}")
            size = int(m[1])
            start = m.end()  # imaplib dropped the CRLF after {n}
            out.append(text[start : start + size])
            pos = start + size
        else:
            m = re.compile(rb"[^ ()\r\n\[]+(?:\[[^\]]*\])?(?:<\d+>)?").match(text, pos)
            if m is None:
                raise ValueError(f"cannot parse at {pos}: {text[pos : pos + 20]!r}")
            word = m[0]
            pos = m.end()
            if word.upper() == b"NIL":
                out.append(None)
            elif word.isdigit():
                out.append(int(word))
            else:
                out.append(word)
    if not top:
        raise ValueError("unbalanced '('")
    return out, pos


def fetch_items(data: list[bytes | tuple[bytes, bytes] | None]) -> dict[bytes, Parsed]:
    """``{ITEM: value}`` of a one-message FETCH response (``n (ITEM value ...)``)."""
    values = parse(joined(data))
    if len(values) != 2 or not isinstance(values[1], list):
        raise ValueError(f"not one FETCH response: {values!r}")
    pairs = values[1]
    out: dict[bytes, Parsed] = {}
    for i in range(0, len(pairs) - 1, 2):
        key = pairs[i]
        assert isinstance(key, bytes)
        out[key.upper()] = pairs[i + 1]
    return out
