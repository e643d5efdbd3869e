"""The server's side of the mail-auth workers (``worker.py``): a few child processes
that judge port 25 mail and sign outgoing mail off the event loop, so that work uses
the other cores.

The workers are started with the server, before it drops its privileges (each then
becomes the service user itself), and live across reloads, which send them the new
settings. A worker is used once it says it is ready; until then, and whenever one dies
or fails a request, the caller judges (or signs) the message itself. A dead worker is started
again (by the server, as the service user) at most every ``RESTART_DELAY`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from daisymail.mailauth.inbound import InboundPolicy, Judgement
from daisymail.mailauth.keystore import KeyStore
from daisymail.mailauth.worker import READY, Frames, TurnWriter
from daisymail.observability import event
from daisymail.privileges import ServiceUser

log = logging.getLogger("daisymail.smtp")

RESTART_DELAY = 5.0
STOP_WAIT = 5.0  # seconds a worker gets to answer what it was given, at shutdown
# A check makes at most a few dozen DNS lookups (SPF's limit is 10 with their MX and A
# lookups, then DKIM keys, DMARC, ARC), not all of them timing out: a worker that has
# not answered within this many lookup timeouts is stuck.
ANSWER_LOOKUPS = 20


def default_count() -> int:
    """One worker per core but the one the event loop runs on (at least 1, at most 4)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def signer(
    workers: VerdictWorkers, keys: KeyStore
) -> Callable[[bytes, str], Awaitable[bytes | None]]:
    """What the queue calls to have a message held in memory signed by a worker: b""
    at once when no domain has a key; None when no worker could (sign it here)."""

    async def sign(message: bytes, sender: str) -> bytes | None:
        if keys.empty():
            return b""
        return await workers.sign(sender, message)

    return sign


class WorkerGone(Exception):
    """The worker died or could not judge the message."""


class _Worker(asyncio.SubprocessProtocol):
    """One worker process: requests written to its stdin, replies decoded from its
    stdout as they arrive, each resolving the future of the request it answers. The
    requests go out through a TurnWriter."""

    def __init__(self) -> None:
        self.transport: asyncio.SubprocessTransport | None = None
        self.ready = False
        self.alive = True
        # each request waiting for its answer, and when it was sent (loop time)
        self.pending: dict[int, tuple[asyncio.Future[Any], float]] = {}
        self.frames = Frames()
        self.requests = TurnWriter(self._write)
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def pid(self) -> int:
        assert self.transport is not None
        return self.transport.get_pid()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's process transport has the methods but not the base class.
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def send(self, obj: object) -> None:
        stdin = self._stdin()
        if stdin is None or stdin.is_closing():
            raise WorkerGone("the worker's input is closed")
        self.requests.send(obj)

    def _write(self, data: bytes) -> None:
        stdin = self._stdin()
        if stdin is not None and not stdin.is_closing():
            stdin.write(data)

    def _stdin(self) -> asyncio.WriteTransport | None:
        if self.transport is None:
            return None
        return cast(asyncio.WriteTransport | None, self.transport.get_pipe_transport(0))

    def close_input(self) -> None:
        self.requests.flush()  # what was asked this turn is still answered
        stdin = self._stdin()
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd != 1 or not self.alive or not isinstance(data, bytes):
            return
        try:
            for reply in self.frames.feed(data):
                self._answer(reply)
        except Exception as e:  # a broken frame: the worker is of no more use
            event(log, "mailauth.worker.failed", logging.WARNING, error=f"{type(e).__name__}: {e}")
            self.end()

    def _answer(self, reply: Any) -> None:
        if reply == READY:
            self.ready = True
            event(log, "mailauth.worker.ready", pid=self.pid)
            return
        rid, answer, error = reply
        future, _ = self.pending.pop(rid, (None, 0.0))
        if future is None or future.done():
            return
        if answer is None:
            future.set_exception(WorkerGone(error))
        else:
            future.set_result(answer)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:  # no more replies can come (those sent before an exit are read first)
            self.end()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def kill(self) -> None:
        if self.transport is not None and self.transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()

    def end(self, why: str = "the worker ended") -> None:
        """Give up on this worker: what it was asked gets WorkerGone, and it is killed."""
        if not self.alive:
            return
        self.alive = self.ready = False
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(WorkerGone(why))
        self.pending.clear()
        self.kill()


