"""BINARY (RFC 3516): message parts with their transfer encoding undone.

``BINARY[1.2]`` sends the decoded octets of a part (base64 and quoted-printable are
decoded; 7bit, 8bit and binary are sent as they are), ``BINARY.SIZE[1.2]`` their
length; ``BINARY[]`` is the whole message. Octets with a NUL go out as ``~{n}``.
"""

from __future__ import annotations

import base64
import binascii
import quopri
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
        return quopri.decodestring(part.body.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    raise UnknownEncoding(cte)


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
