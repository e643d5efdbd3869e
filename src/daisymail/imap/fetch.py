"""FETCH: which data items a client asked for, and their values for one message."""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from daisymail.imap import mime
from daisymail.imap.parser import ParseError, Token, parse_tokens
from daisymail.imap.responses import flag_list, internal_date, nstring, serialize
from daisymail.store.imap_folders import Message

_V = TypeVar("_V")

MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
SIMPLE = frozenset(
    {
        "FLAGS",
        "MODSEQ",
        "UID",
        "RFC822.SIZE",
        "INTERNALDATE",
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
    }
)
_BODY_ITEM = re.compile(r"(BODY|BODY\.PEEK)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?\Z", re.I)
_NUMBERS = re.compile(r"((?:[1-9]\d{0,5}\.)*[1-9]\d{0,5})(?:\.|\Z)")
_TEXTS = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME")


@dataclass(frozen=True)
class Item:
    name: str  # a SIMPLE name, or "BODY[]" for a section
    numbers: tuple[int, ...] = ()
    text: str = ""  # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or ""
    fields: tuple[str, ...] = ()
    peek: bool = False
    partial: tuple[int, int] | None = None
    label: str = ""

    @property
    def sets_seen(self) -> bool:
        if self.name in ("BODY[]", "BINARY[]"):
            return not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")


def _section(kind: str, section: str, origin: str | None, length: str | None) -> Item:
    numbers: tuple[int, ...] = ()
    rest = section
    m = _NUMBERS.match(rest)
    if m:
        numbers = tuple(int(n) for n in m[1].split("."))
        rest = rest[m.end() :]
    text = ""
    fields: tuple[str, ...] = ()
    upper = rest.upper()
    if upper:
        text = next((t for t in _TEXTS if upper.startswith(t)), "")
        tail = rest[len(text) :].strip()
        if not text or (text == "MIME" and not numbers):
            raise ParseError("bad section")
        if text.startswith("HEADER.FIELDS"):
            names = parse_tokens(tail.encode())
            if len(names) != 1 or not isinstance(names[0], list) or not names[0]:
                raise ParseError("HEADER.FIELDS needs a list of field names")
            fields = tuple(_astr(n) for n in names[0])
        elif tail:
            raise ParseError("bad section")
    partial = None
    label = f"BODY[{section}]"
    if origin is not None and length is not None:
        partial = (int(origin), int(length))
        label += f"<{origin}>"
    return Item("BODY[]", numbers, text, fields, kind.upper().endswith(".PEEK"), partial, label)


def _astr(tok: Token) -> str:
    if isinstance(tok, bytes):
        return tok.decode("ascii", "replace")
    if isinstance(tok, str):
        return tok
    raise ParseError("bad field name")


def parse_items(arg: Token) -> list[Item]:
    raw: list[Token] = arg if isinstance(arg, list) else [arg]
    if isinstance(arg, str) and arg.upper() in MACROS:
        raw = list(MACROS[arg.upper()])
    items = []
    for tok in raw:
        if not isinstance(tok, str):
            raise ParseError("bad FETCH item")
        upper = tok.upper()
        if upper in SIMPLE:
            items.append(Item(upper, label=upper))
            continue
        if upper.startswith("BINARY"):
            from daisymail.imap import binary  # BINARY (RFC 3516) builds on this module

            found = binary.parse_item(tok)
            if found is not None:
                items.append(found)
                continue
        m = _BODY_ITEM.match(tok)
        if not m:
            raise ParseError(f"unknown FETCH item {tok[:40]}")
        items.append(_section(m[1], m[2], m[3], m[4]))
    if not items:
        raise ParseError("FETCH needs items")
    return items


