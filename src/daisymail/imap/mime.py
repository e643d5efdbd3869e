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

from daisymail.imap.fields import header_params, split_addresses
from daisymail.imap.responses import Raw, Value, serialize

MAX_DEPTH = 20
MAX_PARTS = 2000
_HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def crlf(data: bytes) -> bytes:
    """Line ends as IMAP sends them (messages are stored with LF or CRLF).

    Every bare LF becomes CRLF. Done with C-speed replaces, and not at all when there
    is no bare LF (messages stored with CRLF): the regular expression this replaces
    held FETCH of bodies to about 30 MB/s. A file with no CR at all (as Daisy delivers
    mail) takes one replace: looking for the two-octet CRLF costs ten times more."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


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
        boundary = _boundary(fields)
        if boundary:
            child_default = "message/rfc822" if sub == "digest" else "text/plain"
            for chunk, line_end in _split_multipart(body, boundary.encode("ascii", "replace")):
                child = parse(chunk, default=child_default, depth=depth + 1, count=counter)
                if line_end and _ends_with_own_close(child, chunk):
                    child.body += b"\r\n"
                    if child.inner is not None:
                        child.inner.body += b"\r\n"
                part.children.append(child)
    elif (main, sub) == ("message", "rfc822") or (main, sub) == ("message", "global"):
        part.inner = parse(body, depth=depth + 1, count=counter)
    return part


def _split_multipart(body: bytes, boundary: bytes) -> list[tuple[bytes, bool]]:
    """The body parts between the delimiter lines, each with whether a CRLF before the
    next delimiter was taken off (RFC 2046: that CRLF belongs to the delimiter).

    A delimiter is a line of its own: right after the previous delimiter line, two
    delimiters in a row make an empty part."""
    pattern = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|\Z)")
    chunks: list[tuple[bytes, bool]] = []
    start: int | None = None
    for m in pattern.finditer(body):
        if start is not None:
            chunk = body[start : m.start()]
            line_end = chunk.endswith(b"\r\n")
            chunks.append((chunk[:-2] if line_end else chunk, line_end))
        if m[1]:
            return chunks
        start = m.end()
    if start is not None:
        chunks.append((body[start:], False))
    return chunks


def _boundary(fields: Message) -> str:
    """The boundary parameter, unfolded (``boundary="foo<CRLF> bar"`` is "foo bar")."""
    values = raw_values(fields, "Content-Type")
    params = header_params(values[0] if values else None)[1]
    return next((v for k, v in params if k.lower() == "boundary"), "")


def _ends_with_own_close(child: Part, chunk: bytes) -> bool:
    """Whether a part ends with the close delimiter of its own multipart (or of its
    encapsulated message's): then the line end after it is the part's, not the
    parent's delimiter's, as Dovecot counts it."""
    target = child.inner if child.inner is not None else child
    if target.content_type[0] != "multipart":
        return False
    boundary = _boundary(target.fields)
    if not boundary:
        return False
    last = chunk.rsplit(b"\r\n", 1)[-1].rstrip(b" \t")
    return last == b"--" + boundary.encode("ascii", "replace") + b"--"


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
# Header values are taken as the octets on disk (raw 8-bit text stays what it was, encoded
# words stay encoded): clients decode them, and the email package would replace 8-bit
# octets it cannot name a charset for.

MISSING_MAILBOX = b"MISSING_MAILBOX"  # what Dovecot and Cyrus send for an empty part
MISSING_DOMAIN = b"MISSING_DOMAIN"  # (a NIL host would mean "start of a group")


def _raw(value: str) -> bytes:
    """A header value as octets, folding removed."""
    data = value.encode("utf-8", "surrogateescape")
    return re.sub(rb"\r?\n(?=[ \t])", b"", data).strip()


def raw_values(fields: Message, name: str) -> list[str]:
    """Every value of a header field as parsed from the octets (surrogate-escaped)."""
    wanted = name.lower()
    return [str(v) for k, v in fields.raw_items() if k.lower() == wanted]


def _field(fields: Message, name: str) -> bytes | None:
    values = raw_values(fields, name)
    return _raw(values[0]) if values else None


_ROUTE = re.compile(r"<\s*(@[^:<>]*):")


def _address(text: str) -> Value:
    display, addr = email.utils.parseaddr(text)
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    route = _ROUTE.search(text)  # an obsolete source route, <@relay:user@domain>: the adl
    return [
        _raw(display) if display else None,
        _raw(route[1].strip()) if route else None,
        _raw(local) if local else MISSING_MAILBOX,
        _raw(domain) if domain else MISSING_DOMAIN,
    ]


def _addresses(fields: Message, name: str) -> Value:
    out: list[Value] = []
    for value in raw_values(fields, name):
        for kind, text in split_addresses(re.sub(r"\r?\n(?=[ \t])", "", value)):
            if kind == "mailbox":
                out.append(_address(text))
            elif kind == "group":
                out.append([None, None, _raw(text), None])
            else:
                out.append([None, None, None, None])
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


def _params(fields: Message, header: str, text_type: bool = False) -> Value:
    values = raw_values(fields, header)
    _, params = header_params(values[0] if values else None)
    out: list[Value] = []
    for key, value in params:
        out += [_raw(key.upper()), _raw(value)]
    if text_type and not any(k.lower() == "charset" for k, _ in params):
        out += [b"CHARSET", b"US-ASCII"]  # RFC 2045's default, said out loud as others do
    return out or None


def _disposition(fields: Message) -> Value:
    values = raw_values(fields, "Content-Disposition")
    if not values:
        return None
    kind = _raw(header_params(values[0])[0])
    return [kind.upper() or b"ATTACHMENT", _params(fields, "Content-Disposition")]


def _language(fields: Message) -> Value:
    value = _field(fields, "Content-Language")
    if value is None:
        return None
    tags: list[Value] = [t.strip() for t in value.split(b",") if t.strip()]
    return tags[0] if len(tags) == 1 else (tags or None)


def _lines(body: bytes) -> int:
    """Line breaks in the body: a last line without one is not counted (as Dovecot)."""
    return body.count(b"\n")


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
                _language(f),
                _field(f, "Content-Location"),
            ]
        return out
    if main == "multipart":  # no usable boundary: its body as one text part
        main, sub = "text", "plain"
    encoding = _field(f, "Content-Transfer-Encoding") or b"7BIT"
    out = [
        main.upper(),
        sub.upper(),
        _params(f, "content-type", text_type=main == "text"),
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
            _language(f),
            _field(f, "Content-Location"),
        ]
    return out
