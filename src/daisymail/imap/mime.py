"""MIME structure of a stored message for FETCH: sections, ENVELOPE, BODYSTRUCTURE.

The email package parses header fields (robust against junk), but it does not say
where each part starts and ends, which BODY[1.2] and sizes need; so this module splits
the octets itself at the boundaries and keeps exact ranges. Malformed MIME degrades to
a single text part rather than failing: a broken message must still be readable.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from email.message import Message

from daisymail.imap.responses import Raw, Value, serialize

MAX_DEPTH = 20
MAX_PARTS = 2000
_HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)
_BARE_LF = re.compile(rb"(?<!\r)\n")


def crlf(data: bytes) -> bytes:
    """Line ends as IMAP sends them (messages are stored with LF or CRLF)."""
    return _BARE_LF.sub(b"\r\n", data)


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """(header including the blank line, body)."""
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[: end + 4], data[end + 4 :]


@dataclass
class Part:
    header: bytes
    body: bytes
    fields: Message
    children: list[Part] = field(default_factory=list)
    inner: Part | None = None  # the encapsulated message of a message/rfc822 part

    @property
    def content_type(self) -> tuple[str, str]:
        ctype = self.fields.get_content_type()
        main, _, sub = ctype.partition("/")
        return main or "text", sub or "plain"


def parse(
    data: bytes, *, default: str = "text/plain", depth: int = 0, count: list[int] | None = None
) -> Part:
    counter = count if count is not None else [0]
    counter[0] += 1
    header, body = split_header(data)
    fields = _HEADER_PARSER.parsebytes(header)
    if default != "text/plain":
        fields.set_default_type(default)
    part = Part(header, body, fields)
    if depth >= MAX_DEPTH or counter[0] > MAX_PARTS:
        return part
    main, sub = part.content_type
    if main == "multipart":
        boundary = fields.get_param("boundary")
        if isinstance(boundary, str) and boundary:
            child_default = "message/rfc822" if sub == "digest" else "text/plain"
            for chunk in _split_multipart(body, boundary.encode("ascii", "replace")):
                part.children.append(
                    parse(chunk, default=child_default, depth=depth + 1, count=counter)
                )
    elif (main, sub) == ("message", "rfc822") or (main, sub) == ("message", "global"):
        part.inner = parse(body, depth=depth + 1, count=counter)
    return part


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    pattern = re.compile(rb"(?:\A|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|\Z)")
    chunks: list[bytes] = []
    start: int | None = None
    for m in pattern.finditer(body):
        if start is not None:
            chunks.append(body[start : m.start()])
        if m[1]:
            return chunks
        start = m.end()
    if start is not None:
        chunks.append(body[start:])
    return chunks


# -- sections ------------------------------------------------------------------------------


def find_part(root: Part, numbers: list[int]) -> Part | None:
    """The part a section number like 1.2 names (RFC 3501 6.4.5)."""
    cur = root
    for i, n in enumerate(numbers):
        if i > 0 and cur.inner is not None:
            cur = cur.inner
        if cur.children:
            if not 1 <= n <= len(cur.children):
                return None
            cur = cur.children[n - 1]
        elif n != 1:
            return None
    return cur


def header_fields(header: bytes, names: list[str], exclude: bool) -> bytes:
    """The named fields (or all but them), folded lines kept, then the blank line."""
    wanted = {n.lower().encode() for n in names}
    out: list[bytes] = []
    keep = False
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line + b"\r\n")
            continue
        name = line.split(b":", 1)[0].strip().lower()
        keep = (name in wanted) != exclude
        if keep:
            out.append(line + b"\r\n")
    return b"".join(out) + b"\r\n"


# -- ENVELOPE and BODYSTRUCTURE -----------------------------------------------------------


def _raw(value: str) -> bytes:
    """A header value as octets, folding removed."""
    data = value.encode("utf-8", "surrogateescape")
    return re.sub(rb"\r?\n(?=[ \t])", b"", data).strip()


def _field(fields: Message, name: str) -> bytes | None:
    value = fields.get(name)
    return None if value is None else _raw(str(value))


def _addresses(fields: Message, name: str) -> Value:
    values = fields.get_all(name)
    if not values:
        return None
    out: list[Value] = []
    try:
        pairs = email.utils.getaddresses([str(v) for v in values])
    except Exception:
        return None
    for display, addr in pairs:
        if not addr and not display:
            continue
        local, at, domain = addr.rpartition("@")
        if not at:
            local, domain = addr, ""
        out.append(
            [
                _raw(display) if display else None,
                None,
                _raw(local) if local else None,
                _raw(domain) if domain else None,
            ]
        )
    if not out:
        return None
    return Raw(b"(" + b"".join(serialize(a) for a in out) + b")")  # no spaces: 1*address


def envelope(fields: Message) -> Value:
    sender = _addresses(fields, "From")
    return [
        _field(fields, "Date"),
        _field(fields, "Subject"),
        sender,
        _addresses(fields, "Sender") or sender,
        _addresses(fields, "Reply-To") or sender,
        _addresses(fields, "To"),
        _addresses(fields, "Cc"),
        _addresses(fields, "Bcc"),
        _field(fields, "In-Reply-To"),
        _field(fields, "Message-ID"),
    ]


def _params(fields: Message, header: str) -> Value:
    try:
        params = fields.get_params(header=header) or []
    except Exception:
        return None
    out: list[Value] = []
    for i, (key, raw) in enumerate(params):
        if i == 0 and header == "content-type":
            continue  # the type itself
        if not key:
            continue
        value: object = raw  # RFC 2231 values come as tuples, whatever the stubs say
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        out += [_raw(key.upper()), _raw(str(value))]
    return out or None


def _disposition(fields: Message) -> Value:
    value = fields.get("Content-Disposition")
    if value is None:
        return None
    kind = _raw(str(value)).split(b";", 1)[0].strip()
    return [kind.upper() or b"ATTACHMENT", _params(fields, "content-disposition")]


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def body_structure(part: Part, extended: bool = True) -> Value:
    main, sub = part.content_type
    f = part.fields
    if part.children:
        out: list[Value] = [
            Raw(b"".join(serialize(body_structure(c, extended)) for c in part.children))
        ]
        out.append(sub.upper())
        if extended:
            out += [
                _params(f, "content-type"),
                _disposition(f),
                _field(f, "Content-Language"),
                _field(f, "Content-Location"),
            ]
        return out
    if main == "multipart":  # no usable boundary: its body as one text part
        main, sub = "text", "plain"
    encoding = _field(f, "Content-Transfer-Encoding") or b"7BIT"
    out = [
        main.upper(),
        sub.upper(),
        _params(f, "content-type"),
        _field(f, "Content-ID"),
        _field(f, "Content-Description"),
        encoding.upper(),
        len(part.body),
    ]
    if part.inner is not None:
        out += [
            envelope(part.inner.fields),
            body_structure(part.inner, extended),
            _lines(part.body),
        ]
    elif main == "text":
        out.append(_lines(part.body))
    if extended:
        out += [
            _field(f, "Content-MD5"),
            _disposition(f),
            _field(f, "Content-Language"),
            _field(f, "Content-Location"),
        ]
    return out
