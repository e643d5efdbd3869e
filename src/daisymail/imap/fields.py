"""Header field values the email package does not parse the way IMAP needs them.

Address lists keep their group syntax (ENVELOPE shows groups, getaddresses drops them),
and MIME parameters keep RFC 2231's encoding (BODYSTRUCTURE passes it to the client)
while their continuations are joined. Pure functions over text, no I/O.
"""

from __future__ import annotations

import re


def split_addresses(value: str) -> list[tuple[str, str]]:
    """An address list in order, as ("mailbox", text), ("group", name) and ("end", "").

    email.utils.getaddresses drops group syntax (``Team: a@b, c@d;``), which ENVELOPE
    must keep; so the top level is split here and each mailbox parsed by parseaddr.
    """
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    quoted = escaped = angle = False
    depth = 0
    group = False

    def flush() -> None:
        text = "".join(buf).strip()
        if re.sub(r"\([^()]*\)", "", text).strip():  # not just a comment: "group: (x) ;"
            out.append(("mailbox", text))
        buf.clear()

    for ch in value:
        if quoted or depth:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif quoted and ch == '"':
                quoted = False
            elif depth and ch == "(":
                depth += 1
            elif depth and ch == ")":
                depth -= 1
            continue
        if ch == '"':
            quoted = True
        elif ch == "(":
            depth = 1
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif angle:
            pass
        elif ch == ":" and not group:
            out.append(("group", "".join(buf).strip()))
            buf.clear()
            group = True
            continue
        elif ch == ";" and group:
            flush()
            out.append(("end", ""))
            group = False
            continue
        elif ch == ",":
            flush()
            continue
        buf.append(ch)
    flush()
    if group:
        out.append(("end", ""))
    return out


def _split_params(value: str) -> list[str]:
    """A structured header value cut at the semicolons outside quoted strings."""
    pieces: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in value:
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ";":
            pieces.append("".join(buf))
            buf.clear()
            continue
        buf.append(ch)
    pieces.append("".join(buf))
    return pieces


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


_SEGMENT = re.compile(r"(.+?)\*(\d{1,3})(\*?)\Z")


def header_params(value: str | None) -> tuple[str, list[tuple[str, str]]]:
    """(the value before the first semicolon, its parameters in order).

    RFC 2231 continuations (``name*0*=...; name*1=...``) are joined into one ``name*``
    or ``name`` parameter, as RFC 2231 asks of IMAP servers, but charset and
    percent-encoding are left for the client to undo.
    """
    if value is None:
        return "", []
    flat = re.sub(r"\r?\n(?=[ \t])", "", value)
    first, *rest = _split_params(flat)
    params: list[tuple[str, str]] = []
    segments: dict[str, list[tuple[int, bool, str]]] = {}
    for piece in rest:
        key, eq, raw = piece.partition("=")
        key = key.strip()
        if not eq or not key:
            continue
        m = _SEGMENT.match(key)
        if m:
            base = m[1].lower()
            if base not in segments:
                segments[base] = []
                params.append((base + "\0", ""))  # a place holder, filled below
            segments[base].append((int(m[2]), bool(m[3]), _unquote(raw)))
            continue
        params.append((key, _unquote(raw)))
    out: list[tuple[str, str]] = []
    for key, val in params:
        if key.endswith("\0"):
            parts = sorted(segments[key[:-1]])
            star = "*" if parts[0][1] else ""
            out.append((key[:-1] + star, "".join(p[2] for p in parts)))
        else:
            out.append((key, val))
    return first.strip(), out
