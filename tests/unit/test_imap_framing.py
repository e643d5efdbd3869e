"""Framing: commands with literals cut out of a byte stream, however it is chunked."""

from __future__ import annotations

import pytest

from daisymail.imap.framing import CONTINUE, FrameError, Framer

# (chunks fed one by one, commands expected, replies expected)
VECTORS = [
    ([b"a NOOP\r\n"], [b"a NOOP\r\n"], []),
    ([b"a NO", b"OP\r\nb NOOP\r\n"], [b"a NOOP\r\n", b"b NOOP\r\n"], []),
    ([b"a NOOP\n"], [b"a NOOP\n"], []),
    (
        [b"a LOGIN {1}\r\n", b"u {2}\r\n", b"pw\r\n"],
        [b"a LOGIN {1}\r\nu {2}\r\npw\r\n"],
        [CONTINUE, CONTINUE],
    ),
    ([b"a LOGIN {1+}\r\nu {2+}\r\npw\r\n"], [b"a LOGIN {1+}\r\nu {2+}\r\npw\r\n"], []),
    ([b"a APPEND x {3}\r\nab", b"c\r\n"], [b"a APPEND x {3}\r\nabc\r\n"], [CONTINUE]),
    ([b"a APPEND x {3}\r\nabc\r\n"], [b"a APPEND x {3}\r\nabc\r\n"], []),  # no + when sent already
    ([b"a APPEND x ~{2}\r\n\r\n\r\n"], [b"a APPEND x ~{2}\r\n\r\n\r\n"], []),
    (
        [b"a APPEND x {9999}\r\nb NOOP\r\n"],
        [b"b NOOP\r\n"],
        [b"a BAD [TOOBIG] literal too big\r\n"],
    ),
]


@pytest.mark.parametrize(("chunks", "commands", "replies"), VECTORS)
def test_framing(chunks: list[bytes], commands: list[bytes], replies: list[bytes]) -> None:
    framer = Framer(max_line=1000)
    got = []
    for chunk in chunks:
        framer.feed(chunk)
        while (cmd := framer.command(literal_limit=100)) is not None:
            got.append(cmd)
    assert got == commands
    assert framer.replies == replies


@pytest.mark.parametrize(
    "data", [b"a " + b"x" * 1001, b"a " + b"x" * 1001 + b"\r\n", b"a APPEND x {101+}\r\n"]
)
def test_framing_gives_up(data: bytes) -> None:
    framer = Framer(max_line=1000)
    framer.feed(data)
    with pytest.raises(FrameError):
        framer.command(literal_limit=100)
    assert framer.buffer == bytearray()


def test_lines_for_idle_and_sasl() -> None:
    framer = Framer(max_line=10)
    framer.feed(b"DONE\r\na NOOP")
    assert framer.line() == b"DONE\r\n"
    assert framer.line() is None
    framer.feed(b"x" * 20)
    with pytest.raises(FrameError):
        framer.line()
