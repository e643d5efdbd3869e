"""Delivering the queue: who is due, retries with back-off, expiry, bounces.

The runner scans the queue dir every second (so messages queued by ``daisymail
sendmail`` are seen without a signal) and at once when woken by the SMTP server.
A message is tried when its next attempt is due, or for everyone when the flush trigger
file appears (``daisymail queue flush``). Each message's recipients are grouped by
domain and handed over per route, with at most ``destination_concurrency`` connections
to one destination. After each attempt the envelope is rewritten with every recipient's
state before anything else happens, so a kill -9 repeats at most the last hand-over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from daisymail.config import Queue as QueueConfig
from daisymail.delivery import Injector, send_dsn
from daisymail.dns import Resolver
from daisymail.observability import event
from daisymail.queue import remote
from daisymail.queue.bounce import (
    EXPIRED_STATUS,
    Action,
    delay_notice_due,
    should_notify,
    success_notice_due,
)
from daisymail.queue.loops import without_self
from daisymail.queue.sessions import SessionCache
from daisymail.queue.spool import (
    CorruptEntry,
    Queue,
    QueuedMessage,
    QueuedRecipient,
    QueueError,
)
from daisymail.queue.stream import Body
from daisymail.routing.addresses import domain_of
from daisymail.store.base import StorageError

log = logging.getLogger("daisymail.queue")
SCAN_INTERVAL = 1.0
MAX_MESSAGES_IN_FLIGHT = 50

Deliver = Callable[
    [remote.Route, str, Sequence[remote.Outgoing], Body, str, str, str],
    Awaitable[dict[str, remote.Outcome]],
]


Sign = Callable[[Iterable[bytes], str], bytes]
"""(message chunks, envelope sender) -> header fields to put in front; b"" for none."""

SignElsewhere = Callable[[bytes, str], Awaitable[bytes | None]]
"""(whole message, envelope sender) -> the same fields made by another process; None
when none could (the message is then signed here, in a thread)."""


def _notices_due(
    msg: QueuedMessage, cfg: QueueConfig, now: float
) -> list[tuple[Action, list[QueuedRecipient]]]:
    """The DSNs this attempt calls for (failure, relayed, delay), each with its recipients."""
    due: list[tuple[Action, list[QueuedRecipient]]] = [
        ("failed", [r for r in msg.recipients if r.state == "failed" and should_notify(msg, r)]),
        ("relayed", [r for r in msg.recipients if success_notice_due(msg, r)]),
        ("delayed", [r for r in msg.pending if delay_notice_due(msg, r, now, cfg.delay_warning)]),
    ]
    return [(action, rcpts) for action, rcpts in due if rcpts]


def _log_signed(body: Body, by: str) -> Body:
    """One line per signed attempt, saying which process signed (worker or server)."""
    if body.prefix:
        event(log, "queue.signed", id=remote.current_id.get(), by=by)
    return body


def backoff(attempts: int, schedule: Sequence[int]) -> int:
    """Seconds to wait after the given number of failed attempts; the last step repeats."""
    if not schedule:
        return 300
    return schedule[min(max(attempts, 1), len(schedule)) - 1]


class Runner:
    def __init__(
        self,
        queue: Queue,
        settings: Callable[[], QueueConfig],
        injector: Injector,
        hostname: str,
        *,
        clock: Callable[[], float] = time.time,
        deliver: Deliver | None = None,
        listeners: Sequence[tuple[str, int]] = (),
        sign: Sign | None = None,
        sign_elsewhere: SignElsewhere | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """listeners: our own SMTP addresses, so that mail routed back to us bounces;
        sign: the header fields (DKIM-Signature) a message gets as it leaves;
        sign_elsewhere: the same for a message held in memory, by the mail-auth workers."""
        self.queue = queue
        self.settings = settings
        self.injector = injector
        self.hostname = hostname
        self.clock = clock
        self.sessions = SessionCache()
        self.deliver = deliver or self._deliver_remote
        self.listeners = tuple(listeners)
        self.sign = sign
        self.sign_elsewhere = sign_elsewhere
        self.resolver = resolver  # for MX lookups ([dns]); None: the system resolver
        self._wake = asyncio.Event()
        self._due: dict[str, float] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._stopping = False
        self._backlog = False
        """The last scan left due messages for want of room: a freed slot rescans."""

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        recovered = await asyncio.to_thread(self.queue.recover)
        for verify in (False, True):  # built once, off the loop (the CA store is slow)
            await asyncio.to_thread(remote.tls_context, verify)
        event(log, "queue.recovered", messages=len(recovered))
        while not self._stopping:
            self._wake.clear()
            try:
                await self._scan()
            except Exception:
                log.exception("queue.scan_failed")
            self.sessions.expire()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SCAN_INTERVAL)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.sessions.close()

    async def _deliver_remote(
        self,
        route: remote.Route,
        sender: str,
        rcpts: Sequence[remote.Outgoing],
        body: Body,
        helo: str,
        envid: str,
        ret: str,
    ) -> dict[str, remote.Outcome]:
        """Over SMTP, reusing the sessions earlier deliveries to the hop left open."""
        keep = self.settings().idle_connection_seconds
        return await remote.deliver(
            route,
            sender,
            rcpts,
            body,
            helo=helo,
            envid=envid,
            ret=ret,
            sessions=self.sessions,
            keep_seconds=keep,
        )

    async def _scan(self) -> None:
        """Start the attempts now due; the directory work happens in a worker thread."""
        flush, ids = await asyncio.to_thread(self._list)
        present = set(ids)
        for gone in set(self._due) - present:
            del self._due[gone]
        if flush:
            self._due.update(dict.fromkeys(ids, 0.0))
        unknown = [i for i in ids if i not in self._busy and i not in self._due]
        room = MAX_MESSAGES_IN_FLIGHT - len(self._busy)
        self._backlog = len(unknown) > max(room, 0)
        if unknown and room > 0:
            self._due.update(await asyncio.to_thread(self._load, unknown[:room]))
        now = self.clock()
        for msg_id in ids:
            if len(self._busy) >= MAX_MESSAGES_IN_FLIGHT:
                self._backlog = True
                break
            next_attempt = self._due.get(msg_id)
            if msg_id in self._busy or next_attempt is None or next_attempt > now:
                continue
            self._busy.add(msg_id)
            task = asyncio.create_task(self._attempt(msg_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _list(self) -> tuple[bool, list[str]]:
        return self.queue.take_flush_request(), self.queue.ids()

    def _load(self, ids: Sequence[str]) -> dict[str, float]:
        """Next attempt times; an unreadable envelope is moved aside (nobody to bounce to)."""
        out: dict[str, float] = {}
        for msg_id in ids:
            try:
                msg = self.queue.get(msg_id)
            except CorruptEntry as e:
                self._quarantine(msg_id, str(e))
                continue
            if msg is not None:
                out[msg_id] = msg.next_attempt
        return out

    def _quarantine(self, msg_id: str, reason: str) -> None:
        try:
            where = self.queue.quarantine(msg_id)
        except OSError as e:
            event(log, "queue.quarantine_failed", logging.ERROR, id=msg_id, error=str(e))
            return
        event(log, "queue.quarantined", logging.ERROR, id=msg_id, to=where, reason=reason)

    async def _attempt(self, msg_id: str) -> None:
        token = remote.current_id.set(msg_id)
        try:
            msg = await asyncio.to_thread(self.queue.get, msg_id)
            if msg is not None:
                await self.process(msg)
                self._due[msg_id] = msg.next_attempt
        except CorruptEntry as e:
            await asyncio.to_thread(self._quarantine, msg_id, str(e))
        except Exception as e:
            log.exception("queue.attempt_failed id=%s", msg_id)
            await self._failed_attempt(msg_id, e)
        finally:
            remote.current_id.reset(token)
            self._busy.discard(msg_id)
            if self._backlog:  # waiting work: do not leave the slot idle until the next tick
                self._wake.set()

    async def _failed_attempt(self, msg_id: str, error: Exception) -> None:
        """An attempt that raised counts as a failed attempt: back-off, and past the
        lifetime the entry is moved aside rather than tried for ever."""
        cfg, now = self.settings(), self.clock()
        try:
            msg = await asyncio.to_thread(self.queue.get, msg_id)
        except (QueueError, OSError):
            msg = None
        if msg is None:
            self._due[msg_id] = now + backoff(1, cfg.retry_schedule)
            return
        if now - msg.created >= cfg.lifetime:
            await asyncio.to_thread(self._quarantine, msg_id, f"failed past its lifetime: {error}")
            return
        msg.attempts += 1
        msg.last_error = f"internal error: {error}"
        msg.next_attempt = now + backoff(msg.attempts, cfg.retry_schedule)
        self._due[msg_id] = msg.next_attempt
        await self._save(msg)

    async def _body(self, path: str, sender: str) -> Body:
        """The message as it leaves: scanned, and signed when a signer is set: by a
        worker process when the message is held in memory and one is ready, else in a
        thread (with the scan, in one trip)."""
        if self.sign is None:
            return await asyncio.to_thread(Body.scan, path)
        if self.sign_elsewhere is None:
            body = await asyncio.to_thread(lambda: self._signed(Body.scan(path), sender))
            return _log_signed(body, "server")
        body = await asyncio.to_thread(Body.scan, path)
        if body.data is not None:
            prefix = await self.sign_elsewhere(body.data, sender)
            if prefix is not None:
                return _log_signed(body.with_prefix(prefix), "worker")
        return _log_signed(await asyncio.to_thread(self._signed, body, sender), "server")

    def _signed(self, body: Body, sender: str) -> Body:
        """Blocking: the body with the fields ``sign`` makes for it in front."""
        assert self.sign is not None
        return body.with_prefix(self.sign(body.chunks(), sender))

    async def process(self, msg: QueuedMessage) -> None:
        """One attempt at every pending recipient, then save, bounce and reschedule."""
        cfg = self.settings()
        path = self.queue.message_path(msg.id)
        try:
            body: Body | None = await self._body(path, msg.sender)
        except FileNotFoundError:
            body = None
        if body is None:
            event(log, "queue.message_missing", logging.ERROR, id=msg.id, path=path)
            missing = remote.Outcome("permanent", "5.3.0", "the queued message file is missing")
            for r in msg.pending:
                self._record(msg, r, missing)
        else:
            groups: dict[str, list[QueuedRecipient]] = {}
            for r in msg.pending:
                groups.setdefault(domain_of(r.address), []).append(r)
            await asyncio.gather(
                *(self._deliver_domain(msg, d, rs, body, cfg) for d, rs in groups.items())
            )
        msg.attempts += 1
        now = self.clock()
        if msg.pending and now - msg.created >= cfg.lifetime:
            for r in msg.pending:
                r.state = "failed"
                r.status = EXPIRED_STATUS
                r.diagnostic = f"delivery time expired; last error: {r.diagnostic or 'none'}"
        msg.next_attempt = now + backoff(msg.attempts, cfg.retry_schedule)
        due = _notices_due(msg, cfg, now)
        # Done with nothing to report: removing the entry is the record. Saving the
        # final state first would only add two fsyncs, as a crash in between repeats
        # the hand-over either way.
        if msg.pending or due:
            if not await self._save(msg):
                return
            if not await self._notify(msg, due, cfg, now):
                return
        if not msg.pending:
            await asyncio.to_thread(self.queue.remove, msg.id)
            event(log, "queue.done", id=msg.id)

    async def _notify(
        self,
        msg: QueuedMessage,
        due: list[tuple[Action, list[QueuedRecipient]]],
        cfg: QueueConfig,
        now: float,
    ) -> bool:
        """Send the DSNs due (failure, relayed, delay) and record them; False when one
        could not be sent, and the message is kept for a retry soon."""
        sent = False
        data: bytes | None = None
        for action, rcpts in due:
            try:
                if data is None:  # read only when a notice is due: most attempts send none
                    data = await asyncio.to_thread(self._original, msg.id)
                await asyncio.to_thread(
                    self.send_dsn, msg, rcpts, data, action, msg.created + cfg.lifetime
                )
            except (StorageError, QueueError, OSError) as e:
                event(log, "queue.bounce_deferred", logging.WARNING, id=msg.id, error=str(e))
                msg.next_attempt = now + backoff(1, cfg.retry_schedule)
                await self._save(msg)
                return False
            for r in rcpts:
                if action == "delayed":
                    r.delay_notified = True
                else:
                    r.notified = True
            sent = True
        if sent and msg.pending:
            await self._save(msg)
        return True

    def _original(self, msg_id: str) -> bytes:
        try:
            return self.queue.read_message(msg_id)
        except FileNotFoundError:
            return b"(the original message was lost from the queue)\n"

    async def _save(self, msg: QueuedMessage) -> bool:
        try:
            await asyncio.to_thread(self.queue.update, msg)
        except QueueError as e:
            event(log, "queue.update_failed", logging.WARNING, id=msg.id, error=str(e))
            return False
        return True

    async def _deliver_domain(
        self,
        msg: QueuedMessage,
        domain: str,
        rcpts: list[QueuedRecipient],
        body: Body,
        cfg: QueueConfig,
    ) -> None:
        try:
            results = await self._hand_over(msg, domain, rcpts, body, cfg)
        except remote.RouteError as e:
            kind: remote.Kind = "permanent" if e.permanent else "temporary"
            results = {r.address: remote.Outcome(kind, e.status, e.text) for r in rcpts}
        except Exception as e:  # a bug or an odd entry: a failed attempt, never a stuck one
            log.exception("queue.deliver_failed id=%s domain=%s", msg.id, domain)
            error = remote.Outcome("temporary", "4.3.0", f"internal error: {e}")
            results = {r.address: error for r in rcpts}
        for r in rcpts:
            outcome = results.get(r.address) or remote.Outcome("temporary", "4.0.0", "no answer")
            self._record(msg, r, outcome)

    async def _hand_over(
        self,
        msg: QueuedMessage,
        domain: str,
        rcpts: list[QueuedRecipient],
        body: Body,
        cfg: QueueConfig,
    ) -> dict[str, remote.Outcome]:
        resolved = await remote.resolve_route(domain, cfg, self.resolver)
        route = await without_self(resolved, self.listeners)
        if resolved.hops and not route.hops:
            event(log, "queue.loop", logging.WARNING, id=msg.id, domain=domain)
            raise remote.RouteError(True, "5.4.6", f"mail for {domain} loops back to myself")
        slot = self._slots.setdefault(route.key, asyncio.Semaphore(cfg.destination_concurrency))
        outgoing = [remote.Outgoing(r.address, r.notify, r.orcpt) for r in rcpts]
        async with slot:
            started = time.monotonic()
            results = await self.deliver(
                route, msg.sender, outgoing, body, self.hostname, msg.envid, msg.ret
            )
            seconds = round(time.monotonic() - started, 4)
        event(log, "queue.attempt", id=msg.id, route=route.key, rcpts=len(rcpts), seconds=seconds)
        return results

    def _record(self, msg: QueuedMessage, r: QueuedRecipient, outcome: remote.Outcome) -> None:
        r.status, r.diagnostic, r.remote_mta = (
            outcome.status,
            outcome.diagnostic,
            outcome.remote_mta,
        )
        if outcome.kind == "delivered":
            r.state = "delivered"
            r.dsn_passed = outcome.dsn_passed
        elif outcome.kind == "permanent":
            r.state = "failed"
        event(
            log,
            f"queue.{outcome.kind}",
            logging.INFO if outcome.kind == "delivered" else logging.WARNING,
            id=msg.id,
            rcpt=r.address,
            relay=outcome.remote_mta or "-",
            status=outcome.status,
            reply=outcome.diagnostic,
        )

    def send_dsn(
        self,
        msg: QueuedMessage,
        rcpts: list[QueuedRecipient],
        data: bytes,
        action: Action = "failed",
        retry_until: float | None = None,
    ) -> None:
        send_dsn(self.injector, self.hostname, msg, rcpts, data, self.clock(), action, retry_until)
