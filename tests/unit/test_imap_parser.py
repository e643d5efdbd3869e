"""IMAP command syntax: tables of vectors for tokens, commands and sequence sets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daisymail.imap.fetch import parse_items
from daisymail.imap.parser import (
    MAX_DEPTH,
    ParseError,
    SequenceSet,
    parse_command,
    parse_tokens,
    sequence_set,
    tag_of,
)
from daisymail.imap.responses import nstring, serialize, string

TOKENS = [
    (b"atom", ["atom"]),
    (b"a b  c", ["a", "b", "c"]),
    (b'"quoted string"', [b"quoted string"]),
    (b'"esc \\" and \\\\"', [b'esc " and \\']),
    (b'""', [b""]),
    (b"{5}\r\nhello rest", [b"hello", "rest"]),
    (b"{5+}\r\nhe\r\nl", [b"he\r\nl"]),
    (b"~{3}\r\n\x00\x01\x02", [b"\x00\x01\x02"]),
    (b"{0}\r\n", [b""]),
    (b"(a (b c) ())", [["a", ["b", "c"], []]]),
    (b"(\\Seen $Junk)", [["\\Seen", "$Junk"]]),
    (b"BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>", ["BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>"]),
    (b"BODY[]", ["BODY[]"]),
    (b'"" *', [b"", "*"]),
    (b"1:3,5,7:*", ["1:3,5,7:*"]),
    (b'"caf\xc3\xa9"', ["café".encode()]),
    (b"a\r\n", ["a"]),
    # A [ with no ] is an atom character (RFC 3501 atoms); FETCH refuses BODY[HEADER.
    (b"BODY[HEADER", ["BODY[HEADER"]),
    (b"!#$&'+,-.:;<=>?@^_`|[} x", ["!#$&'+,-.:;<=>?@^_`|[}", "x"]),
]


@pytest.mark.parametrize(("data", "expected"), TOKENS)
def test_tokens(data: bytes, expected: list[object]) -> None:
    assert parse_tokens(data) == expected


BAD_TOKENS = [
    b'"unterminated',
    b'"bad \\x escape"',
    b"(unclosed",
    b"closed)",
    b"{5}\r\nabc",  # literal shorter than announced
    b"{x}\r\n",
    b"(" * (MAX_DEPTH + 2) + b")" * (MAX_DEPTH + 2),
    b'"new\r\nline"',
]


@pytest.mark.parametrize("data", BAD_TOKENS)
def test_bad_tokens(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_tokens(data)


COMMANDS = [
    (b"a1 NOOP\r\n", ("a1", "NOOP", [])),
    (b"A2 login user pass\r\n", ("A2", "LOGIN", ["user", "pass"])),
    (b'x LOGIN "demo@example.test" {3}\r\npw!\r\n', ("x", "LOGIN", [b"demo@example.test", b"pw!"])),
    (b"t FETCH 1:* (FLAGS UID)\r\n", ("t", "FETCH", ["1:*", ["FLAGS", "UID"]])),
    (b"t UID fetch 4 BODY[]\r\n", ("t", "UID", ["fetch", "4", "BODY[]"])),
]


@pytest.mark.parametrize(("data", "expected"), COMMANDS)
def test_commands(data: bytes, expected: tuple[str, str, list[object]]) -> None:
    cmd = parse_command(data)
    assert (cmd.tag, cmd.name, cmd.args) == expected


@pytest.mark.parametrize(
    "data", [b"\r\n", b"tagonly\r\n", b"+ NOOP\r\n", b"a*b NOOP\r\n", b'a "NOOP"\r\n', b"a (x)\r\n"]
)
def test_bad_commands(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command(data)


@pytest.mark.parametrize(
    ("data", "tag"), [(b"a1 BLAH\r\n", "a1"), (b"\r\n", "*"), (b"x" * 100 + b" N", "*")]
)
def test_tag_of_malformed(data: bytes, tag: str) -> None:
    assert tag_of(data) == tag


SETS = [
    ("1", 10, [(1, 1)]),
    ("1:3,5", 10, [(1, 3), (5, 5)]),
    ("*", 7, [(7, 7)]),
    ("5:*", 3, [(3, 5)]),
    ("4:2", 9, [(2, 4)]),
    ("1:*", 0, [(0, 1)]),
]


@pytest.mark.parametrize(("text", "largest", "ranges"), SETS)
def test_sequence_sets(text: str, largest: int, ranges: list[tuple[int, int]]) -> None:
    assert sequence_set(text).resolve(largest) == ranges


@pytest.mark.parametrize("text", ["0", "1:0", "a", "1,", ",1", "1::2", "4294967296", "-1", ""])
def test_bad_sequence_sets(text: str) -> None:
    with pytest.raises(ParseError):
        sequence_set(text)


def test_sequence_set_contains() -> None:
    s = SequenceSet(((2, 4), (None, None)))
    assert [n for n in range(1, 8) if s.contains(n, 7)] == [2, 3, 4, 7]


FETCH_ITEMS = [
    ("FLAGS", [("FLAGS", (), "", False, None)]),
    (
        "ALL",
        [
            ("FLAGS", (), "", False, None),
            ("INTERNALDATE", (), "", False, None),
            ("RFC822.SIZE", (), "", False, None),
            ("ENVELOPE", (), "", False, None),
        ],
    ),
    ("BODY.PEEK[HEADER.FIELDS (From To)]", [("BODY[]", (), "HEADER.FIELDS", True, None)]),
    ("BODY[1.2.MIME]<10.20>", [("BODY[]", (1, 2), "MIME", False, (10, 20))]),
    ("body[text]", [("BODY[]", (), "TEXT", False, None)]),
    ("BODY[2]", [("BODY[]", (2,), "", False, None)]),
]


@pytest.mark.parametrize(("text", "expected"), FETCH_ITEMS)
def test_fetch_items(text: str, expected: list[tuple[object, ...]]) -> None:
    tok = parse_tokens(text.encode())[0]
    got = [(i.name, i.numbers, i.text, i.peek, i.partial) for i in parse_items(tok)]
    assert got == expected


@pytest.mark.parametrize(
    "text", ["BODY[MIME]", "BODY[FOO]", "BODY[HEADER.FIELDS]", "NOPE", "BODY[1.0]", "BODY[TEXT x]"]
)
def test_bad_fetch_items(text: str) -> None:
    with pytest.raises(ParseError):
        parse_items(parse_tokens(text.encode())[0])


RESPONSES = [
    ("plain", b'"plain"'),
    ('with "quote" \\', b'"with \\"quote\\" \\\\"'),
    ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),
    ("line\r\nbreak", b"{11}\r\nline\r\nbreak"),
]


@pytest.mark.parametrize(("value", "wire"), RESPONSES)
def test_strings_quoted_or_literal(value: str, wire: bytes) -> None:
    assert string(value) == wire


def test_serialize_nested() -> None:
    assert serialize([None, 3, "a", [b"b"]]) == b'(NIL 3 "a" ("b"))'
    assert nstring(None) == b"NIL"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_tokenizer_never_crashes(data: bytes) -> None:
    try:
        parse_command(data)
    except ParseError:
        pass
