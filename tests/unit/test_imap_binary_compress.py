"""BINARY item parsing and decoding, COMPRESS=DEFLATE in the core and the transport
helper, and LITERAL+ over the limit."""

from __future__ import annotations

import base64
import zlib

import pytest

from daisymail.imap import binary
from daisymail.imap.compress import CompressionError, Deflate
from daisymail.imap.fetch import Loaded, parse_items
from daisymail.imap.framing import FrameError, Framer
from daisymail.imap.parser import ParseError
from daisymail.imap.protocol import Close, StartCompress
from daisymail.store.imap_folders import Message
from tests.unit.test_imap_protocol import logged_in, talk

PAYLOAD = bytes(range(256)) * 4
MULTI = (
    b"Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 =\r\nsoft break\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    + b"--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nplain 7bit\r\n"
    b"--XX--\r\n"
)


@pytest.fixture
def loaded(tmp_path: object) -> Loaded:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "m"
    path.write_bytes(MULTI)
    return Loaded(Message(1, "u", frozenset(), 1, str(path)))


@pytest.mark.parametrize(
    ("item", "name", "numbers", "peek", "partial", "label"),
    [
        ("BINARY[]", "BINARY[]", (), False, None, "BINARY[]"),
        ("binary.peek[1.2]", "BINARY[]", (1, 2), True, None, "BINARY[1.2]"),
        ("BINARY[2]<0.10>", "BINARY[]", (2,), False, (0, 10), "BINARY[2]<0>"),
        ("BINARY.SIZE[2]", "BINARY.SIZE", (2,), False, None, "BINARY.SIZE[2]"),
    ],
)
def test_binary_items(
    item: str,
    name: str,
    numbers: tuple[int, ...],
    peek: bool,
    partial: tuple[int, int] | None,
    label: str,
) -> None:
    (got,) = parse_items(item)
    assert (got.name, got.numbers, got.peek, got.partial, got.label) == (
        name,
        numbers,
        peek,
        partial,
        label,
    )
    assert got.sets_seen is (name == "BINARY[]" and not peek)


@pytest.mark.parametrize(
    "item", ["BINARY[HEADER]", "BINARY[1.TEXT]", "BINARY.SIZE[1]<0.5>", "BINARY[0]", "BINARYX"]
)
def test_bad_binary_items(item: str) -> None:
    with pytest.raises(ParseError):
        parse_items(item)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("BINARY[1]", "BINARY[1] {16}\r\ncafé soft break".encode()),
        ("BINARY.SIZE[2]", b"BINARY.SIZE[2] 1024"),
        ("BINARY[2]", b"BINARY[2] ~{1024}\r\n" + PAYLOAD),
        ("BINARY[2]<1.3>", b"BINARY[2]<1> {3}\r\n\x01\x02\x03"),
        ("BINARY[4]", b"BINARY[4] {10}\r\nplain 7bit"),
        ("BINARY[9]", b"BINARY[9] NIL"),
    ],
)
def test_binary_decodes(loaded: Loaded, item: str, expected: bytes) -> None:
    (it,) = parse_items(item)
    assert binary.render(it, loaded.msg, loaded) == expected


def test_binary_unknown_encoding_is_no_unknown_cte(loaded: Loaded) -> None:
    (it,) = parse_items("BINARY[3]")
    with pytest.raises(binary.UnknownEncoding) as e:
        binary.render(it, loaded.msg, loaded)
    assert e.value.code == "UNKNOWN-CTE"


def test_deflate_round_trip_and_bounded_inflate() -> None:
    server, client_out = Deflate(), zlib.compressobj(6, zlib.DEFLATED, -15)
    client_in = zlib.decompressobj(-15)
    wire = server.compress(b"* OK hello\r\n")
    assert client_in.decompress(wire) == b"* OK hello\r\n"  # whole at once: sync flush
    bomb = client_out.compress(b"a" * 3_000_000) + client_out.flush(zlib.Z_SYNC_FLUSH)
    first = server.inflate(bomb)
    assert len(first) == 1024 * 1024 and server.backlog
    rest = b""
    while server.backlog:
        rest += server.inflate(b"")
    assert len(first) + len(rest) == 3_000_000
    with pytest.raises(CompressionError):
        Deflate().inflate(b"\xff\xff\xff\xff")


def test_core_compress_hands_over_what_followed_it() -> None:
    s = logged_in()
    out, events = talk(s, b"a COMPRESS DEFLATE\r\n\x01\x02compressed")
    assert out == b"a OK DEFLATE active\r\n"
    assert events == [StartCompress(b"\x01\x02compressed")]
    assert b"COMPRESS=DEFLATE" not in s.capabilities().encode()
    out, _ = talk(s, b"b COMPRESS DEFLATE\r\n")
    assert out == b"b NO [COMPRESSIONACTIVE] compression is already on\r\n"
    out, _ = talk(s, b"c COMPRESS GZIP\r\n")
    assert out.startswith(b"c BAD")


def test_nonsync_literal_over_the_limit_is_bad_toobig_then_bye() -> None:
    f = Framer(1000)
    f.feed(b"a APPEND INBOX {99999+}\r\n")
    with pytest.raises(FrameError):
        f.command(1000)
    assert f.replies == [b"a BAD [TOOBIG] literal too big\r\n"]
    s = logged_in()
    s.settings.max_literal = 1000
    out, events = talk(s, b"a APPEND INBOX {99999+}\r\n")
    assert out.startswith(b"a BAD [TOOBIG] literal too big\r\n* BYE")
    assert isinstance(events[-1], Close)