class VerdictWorkers:
    """Requests go round-robin to the ready workers."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.settings: dict[str, object] = {}  # set by configure() and configure_signing()
        self.answer_within = 60.0  # seconds; then the worker is taken for stuck
        self._watch: asyncio.TimerHandle | None = None
        self.user: ServiceUser | None = None
        self.workers: list[_Worker | None] = [None] * count
        self.started: list[float] = [0.0] * count
        self.starting: set[asyncio.Task[None]] = set()
        self._ids = itertools.count()
        self._next = 0
        self.closed = False

    def configure(
        self, authserv_id: str, policy: InboundPolicy, nameservers: list[str], timeout: float
    ) -> None:
        """The settings of ``[verify]`` and ``[dns]``, at start and at each reload."""
        self.settings.update(
            authserv_id=authserv_id, policy=policy, nameservers=list(nameservers), timeout=timeout
        )
        self.answer_within = max(1.0, ANSWER_LOOKUPS * timeout)
        self._send_setup()

    def configure_signing(self, dkim_dir: str, seal_id: str) -> None:
        """Where the DKIM keys are, and the authserv-id that ARC seals of forwards name."""
        self.settings.update(dkim_dir=dkim_dir, seal_id=seal_id)
        self._send_setup()

    @property
    def setup(self) -> tuple[object, ...] | None:
        """The setup frame; None until something is configured."""
        return ("setup", dict(self.settings), self.user) if self.settings else None

    def _send_setup(self) -> None:
        for w in self.workers:
            if w is not None and w.alive and self.setup is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    w.send(self.setup)

    async def start(self, user: ServiceUser | None, spawn: bool = True) -> None:
        """Start every worker now (once configured), while the server may still be
        root; ``user``: the service user they are to become. ``spawn`` False: not yet,
        as there is nothing to do; the first request starts them (as the service user)
        and is served by the server meanwhile."""
        self.user = user
        if self.setup is None or not spawn:
            return
        for i in range(self.count):
            self.started[i] = time.monotonic()
            await self._spawn(i)

    async def judge(self, ip: str, helo: str, mailfrom: str, message: bytes) -> Judgement | None:
        """The judgement of a worker; None when none is ready (judge it here)."""
        answer = await self._ask("check", ip, helo, mailfrom, message)
        return None if answer is None else Judgement.from_wire(answer, "worker")

    async def sign(self, sender: str, message: bytes) -> bytes | None:
        """The DKIM-Signature (and ARC) fields a worker made for a message (b"": not
        signed); None when none is ready (sign it here)."""
        answer = await self._ask("sign", sender, message)
        return answer if answer is None else bytes(answer)

    async def _ask(self, verb: str, *args: object) -> Any:
        """A worker's answer to one request; None when there is none (do it here)."""
        if verb == "sign" and "dkim_dir" not in self.settings:
            return None
        if verb == "check" and self.settings.get("policy") is None:
            return None
        worker = self._pick()
        if worker is None:
            return None
        rid = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        worker.pending[rid] = (future, loop.time())
        if self._watch is None:
            self._watch = loop.call_later(self.answer_within / 4, self._look_for_stuck)
        try:
            worker.send((verb, rid, *args))
            return await future
        except (WorkerGone, OSError, RuntimeError) as e:
            event(log, "mailauth.worker.fallback", logging.WARNING, error=str(e))
            return None
        finally:
            worker.pending.pop(rid, None)

    def _look_for_stuck(self) -> None:
        """A worker whose oldest request has waited far longer than any check's DNS
        lookups can take is stuck: it is killed (and started again), and what it was
        asked is judged (or signed) by the server. One timer for all requests, a few
        times per ``answer_within`` while any is pending: a timer per request cost
        about a quarter of the server's side of the round trip."""
        self._watch = None
        now = asyncio.get_running_loop().time()
        waiting = False
        for worker in self.workers:
            if worker is None or not worker.pending:
                continue
            _, oldest = next(iter(worker.pending.values()))  # kept in the order sent
            if now - oldest < self.answer_within:
                waiting = True
                continue
            event(
                log,
                "mailauth.worker.stuck",
                logging.WARNING,
                pid=worker.pid,
                seconds=self.answer_within,
            )
            worker.end("the worker was stuck")
        if waiting:
            self._watch = asyncio.get_running_loop().call_later(
                self.answer_within / 4, self._look_for_stuck
            )

    def _pick(self) -> _Worker | None:
        for _ in range(self.count):
            i = self._next
            self._next = (self._next + 1) % self.count
            w = self.workers[i]
            if w is not None and w.ready and w.alive:
                return w
            if (w is None or not w.alive) and not self.closed and self.settings:
                self._start(i)
        return None

    def _start(self, i: int) -> None:
        now = time.monotonic()
        if self.started[i] and now - self.started[i] < RESTART_DELAY:
            return
        self.started[i] = now
        task = asyncio.get_running_loop().create_task(self._spawn(i))
        self.starting.add(task)
        task.add_done_callback(self.starting.discard)

    async def _spawn(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _transport, worker = await loop.subprocess_exec(
                _Worker,
                sys.executable,
                "-m",
                "daisymail.mailauth.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
            )
        except OSError as e:
            event(log, "mailauth.worker.failed", logging.WARNING, error=str(e))
            return
        assert self.setup is not None
        worker.send(self.setup)
        self.workers[i] = worker
        event(log, "mailauth.worker.started", pid=worker.pid)
        if self.closed:
            worker.close_input()

    def close(self) -> None:
        """No new requests; each worker ends once it has answered what it was given."""
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for w in self.workers:
            if w is not None:
                w.close_input()

    async def wait_closed(self, timeout: float = STOP_WAIT) -> None:
        self.close()
        for task in list(self.starting):
            with contextlib.suppress(Exception):
                await task
        for w in self.workers:
            if w is None:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(w.exited), timeout)
            except TimeoutError:
                w.kill()
                await w.exited
            if w.transport is not None:
                w.transport.close()
