"""SEARCH: the search keys of RFC 3501 compiled into a predicate over messages."""

from __future__ import annotations

import datetime
import email
import email.header
import email.policy
import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass

from daisymail.imap import fields, mime
from daisymail.imap.fetch import Loaded
from daisymail.imap.parser import (
    ParseError,
    SequenceSet,
    Token,
    astring,
    is_sequence_set,
    mod_sequence,
    number,
    sequence_set,
)

FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
ADDRESS_KEYS = {"FROM", "TO", "CC", "BCC", "SUBJECT"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
MAX_DEPTH = 30


@dataclass
class Target:
    """One message as SEARCH sees it."""

    seq: int
    largest_seq: int
    largest_uid: int
    loaded: Loaded

    _text: str | None = None

    _headers: str | None = None

    def header(self, name: str) -> list[str]:
        return [decode_header(v) for v in mime.raw_values(self.loaded.root.fields, name)]

    def addresses(self, name: str) -> list[str]:
        """An address field as written, and each address in it as ``name <local@domain>``
        (comments and odd spacing gone), so that FROM finds what ENVELOPE shows."""
        out = self.header(name)
        for value in out[:]:
            for kind, text in fields.split_addresses(value):
                if kind == "mailbox":
                    display, addr = email.utils.parseaddr(text)
                    out.append(f"{display.strip()} <{addr}>")
        return out

    def body_text(self) -> str:
        if self._text is None:
            self._text = decoded_body(self.loaded.data)
        return self._text

    def all_headers(self) -> str:
        """The header fields of the message and of every MIME part in it, decoded: TEXT
        finds an attachment by its file name, as Dovecot's does."""
        if self._headers is None:
            lines: list[str] = []
            stack = [self.loaded.root]
            while stack:
                part = stack.pop()
                lines += [f"{k}: {decode_header(v)}" for k, v in part.fields.raw_items()]
                stack += part.children
                if part.inner is not None:
                    stack.append(part.inner)
            self._headers = "\n".join(lines)
        return self._headers


Predicate = Callable[[Target], bool]


def decode_header(value: str) -> str:
    """A header value as text: raw 8-bit octets read as UTF-8 (else Latin-1), encoded
    words decoded, folding removed."""
    if any("\udc80" <= c <= "\udcff" for c in value):  # octets the parser could not read
        octets = value.encode("utf-8", "surrogateescape")
        try:
            value = octets.decode("utf-8")
        except UnicodeDecodeError:
            value = octets.decode("latin-1")
    value = re.sub(r"\r?\n(?=[ \t])", "", value)
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value


def decoded_body(data: bytes) -> str:
    """The text parts of a message, transfer encoding and charset undone."""
    out: list[str] = []
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        for part in msg.walk():
            if part.get_content_maintype() != "text":
                continue
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            charset = part.get_content_charset() or "utf-8"
            try:
                out.append(payload.decode(charset, "replace"))
            except LookupError:
                out.append(payload.decode("latin-1"))
    except Exception:
        return mime.split_header(data)[1].decode("utf-8", "replace")
    return "\n".join(out)


def _date(tok: Token) -> datetime.date:
    text = astring(tok)
    try:
        day, month, year = text.split("-")
        return datetime.date(int(year), MONTHS.index(month.lower()) + 1, int(day))
    except (ValueError, IndexError):
        raise ParseError("bad date") from None


def _internal(t: Target) -> datetime.date:
    return datetime.date.fromtimestamp(t.loaded.msg.internal_date)


def _sent(t: Target) -> datetime.date | None:
    value = t.loaded.root.fields.get("Date")
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(str(value)).date()
    except (TypeError, ValueError, IndexError):
        return None


class _Keys:
    def __init__(self, tokens: list[Token], used: set[str] | None = None) -> None:
        self.tokens = tokens
        self.pos = 0
        self.used = used if used is not None else set()  # MODSEQ: the reply says more

    def next(self) -> Token:
        if self.pos >= len(self.tokens):
            raise ParseError("search key incomplete")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def text(self) -> str:
        return astring(self.next()).casefold()

    def all(self, depth: int) -> Predicate:
        preds = []
        while self.pos < len(self.tokens):
            preds.append(self.key(depth))
        if not preds:
            raise ParseError("SEARCH needs a key")
        return lambda t: all(p(t) for p in preds)

    def key(self, depth: int) -> Predicate:
        if depth > MAX_DEPTH:
            raise ParseError("search nested too deeply")
        tok = self.next()
        if isinstance(tok, list):
            sub = _Keys(tok, self.used)
            return sub.all(depth + 1)
        if isinstance(tok, bytes):
            raise ParseError("unexpected string in SEARCH")
        key = tok.upper()
        if key == "ALL":
            return lambda t: True
        if key == "RECENT":  # the view marks this session's recent messages (rev1 only)
            return lambda t: "\\Recent" in t.loaded.msg.flags
        if key == "NEW":
            return lambda t: "\\Recent" in t.loaded.msg.flags and "\\Seen" not in t.loaded.msg.flags
        if key == "OLD":
            return lambda t: "\\Recent" not in t.loaded.msg.flags
        if key in FLAG_KEYS:
            flag, want = FLAG_KEYS[key]
            return lambda t: (flag in t.loaded.msg.flags) == want
        if key in ("KEYWORD", "UNKEYWORD"):
            word, want = astring(self.next()), key == "KEYWORD"
            return lambda t: (word in t.loaded.msg.flags) == want
        if key == "NOT":
            inner = self.key(depth + 1)
            return lambda t: not inner(t)
        if key == "OR":
            a, b = self.key(depth + 1), self.key(depth + 1)
            return lambda t: a(t) or b(t)
        if key == "UID":
            uids = sequence_set(self.next())
            return lambda t: uids.contains(t.loaded.msg.uid, t.largest_uid)
        if key == "SUBJECT":
            needle = self.text()
            return lambda t: any(needle in v.casefold() for v in t.header("Subject"))
        if key in ADDRESS_KEYS:
            needle, name = self.text(), key
            return lambda t: any(needle in v.casefold() for v in t.addresses(name))
        if key == "HEADER":
            name, needle = astring(self.next()), self.text()
            return lambda t: any(needle in v.casefold() for v in t.header(name))
        if key == "BODY":
            needle = self.text()
            return lambda t: needle in t.body_text().casefold()
        if key == "TEXT":
            needle = self.text()
            return lambda t: (
                needle in t.all_headers().casefold() or needle in t.body_text().casefold()
            )
        if key in ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"):
            return _date_key(key, _date(self.next()))
        if key == "MODSEQ":  # RFC 7162: [entry-name entry-type] mod-sequence
            value = self.next()
            if isinstance(value, bytes):
                self.next()
                value = self.next()
            least = mod_sequence(value)
            self.used.add("MODSEQ")
            return lambda t: t.loaded.msg.modseq >= least
        if key in ("LARGER", "SMALLER"):
            size, larger = number(self.next()), key == "LARGER"
            return lambda t: t.loaded.msg.size > size if larger else t.loaded.msg.size < size
        if is_sequence_set(tok):
            seqs: SequenceSet = sequence_set(tok)
            return lambda t: seqs.contains(t.seq, t.largest_seq)
        raise ParseError(f"unknown search key {key[:30]}")


def _date_key(key: str, when: datetime.date) -> Predicate:
    sent = key.startswith("SENT")
    op = key[4:] if sent else key

    def check(t: Target) -> bool:
        day = _sent(t) if sent else _internal(t)
        if day is None:
            return False
        if op == "BEFORE":
            return day < when
        if op == "ON":
            return day == when
        return day >= when

    return check


def parse_search(args: list[Token]) -> tuple[Predicate, bool]:
    """The predicate for SEARCH arguments (an optional CHARSET first), and whether
    it uses MODSEQ (the reply then gives the highest MODSEQ found)."""
    if len(args) >= 2 and isinstance(args[0], str) and args[0].upper() == "CHARSET":
        charset = astring(args[1]).upper()
        if charset not in ("UTF-8", "US-ASCII"):
            raise ParseError("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset")
        args = args[2:]
    keys = _Keys(args)
    predicate = keys.all(0)
    return predicate, "MODSEQ" in keys.used