# What is known of recently fetched messages. A Maildir message never changes once
# delivered (flags live in its name, not its octets), so a mail program opening a folder
# again is answered without reading or parsing the files (Dovecot keeps the same in its
# index cache): ENVELOPE and BODYSTRUCTURE in wire form (about 500 octets an entry), and
# which files have no bare LF to turn into CRLF. Bounded, least recently used out first.
CACHE_ENTRIES = 20000
_STRUCTURE_CACHE: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
_CRLF_FILES: OrderedDict[tuple[str, ...], bool] = OrderedDict()


def _cache_key(msg: Message) -> tuple[str, str]:
    """The folder and the Maildir unique name: the same message whatever its flags."""
    return os.path.dirname(os.path.dirname(msg.path)), msg.unique


def _remember(cache: OrderedDict[tuple[str, ...], _V], key: tuple[str, ...], value: _V) -> None:
    cache[key] = value
    if len(cache) > CACHE_ENTRIES:
        cache.popitem(last=False)


def has_crlf(msg: Message) -> bool:
    """Whether the message's file is known to have no bare LF (it was read before)."""
    return _cache_key(msg) in _CRLF_FILES


class Loaded:
    """A message's octets (CRLF) and MIME tree, read once and only when needed."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self._data: bytes | None = None
        self._root: mime.Part | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            with open(self.msg.path, "rb") as f:
                raw = f.read()
            key = _cache_key(self.msg)
            if key in _CRLF_FILES:  # known to have no bare LF: sent as it is
                self._data = raw
            else:
                self._data = mime.crlf(raw)
                if self._data is raw:
                    _remember(_CRLF_FILES, key, True)
        return self._data

    @property
    def root(self) -> mime.Part:
        if self._root is None:
            self._root = mime.parse(self.data)
        return self._root


def section_bytes(item: Item, loaded: Loaded) -> bytes:
    """The octets of a section; a section the message does not have is empty, as
    RFC 9051 6.4.5 has it for a missing part and Dovecot does."""
    if not item.numbers and not item.text:
        return loaded.data
    root = loaded.root
    part = mime.find_part(root, list(item.numbers)) if item.numbers else root
    if part is None:
        return b""
    if item.text == "MIME":
        return part.header
    if item.numbers and item.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"):
        if part.inner is None:
            return b""
        part = part.inner
    if item.text == "HEADER":
        return part.header
    if item.text == "HEADER.FIELDS":
        return mime.header_fields(part.header, list(item.fields), exclude=False)
    if item.text == "HEADER.FIELDS.NOT":
        return mime.header_fields(part.header, list(item.fields), exclude=True)
    if item.text == "TEXT":
        return part.body
    if part is root and not root.children:
        return root.body
    return part.body


def _structure(name: str, msg: Message, loaded: Loaded) -> bytes:
    key = (*_cache_key(msg), name)
    cached = _STRUCTURE_CACHE.get(key)
    if cached is not None:
        _STRUCTURE_CACHE.move_to_end(key)
        return cached
    if name == "ENVELOPE":
        value = serialize(mime.envelope(loaded.root.fields))
    else:
        value = serialize(mime.body_structure(loaded.root, name == "BODYSTRUCTURE"))
    _remember(_STRUCTURE_CACHE, key, value)
    return value


def render(item: Item, msg: Message, loaded: Loaded) -> bytes:
    name = item.name
    if name == "FLAGS":
        return b"FLAGS " + flag_list(msg.flags)
    if name == "UID":
        return b"UID %d" % msg.uid
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % msg.modseq
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % msg.size
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + internal_date(msg.internal_date)
    if name in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
        return name.encode() + b" " + _structure(name, msg, loaded)
    if name == "RFC822":
        return b"RFC822 " + nstring(loaded.data)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + nstring(mime.split_header(loaded.data)[0])
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + nstring(mime.split_header(loaded.data)[1])
    data = section_bytes(item, loaded)
    if item.partial is not None:
        start, length = item.partial
        data = data[start : start + length]
    label = item.label.encode("ascii", "replace")
    return label + b" {%d}\r\n" % len(data) + data
