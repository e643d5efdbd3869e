"""Large messages without holding them in memory: FETCH literals read from the file in
chunks, and APPEND literals written into the folder's ``tmp/`` as they arrive.

A reply is then a list of segments: octets, and FileLiteral placeholders that the
server replaces by the file's content (CRLF line ends, as IMAP sends them), chunk by
chunk, through its write path with the shared write timeout. A file known to have no
bare LF is a placeholder even when small (``as_is``): on a plain connection the server
sends it by sendfile (sendfile.py); otherwise the worker reads it in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from daisymail.imap import fetch
from daisymail.store.durable import write_all
from daisymail.store.imap_folders import Message
from daisymail.store.maildir import Pop3Size, unique_name

CHUNK = 64 * 1024
STREAM_OVER = 1024 * 1024  # messages larger than this are streamed, FETCH and APPEND
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True, eq=False)
class FileLiteral:
    """A whole message file as one literal of ``size`` octets (its size with CRLF line
    ends). The file is opened when the reply is made, so a message expunged or renamed
    before it is sent is still sent whole."""

    file: BinaryIO
    size: int
    binary: bool = False  # ``~{n}`` (BINARY[]) rather than ``{n}``
    as_is: bool = False  # the file has no bare LF: its octets are the literal's

    def header(self) -> bytes:
        return b"%s{%d}\r\n" % (b"~" if self.binary else b"", self.size)

    def chunks(self) -> Generator[bytes]:
        try:
            if self.as_is:
                yield from sized_chunks(self.file, self.size)
            else:
                yield from crlf_chunks(self.file, self.size)
        finally:
            self.file.close()

    def inline(self) -> bytes:
        """The literal, header and octets, read at once (a small file: no streaming)."""
        return self.header() + b"".join(self.chunks())


Segment = bytes | FileLiteral
LAZY_OVER = 1024 * 1024  # a FETCH reply larger than this is made as it is sent


class Lazy:
    """A FETCH reply made line by line while it is sent (in a worker thread each), so
    that ``UID FETCH 1:* BODY.PEEK[]`` of a big folder holds one message at a time."""

    def __init__(self, tag: str, head: list[bytes], lines: Iterator[list[Segment]]) -> None:
        self.tag = tag
        self.head = b"".join(head)
        self.lines = lines


Output = bytes | list[Segment] | Lazy
LAZY_BATCH = 256 * 1024  # octets of a lazy reply made per trip to a worker thread
SENDFILE_BATCH = 1024 * 1024  # the same when files go by sendfile: they are not held
KEEP_OVER = 4096  # octets longer than this are written as they are, not joined


@dataclass
class Batch:
    """The next lines of a lazy reply, small adjacent octets merged; message texts
    stay whole objects, written as they are (joining them would copy every octet)."""

    segments: list[Segment]
    trouble: Exception | None = None  # what ended the reply early (a tagged NO follows)
    done: bool = False


def take_lines(lines: Iterator[list[Segment]], budget: int, sendfile: bool = False) -> Batch:
    """Lines from a lazy reply until about budget octets are made (a worker thread's
    share: one trip per message would cost more than making a small message). Without
    sendfile (TLS, COMPRESS), small files that need no conversion are read in here."""
    taken: list[Segment] = []
    size = 0
    try:
        while size < budget:
            line = next(lines, None)
            if line is None:
                return Batch(_merged(taken, KEEP_OVER), done=True)
            if not sendfile:
                line = _inlined(line)
            taken.extend(line)
            size += sum(len(s) if isinstance(s, bytes) else s.size for s in line)
    except Exception as e:  # any: the server turns it into the tagged NO
        return Batch(_merged(taken, KEEP_OVER), trouble=e, done=True)
    return Batch(_merged(taken, KEEP_OVER))


def _inlined(segments: list[Segment]) -> list[Segment]:
    """Files small enough to hold, and sent as they are, read in: only sendfile makes
    a separate write of them worth it."""
    return [
        s.inline() if isinstance(s, FileLiteral) and s.as_is and s.size <= STREAM_OVER else s
        for s in segments
    ]


def sized_chunks(f: BinaryIO, size: int) -> Iterator[bytes]:
    """The file as it is, in chunks; exactly ``size`` octets, as crlf_chunks."""
    sent = 0
    while sent < size:
        raw = f.read(min(CHUNK, size - sent))
        if not raw:
            break
        sent += len(raw)
        yield raw
    if sent < size:
        yield b" " * (size - sent)


def crlf_chunks(f: BinaryIO, size: int) -> Iterator[bytes]:
    """The file with bare LFs made CRLF, in chunks; exactly ``size`` octets in all (a file
    that shrank meanwhile is padded with spaces, one that grew is cut: the literal
    header is already on the wire)."""
    sent = 0
    last_cr = False
    while sent < size:
        raw = f.read(CHUNK)
        if not raw:
            break
        if last_cr and raw[:1] == b"\n":
            out = b"\n" + _BARE_LF.sub(b"\r\n", raw[1:])
        else:
            out = _BARE_LF.sub(b"\r\n", raw)
        last_cr = raw[-1:] == b"\r"
        out = out[: size - sent]
        sent += len(out)
        yield out
    if sent < size:
        yield b" " * (size - sent)


def whole_message(item: fetch.Item) -> bool:
    """The items that are the message file itself, octet for octet (after CRLF)."""
    if item.name == "RFC822":
        return True
    return (
        item.name in ("BODY[]", "BINARY[]")
        and not item.numbers
        and not item.text
        and (item.partial is None)
    )


def render(item: fetch.Item, msg: Message, loaded: fetch.Loaded) -> list[Segment]:
    """One FETCH item's value: a big message file is streamed, and so is the body of
    one known to need no line-end conversion (the server may hand it to sendfile);
    everything else is rendered."""
    if whole_message(item):
        as_is = fetch.has_crlf(msg)
        if (as_is and item.name == "BODY[]") or os.path.getsize(msg.path) > STREAM_OVER:
            label = item.label.encode("ascii", "replace") + b" "
            f = open(msg.path, "rb")  # noqa: SIM115 - closed by FileLiteral.chunks()
            size = os.fstat(f.fileno()).st_size if as_is else msg.size
            return [label, FileLiteral(f, size, item.name == "BINARY[]", as_is)]
    if item.name in ("BINARY[]", "BINARY.SIZE"):
        from daisymail.imap import binary  # it raises CommandFailed, which needs this module

        return [binary.render(item, msg, loaded)]
    if item.name == "BODY[]" and whole_message(item):  # the text apart: never copied
        data = loaded.data
        return [item.label.encode("ascii", "replace") + b" {%d}\r\n" % len(data), data]
    return [fetch.render(item, msg, loaded)]


def lazy_worthy(items: list[fetch.Item], messages: list[Message]) -> bool:
    """Whether a FETCH sends enough message text to be made lazily."""
    bodies = ("BODY[]", "BINARY[]", "RFC822", "RFC822.TEXT", "BODYSTRUCTURE", "ENVELOPE")
    if len(messages) < 2 or not any(i.name in bodies for i in items):
        return False  # one message: a big one is streamed from its file anyway
    total = 0
    for msg in messages:
        try:
            total += os.path.getsize(msg.path)
        except OSError:
            continue
        if total > LAZY_OVER:
            return True
    return False


def join(segments: list[Segment]) -> Output:
    """Adjacent octets merged; plain bytes when nothing is streamed."""
    segments = _inlined(segments)
    if all(isinstance(s, bytes) for s in segments):
        return b"".join(s for s in segments if isinstance(s, bytes))
    return _merged(segments)


def _merged(segments: list[Segment], keep_over: int | None = None) -> list[Segment]:
    """Runs of octets joined into one; with keep_over, octets longer than that are
    kept as they are (a message text is not copied to be sent)."""
    out: list[Segment] = []
    buf: list[bytes] = []
    for seg in segments:
        if isinstance(seg, bytes) and (keep_over is None or len(seg) <= keep_over):
            buf.append(seg)
            continue
        if buf:
            out.append(b"".join(buf))
            buf = []
        out.append(seg)
    if buf:
        out.append(b"".join(buf))
    return out


class Spool:
    """An APPEND literal being written into ``folder/tmp``; counts its sizes as it goes."""

    def __init__(self, folder_path: str, expected: int) -> None:
        self.unique = unique_name()
        self.path = os.path.join(folder_path, "tmp", self.unique)
        self.expected = expected
        self.counter = Pop3Size()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, data: bytes) -> None:
        assert self._fd is not None
        write_all(self._fd, data)
        self.counter.feed(data)

    def finish(self) -> None:
        """fsync and close: the file is complete on disk."""
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
