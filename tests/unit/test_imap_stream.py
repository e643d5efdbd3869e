"""Large messages: the framer and core hand big APPEND literals on in chunks, and FETCH
of a big message is a file placeholder streamed with CRLF line ends."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from daisymail.imap import stream
from daisymail.imap.commands import MailSession
from daisymail.imap.fetch import Loaded, parse_items
from daisymail.imap.framing import Framer, StreamStart
from daisymail.imap.protocol import AppendChunk, AppendEnd, AppendStart, Event, Execute, State
from daisymail.imap.stream import FileLiteral
from daisymail.store.imap_folders import AccountFolders
from daisymail.store.imap_state import FileMailboxState
from daisymail.store.maildir import ensure_maildir
from tests.unit.test_imap_protocol import logged_in, talk


def drain(s: object, data: bytes) -> tuple[bytes, list[Event]]:
    from daisymail.imap.protocol import ImapSession

    assert isinstance(s, ImapSession)
    s.receive_data(data)
    events = []
    while (ev := s.next_event()) is not None:
        events.append(ev)
    return s.data_to_send(), events


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], b"a\r\nb\r\n"),
        ([b"a\r", b"\nb\n"], b"a\r\nb\r\n"),  # CR LF split over two reads
        ([b"a\n", b"\nb"], b"a\r\n\r\nb"),  # bare LF at the start of a read
        ([b"a\r\n", b"b\r\n"], b"a\r\nb\r\n"),
        ([b""], b""),
    ],
)
def test_crlf_chunks_across_read_boundaries(
    chunks: list[bytes], expected: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Reads(io.RawIOBase):
        def __init__(self) -> None:
            self.parts = list(chunks)

        def read(self, _n: int = -1) -> bytes:
            return self.parts.pop(0) if self.parts else b""

    out = b"".join(stream.crlf_chunks(Reads(), len(expected)))  # type: ignore[arg-type]
    assert out == expected


def test_crlf_chunks_pad_and_cut_to_the_announced_size() -> None:
    assert b"".join(stream.crlf_chunks(io.BytesIO(b"ab"), 4)) == b"ab  "
    assert b"".join(stream.crlf_chunks(io.BytesIO(b"abcdef"), 3)) == b"abc"


def test_join_keeps_bytes_plain_and_merges_around_files() -> None:
    assert stream.join([b"a", b"b"]) == b"ab"
    f = FileLiteral(io.BytesIO(b""), 0)  # type: ignore[arg-type]
    assert stream.join([b"a", b"b", f, b"c"]) == [b"ab", f, b"c"]


@pytest.mark.parametrize(
    ("line", "literal"),
    [
        (b"a APPEND INBOX {2000000}\r\n", False),
        (b"a append INBOX (\\Seen) {2000000+}\r\n", True),
    ],
)
def test_framer_leaves_big_append_literals_in_the_buffer(line: bytes, literal: bool) -> None:
    f = Framer(1000)
    f.feed(line + b"xyz")
    got = f.command(10_000_000, stream_over=1_000_000)
    assert isinstance(got, StreamStart)
    assert got.size == 2_000_000 and got.nonsync is literal
    assert got.line == line[: line.index(b"{")]
    assert f.take(10) == b"xyz"
    assert f.replies == []  # no "+" yet: the server decides


def test_framer_buffers_small_literals_and_other_commands() -> None:
    f = Framer(1000)
    f.feed(b"a APPEND INBOX {3}\r\n")
    assert f.command(10_000, stream_over=1_000) is None
    assert f.replies == [b"+ Ready for literal data\r\n"]
    f = Framer(1000)
    f.feed(b"a LOGIN {2000}\r\n")
    assert f.command(10_000, stream_over=1_000) is None  # not an APPEND: buffered


def test_core_streams_an_accepted_append_in_chunks() -> None:
    s = logged_in()
    out, events = talk(s, b"a APPEND Sent (\\Seen) {2000000}\r\n")
    assert out == b""
    assert len(events) == 1 and isinstance(events[0], AppendStart)
    assert events[0].size == 2_000_000 and events[0].args[0] == "Sent"
    s.append_accepted()
    out, events = drain(s, b"x" * 1_000_000)
    assert out == b"+ Ready for literal data\r\n"
    out, more = drain(s, b"y" * 1_000_000 + b"\r\nb NOOP\r\n")
    events += more
    chunks = [e.data for e in events if isinstance(e, AppendChunk)]
    assert b"".join(chunks) == b"x" * 1_000_000 + b"y" * 1_000_000
    assert isinstance(events[-1], AppendEnd) and events[-1].ok
    s.executed(b"a OK APPEND completed\r\n")
    out, events = drain(s, b"")
    assert out == b"a OK APPEND completed\r\nb OK NOOP completed\r\n"


def test_core_drops_a_refused_literal_plus_and_goes_on() -> None:
    s = logged_in()
    _, events = talk(s, b"a APPEND Nope {2000000+}\r\n" + b"z" * 2_000_000 + b"\r\nb NOOP\r\n")
    assert isinstance(events[0], AppendStart)
    s.append_refused(b"a NO [TRYCREATE] no such folder\r\n")
    out, events = drain(s, b"")
    assert out == b"a NO [TRYCREATE] no such folder\r\nb OK NOOP completed\r\n"
    assert not any(isinstance(e, AppendChunk) for e in events)


def test_core_refused_synchronizing_append_gets_no_continuation() -> None:
    s = logged_in()
    _, _events = talk(s, b"a APPEND Nope {2000000}\r\n")
    s.append_refused(b"a NO [TOOBIG] message too big\r\n")
    out, _ = drain(s, b"b NOOP\r\n")
    assert out == b"a NO [TOOBIG] message too big\r\nb OK NOOP completed\r\n"


def test_core_append_with_something_after_the_literal_is_bad() -> None:
    s = logged_in()
    talk(s, b"a APPEND INBOX {2000000+}\r\n")
    s.append_accepted()
    _, events = drain(s, b"q" * 2_000_000 + b" {5+}\r\n")
    assert isinstance(events[-1], AppendEnd) and not events[-1].ok


def test_fetch_of_a_big_message_is_a_file_placeholder(tmp_path: Path) -> None:
    root = str(tmp_path / "box")
    ensure_maildir(root)
    folders = AccountFolders(root, FileMailboxState())
    folders.ensure_defaults()
    big = b"Subject: big\n\n" + b"line of text\n" * 200_000
    folder = folders.folder("INBOX")
    folder.append(big, frozenset(), None)
    session = MailSession(folders, 50 * 1024 * 1024)
    session.run(Execute("s", "SELECT", False, ["INBOX"], State.AUTHENTICATED))
    out, _ = session.run(Execute("f", "FETCH", False, ["1", ["BODY.PEEK[]", "UID"]]))
    assert isinstance(out, list)
    files = [seg for seg in out if isinstance(seg, FileLiteral)]
    assert len(files) == 1 and files[0].size == len(stream_crlf(big))
    assert b"".join(files[0].chunks()) == stream_crlf(big)
    msg = folder.sync().messages[0]
    small = parse_items("BODY.PEEK[TEXT]<0.10>")[0]
    assert stream.render(small, msg, Loaded(msg)) == [b"BODY[TEXT]<0> {10}\r\nline of te"]


def stream_crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def test_fetch_of_many_medium_messages_is_made_line_by_line(tmp_path: Path) -> None:
    root = str(tmp_path / "box")
    ensure_maildir(root)
    folders = AccountFolders(root, FileMailboxState())
    folders.ensure_defaults()
    bodies = [b"Subject: m%d\r\n\r\n" % i + b"z" * 900_000 + b"\r\n" for i in range(5)]
    for body in bodies:
        folders.folder("INBOX").append(body, frozenset(), None)
    session = MailSession(folders, 50 * 1024 * 1024)
    session.run(Execute("s", "SELECT", False, ["INBOX"], State.AUTHENTICATED))
    out, _ = session.run(Execute("f", "FETCH", False, ["1:*", ["BODY[]"]]))
    assert isinstance(out, stream.Lazy)
    lines = list(out.lines)
    assert len(lines) == 6 and lines[-1] == [b"f OK FETCH completed\r\n"]
    for n, (line, body) in enumerate(zip(lines, bodies, strict=False), 1):
        data = b"".join(seg for seg in line if isinstance(seg, bytes))
        assert data.startswith(b"* %d FETCH (BODY[] {%d}\r\n" % (n, len(body)))
        assert body in data and b"FLAGS (\\Recent \\Seen)" in data  # not PEEK: \Seen set first
    small, _ = session.run(Execute("g", "FETCH", False, ["1:*", ["FLAGS"]]))
    assert isinstance(small, bytes)  # no message text: made at once


def test_core_streams_a_utf8_append_literal() -> None:
    s = logged_in()
    _, events = talk(s, b"a APPEND INBOX UTF8 (~{2000000+}\r\n")
    assert isinstance(events[0], AppendStart) and events[0].args == ["INBOX"]
    s.append_accepted()
    _, events = drain(s, b"u" * 2_000_000 + b")\r\n")
    assert isinstance(events[-1], AppendEnd) and events[-1].ok


def test_lazy_lines_come_in_batches_with_octets_merged() -> None:
    """A lazy FETCH reply goes to a worker thread once per batch, not once per message,
    and each batch is one write of octets (file placeholders kept apart)."""
    f = FileLiteral(io.BytesIO(b"x"), 1)
    lines = iter([[b"* 1 FETCH (", b"a" * 100, b")\r\n"], [b"* 2 ", f, b")\r\n"], [b"t OK\r\n"]])
    first = stream.take_lines(lines, 50)
    assert first.segments == [b"* 1 FETCH (" + b"a" * 100 + b")\r\n"] and not first.done
    rest = stream.take_lines(lines, 1 << 20)
    assert rest.segments == [b"* 2 ", f, b")\r\nt OK\r\n"] and rest.done
    assert rest.trouble is None


def test_lazy_lines_stop_at_trouble_keeping_what_was_made() -> None:
    def lines() -> Iterator[list[stream.Segment]]:
        yield [b"* 1 FETCH (UID 1)\r\n"]
        raise OSError("gone")

    batch = stream.take_lines(lines(), 1 << 20)
    assert batch.segments == [b"* 1 FETCH (UID 1)\r\n"] and batch.done
    assert isinstance(batch.trouble, OSError)


def test_body_known_to_need_no_conversion_is_a_file_sent_as_it_is(tmp_path: Path) -> None:
    """Once a CRLF file was read, BODY[] of it is an as-is file (the server may use
    sendfile); an LF file stays converted; without sendfile the small one is read in."""
    root = str(tmp_path / "box")
    ensure_maildir(root)
    folders = AccountFolders(root, FileMailboxState())
    folders.ensure_defaults()
    crlf_body = b"Subject: crlf\r\n\r\n" + b"text\r\n" * 1000
    lf_body = b"Subject: lf\n\n" + b"text\n" * 1000
    folder = folders.folder("INBOX")
    folder.append(crlf_body, frozenset(), None)
    folder.append(lf_body, frozenset(), None)
    item = parse_items("BODY.PEEK[]")[0]
    first, second = folder.sync().messages
    assert stream.render(item, first, Loaded(first)) == [
        b"BODY[] {%d}\r\n" % len(crlf_body),
        crlf_body,
    ]
    label, lit = stream.render(item, first, Loaded(first))  # now known: no bare LF
    assert label == b"BODY[] " and isinstance(lit, FileLiteral) and lit.as_is
    assert lit.header() + b"".join(lit.chunks()) == b"{%d}\r\n" % len(crlf_body) + crlf_body
    for _ in range(2):
        assert stream.render(item, second, Loaded(second))[1] == stream_crlf(lf_body)
    kept = stream.take_lines(iter([stream.render(item, first, Loaded(first))]), 1 << 20, True)
    assert isinstance(kept.segments[1], FileLiteral)
    kept.segments[1].file.close()
    read = stream.take_lines(iter([stream.render(item, first, Loaded(first))]), 1 << 20)
    assert all(isinstance(seg, bytes) for seg in read.segments)
    assert b"".join(read.segments) == b"BODY[] {%d}\r\n" % len(crlf_body) + crlf_body  # type: ignore[arg-type]
    line = [b"BODY[] ", stream.render(item, first, Loaded(first))[1]]
    assert stream.join(line) == b"BODY[] {%d}\r\n" % len(crlf_body) + crlf_body


def test_lazy_batches_keep_message_texts_whole_objects() -> None:
    text = b"t" * 10_000
    batch = stream.take_lines(iter([[b"* 1 FETCH (BODY[] {10000}\r\n", text, b")\r\n"]]), 1 << 20)
    assert batch.segments[1] is text  # written as it is, not copied into a joined buffer
