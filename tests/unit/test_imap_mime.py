"""MIME for FETCH: sections, ENVELOPE, BODYSTRUCTURE, and malformed messages that must not crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daisymail.imap import mime
from daisymail.imap.fetch import Item, Loaded, section_bytes
from daisymail.imap.responses import serialize

NESTED = mime.crlf(
    b'From: "Ann" <ann@a.test>\nTo: b@b.test, C <c@c.test>\nSubject: =?utf-8?q?caf=C3=A9?=\n'
    b'Content-Type: multipart/mixed; boundary="outer"\n\npreamble\n'
    b"--outer\nContent-Type: text/plain; charset=utf-8\n\nhello\n"
    b"--outer\nContent-Type: message/rfc822\n\nSubject: inner\n"
    b"Content-Type: multipart/alternative; boundary=in\n\n"
    b"--in\n\nplain\n--in\nContent-Type: text/html\n\n<p>x</p>\n--in--\n"
    b"--outer--\nepilogue\n"
)


def loaded(data: bytes) -> Loaded:
    item = Loaded.__new__(Loaded)
    item._data = data  # type: ignore[attr-defined]
    item._root = None  # type: ignore[attr-defined]
    return item


SECTIONS = [
    (((), ""), NESTED),
    (((1,), ""), b"hello"),
    (((1,), "MIME"), b"Content-Type: text/plain; charset=utf-8\r\n\r\n"),
    (
        ((2,), "HEADER"),
        b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n",
    ),
    (((2, 1), ""), b"plain"),
    (((2, 2), ""), b"<p>x</p>"),
    (((2, 2), "MIME"), b"Content-Type: text/html\r\n\r\n"),
    (((3,), ""), b""),  # no such part: empty, as RFC 9051 and Dovecot
    (((1,), "HEADER"), b""),  # not a message/rfc822 part
]


@pytest.mark.parametrize(("spec", "expected"), SECTIONS)
def test_sections(spec: tuple[tuple[int, ...], str], expected: bytes | None) -> None:
    numbers, text = spec
    assert section_bytes(Item("BODY[]", numbers, text), loaded(NESTED)) == expected


def test_header_fields_and_not() -> None:
    item = Item("BODY[]", (), "HEADER.FIELDS", ("subject", "TO"))
    assert section_bytes(item, loaded(NESTED)) == (
        b"To: b@b.test, C <c@c.test>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"
    )
    item = Item("BODY[]", (), "HEADER.FIELDS.NOT", ("subject", "to", "content-type"))
    assert section_bytes(item, loaded(NESTED)) == b'From: "Ann" <ann@a.test>\r\n\r\n'


def test_single_part_body_is_part_one() -> None:
    data = b"Subject: s\r\n\r\nbody\r\n"
    assert section_bytes(Item("BODY[]", (1,), ""), loaded(data)) == b"body\r\n"
    assert section_bytes(Item("BODY[]", (), "TEXT"), loaded(data)) == b"body\r\n"


def test_envelope() -> None:
    env = serialize(mime.envelope(mime.parse(NESTED).fields))
    assert env == (
        b'(NIL "=?utf-8?q?caf=C3=A9?=" (("Ann" NIL "ann" "a.test")) (("Ann" NIL "ann" "a.test")) '
        b'(("Ann" NIL "ann" "a.test")) ((NIL NIL "b" "b.test")("C" NIL "c" "c.test")) '
        b"NIL NIL NIL NIL)"
    )


def test_bodystructure_nested() -> None:
    bs = serialize(mime.body_structure(mime.parse(NESTED)))
    assert bs.startswith(b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 0 ')
    assert b'"MESSAGE" "RFC822" NIL NIL NIL "7BIT"' in bs
    assert b'"ALTERNATIVE" ("BOUNDARY" "in")' in bs
    assert bs.endswith(b'"MIXED" ("BOUNDARY" "outer") NIL NIL NIL)')


MALFORMED = [
    b"",
    b"no header at all",
    b"Content-Type: multipart/mixed\r\n\r\nno boundary",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nunterminated",
    b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n',
    b"Content-Type: ;;;===\r\nContent-Disposition: ;\r\n\r\nx",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"From: \xff\xfe <@>\r\nTo: ,,,<\r\nSubject: \x80\r\n\r\nx",
    b"Content-Type: text/plain; name*=''bad%zz\r\n\r\nx",
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
    + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 50,
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_mime_never_crashes(data: bytes) -> None:
    root = mime.parse(data)
    serialize(mime.body_structure(root))
    serialize(mime.envelope(root.fields))
    for numbers in ((1,), (1, 1), (2, 3, 4)):
        section_bytes(Item("BODY[]", numbers, ""), loaded(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_messages_never_crash(data: bytes) -> None:
    body = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + data + b"\r\n--b--"
    for message in (data, body):
        root = mime.parse(mime.crlf(message))
        serialize(mime.body_structure(root))
        serialize(mime.envelope(root.fields))


@pytest.mark.parametrize(
    "data",
    [b"", b"a", b"a\nb\n", b"a\r\nb\n", b"a\r\nb\r\n", b"\r", b"a\rb\n", b"\n\n", b"a\r\n\n"],
)
def test_crlf_makes_every_bare_lf_crlf_and_keeps_crlf_files_as_they_are(data: bytes) -> None:
    want = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    got = mime.crlf(data)
    assert got == want
    if want == data:
        assert got is data  # nothing to convert: the very object (FETCH remembers the file)
