"""The file work of SMTP messages, in I/O threads and in order for each session.

Every file operation of a message (spool, Maildir tmp/, fsyncs, the hand-off) runs in a
worker thread, so a slow disk or a large message never stalls other sessions. The pool
is its own, so that a stalled disk cannot take the threads that other work (SQL,
logins) runs in. A session remembers its last call, so that removing a message's files
waits for any write of it still running (no fd is closed under a writer) and a reply
can wait for that removal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from daisymail.delivery import Spool
from daisymail.mailauth.inbound import InboundCheck
from daisymail.store.base import PendingDelivery

_IO = ThreadPoolExecutor(max_workers=16, thread_name_prefix="smtp-io")
T = TypeVar("T")


class FileWork:
    """One session's calls into the I/O threads."""

    def __init__(self) -> None:
        self.io: Future[Any] | None = None  # the last I/O-thread call of this session

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) in an I/O thread; remembered so that a discard waits for it."""
        future = _IO.submit(fn, *args)
        self.io = future
        return await asyncio.wrap_future(future)

    def abort(self, sink: Spool | PendingDelivery) -> None:
        """Remove what sink wrote, in an I/O thread, after the call still running there."""
        running = self.io

        def after_running() -> None:
            if running is not None:
                concurrent.futures.wait([running])  # submitted first: never queued behind
            sink.abort()

        try:
            self.io = _IO.submit(after_running)
        except RuntimeError:  # the interpreter is shutting down
            sink.abort()

    async def settle(self) -> None:
        """Wait for the I/O thread's last job (a removal of what a failed write left):
        a 452 must not be sent while a partial copy is still on disk."""
        running = self.io
        if running is not None and not running.done():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(running)


def write(sink: Spool | PendingDelivery, block: bytes, check: InboundCheck | None) -> None:
    """One block to disk and, for checked mail, to its check (hashing, in this thread)."""
    sink.write(block)
    if check is not None:
        check.feed(block)


def finish_spool(spool: Spool, rest: bytes, check: InboundCheck | None = None) -> None:
    if rest:
        spool.write(rest)
        if check is not None:
            check.feed(rest)
    spool.close()


def finish_direct(pending: PendingDelivery, rest: bytes) -> None:
    if rest:
        pending.write(rest)
    pending.commit()
