"""ENVELOPE, BODYSTRUCTURE, sections and SEARCH text as Dovecot gives them: one vector per
difference the Dovecot comparison (tests/integration/test_imap_dovecot_diff.py) found."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.imap import fields, mime
from daisymail.imap.responses import serialize
from daisymail.imap.search import decode_header


def _bs(data: bytes) -> bytes:
    return serialize(mime.body_structure(mime.parse(mime.crlf(data))))


def _env(data: bytes) -> bytes:
    return serialize(mime.envelope(mime.parse(mime.crlf(data)).fields))


ENVELOPE_ADDRESSES = [
    # A group keeps its syntax: a start (NIL host) and an end (all NIL).
    (
        b"To: undisclosed-recipients:;\n\nx",
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))',
    ),
    (
        b"To: Team: a@b.test, Ben <c@d.test>;, solo@e.test\n\nx",
        b'((NIL NIL "Team" NIL)(NIL NIL "a" "b.test")("Ben" NIL "c" "d.test")'
        b'(NIL NIL NIL NIL)(NIL NIL "solo" "e.test"))',
    ),
    # No domain: never a NIL host (that would start a group).
    (b"To: root\n\nx", b'((NIL NIL "root" "MISSING_DOMAIN"))'),
    (b"To: <>\n\nx", b'((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'),
    (b'To: "Quoted, Comma" <q@c.test>\n\nx', b'(("Quoted, Comma" NIL "q" "c.test"))'),
    # An obsolete source route is the address's adl (imaptest's fetch-envelope).
    (b"To: <@route:user@domain>\n\nx", b'((NIL "@route" "user" "domain"))'),
]


@pytest.mark.parametrize(("message", "to"), ENVELOPE_ADDRESSES)
def test_envelope_addresses(message: bytes, to: bytes) -> None:
    assert b" " + to + b" NIL NIL NIL NIL)" in _env(message)


def test_envelope_keeps_8bit_header_octets() -> None:
    env = _env("From: Jürgen <j@x.test>\nSubject: Größe\n\nx".encode())
    assert "Größe".encode() in env and "Jürgen".encode() in env
    assert b"\xef\xbf\xbd" not in env  # no replacement characters


BODYSTRUCTURES = [
    # RFC 2045's default charset is said out loud.
    (b"Subject: x\n\nbody\n", b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1 '),
    # Lines are line breaks: the last line before a delimiter has none of its own.
    (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b--\n",
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 0 ',
    ),
    # RFC 2231 continuations joined, the encoding left to the client.
    (
        b"Content-Type: application/x; name*0*=utf-8''%E2%82; name*1*=%AC.txt\n\nx",
        b'("APPLICATION" "X" ("NAME*" "utf-8\'\'%E2%82%AC.txt") ',
    ),
    # Two delimiters in a row: an empty part between them.
    (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\nx\n--b--\n",
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
        b'("TEXT" "PLAIN"',
    ),
]


@pytest.mark.parametrize(("message", "start"), BODYSTRUCTURES)
def test_bodystructure_vectors(message: bytes, start: bytes) -> None:
    assert _bs(message).startswith(start)


def test_disposition_and_language() -> None:
    bs = _bs(
        b"Content-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n"
        b"Content-Language: en, de\n\nx"
    )
    assert bs.endswith(b'("ATTACHMENT" ("FILENAME" "a.txt")) ("en" "de") NIL)')


def test_close_delimiter_line_end_stays_with_the_nested_part() -> None:
    message = (
        b"Content-Type: multipart/mixed; boundary=out\n\n--out\n"
        b"Content-Type: message/rfc822\n\nSubject: in\n"
        b"Content-Type: multipart/alternative; boundary=in\n\n--in\n\nx\n--in--\n--out--\n"
    )
    root = mime.parse(mime.crlf(message))
    assert root.children[0].body.endswith(b"--in--\r\n")


def test_search_decodes_raw_8bit_and_encoded_words() -> None:
    raw = "Größe".encode().decode("ascii", "surrogateescape")
    assert decode_header(raw) == "Größe"
    assert decode_header("=?utf-8?q?caf=C3=A9?=\r\n x") == "café x"


def test_folded_boundary_is_unfolded() -> None:
    """imaptest's fetch-body-mime: ``boundary="foo<CRLF> bar"`` is the boundary "foo bar"."""
    root = mime.parse(
        mime.crlf(
            b'Content-Type: multipart/mixed; boundary="foo\n bar"\n\n'
            b"--foo bar\n\nhello\n--foo bar--\n"
        )
    )
    assert [c.body for c in root.children] == [b"hello"]


