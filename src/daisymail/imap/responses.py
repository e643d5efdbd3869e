"""Response building: strings as atoms, quoted strings or literals, and lists.

One place decides how a value goes on the wire, so that no client-influenced text
(a subject, a folder name, a header) can break the framing: anything with CR, LF, NUL,
an 8-bit octet or a long length is sent as a literal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable


class Raw(bytes):
    """Octets already in wire form (an atom, a flag, a nested structure)."""


# A value to serialize: text, octets, a number, NIL (None), a list, or Raw (already wire form).
Value = Raw | str | bytes | int | None | list["Value"] | tuple["Value", ...]


_QUOTABLE_MAX = 1000


def string(value: bytes | str, utf8: bool = False) -> bytes:
    """A quoted string when safe, else a literal; utf8: the client takes UTF-8 in quoted
    strings (IMAP4rev2, UTF8=ACCEPT), so valid UTF-8 text needs no literal."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if utf8 and any(c >= 0x80 for c in data):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            utf8 = False
    top = 0x100 if utf8 else 0x7F
    if len(data) <= _QUOTABLE_MAX and all(0x20 <= c < top and c != 0x7F for c in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(value: bytes | str | None) -> bytes:
    return b"NIL" if value is None else string(value)


def serialize(value: Value) -> bytes:
    if isinstance(value, Raw):
        return bytes(value)
    if value is None:
        return b"NIL"
    if isinstance(value, bool):
        raise TypeError("no booleans in IMAP")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str | bytes):
        return string(value)
    return b"(" + b" ".join(serialize(v) for v in value) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags)).encode("ascii", "replace") + b")"


def internal_date(when: float) -> bytes:
    """``"17-Jul-1996 02:44:25 -0700"`` in the server's local zone."""
    t = time.localtime(when)
    offset = t.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset), 60)
    text = time.strftime("%d-%b-%Y %H:%M:%S", t)
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    text = text[:3] + months[t.tm_mon - 1] + text[6:]  # not the locale's month name
    return f'"{text} {sign}{hours:02d}{minutes:02d}"'.encode()


def tagged(tag: str, status: str, text: str, code: str = "") -> bytes:
    code_part = f"[{code}] " if code else ""
    return f"{tag} {status} {code_part}{text}\r\n".encode("utf-8", "replace")


def untagged(text: str | bytes) -> bytes:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return b"* " + data + b"\r\n"


def number_set(numbers: Iterable[int]) -> str:
    """``1:3,7,9:10``: sorted numbers as an IMAP sequence set, runs as ranges."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(set(numbers)):
        if run and n == run[1] + 1:
            run[1] = n
            continue
        if run:
            out.append(str(run[0]) if run[0] == run[1] else f"{run[0]}:{run[1]}")
        run = [n, n]
    if run:
        out.append(str(run[0]) if run[0] == run[1] else f"{run[0]}:{run[1]}")
    return ",".join(out)
