"""Streaming DATA from the queue file, and noticing that a hop is this host itself."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daisymail.queue import loops, stream
from daisymail.queue.remote import Hop, Route
from daisymail.queue.stream import Body, DotStuffer


def reference(message: bytes) -> bytes:
    """The whole-message transformation aiosmtplib applies (and RFC 5321 4.5.2 asks for)."""
    out = re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", message)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", out) + b".\r\n"


def stuffed(message: bytes, size: int) -> bytes:
    s = DotStuffer()
    parts = [s.feed(message[i : i + size]) for i in range(0, len(message), size)]
    return b"".join(parts) + s.finish()


@pytest.mark.parametrize(
    "message",
    [b"", b".", b"a\n.\n..\nb", b".x\r\n.\r", b"a\r", b"a\r\n", b"\r\r\n.\n", b"x\n"],
)
@pytest.mark.parametrize("size", [1, 2, 3, 1000])
def test_dot_stuffing_across_chunk_borders(message: bytes, size: int) -> None:
    assert stuffed(message, size) == reference(message)


ALPHABET = bytes(b"\r\n.x"[i % 4] for i in range(256))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60).map(lambda b: b.translate(ALPHABET)))
def test_dot_stuffing_matches_whole_message(message: bytes) -> None:
    for size in (1, 2, 5, 64):
        assert stuffed(message, size) == reference(message)


def test_body_scan_sees_8bit_and_counts_crlf(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"a\n" * (stream.CHUNK // 2) + "é\n".encode())
    body = Body.scan(str(path))
    assert body.eight_bit
    assert body.size == len(path.read_bytes()) + path.read_bytes().count(b"\n")
    path.write_bytes(b"plain\n")
    assert not Body.scan(str(path)).eight_bit


def test_small_bodies_are_held_and_large_ones_streamed(tmp_path: Path) -> None:
    """Most mail is read once, by the scan, and sent from memory; past HELD bytes the
    file is read again in pieces while it is sent. A prefix counts in both."""
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"Subject: s\n\nbody\n")
    large.write_bytes(b"y\n" * stream.HELD)
    held = Body.scan(str(small))
    assert held.data == small.read_bytes() and list(held.chunks()) == [held.data]
    streamed = Body.scan(str(large))
    assert streamed.data is None
    assert b"".join(streamed.chunks()) == large.read_bytes()
    signed = held.with_prefix("DKIM-Signature: é\n".encode())
    assert signed.eight_bit and not held.eight_bit
    assert signed.size == held.size + len(signed.prefix) + 1
    assert Body.scan(str(small), signed.prefix) == signed


def test_hops_from_the_first_one_that_is_us_are_dropped() -> None:
    other, us, backup = Hop("192.0.2.10", 25), Hop("127.0.0.7", 25), Hop("192.0.2.20", 25)
    wildcard = [("0.0.0.0", 25)]

    def run(route: Route, listeners: list[tuple[str, int]]) -> tuple[Hop, ...]:
        return asyncio.run(loops.without_self(route, listeners)).hops

    assert run(Route("d", (other, us, backup)), wildcard) == (other,)
    assert run(Route("d", (us, other)), wildcard) == ()
    assert run(Route("d", (us,)), [("127.0.0.1", 2525)]) == (us,)  # not our port
    assert run(Route("d", (Hop("127.0.0.1", 2525),)), [("127.0.0.1", 2525)]) == ()
    assert run(Route("d", (Hop("localhost", 2525),)), [("::", 2525)]) == ()
    assert run(Route("d", (Hop("127.0.0.2", 2525),)), [("127.0.0.1", 2525)]) != ()


def test_local_addresses() -> None:
    assert loops.is_local_address("127.0.0.1")
    assert loops.is_local_address("::1")
    assert not loops.is_local_address("192.0.2.1")  # TEST-NET, never configured here
    assert not loops.is_local_address("not-an-ip")
