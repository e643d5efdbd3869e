"""BINARY (RFC 3516): message parts with their transfer encoding undone.

``BINARY[1.2]`` sends the decoded octets of a part (base64 and quoted-printable are
decoded; 7bit, 8bit and binary are sent as they are), ``BINARY.SIZE[1.2]`` their
length; ``BINARY[]`` is the whole message. Octets with a NUL go out as ``~{n}``.

A message APPENDed with NUL octets in it (a ``~{n}`` literal) is stored with those parts
in base64 (RFC 3516 4.1 lets a server do that): BODY[] may never send a NUL, and
BINARY[] gives the octets back as they were sent.
"""

from __future__ import annotations

import base64
import binascii
import re

from daisymail.imap import fetch, mime
from daisymail.imap.common import CommandFailed
from daisymail.imap.parser import ParseError
from daisymail.store.imap_folders import Message

_ITEM = re.compile(
    r"(BINARY|BINARY\.PEEK|BINARY\.SIZE)\[((?:[1-9]\d{0,5}\.)*[1-9]\d{0,5})?\]"
    r"(?:<(\d{1,10})\.(\d{1,10})>)?\Z",
    re.I,
)
IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


class UnknownEncoding(CommandFailed):
    """A part's Content-Transfer-Encoding we cannot undo: NO [UNKNOWN-CTE]."""

    def __init__(self, what: str) -> None:
        super().__init__(f"cannot decode {what[:40]}", "UNKNOWN-CTE")


def parse_item(tok: str) -> fetch.Item | None:
    """A BINARY item, or None when tok is not one."""
    m = _ITEM.match(tok)
    if not m:
        if tok.upper().startswith("BINARY"):
            raise ParseError(f"bad BINARY item {tok[:40]}")
        return None
    kind, section = m[1].upper(), m[2] or ""
    numbers = tuple(int(n) for n in section.split(".")) if section else ()
    if kind == "BINARY.SIZE":
        if m[3] is not None:
            raise ParseError("BINARY.SIZE takes no partial range")
        return fetch.Item("BINARY.SIZE", numbers, label=f"BINARY.SIZE[{section}]")
    partial = (int(m[3]), int(m[4])) if m[3] is not None else None
    label = f"BINARY[{section}]" + (f"<{m[3]}>" if partial else "")
    return fetch.Item("BINARY[]", numbers, peek=kind == "BINARY.PEEK", partial=partial, label=label)


def decoded(item: fetch.Item, loaded: fetch.Loaded) -> bytes | None:
    """The decoded octets of the item's part (None: no such part)."""
    if not item.numbers:
        return loaded.data
    part = mime.find_part(loaded.root, list(item.numbers))
    if part is None:
        return None
    cte = str(part.fields.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte in IDENTITY:
        return part.body
    if cte == "base64":
        try:
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", part.body) + b"==")
        except (binascii.Error, ValueError):
            raise UnknownEncoding("broken base64") from None
    if cte == "quoted-printable":
        return decode_qp(part.body)
    raise UnknownEncoding(cte)


_CTE_FIELD = re.compile(rb"(?im)^Content-Transfer-Encoding:[^\n]*\n(?:[ \t][^\n]*\n)*")


def nul_parts_as_base64(data: bytes) -> bytes:
    """The message with each part that holds a NUL made base64 (unchanged without NUL)."""
    if b"\0" not in data:
        return data
    out: list[bytes] = []
    cursor = 0
    for leaf in _leaves(mime.parse(data)):
        if b"\0" not in leaf.body:
            continue
        start = data.find(leaf.header + leaf.body, cursor)
        if start < 0:
            continue  # not as the parser saw it: left as it is
        body_at = start + len(leaf.header)
        encoded = base64.encodebytes(leaf.body).replace(b"\n", b"\r\n")
        out += [data[cursor:start], _base64_header(leaf.header), encoded]
        cursor = body_at + len(leaf.body)
    out.append(data[cursor:])
    return b"".join(out)


def _leaves(part: mime.Part) -> list[mime.Part]:
    """The parts that hold content, in the order they are in the message."""
    if part.children:
        return [leaf for child in part.children for leaf in _leaves(child)]
    if part.inner is not None:
        return _leaves(part.inner)
    return [part]


def _base64_header(header: bytes) -> bytes:
    """The part header with its Content-Transfer-Encoding made base64."""
    fields = _CTE_FIELD.sub(b"", header)
    blank = len(fields) - (2 if fields.endswith(b"\r\n") else 0)
    return fields[:blank] + b"Content-Transfer-Encoding: base64\r\n" + fields[blank:]


_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_qp(body: bytes) -> bytes:
    """Quoted-printable as RFC 2045 6.7 asks of a robust decoder: whitespace at the end of
    a line is dropped (transports add it), ``=`` before the line end (also with blanks
    after it) joins the next line, and an ``=`` that starts no escape is kept as it is.
    Line ends come out CRLF."""
    out: list[bytes] = []
    lines = body.split(b"\n")
    for i, raw in enumerate(lines):
        line = raw.rstrip(b"\r").rstrip(b" \t")
        last = i == len(lines) - 1
        if line.endswith(b"="):
            out.append(line[:-1])
        else:
            out.append(line if last else line + b"\r\n")
    return _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), b"".join(out))


def render(item: fetch.Item, msg: Message, loaded: fetch.Loaded) -> bytes:
    data = decoded(item, loaded)
    label = item.label.encode("ascii", "replace")
    if item.name == "BINARY.SIZE":
        return label + b" %d" % (len(data) if data is not None else 0)
    if data is None:
        return label + b" NIL"
    if item.partial is not None:
        start, length = item.partial
        data = data[start : start + length]
    marker = b"~" if b"\0" in data else b""
    return label + b" %s{%d}\r\n" % (marker, len(data)) + data
