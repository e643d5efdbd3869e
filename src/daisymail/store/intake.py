"""The intake journal: one shared flush makes the Maildir copies of concurrent messages safe.

Without it, every Maildir delivery waits for two ordered flushes of its own before the
250: its file, then the ``new/`` directory. With it, a delivery writes its copy and links
it into ``new/`` without flushing the file, appends the message (its copy paths and its
bytes) to this journal, and waits for one group flush: an ``fdatasync`` of the journal
followed by an fsync of every ``new/`` directory touched in the batch, done by one of the
waiting threads for all of them (on ext4 the directory fsyncs find their entries already
committed by the journal's flush and cost little). After it the 250 can go: the copy's
name is durable and its bytes are durable in the journal.

The copies' own data is flushed later, off the client's clock, by the syncer thread in
batches; once every copy recorded in a journal segment is flushed and the segment is
full, it is deleted. At start, ``replay`` reads whatever segments a crash left and
checks each recorded copy against the journal:

* a copy present (in ``new/`` or, with flags, in ``cur/``) whose bytes differ (the crash
  came before its data reached the disk) is rewritten from the journal;
* a copy that is absent was deleted or moved by its reader: its name was durable before
  the 250, so absence is never a lost write, and it is not brought back. Replaying twice
  does the same thing, so a crash during replay is harmless.

A record whose group flush failed (or never ran) may still be in a segment: its copies
were removed (the client got 452) or never made durable, so replay finds them absent and
skips them. mbox appends and the queue keep their own per-message flushes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from daisymail.store.durable import GroupFlush, fsync_dir, make_dirs, sync_dir

log = logging.getLogger("daisymail.store.intake")

MAGIC = b"DJ1 "
SEGMENT_SIZE = 16 * 1024 * 1024
MAX_UNSYNCED = 1024  # copies waiting for the syncer (each holds an open file)
_PREFIX = "intake."
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> object:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_START_WRITEBACK = _sync_file_range()


def encode(paths: Sequence[str], content: bytes) -> bytes:
    """One record: ``DJ1 <header length> <content length> <crc32>\\n`` header content."""
    header = json.dumps({"paths": list(paths)}).encode()
    crc = zlib.crc32(content, zlib.crc32(header))
    return b"%s%d %d %d\n%s%s" % (MAGIC, len(header), len(content), crc, header, content)


def decode_all(data: bytes) -> list[tuple[list[str], bytes]]:
    """The complete records of a segment, up to the first torn or damaged one."""
    records: list[tuple[list[str], bytes]] = []
    pos = 0
    while data.startswith(MAGIC, pos):
        end = data.find(b"\n", pos)
        try:
            hlen, clen, crc = (int(x) for x in data[pos + len(MAGIC) : end].split())
        except ValueError:
            break
        header = data[end + 1 : end + 1 + hlen]
        content = data[end + 1 + hlen : end + 1 + hlen + clen]
        if end < 0 or len(header) != hlen or len(content) != clen:
            break
        if zlib.crc32(content, zlib.crc32(header)) != crc:
            break
        try:
            paths = json.loads(header)["paths"]
        except (ValueError, KeyError, TypeError):
            break
        records.append(([str(p) for p in paths], content))
        pos = end + 1 + hlen + clen
    return records


@dataclass
class _Segment:
    path: str
    fd: int
    size: int = 0
    unsynced: int = 0  # recorded copies whose data the syncer has not flushed yet
    current: bool = True
    damaged: bool = False  # a copy failed to flush: keep the segment for replay


@dataclass
class _Covered:
    """What one group flush covers: the segments appended to, the new/ dirs linked in."""

    segments: dict[str, _Segment] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


@dataclass
class ReplayResult:
    records: int = 0
    rewritten: int = 0
    absent: int = 0
    segments: int = 0


class IntakeJournal:
    """Group-committed durability for Maildir deliveries; see the module docstring."""

    def __init__(self, directory: str, segment_size: int = SEGMENT_SIZE) -> None:
        self.directory = directory
        self.segment_size = segment_size
        self._lock = threading.Lock()  # appends and segment changes
        self._group = GroupFlush(_Covered, _flush_covered, "intake journal flush")
        self._segment: _Segment | None = None
        self._seq = 0
        self._sync_cond = threading.Condition()
        self._to_sync: list[tuple[_Segment, int]] = []
        self._stopping = False
        self._syncer: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Started (replayed) and not closed: until then deliveries flush their own files."""
        return self._segment is not None

    # -- start and stop --------------------------------------------------------------

    def start(self) -> ReplayResult:
        """Replay what a crash left, then open a fresh segment and the syncer thread."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        result = replay(self.directory)
        with self._lock:
            self._segment = self._new_segment()
        self._syncer = threading.Thread(target=self._sync_loop, name="intake-sync", daemon=True)
        self._syncer.start()
        return result

    def close(self) -> None:
        """Flush every copy still pending, then drop the segments that are all flushed."""
        with self._sync_cond:
            self._stopping = True
            self._sync_cond.notify_all()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            segment, self._segment = self._segment, None
        if segment is not None:
            segment.current = False
            self._maybe_drop(segment)
            with self._lock:  # kept (a copy failed to flush): close it all the same
                fd, segment.fd = segment.fd, -1
            if fd >= 0:
                os.close(fd)

    def _new_segment(self) -> _Segment:
        """A new, empty segment file whose name is durable before any record counts.
        The folder is made again if it went away (its mail dir was moved, say)."""
        self._seq += 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        while True:
            path = os.path.join(self.directory, f"{_PREFIX}{os.getpid()}.{self._seq:012d}")
            try:
                fd = os.open(path, flags, 0o600)
                break
            except FileExistsError:
                self._seq += 1
            except FileNotFoundError:
                make_dirs(self.directory)
        fsync_dir(self.directory)
        return _Segment(path, fd)

    def _rotate(self, full: _Segment) -> None:
        """Start a new segment (under self._lock). If that fails, records go on into the
        full one: it is as durable, only dropped later."""
        try:
            fresh = self._new_segment()
        except OSError as e:
            log.error("event=store.intake.rotate_failed segment=%s error=%s", full.path, e)
            return
        full.current = False
        self._segment = fresh

    # -- recording ---------------------------------------------------------------------

    def record(self, paths: Sequence[str], fd: int, content: bytes) -> None:
        """Make the copies at ``paths`` (already linked, one inode open as ``fd``, whose
        bytes are ``content``) safe: durable once this returns. fd is the journal's only
        on success (the syncer flushes and closes it). OSError leaves it to the caller."""
        record = encode(paths, content)
        with self._lock:
            segment = self._segment
            if segment is None:
                raise OSError("the intake journal is closed")
            try:
                written = 0
                while written < len(record):
                    written += os.write(segment.fd, record[written:])
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(segment.fd, segment.size)
                raise
            segment.size += len(record)
            segment.unsynced += 1
            if segment.size >= self.segment_size:
                self._rotate(segment)
        try:
            self._flush({segment.path: segment}, {os.path.dirname(p) for p in paths})
        except OSError:
            with self._lock:
                segment.unsynced -= 1
            self._maybe_drop(segment)
            raise
        with self._sync_cond:
            # bounded: a syncer that falls behind slows intake instead of piling up fds
            while len(self._to_sync) >= MAX_UNSYNCED and not self._stopping:
                self._sync_cond.wait()
            self._to_sync.append((segment, fd))
            self._sync_cond.notify_all()

    def _flush(self, segments: dict[str, _Segment], dirs: set[str]) -> None:
        """Join the waiting group flush; the first caller free to run it flushes for all.

        Callers join before the batch's flush starts and appended before joining, so
        the flush covers their record and their directory entries."""

        def add(covered: _Covered) -> None:
            covered.segments.update(segments)
            covered.dirs |= dirs

        self._group.join(add)

    # -- the syncer --------------------------------------------------------------------

    def _sync_loop(self) -> None:
        while True:
            with self._sync_cond:
                while not self._to_sync and not self._stopping:
                    self._sync_cond.wait()
                items, self._to_sync = self._to_sync, []
                stopping = self._stopping
                self._sync_cond.notify_all()
            if items:
                self._sync(items)
            if stopping and not items:
                return

    def _sync(self, items: list[tuple[_Segment, int]]) -> None:
        """Flush a batch of copies: start writeback of all, then wait for each."""
        if _START_WRITEBACK is not None:
            for _, fd in items:
                _START_WRITEBACK(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]
        touched: dict[str, _Segment] = {}
        for segment, fd in items:
            try:
                os.fdatasync(fd)
            except OSError as e:
                segment.damaged = True
                log.error("event=store.intake.sync_failed segment=%s error=%s", segment.path, e)
            finally:
                os.close(fd)
            with self._lock:
                segment.unsynced -= 1
            touched[segment.path] = segment
        for segment in touched.values():
            self._maybe_drop(segment)

    def _maybe_drop(self, segment: _Segment) -> None:
        """Delete a full segment once every copy it records is flushed."""
        with self._lock:
            if segment.current or segment.unsynced or segment.damaged or segment.fd < 0:
                return
            fd, segment.fd = segment.fd, -1
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment.path)


_FLUSHERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="intake-flush")


def _flush_covered(covered: _Covered) -> None:
    _flush_all(
        [functools.partial(os.fdatasync, s.fd) for s in covered.segments.values()]
        + [functools.partial(fsync_dir, d) for d in covered.dirs]
    )


def _flush_all(flushes: Sequence[Callable[[], None]]) -> None:
    """Run the flushes of a batch at once, not one after the other: each fsync of an
    entry the journal commit already covers still waits for a disk cache flush, and
    the block layer merges flushes that are pending together. OSError: the first one."""
    if len(flushes) == 1:
        flushes[0]()
        return
    futures = [_FLUSHERS.submit(f) for f in flushes[1:]]
    first: OSError | None = None
    try:
        flushes[0]()
    except OSError as e:
        first = e
    for future in futures:
        try:
            future.result()
        except OSError as e:
            first = first or e
    if first is not None:
        raise first


def segments(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(directory, n) for n in names if n.startswith(_PREFIX))


def replay(directory: str) -> ReplayResult:
    """Check every recorded copy against the journal (see the module docstring), then
    delete the segments. Idempotent: a crash part way is repaired by the next replay."""
    result = ReplayResult()
    found = segments(directory)
    listings: dict[str, dict[str, str]] = {}
    for path in found:
        with open(path, "rb") as f:
            data = f.read()
        result.segments += 1
        for paths, content in decode_all(data):
            result.records += 1
            for copy in paths:
                current = _current_path(copy, listings)
                if current is None:
                    result.absent += 1
                elif not _same(current, content):
                    _rewrite(current, content)
                    result.rewritten += 1
    for path in found:
        os.unlink(path)
    if found:
        sync_dir(directory)
    return result


def _current_path(copy: str, listings: dict[str, dict[str, str]]) -> str | None:
    """Where a copy delivered to ``new/`` is now: still there, or in ``cur/`` with flags."""
    if os.path.exists(copy):
        return copy
    maildir = os.path.dirname(os.path.dirname(copy))
    cur = os.path.join(maildir, "cur")
    if cur not in listings:
        try:
            names = os.listdir(cur)
        except FileNotFoundError:
            names = []
        listings[cur] = {n.partition(":")[0].partition(",")[0]: n for n in names}
    name = listings[cur].get(os.path.basename(copy).partition(",")[0])
    return os.path.join(cur, name) if name is not None else None


def _same(path: str, content: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(content) + 1) == content
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to repair


def _rewrite(path: str, content: bytes) -> None:
    """Put the journal's bytes under the copy's name (a new file renamed over it)."""
    maildir = os.path.dirname(os.path.dirname(path))
    tmp = os.path.join(maildir, "tmp", os.path.basename(path).partition(",")[0] + ".replay")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < len(content):
            written += os.write(fd, content[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))