def test_group_with_only_a_comment_is_empty() -> None:
    assert fields.split_addresses("group:;, group2: (foo) ;") == [
        ("group", "group"),
        ("end", ""),
        ("group", "group2"),
        ("end", ""),
    ]


def test_search_from_finds_an_address_written_with_comments() -> None:
    from daisymail.imap.fetch import Loaded
    from daisymail.imap.search import Target, parse_search

    data = mime.crlf(b"From: <user-from (comment)@ (comment) domain.org>\n\nx\n")
    item = Loaded.__new__(Loaded)
    item._data = data  # type: ignore[attr-defined]
    item._root = None  # type: ignore[attr-defined]
    predicate, _ = parse_search(["FROM", b"user-from@domain.org"])
    assert predicate(Target(1, 1, 1, item))


@given(
    st.binary(max_size=200) | st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"x"])).map(b"".join)
)
def test_crlf_turns_every_bare_lf_into_crlf(data: bytes) -> None:
    assert mime.crlf(data) == re.sub(rb"(?<!\r)\n", b"\r\n", data)


def test_envelope_is_cached_per_message(tmp_path: Path) -> None:
    """A folder opened again is answered from the cache, without reading the files."""
    from daisymail.imap import fetch
    from daisymail.store.imap_folders import Message

    path = tmp_path / "cur" / "1.unique.host:2,"
    path.parent.mkdir()
    path.write_bytes(b"Subject: cached\r\n\r\nx\r\n")
    msg = Message(1, "1.unique.host", frozenset(), 1, str(path))
    item = fetch.Item("ENVELOPE", label="ENVELOPE")
    first = fetch.render(item, msg, fetch.Loaded(msg))
    path.unlink()
    assert fetch.render(item, msg, fetch.Loaded(msg)) == first
    assert b'"cached"' in first
    other = Message(2, "2.unique.host", frozenset(), 1, str(path))
    with pytest.raises(FileNotFoundError):  # another message is not taken for this one
        fetch.render(item, other, fetch.Loaded(other))


def test_files_without_bare_lf_are_remembered(tmp_path: Path) -> None:
    from daisymail.imap import fetch
    from daisymail.store.imap_folders import Message

    (tmp_path / "cur").mkdir()
    crlf_file, lf_file = tmp_path / "cur" / "3.a.host:2,", tmp_path / "cur" / "4.b.host:2,"
    crlf_file.write_bytes(b"Subject: a\r\n\r\nx\r\n")
    lf_file.write_bytes(b"Subject: b\n\nx\n")
    a = Message(3, "3.a.host", frozenset(), 1, str(crlf_file))
    b = Message(4, "4.b.host", frozenset(), 1, str(lf_file))
    assert fetch.Loaded(a).data == b"Subject: a\r\n\r\nx\r\n"
    assert fetch.Loaded(b).data == b"Subject: b\r\n\r\nx\r\n"
    assert (str(tmp_path), "3.a.host") in fetch._CRLF_FILES
    assert (str(tmp_path), "4.b.host") not in fetch._CRLF_FILES
    assert fetch.Loaded(b).data == b"Subject: b\r\n\r\nx\r\n"  # converted every time
